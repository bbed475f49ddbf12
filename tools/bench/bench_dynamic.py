"""Forward speed of dynamic models against plain ones, and the memory conversion takes.

Models: torchvision ResNet-50 and MobileNetV2 (``weights=None``) and a ViT-like MLP stack defined
here (16x16 patch embedding, 12 pre-norm MLP blocks of width 384 -> 1536 -> 384, a linear head),
each converted with the default ``AutoNASConfig`` rules. Input 1x3x224x224, CPU, 2 threads,
inference (``no_grad``, eval mode). Each figure is the median over many forwards, the two models
of a comparison alternating so that load changes hit both alike. Figures and targets:

* dynamic model at the maximal subnet vs the original model: <= 1.03x;
* dynamic model at the minimal subnet and at a random subnet vs that subnet exported: <= 1.05x;
* extra peak memory while converting (class swaps only, and the whole search-space generation
  with its tracing) vs the size of the weights, and whether every weight is still the same
  storage afterwards (conversion copies nothing).

Run: ``nox -s bench -- tools/bench/bench_dynamic.py`` (needs torchvision). ``BENCH_REPEATS``
sets the forwards per figure (default 40).
"""

from __future__ import annotations

import copy
import os
import random
import statistics
import sys
import time
from collections.abc import Callable

import torch
from torch import nn

from autonas_config import AutoNASConfig
from autonas_dynamic import DYNAMIC_REGISTRY, export_model
from autonas_dynamic.space import SearchSpace, generate_search_space

REPEATS = int(os.environ.get("BENCH_REPEATS", "40"))
THREADS = 2
MAX_RATIO, SUBNET_RATIO = 1.03, 1.05


class MLPBlock(nn.Module):
    def __init__(self, width: int, hidden: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.fc1, self.act, self.fc2 = nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fc2(self.act(self.fc1(self.norm(x))))


class ViTLikeMLP(nn.Module):
    """A vision transformer's layout with the attention left out: patches, MLP blocks, a head."""

    def __init__(self, width: int = 384, hidden: int = 1536, depth: int = 12, classes: int = 1000) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, width, 16, stride=16)
        self.blocks = nn.Sequential(*(MLPBlock(width, hidden) for _ in range(depth)))
        self.norm, self.head = nn.LayerNorm(width), nn.Linear(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.patch(x).flatten(2).transpose(1, 2)
        return self.head(self.norm(self.blocks(tokens)).mean(dim=1))


def models() -> dict[str, Callable[[], nn.Module]]:
    import torchvision

    return {
        "resnet50": lambda: torchvision.models.resnet50(weights=None),
        "mobilenet_v2": lambda: torchvision.models.mobilenet_v2(weights=None),
        "vit_like_mlp": ViTLikeMLP,
    }


@torch.no_grad()
def median_ms(first: nn.Module, second: nn.Module, x: torch.Tensor) -> tuple[float, float]:
    """Median forward time of two models (ms), measured alternately."""
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(3):
        first(x), second(x)
    for _ in range(REPEATS):
        for model, bucket in ((first, times[0]), (second, times[1])):
            start = time.perf_counter()
            model(x)
            bucket.append(time.perf_counter() - start)
    return statistics.median(times[0]) * 1e3, statistics.median(times[1]) * 1e3


def select(space: SearchSpace, pick: Callable[[list], object]) -> None:
    space.select({name: pick(choices) for name, choices in space.hparams().items()})


def report(label: str, baseline: float, value: float, target: float | None, unit: str = "ms") -> None:
    ratio = value / baseline if baseline else float("nan")
    verdict = "" if target is None else ("  ok" if ratio <= target else f"  ABOVE TARGET {target}x")
    print(f"  {label:<42} baseline {baseline:9.2f} {unit}  value {value:9.2f} {unit}  ratio {ratio:6.3f}{verdict}")


def peak_rss_during(fn: Callable[[], object]) -> float:
    """Extra peak resident memory (MiB) while ``fn`` runs (Linux: resets the high-water mark first)."""
    with open("/proc/self/status") as status:
        before = next(int(line.split()[1]) for line in status if line.startswith("VmRSS"))
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")
    fn()
    with open("/proc/self/status") as status:
        peak = next(int(line.split()[1]) for line in status if line.startswith("VmHWM"))
    return max(0, peak - before) / 1024


def bench_memory(name: str, build: Callable[[], nn.Module], x: torch.Tensor) -> None:
    model = build().eval()
    weights_mib = sum(t.numel() * t.element_size() for t in model.state_dict().values()) / 2**20
    pointers = {n: p.data_ptr() for n, p in model.named_parameters()}

    def swap_classes() -> None:
        for module in list(model.modules()):
            if module in DYNAMIC_REGISTRY and not isinstance(module, nn.Sequential):
                DYNAMIC_REGISTRY.convert(module)

    swap = peak_rss_during(swap_classes)
    same = pointers == {n: p.data_ptr() for n, p in model.named_parameters()}
    fresh = build().eval()
    generate = peak_rss_during(lambda: generate_search_space(fresh, AutoNASConfig().model_dump()))
    print(f"  weights {weights_mib:.1f} MiB; every weight kept its storage after conversion: {same}")
    report("extra peak memory, class swaps", weights_mib, swap, None, "MiB")
    report("extra peak memory, generate_search_space", weights_mib, generate, None, "MiB")


def bench_model(name: str, build: Callable[[], nn.Module]) -> None:
    print(f"{name}:")
    torch.manual_seed(0)
    x = torch.randn(1, 3, 224, 224)
    original = build().eval()
    dynamic = copy.deepcopy(original)
    space = generate_search_space(dynamic, AutoNASConfig().model_dump())
    dynamic.eval()
    print(f"  search space: {len(space.hparams())} configurable hparams, size {space.size():.3g}")
    report("dynamic at max vs original", *median_ms(original, dynamic, x), MAX_RATIO)
    rng = random.Random(0)
    for label, pick in (("min", min), ("random", rng.choice)):
        select(space, pick)
        exported = export_model(copy.deepcopy(dynamic)).eval()
        with torch.no_grad():
            torch.testing.assert_close(dynamic(x), exported(x), rtol=1e-4, atol=1e-4)
        report(f"dynamic at {label} vs its exported model", *median_ms(exported, dynamic, x), SUBNET_RATIO)
    bench_memory(name, build, x)


def main() -> None:
    try:
        builders = models()
    except ImportError:
        sys.exit("bench_dynamic needs torchvision (run it through `nox -s bench`, which installs it)")
    torch.set_num_threads(THREADS)
    print(f"torch {torch.__version__}, {THREADS} threads, batch 1, 224x224, median of {REPEATS} forwards")
    for name, build in builders.items():
        bench_model(name, build)


if __name__ == "__main__":
    main()
