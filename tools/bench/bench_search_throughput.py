"""Search throughput: iterations per second of autonas.search on converted torchvision models.

A trivial score and no data loader, so the figure measures what the search itself costs per
candidate (sampling, selecting the subnet, checking the FLOPs/params constraints). The
reference implementation runs 3.1 it/s on ResNet-50 and 2.4 it/s on MobileNetV2 on this machine
class (CPU, 2 threads), mostly in per-candidate JIT traces for FLOPs; the target is >= 300 it/s.

The one-time setup of a search (building the closed-form cost model from recorded forwards,
profiling the space) is reported separately.

Run: ``nox -s bench -- tools/bench/bench_search_throughput.py`` (needs torchvision).
"""

from __future__ import annotations

import time

import torch
import torchvision

from autonas_modes import convert, search
from autonas_search import EvolveSearcher

REFERENCE_ITERS_PER_S = {"resnet50": 3.1, "mobilenet_v2": 2.4}
TARGET_ITERS_PER_S = 300.0
NUM_ITERS = 2000


class TimedEvolveSearcher(EvolveSearcher):
    """EvolveSearcher that records how long its iterations took."""

    loop_seconds = 0.0

    def run_search(self) -> None:
        start = time.perf_counter()
        super().run_search()
        TimedEvolveSearcher.loop_seconds = time.perf_counter() - start


def _trivial_score(model: torch.nn.Module) -> float:
    return 0.0


def bench(name: str) -> float:
    model = getattr(torchvision.models, name)(weights=None).eval()
    convert(model, "autonas")
    start = time.perf_counter()
    _, state = search(
        model,
        {"flops": "60%"},
        dummy_input=torch.randn(1, 3, 224, 224),
        config={"score_func": _trivial_score, "num_iters": NUM_ITERS, "seed": 0},
        searcher=TimedEvolveSearcher,
    )
    total = time.perf_counter() - start
    rate = state["iter_num"] / TimedEvolveSearcher.loop_seconds
    reference = REFERENCE_ITERS_PER_S[name]
    print(
        f"search throughput {name:<13} {rate:9.1f} it/s  reference {reference} it/s  ratio {rate / reference:7.1f}x  "
        f"(target {TARGET_ITERS_PER_S:.0f} it/s: {'met' if rate >= TARGET_ITERS_PER_S else 'NOT met'}; "
        f"{NUM_ITERS} iterations in {TimedEvolveSearcher.loop_seconds:.2f} s, one-time setup "
        f"(cost model, profile, export) {total - TimedEvolveSearcher.loop_seconds:.1f} s)"
    )
    return rate


def main() -> None:
    torch.manual_seed(0)
    for name in REFERENCE_ITERS_PER_S:
        bench(name)


if __name__ == "__main__":
    main()
