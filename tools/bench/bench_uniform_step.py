"""What an ordinary supernet training step costs against a step of the subnet it trains, on ResNet-50.

Torchvision ResNet-50 (1000 classes) converted the way a user converts it,
``an.convert(model, mode="autonas")`` (the default ``AutoNASConfig``), batch 8 of 64x64 images on
the CPU (``--device cuda --batch 32 --size 224`` on a GPU). One *uniform* step is
``zero_grad(set_to_none=True)``, a training forward (the patched model samples its own random
subnet), cross-entropy, backward and an optimizer step. Its baseline is one step of the very
subnet it sampled, exported as a static model with an optimizer of its own.

Each round draws a new subnet; each repeat runs the supernet's step from the same generator state
(the same subnet again, after an untimed step of another subnet, as in training where every step
draws a new one) right beside the static model's step, and the ratio is the median over all
paired repeats (machine-load drift hits both sides of a pair alike). Reported per optimizer (SGD
with momentum, AdamW, and their one-pass variants ``foreach=True`` / ``fused=True``; fused SGD with
its momentum buffers created up front, see :func:`fused_sgd`): the whole step, and the forward+backward part alone (an optimizer updates
every stored parameter of a supernet, however small the subnet: the part weight sharing cannot
avoid). Target: whole step <= 1.15x on the CPU at batch 8 of 64x64, <= 1.10x on a GPU at batch 32
of 224x224.

Run: ``nice -n 10 python tools/bench/bench_uniform_step.py [--rounds 6] [--repeats 4] [--threads 2]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

import autonas as an
from autonas_patch import PatchManager


def fused_sgd(params: list[nn.Parameter]) -> torch.optim.SGD:
    """``SGD(momentum=0.9, fused=True)`` with every momentum buffer created (zero) up front.

    Torch's fused SGD (2.14) fails once some parameters have a momentum buffer and others not yet,
    which a supernet whose depth is searched reaches at its second step (a dropped block's
    parameters get their first gradient later). With dampening 0, a zero buffer gives exactly the
    update of a buffer created at the first gradient.
    """
    optimizer = torch.optim.SGD(params, lr=1e-3, momentum=0.9, fused=True)
    for param in params:
        optimizer.state[param]["momentum_buffer"] = torch.zeros_like(param)
    return optimizer


OPTIMIZERS: dict[str, Callable[[list[nn.Parameter]], torch.optim.Optimizer]] = {
    "SGD (momentum 0.9)": lambda params: torch.optim.SGD(params, lr=1e-3, momentum=0.9),
    "AdamW": lambda params: torch.optim.AdamW(params, lr=1e-4),
    # One kernel per update over all parameters: the pass over the supernet's inactive weights costs less.
    "SGD (momentum 0.9, foreach)": lambda params: torch.optim.SGD(params, lr=1e-3, momentum=0.9, foreach=True),
    "AdamW (fused)": lambda params: torch.optim.AdamW(params, lr=1e-4, fused=True),
    "SGD (momentum 0.9, fused)": fused_sgd,
}
WARMUP = 2
TARGETS = {"cpu": 1.15, "cuda": 1.10}


def supernet() -> nn.Module:
    """ResNet-50 converted with the default config, its sampling seeded."""
    torch.manual_seed(0)
    return an.convert(torchvision.models.resnet50(num_classes=1000), mode="autonas", mode_kwargs={"seed": 0})


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_step(
    model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, device: torch.device
) -> tuple[float, float]:
    """Seconds of (forward+backward, whole step) of one training step."""
    sync(device)
    start = time.perf_counter()
    optimizer.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()
    sync(device)
    middle = time.perf_counter()
    optimizer.step()
    sync(device)
    return middle - start, time.perf_counter() - start


class Static:
    """A subnet exported as a static model, with its own optimizer, warmed up."""

    def __init__(self, config: dict, optimizer: str, x: torch.Tensor, y: torch.Tensor, device: torch.device) -> None:
        model = supernet()
        an.select(model, config)
        self.model = an.export(model).to(device).train()
        self.optimizer = OPTIMIZERS[optimizer](list(self.model.parameters()))
        self.x, self.y, self.device = x, y, device
        for _ in range(WARMUP):
            self.step()

    def step(self) -> tuple[float, float]:
        return timed_step(self.model, self.optimizer, self.x, self.y, self.device)


def bench(optimizer_name: str, device: torch.device, batch: int, size: int, rounds: int, repeats: int) -> list:
    """Paired (supernet, static) step times over ``rounds`` subnets x ``repeats``."""
    model = supernet().to(device).train()
    optimizer = OPTIMIZERS[optimizer_name](list(model.parameters()))
    rng = PatchManager.get_manager(model).generator.rng
    data = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, size, size, generator=data).to(device)
    y = torch.randint(0, 1000, (batch,), generator=data).to(device)
    for _ in range(WARMUP):
        timed_step(model, optimizer, x, y, device)
    rows = []
    for round_ in range(rounds):
        state = rng.getstate()
        timed_step(model, optimizer, x, y, device)  # which subnet this round trains
        static = Static(an.get_subnet_config(model, configurable=True), optimizer_name, x, y, device)
        for _ in range(repeats):
            timed_step(model, optimizer, x, y, device)  # untimed: a different subnet comes before, as in training
            rng.setstate(state)
            rows.append((timed_step(model, optimizer, x, y, device), static.step()))
        (fb, whole), (static_fb, static_whole) = rows[-1]
        print(
            f"  round {round_}: supernet {whole * 1e3:.1f} ms (fwd+bwd {fb * 1e3:.1f}), "
            f"static {static_whole * 1e3:.1f} ms (fwd+bwd {static_fb * 1e3:.1f})"
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    target = TARGETS[device.type]
    table = []
    for name in OPTIMIZERS:
        print(f"{name}:")
        rows = bench(name, device, args.batch, args.size, args.rounds, args.repeats)
        whole = statistics.median(step[1] / static[1] for step, static in rows)
        part = statistics.median(step[0] / static[0] for step, static in rows)
        ms = statistics.median(step[1] for step, _ in rows) * 1e3, statistics.median(s[1] for _, s in rows) * 1e3
        table.append((name, ms, whole, part))
    print(
        f"\nResNet-50, default AutoNASConfig, batch {args.batch} of {args.size}x{args.size}, {device.type}, "
        f"{args.threads} thread(s), {args.rounds} subnets x {args.repeats} paired repeats"
    )
    print(
        "| optimizer | median step ms: supernet vs static | whole step (paired) | forward+backward (paired) | target |"
    )
    print("| --- | --- | --- | --- | --- |")
    for name, (step_ms, static_ms), whole, part in table:
        verdict = "OK" if whole <= target else "MISSED"
        print(f"| {name} | {step_ms:.1f} vs {static_ms:.1f} | {whole:.3f} | {part:.3f} | <= {target} {verdict} |")


if __name__ == "__main__":
    main()
