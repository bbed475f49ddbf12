"""Model search on several torch.distributed ranks: wall time and speed-up of splitting the scoring.

ResNet-18 (torchvision, 10 classes) converted with the default AutoNAS rules, searched under a
60 % FLOPs limit for 60 candidates (``num_iters=60``, seed 0). Each scored candidate costs a
BatchNorm recalibration on one batch of 4 images at 64x64, one forward on a validation batch of 4,
and a 0.2 s sleep, a stand-in for the validation pass of a real search. 1, 2 and 3 gloo ranks
(processes on 127.0.0.1, one thread each) run the same search; the ranks score the candidates of
each batch in turn. The speed-up is the one-rank wall time of ``autonas.search`` divided by the
n-rank one (every rank converts and profiles the model too; that part does not shrink). Every
rank must end with the subnet of the one-rank search.

Target: near-linear speed-up for this sleep-bound score (>= 0.8 * ranks).

Run: ``python tools/bench/bench_search_distributed.py [--ranks 1 2 3]`` (needs torchvision).
"""

from __future__ import annotations

import argparse
import json
import socket
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
import torchvision

import autonas as an

NUM_CANDIDATES = 60
SLEEP_S = 0.2
EFFICIENCY_TARGET = 0.8


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _search_on_rank(rank: int, world: int, port: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    if world > 1:
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    torch.manual_seed(0)
    model = an.convert(torchvision.models.resnet18(num_classes=10), mode="autonas")
    data = torch.Generator().manual_seed(1)
    calibration = [torch.randn(4, 3, 64, 64, generator=data)]
    images, labels = torch.randn(4, 3, 64, 64, generator=data), torch.randint(0, 10, (4,), generator=data)
    scored = 0

    def score_func(net: torch.nn.Module) -> float:
        nonlocal scored
        scored += 1
        time.sleep(SLEEP_S)
        with torch.no_grad():
            return -F.cross_entropy(net(images), labels).item()

    if world > 1:
        dist.barrier()
    start = time.perf_counter()
    _, state = an.search(
        model,
        {"flops": "60%"},
        torch.randn(1, 3, 64, 64),
        config={"score_func": score_func, "data_loader": calibration, "num_iters": NUM_CANDIDATES, "seed": 0},
    )
    elapsed = time.perf_counter() - start
    result = {"seconds": elapsed, "scored": scored, "best": json.dumps(state["best"]["config"], sort_keys=True)}
    Path(out_dir, f"rank{rank}.json").write_text(json.dumps(result))
    if world > 1:
        dist.destroy_process_group()


def run(world: int) -> list[dict]:
    with tempfile.TemporaryDirectory() as out_dir:
        mp.spawn(_search_on_rank, args=(world, _free_port(), out_dir), nprocs=world)
        return [json.loads(Path(out_dir, f"rank{rank}.json").read_text()) for rank in range(world)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2, 3], help="world sizes (1 first: the baseline)")
    args = parser.parse_args()
    if args.ranks[0] != 1:
        parser.error("--ranks must start with 1, the baseline of the speed-up")
    results = {world: run(world) for world in args.ranks}
    base = results[1][0]["seconds"]
    print(
        f"\nModel search on gloo ranks: ResNet-18, {NUM_CANDIDATES} candidates, score = BN recalibration + "
        f"forward + {SLEEP_S} s sleep"
    )
    print(f"{'ranks':>5} {'wall s':>8} {'scored per rank':>18} {'speed-up':>9} {'efficiency':>11} {'target':>7}")
    bests = {r["best"] for ranks in results.values() for r in ranks}
    for world, ranks in results.items():
        wall = max(r["seconds"] for r in ranks)
        speedup = base / wall
        verdict = "ok" if speedup >= EFFICIENCY_TARGET * world else "MISSED"
        per_rank = "/".join(str(r["scored"]) for r in ranks)
        print(f"{world:>5} {wall:8.1f} {per_rank:>18} {speedup:8.2f}x {speedup / world:10.0%} {verdict:>7}")
    print(f"same best subnet on every rank and every world size: {len(bests) == 1}")


if __name__ == "__main__":
    main()
