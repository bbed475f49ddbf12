"""``autonas demo``: the whole autonas workflow on MNIST-1D signals, end to end.

1. convert :class:`~autonas.demo.model.SignalNet` into a search space and train the supernet
   with the sandwich rule and in-place distillation (``--sampling uniform``: a random subnet at
   every step);
2. calibrate and measure the full model (the original);
3. search the best subnet under a FLOPs limit (validation accuracy as the score) and export it;
4. fine-tune the exported subnet briefly;
5. print original vs found subnet (latency in eager torch, and in ONNX Runtime when the ``onnx``
   extra is installed) and write the exported model (also as ONNX then), its architecture state
   and a plot of the searched candidates to the output folder (each file atomically: a run killed
   while writing leaves the previous file whole).
"""

from __future__ import annotations

import copy
import json
import random
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from torch import nn

import autonas as an
from autonas_modes import measure_latency
from autonas_modes.latency import median_time_ms
from autonas_modes.onnx_export import onnx_feeds, onnxruntime_session
from autonas_modes.optional import ONNX_MODULES, is_installed
from autonas_patch import prep_for_eval
from autonas_search.files import atomic_write, writable_folder

from .data import DemoData, Split, load_splits
from .model import INPUT_SHAPE, SEARCH_RULES, SignalNet
from .options import DemoOptions
from .plot import plot_candidates
from .report import ModelReport, print_comparison
from .training import accuracy, train

# file names inside the output folder
EXPORTED_MODEL = "subnet.pt2"
ONNX_MODEL = "subnet.onnx"
CHECKPOINT = "subnet.pth"
ARCHITECTURE = "architecture.json"
CANDIDATES_PLOT = "candidates.png"
RESULTS = "results.json"

#: random subnets per step of the sandwich rule (besides the maximal and the minimal one)
SANDWICH_RANDOM = 2
CALIBRATION_BATCHES = 4
CALIBRATION_BATCH_SIZE = 64
# every candidate under the FLOPs limit is scored (the searcher's default, 0.85, scores only those
# above 85 % of the limit), so the plot shows the accuracy/FLOPs trade-off over the whole budget
SEARCH_LOWER_BOUND = 0.0
TIE_BREAK = 1e-4
LATENCY_ROUNDS = 10
LATENCY_WARMUP = 3
LATENCY_REPEATS = 10


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
        for signals, _ in islice(loader, CALIBRATION_BATCHES):
            model(signals)

    return loop


def _dummy_input() -> torch.Tensor:
    return torch.zeros(INPUT_SHAPE)


def _flops(model: nn.Module) -> float:
    """FLOPs of one signal through the active subnet of ``model``."""
    return float(an.inference_flops(model, _dummy_input(), unit=1))


def measure_models(models: Sequence[tuple[str, nn.Module]], data: DemoData) -> list[ModelReport]:
    """Accuracies and costs of plain (exported) models in eval mode.

    Latency is that of one signal on one CPU thread in eager torch and, when the ``onnx`` extra is
    installed, in ONNX Runtime (each model exported to ONNX once).
    """
    dummy = _dummy_input()
    with single_thread():
        latencies = interleaved_medians(
            [partial(measure_latency, model, dummy, LATENCY_WARMUP, LATENCY_REPEATS) for _, model in models]
        )
    ort_latencies = onnxruntime_latencies(models) if is_installed(*ONNX_MODULES) else [None] * len(models)
    return [
        ModelReport(
            name=name,
            test_accuracy=accuracy(model, data.test),
            val_accuracy=accuracy(model, data.val),
            flops=int(_flops(model)),
            params=int(an.param_count(model, dummy)),
            latency_ms=latency,
            onnxruntime_latency_ms=ort_latency,
        )
        for (name, model), latency, ort_latency in zip(models, latencies, ort_latencies, strict=True)
    ]


def onnxruntime_latencies(models: Sequence[tuple[str, nn.Module]]) -> list[float]:
    """Latency of one signal in ONNX Runtime on one thread, for each model exported to ONNX."""
    dummy = _dummy_input()
    measures = []
    for _, model in models:
        session = onnxruntime_session(model, dummy, threads=1)
        run = partial(session.run, None, onnx_feeds(session, dummy))
        measures.append(partial(median_time_ms, run, LATENCY_WARMUP, LATENCY_REPEATS))
    return interleaved_medians(measures)


def interleaved_medians(measures: Sequence[Callable[[], float]]) -> list[float]:
    """The median of each measurement over ``LATENCY_ROUNDS`` rounds that run every one once.

    Interleaving makes load from other processes affect every model alike.
    """
    rounds: list[list[float]] = [[] for _ in measures]
    for _ in range(LATENCY_ROUNDS):
        for times, measure in zip(rounds, measures, strict=True):
            times.append(measure())
    return [statistics.median(times) for times in rounds]


def scored_candidates(search_state: dict[str, Any]) -> list[dict[str, Any]]:
    """The candidates the search scored (those that satisfied the constraints), in visiting order."""
    return [c for c in search_state["samples"].values() if c["is_satisfied"]]


def export_program(model: nn.Module, path: Path) -> Path:
    """Save ``model`` (eval mode) with ``torch.export`` for any batch size; load with ``torch.export.load``."""
    batch = torch.export.Dim("batch", min=1, max=1 << 16)
    example = torch.zeros(2, *INPUT_SHAPE[1:])
    program = torch.export.export(model, (example,), dynamic_shapes=({0: batch},))
    with atomic_write(path) as temporary:
        torch.export.save(program, temporary)
    return path


@contextmanager
def single_thread() -> Iterator[None]:
    """Run torch on one CPU thread inside the block.

    The demo's tensors are tiny (40-sample signals): a second thread saves little on an idle machine and
    costs many times over on a busy one, where the threads wait for each other.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@contextmanager
def _phase(console: Console, message: str) -> Iterator[None]:
    """Print ``message``, run the block, then print how long it took."""
    console.print(message)
    start = time.perf_counter()
    yield
    console.print(f"  done in {time.perf_counter() - start:.1f} s")


def search_subnet(model: nn.Module, data: DemoData, options: DemoOptions) -> tuple[nn.Module, dict[str, Any]]:
    """``an.search`` under the FLOPs limit for the best validation accuracy, BatchNorm recalibrated per candidate.

    Subnets can tie on validation accuracy (2000 signals: steps of 0.05 %), so the score breaks
    ties towards fewer FLOPs: it is the accuracy minus ``TIE_BREAK`` times the candidate's share
    of the full model's FLOPs, too little to reorder different accuracies.
    """
    full_flops = _flops(model)

    def score(candidate: nn.Module) -> float:
        return accuracy(candidate, data.val) - TIE_BREAK * _flops(candidate) / full_flops

    return an.search(
        model,
        constraints={"flops": f"{options.flops_limit}%"},
        dummy_input=_dummy_input(),
        config={
            "score_func": score,
            "data_loader": data.train.loader(CALIBRATION_BATCH_SIZE, shuffle=True, seed=options.seed),
            "max_iter_data_loader": CALIBRATION_BATCHES,
            "num_iters": options.search_iters,
            "rel_lower_bound": SEARCH_LOWER_BOUND,
            "seed": options.seed,
            "verbose": options.progress,
        },
    )


def run_demo(options: DemoOptions, console: Console | None = None) -> DemoResult:
    """Run the demo with ``options`` on one CPU thread; print progress and the comparison table to ``console``."""
    with single_thread():
        return _run(options, console or Console())


def _run(options: DemoOptions, console: Console) -> DemoResult:
    seed_everything(options.seed)
    data = load_splits(options.seed)
    writable_folder(options.output)  # fail now rather than after training

    model = an.convert(SignalNet(), mode=[("autonas", SEARCH_RULES)], mode_kwargs={"seed": options.seed})
    sandwich = options.sampling == "sandwich"
    per_step = f"max, min and {SANDWICH_RANDOM} random subnets per step" if sandwich else "a random subnet per step"
    with _phase(
        console,
        f"[bold]Training[/] the supernet ({an.search_space_size(model):,} subnets) for {options.epochs} epochs "
        f"on {len(data.train)} signals, {per_step}",
    ):
        train(
            model,
            data.train,
            epochs=options.epochs,
            lr=options.lr,
            seed=options.seed,
            progress=options.progress,
            desc="supernet",
            sandwich_random=SANDWICH_RANDOM if sandwich else None,
        )

    # the original: the full (max) subnet, BatchNorm recalibrated for it
    an.sample(model, max)
    prep_for_eval(model, _forward_loop(data.train, options.seed))
    models = [("original", an.export(copy.deepcopy(model)).eval())]

    with _phase(console, f"[bold]Searching[/] {options.search_iters} candidates under {options.flops_limit:g}% FLOPs"):
        model, search_state = search_subnet(model, data, options)
    models.append(("found subnet", copy.deepcopy(model).eval()))
    if options.finetune_epochs:
        with _phase(console, f"[bold]Fine-tuning[/] the found subnet for {options.finetune_epochs} epochs"):
            train(
                model,
                data.train,
                epochs=options.finetune_epochs,
                lr=options.lr / 5,
                seed=options.seed + 1,
                progress=options.progress,
                desc="fine-tune",
            )
        models.append((f"fine-tuned ({options.finetune_epochs} ep)", model.eval()))

    reports = measure_models(models, data)
    print_comparison(reports, console)
    result = DemoResult(
        reports=reports,
        flops_limit=options.flops_limit / 100 * reports[0].flops,
        subnet_config=dict(search_state["best"]["config"]),
        files={},
    )
    write_outputs(model, search_state, options, result)
    for name, path in result.files.items():
        console.print(f"  {name.replace('_', ' ')}: {path}")
    return result


def write_outputs(model: nn.Module, search_state: dict[str, Any], options: DemoOptions, result: DemoResult) -> None:
    """Write the exported model, checkpoint, architecture state, candidate plot and results; fill ``result.files``."""
    output = options.output
    files = result.files
    files["exported_model"] = export_program(model, output / EXPORTED_MODEL)
    if is_installed(*ONNX_MODULES):
        files["onnx_model"] = an.export_onnx(model, output / ONNX_MODEL, _dummy_input())
    files["checkpoint"] = output / CHECKPOINT
    an.save(model, files["checkpoint"])
    files["architecture"] = write_json(output / ARCHITECTURE, an.autonas_state(model))
    best, original = search_state["best"], result.reports[0]
    files["candidates_plot"] = plot_candidates(
        scored_candidates(search_state),
        output / CANDIDATES_PLOT,
        flops_limit=result.flops_limit,
        chosen=(best["constraints"]["flops"], best["metric"]),
        original=(original.flops, original.val_accuracy),
    )
    files["results"] = write_json(output / RESULTS, _results_json(options, result))


def write_json(path: Path, data: Any) -> Path:
    """Write ``data`` as indented JSON to ``path``, atomically."""
    with atomic_write(path) as temporary:
        temporary.write_text(json.dumps(data, indent=2))
    return path


def _results_json(options: DemoOptions, result: DemoResult) -> dict[str, Any]:
    return {
        "options": {**vars(options), "output": str(options.output)},
        "flops_limit": result.flops_limit,
        "models": [report.to_dict() for report in result.reports],
        "subnet_config": result.subnet_config,
    }
