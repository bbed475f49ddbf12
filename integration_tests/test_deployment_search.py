"""A search under a latency limit measured in ONNX Runtime returns a subnet that is that fast in ONNX Runtime."""

from __future__ import annotations

import statistics

import pytest
import torch
from test_workflow import SmallResNet

import autonas_modes as am
from autonas_modes.latency import median_time_ms
from autonas_modes.onnx_export import onnx_feeds, onnxruntime_session

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")]

#: The tolerance docs/workflow.md documents for a measured latency against its limit: the
#: interpolation error plus the timing noise of a busy machine.
LATENCY_TOLERANCE = 0.25


def test_search_under_half_the_onnxruntime_latency() -> None:
    reference = SmallResNet().eval()  # the original model; its latency is the 100 % of the limit
    dummy = torch.randn(1, 3, 32, 32)
    # 50 timed runs per measured subnet (about half a second each), so that a short burst of load from
    # other processes moves the median little
    deployment = {"runtime": "onnxruntime", "threads": 1, "repeats": 50}

    def largest(model: torch.nn.Module) -> float:  # pushes the search to the limit, where it is hardest to hold
        return float(am.inference_flops(model, dummy, unit=1))

    searched, state = am.search(
        am.convert(SmallResNet(), mode="autonas"),
        {"latency": "50%"},
        dummy,
        # every candidate under the limit counts (not only those above 85 % of it): the latency that a
        # busy machine measures is too noisy for a narrow band to be met in a few iterations
        config={"score_func": largest, "deployment": deployment, "num_iters": 30, "rel_lower_bound": 0.0, "seed": 0},
    )
    best = state["best"]["constraints"]
    assert not am.is_dynamic(searched) and best["flops"] < am.inference_flops(reference, dummy, unit=1)

    # measured anew in rounds that time the found subnet and the original back to back, so that both
    # see the same load from other processes; the median of the per-round ratios counts
    runs = []
    for model in (searched, reference):
        session = onnxruntime_session(model, dummy, threads=1)
        feeds = onnx_feeds(session, dummy)
        runs.append(lambda session=session, feeds=feeds: median_time_ms(lambda: session.run(None, feeds), 3, 50))
    rounds = [(runs[0](), runs[1]()) for _ in range(7)]
    ratio = statistics.median(found / original for found, original in rounds)
    assert ratio <= 0.5 * (1 + LATENCY_TOLERANCE), f"found subnet at {ratio:.0%} of the original latency: {rounds}"
