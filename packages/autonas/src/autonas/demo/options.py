"""The settings of ``autonas demo``; importing them does not import torch."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

#: How the supernet trains: ``"sandwich"`` (the maximal, the minimal and two random subnets per
#: step, with in-place distillation) or ``"uniform"`` (one random subnet per step).
SAMPLINGS = ("sandwich", "uniform")


@dataclass
class DemoOptions:
    """Settings of ``autonas demo`` (the command-line flags).

    Attributes:
        epochs: supernet training epochs.
        flops_limit: FLOPs budget of the found subnet, in percent of the original model.
        output: folder that receives the exported model, architecture state, plot and results.
        seed: seed of the data split, the initial weights, training and the search.
        search_iters: candidates the evolutionary search visits.
        finetune_epochs: training epochs of the exported subnet.
        lr: peak learning rate of supernet training (fine-tuning uses a fifth of it).
        progress: whether to show progress bars.
        sampling: how the supernet trains, one of :data:`SAMPLINGS`.
    """

    epochs: int = 15
    flops_limit: float = 50.0
    output: Path = field(default_factory=lambda: Path("autonas-demo"))
    seed: int = 0
    search_iters: int = 200
    finetune_epochs: int = 3
    lr: float = 0.1
    progress: bool = True
    sampling: str = "sandwich"

    def __post_init__(self) -> None:
        self.output = Path(self.output)
        for name in ("epochs", "finetune_epochs", "seed"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.search_iters < 1:
            raise ValueError(f"search_iters must be >= 1, got {self.search_iters}")
        if not 0 < self.flops_limit <= 100:
            raise ValueError(f"flops_limit is a percentage of the original FLOPs in (0, 100], got {self.flops_limit}")
        if self.sampling not in SAMPLINGS:
            raise ValueError(f"sampling must be one of {SAMPLINGS}, got {self.sampling!r}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
