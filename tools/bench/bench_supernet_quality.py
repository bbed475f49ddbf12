"""How good are the subnets of a trained supernet? Five ways to train, six fixed subnets, several seeds.

Data: MNIST-1D (``mnist1d.data.make_dataset``, generated locally, no download): 10 classes of 40-sample
1-D signals, 8000 examples split 4000 train / 4000 test (the large test split keeps the noise of
one accuracy near 0.3 points). Model: the residual 1-D CNN of ``autonas demo``
(``autonas.demo.model.SignalNet``: stride-2 stem, three residual blocks, global average pooling,
linear head) converted with the demo's rules: residual width 8-32, hidden width
of each block 16-64, depth 1-3. Its minimal and maximal subnets, trained alone for 20 epochs,
differ by about 5 points (93.5 vs 98.5; 12 points at 10 epochs), so the training methods can be
told apart.

Fixed subnets: min, centroid, three random ones (fixed draws), max. Methods, each for the same
number of epochs (but D') with AdamW and a one-cycle schedule, batch 128:

* (A) ``standalone``: each subnet exported and trained alone (the reference to match);
* (B) ``uniform``: the supernet with one random subnet per step (a converted model's own sampling);
* (C) ``sandwich``: ``an.sandwich(model, num_random=2)``: max, min and two random subnets per step;
* (D) ``sandwich+distill``: the same with in-place distillation (``distill=True``);
* (D') ``sandwich+distill, equal compute``: (D) trained for as many subnet steps as (A) spends on
  its fixed subnets together (epochs x 6 subnets / 4 subnets per step: 1.5x the epochs).

A supernet's subnet is evaluated after recalibrating BatchNorm on 20 training batches. Reported:
test accuracy, mean and standard deviation over the seeds, per subnet and averaged; wall time of
the training; time per step relative to a step of the maximal subnet trained alone.

Run: ``nice -n 10 python tools/bench/bench_supernet_quality.py`` (3 seeds, 20 epochs; about 10
minutes on one thread of a 2-core machine) or ``nox -s bench -- tools/bench/bench_supernet_quality.py``;
``--seeds 1 --epochs 2`` for a quick look; ``--lr`` sets the peak learning rate of every method (0.01:
the minimal and maximal subnets alone differ by 5 points; higher rates train every method better
but narrow that gap); ``--clip-grad-norm 1.0`` clips the gradient norm of every step (every method);
``--choose worst --candidates 4`` trains, as each random subnet of a sandwich step, the worst of four
uniform draws by the loss of the step's batch (``best``: the best; AttentiveNAS); ``--temperature 2``
sets the distillation temperature of (D) and (D'); ``--label-weight 0.5`` adds half the label loss to
their smaller subnets' distillation loss (Once-for-All's mix); ``--zero-init-residual`` starts every residual
block as the identity (every method; BigNAS); ``--json FILE`` writes the raw numbers.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

import autonas as an
from autonas.demo.data import generate_mnist1d
from autonas.demo.model import SEARCH_RULES, SignalNet
from autonas_patch import prep_for_eval

EQUAL_COMPUTE = "sandwich+distill, equal compute"
METHODS = ("standalone", "uniform", "sandwich", "sandwich+distill", EQUAL_COMPUTE)
SUBNETS = ("min", "centroid", "random1", "random2", "random3", "max")
#: Seed of the three fixed random subnets (the same for every training seed and method).
SUBNET_SEED = 2024
CALIBRATION_BATCHES = 20


@dataclass
class Data:
    """MNIST-1D as tensors: inputs ``(N, 1, 40)``, integer labels."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


def load_mnist1d(num_samples: int = 8000, train_split: float = 0.5) -> Data:
    """Generate MNIST-1D locally with the package's default transformations (its data seed, 42)."""
    train, test = generate_mnist1d(num_samples, train_split)  # computed from templates; nothing is downloaded
    return Data(train.signals, train.labels, test.signals, test.labels)


@dataclass
class Setup:
    """What one benchmark run trains."""

    epochs: int = 20
    seeds: Sequence[int] = (0, 1, 2)
    methods: Sequence[str] = METHODS
    subnets: Sequence[str] = SUBNETS
    batch_size: int = 128
    lr: float = 1e-2
    num_random: int = 2
    #: clip the gradient norm of every optimizer step (after all of its backwards) to this; None: no clipping
    clip_grad_norm: float | None = None
    #: how the sandwich picks its random subnets: "uniform", or the "worst" / "best" of ``candidates``
    #: uniform draws by the loss of the step's batch (AttentiveNAS)
    choose: str = "uniform"
    candidates: int = 4
    #: temperature of the in-place distillation (methods D and D')
    temperature: float = 1.0
    #: weight of the label loss added to the distillation loss of the smaller subnets (D, D'; ``label_weight``)
    label_weight: float = 0.0
    #: start every residual block as the identity (its last BatchNorm scale at zero), in every method
    zero_init_residual: bool = False


def build_supernet(seed: int, **options: Any) -> nn.Module:
    """The demo's :class:`SignalNet` (``options``: its keyword arguments) converted, seeded by ``seed``."""
    torch.manual_seed(seed)
    return an.convert(SignalNet(**options), mode=[("autonas", SEARCH_RULES)], mode_kwargs={"seed": seed})


def fixed_subnets(names: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The configurable config of each named subnet (the random ones drawn with :data:`SUBNET_SEED`)."""
    model = build_supernet(0)
    rng = random.Random(SUBNET_SEED)
    configs = {}
    for name in SUBNETS:
        sample_func = {"min": min, "max": max, "centroid": an.centroid}.get(name, rng.choice)
        an.sample(model, sample_func)
        configs[name] = an.get_subnet_config(model, configurable=True)
    return {name: configs[name] for name in names}


StepFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], None]


def plain_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
    F.cross_entropy(model(x), y).backward()


def sandwich_step(setup: Setup, distill: bool) -> StepFn:
    def step(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
        options: dict[str, Any] = {"num_random": setup.num_random, "distill": distill}
        if distill:
            options.update(temperature=setup.temperature, label_weight=setup.label_weight)
        if setup.choose != "uniform":
            options.update(choose=setup.choose, candidates=setup.candidates, score=lambda: F.cross_entropy(model(x), y))
        for subnet in an.sandwich(model, **options):
            subnet.loss(model(x), y, F.cross_entropy).backward()

    return step


def method_epochs(method: str, setup: Setup) -> int:
    """Training epochs of ``method``: the setup's, or for (D') the subnet steps of (A) over the sandwich's subnets."""
    if method != EQUAL_COMPUTE:
        return setup.epochs
    return max(1, round(setup.epochs * len(setup.subnets) / (2 + setup.num_random)))


def train(model: nn.Module, data: Data, setup: Setup, seed: int, step_fn: StepFn, epochs: int) -> tuple[float, int]:
    """Train in place for ``epochs``; returns (wall seconds, optimizer steps)."""
    order = torch.Generator().manual_seed(seed)
    steps_per_epoch = len(data.x_train) // setup.batch_size
    optimizer = torch.optim.AdamW(model.parameters(), lr=setup.lr, weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=setup.lr, total_steps=epochs * steps_per_epoch)
    model.train()
    start = time.perf_counter()
    for _ in range(epochs):
        permutation = torch.randperm(len(data.x_train), generator=order)
        for step in range(steps_per_epoch):
            index = permutation[step * setup.batch_size : (step + 1) * setup.batch_size]
            optimizer.zero_grad(set_to_none=True)
            step_fn(model, data.x_train[index], data.y_train[index])
            if setup.clip_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), setup.clip_grad_norm)
            optimizer.step()
            scheduler.step()
    return time.perf_counter() - start, epochs * steps_per_epoch


@torch.no_grad()
def accuracy(model: nn.Module, data: Data) -> float:
    """Test accuracy in percent (the model in eval mode)."""
    return 100.0 * float((model(data.x_test).argmax(dim=1) == data.y_test).float().mean())


def evaluate_supernet(model: nn.Module, configs: dict[str, dict[str, Any]], data: Data, batch: int) -> dict[str, float]:
    """Accuracy of each subnet after recalibrating BatchNorm on the first training batches."""
    batches = [data.x_train[i * batch : (i + 1) * batch] for i in range(CALIBRATION_BATCHES)]
    scores = {}
    for name, config in configs.items():
        an.select(model, config)
        prep_for_eval(model, lambda m: [m(x) for x in batches])
        scores[name] = accuracy(model, data)
    return scores


@dataclass
class Run:
    """One method at one seed: accuracy per subnet, training wall time and optimizer steps."""

    method: str
    seed: int
    accuracy: dict[str, float]
    wall_s: float
    steps: int
    step_s: dict[str, float] = field(default_factory=dict)  # standalone: per subnet


def run_method(method: str, seed: int, configs: dict[str, dict[str, Any]], data: Data, setup: Setup) -> Run:
    if method == "standalone":
        scores, step_s, wall, steps = {}, {}, 0.0, 0
        for name, config in configs.items():
            model = build_supernet(seed, zero_init_residual=setup.zero_init_residual)
            an.select(model, config)
            static = an.export(model)
            seconds, steps = train(static, data, setup, seed, plain_step, setup.epochs)
            static.eval()
            scores[name], step_s[name], wall = accuracy(static, data), seconds / steps, wall + seconds
        return Run(method, seed, scores, wall, steps, step_s)
    step_fn = {
        "uniform": plain_step,
        "sandwich": sandwich_step(setup, distill=False),
        "sandwich+distill": sandwich_step(setup, distill=True),
        EQUAL_COMPUTE: sandwich_step(setup, distill=True),
    }[method]
    model = build_supernet(seed, zero_init_residual=setup.zero_init_residual)
    wall, steps = train(model, data, setup, seed, step_fn, method_epochs(method, setup))
    return Run(method, seed, evaluate_supernet(model, configs, data, setup.batch_size), wall, steps)


def run_benchmark(setup: Setup, data: Data, log: Callable[[str], None] = print) -> list[Run]:
    unknown = sorted(set(setup.methods) - set(METHODS)) + sorted(set(setup.subnets) - set(SUBNETS))
    if unknown:
        raise ValueError(f"unknown methods/subnets {unknown}; methods are {METHODS}, subnets {SUBNETS}")
    configs = fixed_subnets(setup.subnets)
    width = max(map(len, setup.methods))
    runs = []
    for seed in setup.seeds:
        for method in setup.methods:
            run = run_method(method, seed, configs, data, setup)
            log(
                f"seed {seed} {method:<{width}} {run.wall_s:7.1f} s  "
                + "  ".join(f"{v:5.1f}" for v in run.accuracy.values())
            )
            runs.append(run)
    return runs


def _spread(values: list[float]) -> str:
    mean = statistics.fmean(values)
    return f"{mean:.1f} ± {statistics.stdev(values):.1f}" if len(values) > 1 else f"{mean:.1f}"


def summary(runs: list[Run]) -> dict[str, dict[str, Any]]:
    """Per method: accuracies per subnet and their mean over subnets (lists over seeds), wall times, step ratio."""
    static = [run.step_s["max"] for run in runs if run.method == "standalone" and "max" in run.step_s]
    static_step = statistics.median(static) if static else None
    out: dict[str, dict[str, Any]] = {}
    for method in dict.fromkeys(run.method for run in runs):
        mine = [run for run in runs if run.method == method]
        names = list(mine[0].accuracy)
        step = statistics.median(run.wall_s / run.steps for run in mine)
        out[method] = {
            "accuracy": {name: [run.accuracy[name] for run in mine] for name in names},
            "mean": [statistics.fmean(run.accuracy.values()) for run in mine],
            "wall_s": [run.wall_s for run in mine],
            "step_vs_static_max": None if static_step is None or method == "standalone" else step / static_step,
        }
    return out


def format_table(runs: list[Run]) -> str:
    """Markdown table: one row per method, mean ± std over seeds for every subnet and their mean."""
    table = summary(runs)
    names = list(next(iter(table.values()))["accuracy"])
    header = ["method", *names, "mean", "wall s", "step / static max step"]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for method, row in table.items():
        ratio = row["step_vs_static_max"]
        cells = [_spread(row["accuracy"][name]) for name in names]
        cells += [_spread(row["mean"]), _spread(row["wall_s"]), "-" if ratio is None else f"{ratio:.2f}"]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=Setup.epochs)
    parser.add_argument("--seeds", type=int, default=3, help="number of seeds (0, 1, ...)")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--lr", type=float, default=Setup.lr, help="peak learning rate of every method")
    parser.add_argument("--num-random", type=int, default=Setup.num_random, help="random subnets per sandwich step")
    parser.add_argument(
        "--clip-grad-norm", type=float, help="clip every step's gradient norm to this, in every method (default: off)"
    )
    parser.add_argument(
        "--choose",
        default=Setup.choose,
        choices=("uniform", "worst", "best"),
        help="random subnets of the sandwich: uniform draws, or the worst / best by batch loss of --candidates draws",
    )
    parser.add_argument("--candidates", type=int, default=Setup.candidates, help="draws per random subnet (--choose)")
    parser.add_argument("--temperature", type=float, default=Setup.temperature, help="distillation temperature (D, D')")
    parser.add_argument(
        "--label-weight",
        type=float,
        default=Setup.label_weight,
        help="add this times the label loss to the distillation loss of the smaller subnets (D, D')",
    )
    parser.add_argument(
        "--zero-init-residual",
        action="store_true",
        help="start every residual block as the identity (last BatchNorm scale 0), in every method",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--json", type=Path, help="write the raw runs to this file")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    setup = Setup(
        epochs=args.epochs,
        seeds=tuple(range(args.seeds)),
        methods=tuple(args.methods),
        lr=args.lr,
        num_random=args.num_random,
        clip_grad_norm=args.clip_grad_norm,
        choose=args.choose,
        candidates=args.candidates,
        temperature=args.temperature,
        label_weight=args.label_weight,
        zero_init_residual=args.zero_init_residual,
    )
    data = load_mnist1d()
    start = time.perf_counter()
    runs = run_benchmark(setup, data)
    print(
        f"\nMNIST-1D, {setup.epochs} epochs, lr {setup.lr}, clip {setup.clip_grad_norm}, choose {setup.choose}, temperature {setup.temperature}, label weight {setup.label_weight}, zero-init residual {setup.zero_init_residual}, seeds {list(setup.seeds)}, total {time.perf_counter() - start:.0f} s"
    )
    print(format_table(runs))
    if args.json:
        args.json.write_text(json.dumps([asdict(run) for run in runs], indent=1))


if __name__ == "__main__":
    sys.exit(main())
