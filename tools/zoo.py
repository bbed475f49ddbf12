"""Convert every torchvision model into a search space and check it; write the table to docs/zoo.md.

For each model (random weights, eval mode, small inputs where the architecture allows): convert
with the default ``AutoNASConfig``, check that the maximal subnet computes exactly what the
original model computed, and that for the minimal subnet, the centroid and three random subnets
the exported plain model computes what the dynamic model computed. Reports the number of
configurable hparams, the search-space size and the conversion time.

Usage: ``python tools/zoo.py [--out docs/zoo.md] [--only NAME ...]`` (needs torchvision;
``nox -s zoo``). The vision tests import :func:`check_model` and :data:`REPRESENTATIVES`.
"""

from __future__ import annotations

import argparse
import copy
import gc
import random
import re
import statistics
import sys
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

ROOT = Path(__file__).resolve().parents[1]

#: One model per family, small enough for CI; the vision tests run exactly these.
REPRESENTATIVES = [
    "alexnet", "convnext_tiny", "densenet121", "efficientnet_b0", "efficientnet_v2_s", "googlenet",
    "inception_v3", "maxvit_t", "mnasnet0_5", "mobilenet_v2", "mobilenet_v3_small", "regnet_x_400mf",
    "resnet18", "resnext50_32x4d", "shufflenet_v2_x0_5", "squeezenet1_0", "swin_t", "swin_v2_t", "vgg11",
    "vit_b_16", "wide_resnet50_2", "fcn_resnet50", "deeplabv3_mobilenet_v3_large", "lraspp_mobilenet_v3_large",
    "ssdlite320_mobilenet_v3_large",
]  # fmt: skip

SEGMENTATION = [
    "fcn_resnet50", "fcn_resnet101", "deeplabv3_resnet50", "deeplabv3_resnet101", "deeplabv3_mobilenet_v3_large",
    "lraspp_mobilenet_v3_large",
]  # fmt: skip

#: Relative tolerance of output comparisons (to the largest absolute output value).
RTOL = 1e-5


@dataclass
class ZooResult:
    """The outcome of converting one model."""

    name: str
    family: str
    hparams: int = 0
    size: int = 0
    seconds: float = 0.0
    status: str = "ok"
    max_error: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def family(name: str) -> str:
    """The architecture family of a torchvision model name (``resnet50`` -> ``resnet``)."""
    for prefix in ("efficientnet_v2", "mobilenet_v2", "mobilenet_v3", "shufflenet_v2", "swin_v2", "wide_resnet"):
        if name.startswith(prefix):
            return prefix
    for prefix in ("fcn", "deeplabv3", "lraspp", "ssdlite", "ssd", "fasterrcnn", "retinanet", "fcos", "maskrcnn"):
        if name.startswith(prefix):
            return prefix
    return re.match(r"[a-z]+", name).group(0)


def model_names() -> list[str]:
    """Every torchvision classification model, the segmentation models and two detectors."""
    import torchvision

    return [
        *torchvision.models.list_models(module=torchvision.models),
        *SEGMENTATION,
        "ssdlite320_mobilenet_v3_large",
        "fasterrcnn_mobilenet_v3_large_320_fpn",
    ]


def build(name: str) -> tuple[nn.Module, tuple[Any, ...], Callable[[nn.Module], Any]]:
    """The model (random weights, eval mode), its example inputs, and what to compare at subnets.

    Detectors are compared on their backbone features at subnets (the number of detections of a
    random-weight detector may change with tiny numerical differences) and on their full output
    at the maximal subnet.
    """
    import torchvision

    torch.manual_seed(0)
    kwargs: dict[str, Any] = {"weights": None}
    size = 64
    if name.startswith("vit"):
        size = kwargs["image_size"] = 56 if name.endswith("14") else 64  # a whole number of patches
    elif name.startswith("maxvit"):
        size = 224  # partitions of 7x7 windows need the full resolution
    elif name.startswith("inception"):
        size = 80
    if name in SEGMENTATION or name.startswith(("ssd", "fasterrcnn")):
        kwargs["weights_backbone"] = None
    if name.startswith(("ssd", "fasterrcnn")):
        kwargs["num_classes"] = 5
        model = torchvision.models.get_model(name, **kwargs).eval()
        images = [torch.rand(3, 64, 64)]
        return model, (images,), lambda m: m.backbone(m.transform(images)[0].tensors)
    model = torchvision.models.get_model(name, **kwargs).eval()
    x = torch.randn(1, 3, size, size)
    return model, (x,), lambda m: m(x)


def flatten(output: Any) -> list[torch.Tensor]:
    """Every tensor of a (nested) model output."""
    if isinstance(output, torch.Tensor):
        return [output]
    if isinstance(output, dict):
        return [t for value in output.values() for t in flatten(value)]
    if isinstance(output, (list, tuple)):
        return [t for value in output for t in flatten(value)]
    return []


def relative_error(got: Any, want: Any) -> float:
    """Largest absolute difference over the largest absolute reference value (shapes must agree)."""
    errors = [0.0]
    got, want = flatten(got), flatten(want)
    if len(got) != len(want):
        return float("inf")
    for a, b in zip(got, want, strict=True):
        if a.shape != b.shape:
            return float("inf")
        if b.numel():
            scale = max(b.abs().max().item(), 1e-6)
            errors.append((a - b).abs().max().item() / scale)
    return max(errors)


def centroid(choices: list[Any]) -> Any:
    """The choice closest to the median (tuples by the product of their entries)."""
    values = [float(torch.tensor(c).prod()) if isinstance(c, tuple) else float(c) for c in choices]
    middle = statistics.median(values)
    return choices[min(range(len(choices)), key=lambda i: abs(values[i] - middle))]


def check_model(name: str, num_random: int = 3) -> ZooResult:
    """Convert one model and check the maximal subnet and exported subnets (see the module doc)."""
    from autonas_config import AutoNASConfig
    from autonas_dynamic.space import SearchSpace, generate_search_space

    result = ZooResult(name, family(name))
    model, inputs, compare_at = build(name)
    with torch.no_grad():
        reference = model(*inputs)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        space = generate_search_space(model, AutoNASConfig().model_dump())
    result.seconds = time.perf_counter() - start
    result.hparams = len(space.hparams())
    result.size = space.size()
    rng = random.Random(0)
    with torch.no_grad():
        errors = [relative_error(model(*inputs), reference)]
        for sample in [min, centroid] + [rng.choice] * num_random:
            space.sample(sample)
            dynamic = compare_at(model)
            exported = copy.deepcopy(model)
            SearchSpace(exported).export()
            errors.append(relative_error(compare_at(exported), dynamic))
            del exported
        space.sample(max)
    result.max_error = max(errors)
    if result.max_error > RTOL:
        result.status = f"outputs differ (relative error {result.max_error:.2e})"
    return result


def write_table(results: list[ZooResult], path: Path) -> None:
    """Write the results as a markdown page."""
    ok = sum(r.ok for r in results)
    families = sorted({r.family for r in results})
    lines = [
        "# Model zoo",
        "",
        "Every torchvision model converted with the default `AutoNASConfig` (random weights, eval mode), "
        "by `tools/zoo.py` (`nox -s zoo`). *ok* means: the maximal subnet computes exactly what the original "
        "model computed, and for the minimal subnet, the centroid and three random subnets the exported plain "
        f"model computes what the dynamic model computed (relative error below {RTOL:g}). Detectors are compared "
        "on their backbone features at the subnets.",
        "",
        f"**{ok} of {len(results)} models ({len(families)} families) convert and pass.** "
        "Conversion time on one CPU thread (see `tools/bench/bench_convert.py` for timed comparisons).",
        "",
        "| model | family | configurable hparams | search-space size | convert time (s) | status |",
        "| --- | --- | ---: | ---: | ---: | --- |",
    ]
    for r in results:
        lines.append(f"| {r.name} | {r.family} | {r.hparams} | {r.size:.3g} | {r.seconds:.2f} | {r.status} |")
    path.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "zoo.md")
    parser.add_argument("--only", nargs="*", help="model names to run (default: every model)")
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    results = []
    for name in args.only or model_names():
        try:
            result = check_model(name)
        except Exception as error:  # report the failure in the table and go on
            traceback.print_exc()
            result = ZooResult(name, family(name), status=f"error: {type(error).__name__}: {error}"[:200])
        results.append(result)
        print(
            f"{name:40s} hparams={result.hparams:4d} size={result.size:10.3g} {result.seconds:6.2f}s {result.status}",
            flush=True,
        )
        gc.collect()
    write_table(results, args.out)
    print(f"wrote {args.out}: {sum(r.ok for r in results)}/{len(results)} ok")
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
