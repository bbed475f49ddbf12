"""What a sandwich step costs: against the static subnets it trains, and with DDP against syncing every backward.

At the size of ``bench_supernet_quality.py`` (its residual 1-D CNN, batch 128 of 1x40 signals,
AdamW, CPU):

* ``sandwich``: one step of ``an.sandwich(model, num_random=2)`` (max, min and two random subnets:
  zero_grad, four forwards and backwards, one optimizer step) against the sum of one step of each
  of the same four subnets exported as static models. Target: <= 1.15x.
* ``uniform``: one ordinary training step of the supernet (it samples its own subnet, repeated
  from the same generator state) against a step of that subnet exported as a static model.

Each round draws new subnets; each repeat runs the supernet step from the same generator state
(the same subnets) right beside one step of each static model (warmed up), and the ratio is the
median over all paired repeats (this machine's load drifts; pairing keeps it out of the ratio).

DDP: two gloo ranks on this machine, a wider SignalNet (1 M parameters), a batch of 16
per rank, 12 sandwich steps through the DDP model (``no_sync`` for all but the last backward: one
all-reduce per step) against the same steps given the inner model (an all-reduce after every
backward), the two variants alternating; median step time per variant.

Run: ``nice -n 10 python tools/bench/bench_sandwich.py [--rounds 8] [--part steps|ddp]``.
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
BATCH, LENGTH, NUM_RANDOM, REPEATS, WARMUP = 128, 40, 2, 5, 2


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


class Static:
    """A subnet exported as a static model, with its own optimizer, warmed up."""

    def __init__(self, config: dict[str, Any], x: torch.Tensor, y: torch.Tensor) -> None:
        model = build_supernet(0)
        an.select(model, config)
        self.model = an.export(model).train()
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-3)
        for _ in range(WARMUP):
            self.step(x, y)

    def step(self, x: torch.Tensor, y: torch.Tensor) -> float:
        return timed_step(self.optimizer, plain_backward, self.model, x, y)


def bench_steps(rounds: int) -> None:
    """Per round: new subnets; per repeat, the supernet steps (same subnets again) right beside their static steps."""
    model = build_supernet(0).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    rng = PatchManager.get_manager(model).generator.rng
    for _ in range(WARMUP):
        timed_step(optimizer, sandwich_backward, model, *batch(0))
    sandwich_rows, uniform_rows = [], []
    for round_ in range(rounds):
        x, y = batch(round_)
        sandwich_state, configs = rng.getstate(), []
        timed_step(optimizer, sandwich_backward, model, x, y, configs)  # which subnets this round trains
        uniform_state = rng.getstate()
        timed_step(optimizer, plain_backward, model, x, y)  # an ordinary step: the model samples its subnet
        statics = [Static(config, x, y) for config in configs]
        uniform_static = Static(an.get_subnet_config(model, configurable=True), x, y)
        for _ in range(REPEATS):
            rng.setstate(sandwich_state)
            sandwich_rows.append(
                (timed_step(optimizer, sandwich_backward, model, x, y), [s.step(x, y) for s in statics])
            )
            rng.setstate(uniform_state)
            uniform_rows.append((timed_step(optimizer, plain_backward, model, x, y), uniform_static.step(x, y)))
        print(
            f"round {round_}: sandwich {sandwich_rows[-1][0] * 1e3:6.1f} ms, static max/min/random "
            + "/".join(f"{t * 1e3:.1f}" for t in sandwich_rows[-1][1])
            + f" ms; uniform {uniform_rows[-1][0] * 1e3:.1f} ms vs static {uniform_rows[-1][1] * 1e3:.1f} ms"
        )
    sandwich_ratio = statistics.median(step / sum(parts) for step, parts in sandwich_rows)
    uniform_ratio = statistics.median(step / static for step, static in uniform_rows)

    def ms(values: Any) -> str:
        return f"{statistics.median(values) * 1e3:.1f}"

    print(f"\nSignalNet (bench_supernet_quality), batch {BATCH}, CPU, {torch.get_num_threads()} thread(s), ", end="")
    print(f"{rounds} rounds x {REPEATS} repeats")
    print("| step | median ms: supernet vs static | ratio (median of paired repeats) | target |")
    print("| --- | --- | --- | --- |")
    verdict = "OK" if sandwich_ratio <= TARGET else "MISSED"
    print(
        f"| sandwich (max, min, {NUM_RANDOM} random) vs the sum of the 4 static steps | "
        f"{ms(r[0] for r in sandwich_rows)} vs {ms(sum(r[1]) for r in sandwich_rows)} | {sandwich_ratio:.3f} | "
        f"<= {TARGET} {verdict} |"
    )
    print(
        f"| uniform step (one sampled subnet) vs its static step | {ms(r[0] for r in uniform_rows)} vs "
        f"{ms(r[1] for r in uniform_rows)} | {uniform_ratio:.3f} | - |"
    )


# --------------------------------------------------------------------------------------------- DDP
DDP_STEPS, DDP_WARMUP, DDP_BATCH = 12, 2, 16
#: A wider SignalNet (about 1 M parameters, 4 MB of gradients) so that an all-reduce costs something.
DDP_WIDTHS = {"channels": 128, "hidden": 256}
VARIANTS = ("no_sync", "every_backward")


def _ddp_rank(rank: int, port: int, out: str) -> None:
    """Steps of both variants in turn (alternating which goes first), each sandwich given the DDP or the inner model."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        variants = {}
        for name in VARIANTS:
            model = build_supernet(0, **DDP_WIDTHS)
            ddp = DistributedDataParallel(model, find_unused_parameters=True)
            variants[name] = (ddp, ddp if name == "no_sync" else model, torch.optim.AdamW(ddp.parameters(), lr=1e-3))
        times: dict[str, list[float]] = {name: [] for name in VARIANTS}
        for step in range(DDP_WARMUP + DDP_STEPS):
            x, y = batch(1000 * rank + step, DDP_BATCH)
            for name in VARIANTS if step % 2 else reversed(VARIANTS):
                ddp, target, optimizer = variants[name]
                dist.barrier()
                start = time.perf_counter()
                optimizer.zero_grad(set_to_none=True)
                for subnet in an.sandwich(target, num_random=NUM_RANDOM):
                    subnet.loss(ddp(x), y, F.cross_entropy).backward()
                optimizer.step()
                if step >= DDP_WARMUP:
                    times[name].append(time.perf_counter() - start)
        results = {name: statistics.median(values) for name, values in times.items()}
        gradients = torch.zeros(sum(p.numel() for p in variants["no_sync"][0].parameters()))
        allreduce = []
        for _ in range(20):
            dist.barrier()
            start = time.perf_counter()
            dist.all_reduce(gradients)
            allreduce.append(time.perf_counter() - start)
        results["allreduce"], results["numel"] = statistics.median(allreduce), gradients.numel()
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
    print(
        f"\nDDP, 2 gloo ranks x 1 thread, SignalNet {DDP_WIDTHS}, batch {DDP_BATCH} per rank, median of {DDP_STEPS} steps"
    )
    print("| gradient all-reduce | all-reduces per step | step ms |")
    print("| --- | --- | --- |")
    print(f"| once per step (DDP model given: no_sync) | 1 | {no_sync * 1e3:.1f} |")
    print(f"| after every backward (inner model given) | {2 + NUM_RANDOM} | {every * 1e3:.1f} |")
    allreduce = max(rank["allreduce"] for rank in ranks)
    print(f"no_sync step / every-backward step: {no_sync / every:.3f}; one all-reduce of all ", end="")
    print(f"{ranks[0]['numel'] / 1e6:.2f} M gradients alone: {allreduce * 1e3:.1f} ms")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--part", choices=("all", "steps", "ddp"), default="all", help="what to measure")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.part in ("all", "steps"):
        bench_steps(args.rounds)
    if args.part in ("all", "ddp"):
        bench_ddp()


if __name__ == "__main__":
    main()
