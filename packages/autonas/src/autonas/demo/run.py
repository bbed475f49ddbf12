"""``autonas demo``: the whole autonas workflow on handwritten digits, end to end.

1. convert :class:`~autonas.demo.model.DigitsNet` into a search space and train the supernet
   (a random subnet at every step);
2. calibrate and measure the full model (the original);
3. search the best subnet under a FLOPs limit (validation accuracy as the score) and export it;
4. fine-tune the exported subnet briefly;
5. print original vs found subnet and write the exported model, its architecture state and a
   plot of the searched candidates to the output folder.
"""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from torch import nn

import autonas as an
from autonas_modes import measure_latency
from autonas_patch import prep_for_eval

from .data import DigitsData, Split, load_digit_splits
from .model import INPUT_SHAPE, SEARCH_RULES, DigitsNet
from .options import DemoOptions
from .plot import plot_candidates
from .report import ModelReport, print_comparison
from .training import accuracy, train

# file names inside the output folder
EXPORTED_MODEL = "subnet.pt2"
CHECKPOINT = "subnet.pth"
ARCHITECTURE = "architecture.json"
CANDIDATES_PLOT = "candidates.png"
RESULTS = "results.json"

CALIBRATION_BATCHES = 8
CALIBRATION_BATCH_SIZE = 128
LATENCY_WARMUP = 10
LATENCY_REPEATS = 50


@dataclass
class DemoResult:
    """What the demo measured and wrote.

    Attributes:
        reports: original, found subnet, and found subnet after fine-tuning.
        flops_limit: the absolute FLOPs limit of the search.
        subnet_config: the configurable hparams of the found subnet.
        files: name -> path of every file written.
    """

    reports: list[ModelReport]
    flops_limit: float
    subnet_config: dict[str, Any]
    files: dict[str, Path]


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _forward_loop(data: Split, seed: int) -> Callable[[nn.Module], None]:
    """A forward loop over a few training batches, for BatchNorm recalibration."""
    loader = data.loader(CALIBRATION_BATCH_SIZE, shuffle=True, seed=seed)

    def loop(model: nn.Module) -> None:
        for images, _ in islice(loader, CALIBRATION_BATCHES):
            model(images)

    return loop


def _dummy_input() -> torch.Tensor:
    return torch.zeros(INPUT_SHAPE)


def measure(name: str, model: nn.Module, data: DigitsData) -> ModelReport:
    """Accuracies and costs of a plain (exported) model, which must be in eval mode."""
    dummy = _dummy_input()
    return ModelReport(
        name=name,
        test_accuracy=accuracy(model, data.test),
        val_accuracy=accuracy(model, data.val),
        flops=int(an.inference_flops(model, dummy)),
        params=int(an.param_count(model, dummy)),
        latency_ms=measure_latency(model, dummy, warmup=LATENCY_WARMUP, repeats=LATENCY_REPEATS),
    )


def scored_candidates(search_state: dict[str, Any]) -> list[dict[str, Any]]:
    """The candidates the search scored (those that satisfied the constraints), in visiting order."""
    return [c for c in search_state["samples"].values() if c["is_satisfied"]]


def export_program(model: nn.Module, path: Path) -> Path:
    """Save ``model`` (eval mode) with ``torch.export`` for any batch size; load with ``torch.export.load``."""
    batch = torch.export.Dim("batch", min=1, max=1 << 16)
    example = torch.zeros(2, *INPUT_SHAPE[1:])
    program = torch.export.export(model, (example,), dynamic_shapes=({0: batch},))
    torch.export.save(program, path)
    return path


def run_demo(options: DemoOptions, console: Console | None = None) -> DemoResult:
    """Run the demo with ``options``; print progress and the comparison table to ``console``."""
    console = console or Console()
    seed_everything(options.seed)
    data = load_digit_splits(options.seed)
    output = options.output
    output.mkdir(parents=True, exist_ok=True)

    model = an.convert(DigitsNet(), mode=[("autonas", SEARCH_RULES)])
    console.print(
        f"[bold]Search space[/]: {an.search_space_size(model):,} subnets of DigitsNet; "
        f"training the supernet for {options.epochs} epochs on {len(data.train)} digits"
    )
    train(
        model,
        data.train,
        epochs=options.epochs,
        lr=options.lr,
        seed=options.seed,
        progress=options.progress,
        desc="supernet",
    )

    # the original: the full (max) subnet, BatchNorm recalibrated for it
    an.sample(model, max)
    prep_for_eval(model, _forward_loop(data.train, options.seed))
    original = an.export(copy.deepcopy(model)).eval()
    original_report = measure("original (max subnet)", original, data)

    console.print(f"[bold]Searching[/] {options.search_iters} candidates under {options.flops_limit:g}% of the FLOPs")
    model, search_state = an.search(
        model,
        constraints={"flops": f"{options.flops_limit}%"},
        dummy_input=_dummy_input(),
        config={
            "score_func": lambda m: accuracy(m, data.val),
            "forward_loop": _forward_loop(data.train, options.seed),
            "num_iters": options.search_iters,
            "seed": options.seed,
            "verbose": options.progress,
        },
    )
    model.eval()
    found_report = measure("found subnet", model, data)
    flops_limit = options.flops_limit / 100 * original_report.flops

    train(
        model,
        data.train,
        epochs=options.finetune_epochs,
        lr=options.lr / 5,
        seed=options.seed + 1,
        progress=options.progress,
        desc="fine-tune",
    )
    model.eval()
    reports = [original_report, found_report]
    if options.finetune_epochs:
        reports.append(measure(f"found subnet, fine-tuned {options.finetune_epochs} ep", model, data))
    print_comparison(reports, console)

    files = {
        "exported_model": export_program(model, output / EXPORTED_MODEL),
        "checkpoint": output / CHECKPOINT,
        "architecture": output / ARCHITECTURE,
        "candidates_plot": output / CANDIDATES_PLOT,
        "results": output / RESULTS,
    }
    an.save(model, files["checkpoint"])
    files["architecture"].write_text(json.dumps(an.autonas_state(model), indent=2))
    plot_candidates(
        scored_candidates(search_state),
        files["candidates_plot"],
        flops_limit=flops_limit,
        chosen=(found_report.flops, found_report.val_accuracy),
        original=(original_report.flops, original_report.val_accuracy),
    )
    result = DemoResult(reports, flops_limit, dict(search_state["best"]["config"]), files)
    files["results"].write_text(json.dumps(_results_json(options, result), indent=2))
    for name, path in files.items():
        console.print(f"  {name.replace('_', ' ')}: {path}")
    return result


def _results_json(options: DemoOptions, result: DemoResult) -> dict[str, Any]:
    return {
        "options": {**vars(options), "output": str(options.output)},
        "flops_limit": result.flops_limit,
        "models": [report.to_dict() for report in result.reports],
        "subnet_config": result.subnet_config,
    }
