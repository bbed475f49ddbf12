"""Training-step time and peak memory of a supernet: reference path vs fused path vs the static model.

For ResNet-50 and MobileNetV2 (torchvision, 1000 classes) converted into search spaces at batch 8
of 64x64 images, and ResNet-50 at batch 32 of 224x224, a random subnet is activated and four
models train side by side, one step each per round in a shuffled order so machine noise hits all
alike (median step time reported):

* ``reference``: the dynamic layers slice their tensors inside autograd (``AUTONAS_EXTENSIONS=0``);
* ``fused``: sliced parameters from the compiled extension (``AUTONAS_EXTENSIONS=1``; built if needed);
* ``static``: the same subnet exported to plain torch modules (the baseline: ratio 1.00);
* ``reference B``: a second copy on the reference path, whose ratio to ``reference`` shows how far
  two identical variants drift apart in the same run (the noise floor).

A step is forward, cross-entropy, ``zero_grad(set_to_none=True)``, backward and an SGD (momentum)
update (the fused variant takes the reference path on GPU tensors: the fused path is CPU-only);
the forward+backward part is also shown alone, since the optimizer of a supernet updates
every stored parameter however small the subnet. Peak memory: on CUDA the allocator's peak over the
steps; on the CPU (Linux) the growth of the process's peak resident size over the steps, each variant measured in a
fresh subprocess. ``paired`` is the median over rounds of a variant's step time divided by the
static model's in the same round, which machine-load drift disturbs least. Target: training step
<= 1.05x static on ResNet-50; the fused path must not be slower than the reference.

Run: ``nox -s bench -- tools/bench/bench_ext.py`` (needs torchvision), or directly with
``--device cuda --batch 32 --size 224`` on a GPU machine; ``--profile`` prints the torch profiler's
top operators of the reference, fused and static steps.
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from autonas_dynamic import export_model
from autonas_dynamic.ext import state
from autonas_dynamic.space import generate_search_space

TARGET = 1.05
VARIANTS = ("reference", "fused", "static", "reference B")
#: ``reference B`` is a second copy of the supernet on the reference path: its ratio to ``reference``
#: is the noise floor of the comparison (same work, other memory, other turn).
_MODES = {"reference": "0", "fused": "1", "reference B": "0"}
#: (arch, batch, image size) measured by default: the two sizes of the issue, ResNet-50 at both.
DEFAULT_RUNS = (("resnet50", 8, 64), ("mobilenet_v2", 8, 64), ("resnet50", 32, 224))


def supernet(arch: str, seed: int) -> tuple[nn.Module, nn.Module]:
    """The converted model at a random subnet, and that subnet exported as a static model."""
    torch.manual_seed(0)
    model = getattr(torchvision.models, arch)(num_classes=1000)
    space = generate_search_space(model)
    rng = random.Random(seed)
    space.sample(rng.choice)
    return model, export_model(copy.deepcopy(model))


def use(variant: str) -> None:
    """Switch the path for ``variant``'s next step (resolved here, outside the timed step)."""
    if variant in _MODES:
        state.reset(_MODES[variant])
        state.compiled_library()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def step_fn(model: nn.Module, device: torch.device, batch: int, size: int) -> Callable[[], tuple[float, float]]:
    data = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, size, size, generator=data).to(device)
    y = torch.randint(0, 1000, (batch,), generator=data).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    model.train()

    def step() -> tuple[float, float]:
        sync(device)
        start = time.perf_counter()
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        sync(device)
        middle = time.perf_counter()
        optimizer.step()
        sync(device)
        return middle - start, time.perf_counter() - start

    return step


def time_steps(
    arch: str, seed: int, device: torch.device, batch: int, size: int, steps: int
) -> dict[str, list[tuple[float, float]]]:
    """Per variant the (forward+backward, whole step) seconds of each round; one step each per round, shuffled."""
    dynamic, static = supernet(arch, seed)
    models = {name: (static if name == "static" else copy.deepcopy(dynamic)).to(device) for name in VARIANTS}
    steps_of = {name: step_fn(model, device, batch, size) for name, model in models.items()}
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in VARIANTS}
    order = list(VARIANTS)
    shuffle = random.Random(seed)
    for index in range(steps + 3):
        shuffle.shuffle(order)
        for name in order:
            use(name)
            result = steps_of[name]()
            if index >= 3:
                times[name].append(result)
    return times


def paired_ratio(times: dict[str, list[tuple[float, float]]], name: str, base: str) -> float:
    """Median over rounds of ``name``'s step time divided by ``base``'s in the same round (robust to drift)."""
    return statistics.median(own[1] / other[1] for own, other in zip(times[name], times[base], strict=True))


def peak_memory(arch: str, seed: int, device: torch.device, batch: int, size: int, variant: str) -> float:
    """Peak memory growth (bytes) over three training steps of ``variant`` after one warm-up step."""
    dynamic, static = supernet(arch, seed)
    use(variant)
    model = (static if variant == "static" else dynamic).to(device)
    step = step_fn(model, device, batch, size)
    step()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        for _ in range(3):
            step()
        return float(torch.cuda.max_memory_allocated(device) - before)
    current = _resident_kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")  # resets the peak resident size (VmHWM) to the current one
    for _ in range(3):
        step()
    return float((_resident_kib("VmHWM") - current) * 1024)


def _resident_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def memory_in_subprocess(args: argparse.Namespace, arch: str, batch: int, size: int, variant: str) -> float:
    command = [
        sys.executable,
        __file__,
        "--memory-of",
        arch,
        variant,
        "--device",
        args.device,
        "--batch",
        str(batch),
        "--size",
        str(size),
        "--seed",
        str(args.seed),
    ]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def profile(arch: str, seed: int, device: torch.device, batch: int, size: int) -> None:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    dynamic, static = supernet(arch, seed)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    for name, model in (("reference", copy.deepcopy(dynamic)), ("fused", dynamic), ("static", static)):
        use(name)
        step = step_fn(model.to(device), device, batch, size)
        step()
        with torch_profile(activities=activities) as prof:
            for _ in range(3):
                step()
        print(f"--- {arch} {name}: top operators over 3 steps (self time)")
        sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
        print(prof.key_averages().table(sort_by=sort, row_limit=12))


def report(args: argparse.Namespace, arch: str, batch: int, size: int, device: torch.device) -> None:
    steps = args.steps if size <= 64 else max(3, args.steps // 2)
    times = time_steps(arch, args.seed, device, batch, size, steps)
    medians = {name: tuple(statistics.median(t[i] for t in v) for i in (0, 1)) for name, v in times.items()}
    base_fb, base_step = medians["static"]
    print(f"{arch}, random subnet (seed {args.seed}), batch {batch} at {size}x{size}, {device.type}, {steps} steps")
    print(f"  {'variant':<10} {'fwd+bwd ms':>11} {'ratio':>6} {'step ms':>9} {'ratio':>6} {'paired':>7} {'peak MB':>8}")
    for name in VARIANTS:
        fb, whole = medians[name]
        measure = not args.no_memory and name != "reference B"
        memory = memory_in_subprocess(args, arch, batch, size, name) / 2**20 if measure else float("nan")
        paired = paired_ratio(times, name, "static")
        verdict = "" if name == "static" else f"  target <= {TARGET}: {'OK' if paired <= TARGET else 'MISSED'}"
        print(
            f"  {name:<10} {fb * 1e3:11.1f} {fb / base_fb:6.3f} {whole * 1e3:9.1f} {whole / base_step:6.3f} "
            f"{paired:7.3f} {memory:8.1f}{verdict}"
        )
    noise = paired_ratio(times, "reference B", "reference")
    print(
        f"  fused vs reference step (paired): {paired_ratio(times, 'fused', 'reference'):.3f} (must not exceed 1; "
        f"noise floor: reference B vs reference {noise:.3f})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, help="with --size and --arch: measure only these")
    parser.add_argument("--size", type=int)
    parser.add_argument("--steps", type=int, default=10, help="measured steps per variant (half at large sizes)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--arch", nargs="*", default=["resnet50", "mobilenet_v2"])
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--memory-of", nargs=2, metavar=("ARCH", "VARIANT"))
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.memory_of:
        print(json.dumps(peak_memory(args.memory_of[0], args.seed, device, args.batch, args.size, args.memory_of[1])))
        return
    state.reset("1")
    print(state.extensions_status())
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    runs = DEFAULT_RUNS
    if args.batch is not None or args.size is not None:
        runs = tuple((arch, args.batch or 8, args.size or 64) for arch in args.arch)
    for arch, batch, size in runs:
        if args.profile:
            profile(arch, args.seed, device, batch, size)
        report(args, arch, batch, size, device)


if __name__ == "__main__":
    main()
