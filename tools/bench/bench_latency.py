"""Latency constraints in the runtime that serves the model: setup, per-candidate cost, interpolation error.

The spaces are torchvision's ResNet-50 and MobileNetV2 (the default ``AutoNASConfig`` rules), input
1x3x224x224 on the CPU, latency measured in eager torch and in ONNX Runtime (CPU provider), both on
``--threads`` threads (default 2).

* Setup: building the constraints of a search under ``{"latency": "50%"}`` and profiling them as
  ``an.search`` does (the original subnet and the sample points measured; for ONNX Runtime each is
  an ONNX export). Target: under 30 s for ResNet-50 in ONNX Runtime on 2 cores.
* Per-candidate check: a constraint evaluation at random subnets after the setup (interpolated,
  unless a subnet falls outside the measured range). Baseline: one real measurement. Target:
  microseconds.
* Interpolation error: at ``--checks`` random subnets, the latency interpolated from the setup's
  points against the measured one (``autonas_modes.profiling.check_interpolation``). The noise
  floor is the difference between two measurements of the same subnets (min, centroid, max).
* The demo: ``autonas demo``'s found subnet against the original model, both exported to ONNX, in
  ONNX Runtime on one thread at batch 1 and at a large batch, next to their FLOPs ratio.

Run: ``nox -s bench -- tools/bench/bench_latency.py`` (flags after ``--``: see ``--help``).
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

import autonas_modes as am
from autonas_modes.constraints import ModelConstraints
from autonas_modes.deployment import Deployment
from autonas_modes.latency import median_time_ms
from autonas_modes.modelspace import model_space
from autonas_modes.onnx_export import onnx_feeds, onnxruntime_session
from autonas_modes.profiling import check_interpolation, profile_constraints

TARGET_SETUP_S = 30.0
CANDIDATES = 200
DEMO_ROUNDS = 10


def build(name: str) -> nn.Module:
    import torchvision

    torch.manual_seed(0)
    return am.convert(getattr(torchvision.models, name)(weights=None), mode="autonas")


def timed(function: Callable[[], Any]) -> tuple[Any, float, float]:
    """``function()``, its wall time and this process's CPU time meanwhile (on a busy machine the wall
    time overstates what an idle one takes; the CPU time, summed over threads, bounds it)."""
    start, cpu = time.perf_counter(), time.process_time()
    result = function()
    return result, time.perf_counter() - start, time.process_time() - cpu


def bench_space(name: str, deployment: dict[str, Any], checks: int) -> None:
    model = build(name)
    dummy = torch.randn(1, 3, 224, 224)
    label = f"{name}, {Deployment.parse(deployment).describe()}"
    calls: list[float] = []

    functor, build_wall, _ = timed(lambda: ModelConstraints(model, {"latency": "50%"}, dummy, deployment=deployment))
    measure = functor.latency_func

    def counted(model: nn.Module, dummy_input: Any) -> float:
        start = time.perf_counter()
        value = measure(model, dummy_input)
        calls.append(time.perf_counter() - start)
        return value

    functor.latency_func = counted
    (_, stats), profile_wall, profile_cpu = timed(
        lambda: profile_constraints(functor, verbose=False, use_centroid=True)
    )
    setup_wall = build_wall + profile_wall
    print(f"{label}: {am.search_space_size(model):.3g} subnets, interpolation over {functor.costs.interpolation_keys}")
    print(
        f"  setup (constraints with the original's latency + profile): {setup_wall:.1f} s wall "
        f"({profile_cpu:.1f} s CPU in the profile), {len(calls) + 1} subnets measured, "
        f"{statistics.median(calls):.2f} s per measurement (median)"
    )
    if deployment.get("runtime") == "onnxruntime" and name == "resnet50":
        verdict = "OK" if setup_wall <= TARGET_SETUP_S else "ABOVE TARGET"
        print(
            f"  target setup <= {TARGET_SETUP_S:.0f} s: {verdict} (ratio to target {setup_wall / TARGET_SETUP_S:.2f})"
        )
    print(
        "  sample points (ms): "
        + ", ".join(f"{point} {stats[point]['latency']:.2f}" for point in ("min", "centroid", "max"))
    )

    space = model_space(model)
    rng = random.Random(0)
    interpolated, outside = [], 0
    for _ in range(CANDIDATES):
        space.sample(rng.choice)
        before = len(calls)
        start = time.perf_counter_ns()
        functor.costs.evaluate()
        elapsed_us = (time.perf_counter_ns() - start) / 1e3
        if len(calls) == before:
            interpolated.append(elapsed_us)
        else:
            outside += 1
    print(
        f"  per-candidate check: {statistics.median(interpolated):.0f} us (median of {len(interpolated)} interpolated), "
        f"{outside} of {CANDIDATES} outside the measured range and measured; "
        f"baseline one measurement {statistics.median(calls) * 1e3:.0f} ms: "
        f"{statistics.median(calls) * 1e6 / statistics.median(interpolated):.0f}x"
    )

    check = check_interpolation(functor, checks, seed=1)
    errors = ", ".join(f"{100 * point['relative error']:+.0f}%" for point in check["points"])
    print(
        f"  interpolation error at {checks} random subnets: median |error| {100 * check['median abs error']:.1f}%, "
        f"max {100 * check['max abs error']:.1f}% ({errors})"
    )
    noise = []
    for point, func in (("min", min), ("centroid", am.centroid), ("max", max)):
        space.sample(func)
        again = measure(model, dummy)
        noise.append(abs(again - stats[point]["latency"]) / stats[point]["latency"])
    print(
        "  noise floor (same subnet measured twice, min/centroid/max): "
        + ", ".join(f"{100 * value:.1f}%" for value in noise)
    )


def _ort_timer(session: Any, images: torch.Tensor) -> Callable[[], float]:
    """A measurement of ``session`` on ``images``: median of 10 runs after 3 warm-up runs, in ms."""
    feeds = onnx_feeds(session, images)
    return lambda: median_time_ms(lambda: session.run(None, feeds), 3, 10)


def bench_demo(batch: int) -> None:
    """The demo's found subnet and the original, both in ONNX Runtime, against their FLOPs ratio."""
    from autonas.demo.model import INPUT_SHAPE, SignalNet
    from autonas.demo.options import DemoOptions
    from autonas.demo.run import ONNX_MODEL, interleaved_medians, run_demo

    with tempfile.TemporaryDirectory() as folder:
        result = run_demo(DemoOptions(output=Path(folder), progress=False))
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        subnet = ort.InferenceSession(str(Path(folder) / ONNX_MODEL), options, providers=["CPUExecutionProvider"])
    original = onnxruntime_session(SignalNet().eval(), torch.zeros(INPUT_SHAPE), threads=1, dynamic_batch=True)
    original_report, found_report = result.reports[0], result.reports[-1]
    flops_ratio = found_report.flops / original_report.flops
    print(f"demo: found subnet {found_report.flops / 1e6:.2f} MFLOPs vs original {original_report.flops / 1e6:.2f}")
    for size in (1, batch):
        inputs = torch.rand(size, *INPUT_SHAPE[1:])
        original_ms, subnet_ms = interleaved_medians([_ort_timer(original, inputs), _ort_timer(subnet, inputs)])
        print(
            f"  ONNX Runtime, 1 thread, batch {size}: original {original_ms:.3f} ms, found subnet {subnet_ms:.3f} ms, "
            f"latency ratio {subnet_ms / original_ms:.2f} (FLOPs ratio {flops_ratio:.2f})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--models", nargs="+", default=["resnet50", "mobilenet_v2"])
    parser.add_argument("--runtimes", nargs="+", default=["onnxruntime", "torch"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--checks", type=int, default=10, help="random subnets of the interpolation check")
    parser.add_argument("--demo-batch", type=int, default=256)
    parser.add_argument("--no-demo", action="store_true")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    torch.set_num_threads(args.threads)
    for name in args.models:
        for runtime in args.runtimes:
            bench_space(name, {"runtime": runtime, "threads": args.threads}, args.checks)
    if not args.no_demo:
        bench_demo(args.demo_batch)


if __name__ == "__main__":
    main()
