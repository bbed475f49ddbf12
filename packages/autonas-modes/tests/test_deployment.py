"""The ``deployment`` of latency: validated keys, the three runtimes, and the profile's interpolation check."""

from __future__ import annotations

import math
import random
import sys
import time

import pytest
import torch
import torch.nn as nn
from modes_models import FlopsLatency

import autonas_modes as am
from autonas_dynamic.cost import count_flops
from autonas_modes.constraints import ModelConstraints
from autonas_modes.deployment import Deployment

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")


# ------------------------------------------------------------------------------------------ validation
@pytest.mark.parametrize(
    ("deployment", "error", "message"),
    [
        ({"runtime": "tensorrt"}, ValueError, r"runtime 'tensorrt' is not supported; supported runtimes are \['torch'"),
        ({"runtime": "torch", "thread": 2}, KeyError, r"Unknown deployment key 'thread'; the keys of runtime 'torch'"),
        (
            {"runtime": "torch", "provider": "CPUExecutionProvider"},
            KeyError,
            r"deployment key 'provider' does not apply to runtime 'torch'; its keys are \['threads', 'warmup', 'repeats'\]",
        ),
        (
            {"runtime": "onnxruntime", "backend": "inductor"},
            KeyError,
            "'backend' does not apply to runtime 'onnxruntime'",
        ),
        ({"threads": 0}, ValueError, "deployment threads must be >= 1, got 0"),
        ({"threads": "2"}, TypeError, "deployment threads must be an integer, got '2'"),
        ({"repeats": 0}, ValueError, "deployment repeats must be >= 1"),
        ({"warmup": True}, TypeError, "deployment warmup must be an integer, got True"),
        ({"runtime": "torch.compile", "warmup": 0}, ValueError, "deployment warmup must be >= 1"),
        (
            {"runtime": "torch.compile", "backend": "tvm-ish"},
            ValueError,
            "backend 'tvm-ish' is not a torch.compile backend",
        ),
        ({"runtime": "torch.compile", "mode": "fast"}, ValueError, "mode 'fast' is not a torch.compile mode"),
        ("onnxruntime", TypeError, "deployment must be a dict"),
    ],
)
def test_bad_deployments_name_the_key_or_value(deployment: object, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        Deployment.parse(deployment)  # type: ignore[arg-type]


def test_an_unavailable_onnxruntime_provider_lists_the_available_ones() -> None:
    pytest.importorskip("onnxruntime")
    with pytest.raises(
        ValueError, match=r"provider 'NoSuchExecutionProvider' is not available.*'CPUExecutionProvider'"
    ):
        Deployment.parse({"runtime": "onnxruntime", "provider": "NoSuchExecutionProvider"})


def test_profile_and_search_check_the_deployment_before_measuring(space: nn.Module, images: torch.Tensor) -> None:
    with pytest.raises(KeyError, match="Unknown deployment key 'threds'"):
        am.profile(space, images[:1], deployment={"runtime": "torch", "threds": 1}, verbose=False)
    with pytest.raises(KeyError, match="Unknown deployment key 'threds'"):
        am.search(
            space,
            {"latency": "50%"},
            images[:1],
            config={"score_func": lambda m: 0.0, "deployment": {"threds": 1}},
        )
    with pytest.raises(ValueError, match="Give either latency_func or deployment, not both"):
        ModelConstraints(space, {"latency": None}, images[:1], latency_func=lambda m, x: 1.0, deployment={})
    functor = ModelConstraints(space, {}, images[:1])
    with pytest.raises(ValueError, match="latency_func/deployment when building the ModelConstraints"):
        am.profile(space, constraints=functor, deployment={"runtime": "torch"})


def test_missing_onnxruntime_names_the_pip_extra(
    space: nn.Module, images: torch.Tensor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` fail as if not installed
    message = r"Latency in ONNX Runtime needs the optional package 'onnxruntime'.*pip install 'autonas\[onnx\]'"
    with pytest.raises(ModuleNotFoundError, match=message):
        am.profile(space, images[:1], deployment={"runtime": "onnxruntime"}, verbose=False)


def test_describe_names_the_runtime_and_its_settings() -> None:
    assert Deployment.parse(None).describe() == "torch"
    assert Deployment.parse({"threads": 1}).describe() == "torch (1 thread)"
    assert Deployment(runtime="onnxruntime", threads=2).describe() == "onnxruntime (CPUExecutionProvider, 2 threads)"
    assert (
        Deployment(runtime="torch.compile", mode="max-autotune").describe() == "torch.compile (inductor, max-autotune)"
    )


# ----------------------------------------------------------------------------------------- measurement
class Sleeper(nn.Module):
    """Sleeps in forward and records torch's thread count there."""

    def __init__(self) -> None:
        super().__init__()
        self.threads: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.threads.append(torch.get_num_threads())
        time.sleep(0.003)
        return x + 1


def test_torch_runtime_times_warmup_plus_repeats_on_the_given_threads() -> None:
    model = Sleeper()
    before = torch.get_num_threads()
    latency = Deployment.parse({"threads": 1, "warmup": 2, "repeats": 5}).measure(model, torch.zeros(1))
    assert model.threads == [1] * 7 and torch.get_num_threads() == before
    assert 3.0 <= latency < 100.0


class Wide(nn.Module):
    """Two 3x3 convolutions of ``width`` channels on 32x32 maps: FLOPs grow with width squared."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(8, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, 8, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def test_onnxruntime_runtime_times_the_exported_subnet() -> None:
    """A 64x wider model is measurably slower in ONNX Runtime (timed interleaved, so load hits both alike)."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    deployment = Deployment.parse({"runtime": "onnxruntime", "threads": 1, "repeats": 5})
    narrow, wide = Wide(4).eval(), Wide(256).eval()
    x = torch.randn(1, 8, 32, 32)
    ratios = [deployment.measure(wide, x) / deployment.measure(narrow, x) for _ in range(3)]
    assert sorted(ratios)[1] > 4.0  # FLOPs ratio 64; ORT's per-call overhead and noise take some of it


def test_torch_compile_runtime_compiles_every_measured_subnet(space: nn.Module, images: torch.Tensor) -> None:
    """Each subnet is compiled: past torch.compile's recompile limit (8) nothing silently falls back to eager."""
    compiled = []

    def counting_backend(graph: torch.fx.GraphModule, example_inputs: list) -> object:
        compiled.append(graph)
        return graph.forward

    torch._dynamo.register_backend(counting_backend, name="autonas_test_counting")
    deployment = Deployment.parse({"runtime": "torch.compile", "backend": "autonas_test_counting", "repeats": 2})
    rng, seen = random.Random(0), set()
    while len(seen) < 12:  # 12 subnets of different shapes
        config = am.sample(space, rng.choice)
        key = tuple(sorted(config.items()))
        if key not in seen:
            seen.add(key)
            assert deployment.measure(space, images[:1]) > 0
    assert len(compiled) == 12


# ------------------------------------------------------------------------------ profile with latency
def test_profile_measures_only_its_sample_points_and_interpolates_the_random_centroid(
    space: nn.Module, images: torch.Tensor
) -> None:
    latency = FlopsLatency()
    stats = am.profile(space, images[:1], latency_func=latency, verbose=False, check_points=0)
    assert len(latency.calls) == 9  # the 9 sample points of a depth-searchable model; the 30 random subnets interpolate
    assert "latency" in stats["centroid"] and "latency interpolation" not in stats


def test_a_subnet_is_measured_once_even_when_asked_for_again(space: nn.Module, images: torch.Tensor) -> None:
    """A percentage limit measures the original subnet, which is the profile's max point: timed once, not twice."""
    latency = FlopsLatency()
    calls = latency.calls
    functor = ModelConstraints(space, {"latency": "50%"}, images[:1], latency_func=latency)
    assert len(calls) == 1
    am.profile(space, constraints=functor, verbose=False, use_centroid=True, check_points=0)
    assert len(calls) == 9 and len({tuple(sorted(config.items())) for config in calls}) == 9
    am.sample(space, min)
    expected = FlopsLatency()(space, images[:1])  # another instance: its call is not counted
    assert functor.costs.evaluate(measure_latency=True)["latency"] == pytest.approx(expected)
    assert len(calls) == 9


def test_profile_reports_the_interpolation_error_at_random_subnets(
    space: nn.Module, images: torch.Tensor, capsys: pytest.CaptureFixture
) -> None:
    """Latency that is not affine in the coordinates: the errors are those of interpolating from the sample points."""

    def curved(model: nn.Module, dummy: torch.Tensor) -> float:
        return (count_flops(model, dummy) / 1e6) ** 1.5

    reference = ModelConstraints(space, {"latency": None}, images[:1], latency_func=curved)
    am.profile(space, constraints=reference, verbose=False, use_centroid=True, check_points=0)
    stats = am.profile(space, images[:1], latency_func=curved, use_centroid=True, check_points=4)
    check = stats["latency interpolation"]
    assert len(check["points"]) == 4
    rng = random.Random(2048)
    for point in check["points"]:
        am.sample(space, rng.choice)
        truth = curved(space, images[:1])
        assert point["measured"] == pytest.approx(truth)
        assert point["interpolated"] == pytest.approx(
            reference.costs.interpolated_latency()
        )  # from the 9 sample points
        assert point["relative error"] == pytest.approx((point["interpolated"] - truth) / truth)
    errors = [abs(p["relative error"]) for p in check["points"]]
    assert check["max abs error"] == pytest.approx(max(errors)) and 0 < check["max abs error"] < 0.5
    out = capsys.readouterr().out
    assert "Profiling Results (latency in ms, latency_func)" in out
    assert "Latency interpolation check" in out and f"max {100 * max(errors):.1f}%" in out


def test_a_deployment_alone_makes_profile_track_latency(space: nn.Module, images: torch.Tensor) -> None:
    stats = am.profile(space, images[:1], deployment={"threads": 1, "repeats": 3}, verbose=False, check_points=1)
    assert stats["min"]["latency"] > 0 and stats["max"]["latency"] > 0
    assert not math.isnan(stats["latency interpolation"]["points"][0]["measured"])
