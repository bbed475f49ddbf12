"""Building a :class:`~autonas_dynamic.cost.CostModel` and evaluating it, on ResNet-50-sized spaces.

The spaces are torchvision's ResNet-50 (a hand-built ResNet-50 of the same shape when torchvision
is missing) and MobileNetV2 (with torchvision only), converted with the default ``AutoNASConfig``
rules, input 1x3x224x224 on the CPU.

* Build: the probe forwards on meta tensors (the default) against the same build with real
  forwards (``meta_forwards=False``), and against one real counted forward; both builds must agree.
  Wall and CPU time are printed: on a shared machine the CPU time bounds what an idle one takes.
  Target: the ResNet-50 build well under 5 s on an idle 2-core CPU.
* Evaluation: each evaluation reads the active hparams and evaluates the closed form. The baseline
  is what a constraint check costs without it: a forward-pass count (``count_flops`` +
  ``count_params``) of the exported subnet. Both are measured on the same random subnets in this
  run, and their results are checked to be equal. Target: <= 100 microseconds per evaluation.

Run: ``nox -s bench -- tools/bench/bench_cost.py``.
"""

from __future__ import annotations

import copy
import random
import statistics
import time
from collections.abc import Callable
from typing import TypeVar

import torch
from torch import nn

from autonas_config import AutoNASConfig
from autonas_dynamic import export_model
from autonas_dynamic.cost import CostModel, count_flops, count_params
from autonas_dynamic.space import SearchSpace, generate_search_space

T = TypeVar("T")

TARGET_US = 100.0
TARGET_BUILD_S = 5.0
NUM_SUBNETS, BASELINE_SUBNETS, REPEATS = 200, 3, 20


class Bottleneck(nn.Module):
    def __init__(self, cin: int, mid: int, stride: int) -> None:
        super().__init__()
        cout = 4 * mid
        self.conv1, self.bn1 = nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid)
        self.conv2, self.bn2 = nn.Conv2d(mid, mid, 3, stride, 1, bias=False), nn.BatchNorm2d(mid)
        self.conv3, self.bn3 = nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class ResNet50(nn.Module):
    """ResNet-50's layer shapes, for machines without torchvision."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64)
        self.relu, self.maxpool = nn.ReLU(), nn.MaxPool2d(3, 2, 1)
        stages, cin = [], 64
        for mid, blocks, stride in [(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)]:
            layers = []
            for index in range(blocks):
                layers.append(Bottleneck(cin, mid, stride if index == 0 else 1))
                cin = 4 * mid
            stages.append(nn.Sequential(*layers))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.fc = nn.Linear(2048, 1000)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def resnet50() -> tuple[nn.Module, str]:
    try:
        import torchvision
    except ImportError:
        return ResNet50(), "hand-built ResNet-50"
    return torchvision.models.resnet50(), "torchvision resnet50"


def mobilenet_v2() -> tuple[nn.Module, str] | None:
    try:
        import torchvision
    except ImportError:
        return None
    return torchvision.models.mobilenet_v2(), "torchvision mobilenet_v2"


def timed(function: Callable[[], T]) -> tuple[T, float, float]:
    """``function()``, its wall time and the CPU time of this process meanwhile (all threads; on a shared
    machine the wall time of a busy run overstates what an idle machine takes, the CPU time does not)."""
    start, cpu = time.perf_counter(), time.process_time()
    result = function()
    return result, time.perf_counter() - start, time.process_time() - cpu


def bench_build(model: nn.Module, label: str, dummy: torch.Tensor) -> tuple[SearchSpace, CostModel, float]:
    """Build times with meta and with real probe forwards; returns the space, the meta-built model, its CPU time."""
    space = generate_search_space(model, AutoNASConfig().model_dump())
    count_flops(model, dummy)  # warm up: the first dispatch-mode forward of a process imports torch internals
    _, forward, forward_cpu = timed(lambda: count_flops(model, dummy))
    _, first_build, _ = timed(lambda: CostModel(model, dummy))  # includes torch's one-off set-up of meta kernels
    costs, build, build_cpu = timed(lambda: CostModel(model, dummy))
    real, real_build, real_cpu = timed(lambda: CostModel(model, dummy, meta_forwards=False))
    rng = random.Random(0)
    for _ in range(20):
        space.select(space.sample(lambda choices: rng.choice(choices)))
        if (costs.flops(), costs.params()) != (real.flops(), real.params()):
            raise SystemExit(f"MISMATCH between the meta-built and the real-built cost models on {label}")
    space.select(space.sample(max))
    print(f"{label}: {space.size():.3g} subnets, {costs}")
    print(f"  one real counted forward at the largest subnet: {forward:.2f} s wall, {forward_cpu:.2f} s CPU")
    print(
        f"  build, real probe forwards ({real.num_forwards}): {real_build:.2f} s wall, {real_cpu:.2f} s CPU "
        f"({real_build / forward:.1f} forwards)"
    )
    print(
        f"  build, meta probe forwards ({costs.num_forwards} + 1 real check): {build:.2f} s wall, {build_cpu:.2f} s CPU "
        f"({build / forward:.2f} forwards; first in the process {first_build:.2f} s wall)"
    )
    print(
        f"  speed-up {real_build / build:.1f}x wall, {real_cpu / build_cpu:.1f}x CPU; "
        "both builds agree on 20 random subnets"
    )
    return space, costs, build_cpu


def main() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(2)
    dummy = torch.randn(1, 3, 224, 224)
    print(f"default AutoNASConfig rules, input {tuple(dummy.shape)}")
    model, label = resnet50()
    space, costs, build_cpu = bench_build(model, label, dummy)
    verdict = "OK" if build_cpu <= TARGET_BUILD_S else "ABOVE TARGET"
    print(
        f"  target build <= {TARGET_BUILD_S:.0f} s on an idle 2-core CPU (at most the CPU time): {verdict} "
        f"(ratio to target {build_cpu / TARGET_BUILD_S:.2f})"
    )
    mobilenet = mobilenet_v2()
    if mobilenet is None:
        print("mobilenet_v2: skipped (needs torchvision)")
    else:
        bench_build(*mobilenet, dummy)
    bench_evaluation(model, space, costs, dummy)


def bench_evaluation(model: nn.Module, space: SearchSpace, costs: CostModel, dummy: torch.Tensor) -> None:
    """Time of one closed-form evaluation against a forward count of the exported subnet."""
    rng = random.Random(0)
    configs = [space.sample(lambda choices: rng.choice(choices)) for _ in range(NUM_SUBNETS)]
    per_eval = []
    for _ in range(REPEATS):
        for config in configs:
            space.select(config)
            start = time.perf_counter_ns()
            costs.flops()
            costs.params()
            per_eval.append(time.perf_counter_ns() - start)
    closed_form_us = statistics.median(per_eval) / 1e3

    baseline = []
    for config in configs[:BASELINE_SUBNETS]:
        space.select(config)
        expected = (costs.flops(), costs.params())
        exported = export_model(copy.deepcopy(model))
        start = time.perf_counter()
        counted = (count_flops(exported, dummy), count_params(exported))
        baseline.append(time.perf_counter() - start)
        if counted != expected:
            raise SystemExit(f"MISMATCH on a subnet: cost model {expected}, forward count {counted}")
    baseline_us = statistics.median(baseline) * 1e6

    print("evaluation on the ResNet-50 space:")
    print(f"  closed form (flops + params): {closed_form_us:.1f} us per evaluation (median of {len(per_eval)})")
    print(f"  baseline forward count on the exported subnet: {baseline_us / 1e3:.1f} ms (median of {len(baseline)})")
    print(f"  speed-up: {baseline_us / closed_form_us:.0f}x; results equal on {len(baseline)} subnets")
    verdict = "OK" if closed_form_us <= TARGET_US else "ABOVE TARGET"
    print(f"  target <= {TARGET_US:.0f} us: {verdict} (ratio to target {closed_form_us / TARGET_US:.2f})")


if __name__ == "__main__":
    main()
