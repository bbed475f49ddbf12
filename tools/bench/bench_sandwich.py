"""What a sandwich step costs: against the static subnets it trains, and with DDP against syncing every backward.

At the size of ``bench_supernet_quality.py`` (its residual 1-D CNN, batch 128 of 1x40 signals,
AdamW, CPU):

* ``sandwich``: one step of ``an.sandwich(model, num_random=2)`` (max, min and two random subnets:
  zero_grad, four forwards and backwards, one optimizer step) against the sum of one step of each
  of the same four subnets exported as static models. Target: <= 1.15x.
* ``uniform``: one ordinary training step of the supernet (it samples its own subnet, repeated
  from the same generator state) against a step of that subnet exported as a static model.

Each round draws new subnets; the supernet step is repeated from the same generator state (same
subnets) and each static model's step after two warm-up steps; medians over repeats, then the
median of the per-round ratios.

DDP (``--ddp``): two gloo ranks on this machine, each a batch of 64, 12 sandwich steps through the
DDP model (``no_sync`` for all but the last backward: one all-reduce per step) against the same
steps given the inner model (an all-reduce after every backward); median step time per variant.

Run: ``nice -n 10 python tools/bench/bench_sandwich.py [--rounds 8] [--ddp]``.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

sys.path.insert(0, str(Path(__file__).parent))

from bench_supernet_quality import build_supernet

import autonas as an
from autonas_patch import PatchManager

TARGET = 1.15
BATCH, LENGTH, NUM_RANDOM, REPEATS, WARMUP = 128, 40, 2, 3, 2


def batch(seed: int, size: int = BATCH) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(size, 1, LENGTH, generator=generator), torch.randint(0, 10, (size,), generator=generator)


def plain_backward(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
    F.cross_entropy(model(x), y).backward()


def sandwich_backward(model: nn.Module, x: torch.Tensor, y: torch.Tensor, record: list | None = None) -> None:
    for subnet in an.sandwich(model, num_random=NUM_RANDOM):
        subnet.loss(model(x), y, F.cross_entropy).backward()
        if record is not None:
            record.append(an.get_subnet_config(model, configurable=True))


def timed_step(optimizer: torch.optim.Optimizer, backward: Callable[..., None], *args: Any) -> float:
    """Seconds of one optimizer step: ``zero_grad``, ``backward(*args)``, ``step``."""
    start = time.perf_counter()
    optimizer.zero_grad(set_to_none=True)
    backward(*args)
    optimizer.step()
    return time.perf_counter() - start


def static_step_time(config: dict[str, Any], x: torch.Tensor, y: torch.Tensor) -> float:
    """Median step time of ``config`` exported as a static model (after warm-up steps)."""
    model = build_supernet(0)
    an.select(model, config)
    static = an.export(model).train()
    optimizer = torch.optim.AdamW(static.parameters(), lr=1e-3)
    times = [timed_step(optimizer, plain_backward, static, x, y) for _ in range(WARMUP + REPEATS)]
    return statistics.median(times[WARMUP:])


def repeated_step_time(
    model: nn.Module, optimizer: torch.optim.Optimizer, backward: Callable[..., None], *args: Any
) -> float:
    """Median time of ``REPEATS`` steps of ``model``, each from the same generator state (the same subnets)."""
    generator = PatchManager.get_manager(model).generator
    state, times = generator.rng.getstate(), []
    for _ in range(REPEATS):
        generator.rng.setstate(state)
        times.append(timed_step(optimizer, backward, *args))
    return statistics.median(times)


def bench_steps(rounds: int) -> None:
    model = build_supernet(0).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    generator = PatchManager.get_manager(model).generator
    for _ in range(WARMUP):
        timed_step(optimizer, sandwich_backward, model, *batch(0))
    rows = []
    for round_ in range(rounds):
        x, y = batch(round_)
        state, configs = generator.rng.getstate(), []
        timed_step(optimizer, sandwich_backward, model, x, y, configs)  # which subnets this round trains
        generator.rng.setstate(state)
        sandwich_s = repeated_step_time(model, optimizer, sandwich_backward, model, x, y)
        statics = [static_step_time(config, x, y) for config in configs]

        state = generator.rng.getstate()  # an ordinary training step: the model samples its own subnet
        timed_step(optimizer, plain_backward, model, x, y)
        sampled = an.get_subnet_config(model, configurable=True)
        generator.rng.setstate(state)
        uniform_s = repeated_step_time(model, optimizer, plain_backward, model, x, y)
        uniform_static = static_step_time(sampled, x, y)
        rows.append((sandwich_s, sum(statics), uniform_s, uniform_static))
        print(
            f"round {round_}: sandwich {sandwich_s * 1e3:6.1f} ms, static max/min/random "
            + "/".join(f"{s * 1e3:.1f}" for s in statics)
            + f" ms (sum {sum(statics) * 1e3:.1f}), ratio {sandwich_s / sum(statics):.3f}; uniform step "
            f"{uniform_s * 1e3:.1f} ms vs static {uniform_static * 1e3:.1f} ms, ratio {uniform_s / uniform_static:.3f}"
        )
    sandwich_ratio = statistics.median(row[0] / row[1] for row in rows)
    uniform_ratio = statistics.median(row[2] / row[3] for row in rows)
    medians = [statistics.median(row[i] for row in rows) * 1e3 for i in range(4)]
    print(f"\nNet1D (bench_supernet_quality), batch {BATCH}, CPU, {torch.get_num_threads()} thread(s), {rounds} rounds")
    print("| step | median ms (supernet vs static) | ratio (median of rounds) | target |")
    print("| --- | --- | --- | --- |")
    verdict = "OK" if sandwich_ratio <= TARGET else "MISSED"
    print(
        f"| sandwich (max, min, {NUM_RANDOM} random) vs the sum of the 4 static steps | "
        f"{medians[0]:.1f} vs {medians[1]:.1f} | {sandwich_ratio:.3f} | <= {TARGET} {verdict} |"
    )
    print(
        f"| uniform step (one sampled subnet) vs its static step | {medians[2]:.1f} vs {medians[3]:.1f} | {uniform_ratio:.3f} | - |"
    )


# --------------------------------------------------------------------------------------------- DDP
DDP_STEPS, DDP_WARMUP, DDP_BATCH = 12, 2, 64


def _ddp_step_times(ddp: DistributedDataParallel, target: nn.Module, rank: int) -> float:
    """Median time of sandwich steps through ``ddp``, the sandwich given ``target`` (DDP model or inner model)."""
    optimizer = torch.optim.AdamW(ddp.parameters(), lr=1e-3)
    times = []
    for step in range(DDP_WARMUP + DDP_STEPS):
        x, y = batch(1000 * rank + step, DDP_BATCH)
        dist.barrier()
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        for subnet in an.sandwich(target, num_random=NUM_RANDOM):
            subnet.loss(ddp(x), y, F.cross_entropy).backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return statistics.median(times[DDP_WARMUP:])


def _ddp_rank(rank: int, port: int, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        results = {}
        for variant in ("no_sync", "every_backward"):
            model = build_supernet(0)
            ddp = DistributedDataParallel(model, find_unused_parameters=True)
            results[variant] = _ddp_step_times(ddp, ddp if variant == "no_sync" else model, rank)
        torch.save(results, Path(out) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def bench_ddp() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with tempfile.TemporaryDirectory() as out:
        mp.spawn(_ddp_rank, args=(port, out), nprocs=2)
        ranks = [torch.load(Path(out) / f"rank{rank}.pt") for rank in range(2)]
    no_sync = max(rank["no_sync"] for rank in ranks)
    every = max(rank["every_backward"] for rank in ranks)
    print(f"\nDDP, 2 gloo ranks x 1 thread, batch {DDP_BATCH} per rank, median of {DDP_STEPS} sandwich steps")
    print("| gradient all-reduce | all-reduces per step | step ms |")
    print("| --- | --- | --- |")
    print(f"| once per step (DDP model given: no_sync) | 1 | {no_sync * 1e3:.1f} |")
    print(f"| after every backward (inner model given) | {2 + NUM_RANDOM} | {every * 1e3:.1f} |")
    print(f"no_sync step / every-backward step: {no_sync / every:.3f}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--ddp", action="store_true", help="also measure the 2-rank DDP step")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    bench_steps(args.rounds)
    if args.ddp:
        bench_ddp()


if __name__ == "__main__":
    main()
