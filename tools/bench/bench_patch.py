"""Cost of the AutoNAS patch in training, and of BatchNorm recalibration on ``eval()``.

Training-step overhead: one SGD step (forward, cross-entropy, backward, update) of torchvision's
ResNet-18 (10 classes) converted with ``autonas.convert(model, mode="autonas")``, batch 8 at
64x64 on the CPU. The baseline is the same converted model unpatched at its maximal subnet. The
patched model samples a random subnet at every step exactly as in training (the whole draw from its
generator, the hparam updates, the counters, the input cache) and then activates the maximal subnet
again, so both run the same network and the difference is what the patch costs. Target: ratio
<= 1.05. Steps of the two models alternate, and the median per-step time is reported.

Also reported: the per-step cost of sampling alone and of caching one batch, the step time when
the sampled subnet is kept (what training actually costs), and the recalibration on ``eval()``
(50 cached batches replayed) against 50 plain eval-mode forwards of the same batches.

Run: ``nox -s bench -- tools/bench/bench_patch.py`` (needs torchvision).
"""

from __future__ import annotations

import copy
import random
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

import autonas as an
from autonas_patch import QUEUE_MAXLEN, AutoNASPatchManager, PatchManager, SubnetSampler
from autonas_patch.calibration import capture_inputs

TARGET = 1.05
BATCH, SIZE, STEPS, WARMUP = 8, 64, 40, 5


class SampleThenMax:
    """Draws and activates a random subnet like the model's own sampler, then activates the maximal one."""

    def __init__(self, inner: SubnetSampler) -> None:
        self.inner = inner

    def is_configurable(self) -> bool:
        return self.inner.is_configurable()

    def sample(self, rng: random.Random) -> None:
        self.inner.sample(rng)
        self.inner.sample_max()

    def sample_max(self) -> None:
        self.inner.sample_max()

    def sample_min(self) -> None:
        self.inner.sample_min()


def converted_resnet18() -> nn.Module:
    torch.manual_seed(0)
    return an.convert(torchvision.models.resnet18(num_classes=10), mode="autonas")


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> float:
    start = time.perf_counter()
    loss = F.cross_entropy(model(x), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return time.perf_counter() - start


def median_step_times(models: dict[str, nn.Module]) -> dict[str, float]:
    """Median SGD-step time of each model, steps interleaved so machine noise hits all alike."""
    data = torch.Generator().manual_seed(0)
    batches = [
        (torch.randn(BATCH, 3, SIZE, SIZE, generator=data), torch.randint(0, 10, (BATCH,), generator=data))
        for _ in range(STEPS + WARMUP)
    ]
    optimizers = {name: torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9) for name, model in models.items()}
    times: dict[str, list[float]] = {name: [] for name in models}
    for model in models.values():
        model.train()
    for step, (x, y) in enumerate(batches):
        for name, model in models.items():
            elapsed = train_step(model, optimizers[name], x, y)
            if step >= WARMUP:
                times[name].append(elapsed)
    return {name: statistics.median(values) for name, values in times.items()}


def per_call(fn: Callable[[], object], repeats: int = 2000) -> float:
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def bench_training_overhead() -> None:
    patched = converted_resnet18()
    manager = PatchManager.get_manager(patched)
    sampler = manager.sampler
    baseline = copy.deepcopy(patched)
    PatchManager.get_manager(baseline).unpatch()
    manager.unpatch()
    AutoNASPatchManager(patched).patch(SampleThenMax(sampler), seed=0)
    kept = converted_resnet18()  # keeps the sampled subnet: what a training step really costs

    medians = median_step_times({"unpatched": baseline, "patched": patched, "sampled": kept})
    ratio = medians["patched"] / medians["unpatched"]
    print(f"ResNet-18, batch {BATCH}, {SIZE}x{SIZE}, CPU ({torch.get_num_threads()} threads), median of {STEPS} steps")
    print(f"  train step, unpatched at max subnet (baseline): {medians['unpatched'] * 1e3:8.2f} ms")
    print(
        f"  train step, patched, sampling every step (max): {medians['patched'] * 1e3:8.2f} ms"
        f"   ratio {ratio:.3f} (target <= {TARGET})  {'OK' if ratio <= TARGET else 'MISSED'}"
    )
    print(
        f"  train step, patched, sampled subnet kept:       {medians['sampled'] * 1e3:8.2f} ms"
        f"   ratio {medians['sampled'] / medians['unpatched']:.3f} (smaller subnets on average)"
    )

    rng = random.Random(0)
    sample_cost = per_call(lambda: sampler.sample(rng))
    x = torch.randn(BATCH, 3, SIZE, SIZE)
    cache_cost = per_call(lambda: capture_inputs((x,), {}), repeats=200)
    print(
        f"  sampling one subnet: {sample_cost * 1e6:.1f} us ({sample_cost / medians['unpatched'] * 100:.3f} % of a step);"
        f" caching one batch: {cache_cost * 1e6:.1f} us (first {QUEUE_MAXLEN} steps and every 100th)"
    )


def bench_recalibration() -> None:
    model = converted_resnet18()
    manager = PatchManager.get_manager(model)
    data = torch.Generator().manual_seed(1)
    batches = [torch.randn(BATCH, 3, SIZE, SIZE, generator=data) for _ in range(QUEUE_MAXLEN)]
    model.train()
    with torch.no_grad():
        for x in batches:
            model(x)  # fills the queue and leaves an auto-sampled subnet
    start = time.perf_counter()
    model.eval()  # maximal subnet, stale statistics, full queue: recalibrates
    recalibration = time.perf_counter() - start
    assert manager.patch_data["train_count_since_sample"] == 100, "eval() did not recalibrate"

    plain = copy.deepcopy(model)
    PatchManager.get_manager(plain).unpatch()
    plain.eval()
    start = time.perf_counter()
    with torch.no_grad():
        for x in batches:
            plain(x)
    forwards = time.perf_counter() - start
    print(f"  eval() recalibration over {QUEUE_MAXLEN} cached batches: {recalibration * 1e3:8.1f} ms")
    print(
        f"  baseline, {QUEUE_MAXLEN} eval-mode forwards of the same batches: {forwards * 1e3:8.1f} ms"
        f"   ratio {recalibration / forwards:.3f}"
    )


def main() -> None:
    bench_training_overhead()
    bench_recalibration()


if __name__ == "__main__":
    main()
