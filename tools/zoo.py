"""Convert every torchvision model and the timm families into search spaces and check them; write docs/zoo.md.

For each model (random weights, eval mode, small inputs where the architecture allows): convert
with the default ``AutoNASConfig``, check that the maximal subnet computes exactly what the
original model computed, and that for the minimal subnet, the centroid and three random subnets
the exported plain model computes what the dynamic model computed. Reports the number of
configurable hparams, the search-space size and the conversion time. timm models (ids
``"timm/<name>"``) are also checked for exact costs (the closed-form cost model against a forward
count of each exported subnet) and, for convolutional families, for backbone convolutions that
the minimal subnet narrows (not only squeeze-excite ones, which see a pooled 1x1 input).

Usage: ``python tools/zoo.py [--out docs/zoo.md] [--only NAME ...]`` (needs torchvision and
timm; ``nox -s zoo``). The vision tests import :func:`check_model`, :data:`REPRESENTATIVES` and
:data:`TIMM_REPRESENTATIVES`.
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

#: Prefix of timm model ids: ``"timm/resnet50d"``.
TIMM = "timm/"

#: timm families with their variants (``nox -s zoo`` runs all); the first of each is its CI representative.
TIMM_FAMILIES: dict[str, list[str]] = {
    "resnet": ["resnet50d", "resnet18d", "resnet26"],
    "seresnext": ["seresnext26d_32x4d", "seresnext26t_32x4d"],
    "efficientnet": ["efficientnet_b0", "efficientnet_lite0", "tf_efficientnet_b0", "efficientnet_cc_b0_4e"],
    "mobilenetv3": ["mobilenetv3_small_050", "mobilenetv3_large_100", "tf_mobilenetv3_small_minimal_100"],
    "mobilenetv4": ["mobilenetv4_conv_small", "mobilenetv4_conv_small_050"],
    "ghostnet": ["ghostnet_050", "ghostnet_100", "ghostnetv2_100"],
    "regnetx": ["regnetx_002", "regnetx_004"],
    "regnety": ["regnety_002", "regnety_004"],
    "convnext": ["convnext_atto", "convnext_femto", "convnext_atto_ols"],
    "convnextv2": ["convnextv2_atto", "convnextv2_femto"],
    "edgenext": ["edgenext_xx_small", "edgenext_x_small"],
    "mobilevit": ["mobilevit_xxs", "mobilevitv2_050"],
    "efficientvit": ["efficientvit_b0", "efficientvit_m0"],
    "fastvit": ["fastvit_t8"],
    "repvit": ["repvit_m0_9", "repvit_m1_0"],
    "levit": ["levit_128s", "levit_128"],
    "vit": ["vit_tiny_patch16_224", "vit_small_patch16_224"],
    "deit": ["deit_tiny_patch16_224", "deit_tiny_distilled_patch16_224"],
    "swin": ["swin_tiny_patch4_window7_224"],
    "maxvit": ["maxvit_nano_rw_256", "maxvit_pico_rw_256"],
    "coatnet": ["coatnet_nano_rw_224", "coatnet_pico_rw_224"],
    "poolformer": ["poolformer_s12", "poolformerv2_s12"],
    "cspdarknet": ["cspdarknet53", "cspresnet50", "cs3darknet_s"],
    "dla": ["dla34", "dla46_c"],
    "hrnet": ["hrnet_w18_small", "hrnet_w18_small_v2"],
    "densenet": ["densenet121"],
    "inception_v3": ["inception_v3"],
    "xception": ["xception41", "legacy_xception"],
    "dpn": ["dpn68", "dpn68b"],
    "rexnet": ["rexnet_100", "rexnetr_100"],
    "tinynet": ["tinynet_e", "tinynet_a"],
    "lcnet": ["lcnet_050", "lcnet_100"],
    "mixnet": ["mixnet_s", "tf_mixnet_s"],
    "hardcorenas": ["hardcorenas_a", "hardcorenas_f"],
    "resnest": ["resnest14d", "resnest26d"],
    "res2net": ["res2net50_14w_8s", "res2next50"],
    "nfnet": ["nf_regnet_b0", "nf_resnet26", "nfnet_f0"],
    "vgg": ["vgg11"],
    "vovnet": ["ese_vovnet19b_dw", "vovnet39a"],
    "tresnet": ["tresnet_m"],
}
TIMM_REPRESENTATIVES = [TIMM + variants[0] for variants in TIMM_FAMILIES.values()]
#: Attention families: their patch embedding feeds a reshape, so no backbone-width check.
TIMM_ATTENTION = {"vit", "deit", "swin", "levit"}
#: Constructor arguments for small inputs: whole numbers of patches and windows at 64x64.
TIMM_KWARGS: dict[str, dict[str, Any]] = {
    "vit": {"img_size": 64},
    "deit": {"img_size": 64},
    "swin": {"img_size": 64, "window_size": 2},
    "maxvit": {"img_size": 64},
    "coatnet": {"img_size": 64},
    "levit": {"img_size": 64},
    "vgg": {"mlp_ratio": 0.25},  # a 1024-wide instead of 4096-wide 7x7 pre-logits conv
}

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
    #: Backbone convolutions (input larger than 1x1) narrower in the exported minimal subnet, and their number.
    narrower: tuple[int, int] | None = None
    #: Whether the cost model's FLOPs and parameters equal the counts of every exported subnet.
    costs_exact: bool | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def family(name: str) -> str:
    """The architecture family of a torchvision model name (``resnet50`` -> ``resnet``) or timm id."""
    if name.startswith(TIMM):
        return next(f for f, variants in TIMM_FAMILIES.items() if name.removeprefix(TIMM) in variants)
    for prefix in ("efficientnet_v2", "mobilenet_v2", "mobilenet_v3", "shufflenet_v2", "swin_v2", "wide_resnet"):
        if name.startswith(prefix):
            return prefix
    for prefix in ("fcn", "deeplabv3", "lraspp", "ssdlite", "ssd", "fasterrcnn", "retinanet", "fcos", "maskrcnn"):
        if name.startswith(prefix):
            return prefix
    return re.match(r"[a-z]+", name).group(0)


def model_names() -> list[str]:
    """Every torchvision model of :func:`torchvision_model_names`, then every timm variant."""
    return [*torchvision_model_names(), *(TIMM + name for variants in TIMM_FAMILIES.values() for name in variants)]


def torchvision_model_names() -> list[str]:
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
    torch.manual_seed(0)
    if name.startswith(TIMM):
        import timm

        size = 80 if family(name) == "inception_v3" else 64
        kwargs = TIMM_KWARGS.get(family(name), {})
        model = timm.create_model(name.removeprefix(TIMM), pretrained=False, num_classes=10, **kwargs).eval()
        x = torch.randn(1, 3, size, size)
        return model, (x,), lambda m: m(x)
    import torchvision

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


def check_model(name: str, num_random: int = 3, costs: bool = False) -> ZooResult:
    """Convert one model and check the maximal subnet and exported subnets (see the module doc).

    With ``costs`` (the default for timm models) the cost model is checked at every exported
    subnet, and the backbone convolutions the minimal subnet narrows are counted.
    """
    from autonas_config import AutoNASConfig
    from autonas_dynamic import CostModel, count_flops, count_params
    from autonas_dynamic.space import SearchSpace, generate_search_space

    costs = costs or name.startswith(TIMM)
    result = ZooResult(name, family(name))
    model, inputs, compare_at = build(name)
    dummy = inputs[0] if len(inputs) == 1 else inputs
    backbone = _backbone_convs(model, inputs) if costs and result.family not in TIMM_ATTENTION else None
    with torch.no_grad():
        reference = model(*inputs)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        space = generate_search_space(model, AutoNASConfig().model_dump())
    result.seconds = time.perf_counter() - start
    result.hparams = len(space.hparams())
    result.size = space.size()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cost_model = CostModel(model, dummy) if costs and result.hparams else None
    rng = random.Random(0)
    exact = True
    with torch.no_grad():
        errors = [relative_error(model(*inputs), reference)]
        for sample in [min, centroid] + [rng.choice] * num_random:
            space.sample(sample)
            dynamic = compare_at(model)
            exported = copy.deepcopy(model)
            SearchSpace(exported).export()
            errors.append(relative_error(compare_at(exported), dynamic))
            if cost_model is not None:
                exact &= cost_model.flops() == count_flops(exported, dummy)
                exact &= cost_model.params() == count_params(exported)
            del exported
        if backbone is not None:  # every block kept, every width at its minimum
            space.sample({"*": min, "*.depth": max})
            modules = dict(SearchSpace(copy.deepcopy(model)).export().named_modules())
            result.narrower = (sum(modules[n].out_channels < width for n, width in backbone.items()), len(backbone))
        space.sample(max)
    result.costs_exact = exact if costs else None
    result.max_error = max(errors)
    if result.max_error > RTOL:
        result.status = f"outputs differ (relative error {result.max_error:.2e})"
    elif result.costs_exact is False:
        result.status = "costs differ from the exported model's counts"
    return result


def _backbone_convs(model: nn.Module, inputs: tuple[Any, ...]) -> dict[str, int]:
    """Each 2-d convolution that sees more than one pixel (not a squeeze-excite one), with its width."""
    sees: dict[str, bool] = {}
    hooks = [
        module.register_forward_hook(
            lambda m, args, out, name=name: sees.__setitem__(name, sees.get(name, False) or args[0][0, 0].numel() > 1)
        )
        for name, module in model.named_modules()
        if isinstance(module, nn.Conv2d)
    ]
    with torch.no_grad():
        model(*inputs)
    for hook in hooks:
        hook.remove()
    modules = dict(model.named_modules())
    return {name: modules[name].out_channels for name, wide in sees.items() if wide}


def write_table(results: list[ZooResult], path: Path) -> None:
    """Write the results as a markdown page: the torchvision table, then the timm table."""
    torchvision_results = [r for r in results if not r.name.startswith(TIMM)]
    timm_results = [r for r in results if r.name.startswith(TIMM)]
    lines = [
        "# Model zoo",
        "",
        "Models converted with the default `AutoNASConfig` (random weights, eval mode), by `tools/zoo.py` "
        "(`nox -s zoo`). *ok* means: the maximal subnet computes exactly what the original model computed, and "
        "for the minimal subnet, the centroid and three random subnets the exported plain model computes what "
        f"the dynamic model computed (relative error below {RTOL:g}). Conversion times are on one CPU thread "
        "(see `tools/bench/bench_convert.py` for timed comparisons).",
    ]
    if torchvision_results:
        lines += [
            "",
            "## torchvision",
            "",
            f"**{_summary(torchvision_results)}** Detectors are compared on their backbone features at the subnets.",
            "",
            "| model | family | configurable hparams | search-space size | convert time (s) | status |",
            "| --- | --- | ---: | ---: | ---: | --- |",
        ]
        for r in torchvision_results:
            lines.append(f"| {r.name} | {r.family} | {r.hparams} | {r.size:.3g} | {r.seconds:.2f} | {r.status} |")
    if timm_results:
        lines += [
            "",
            "## timm",
            "",
            f"**{_summary(timm_results)}** Built with `timm.create_model(name, pretrained=False, num_classes=10)` "
            "at 64x64 (80x80 for inception_v3; ViT, DeiT, Swin, MaxViT, CoAtNet and LeViT built for 64x64 "
            "inputs; VGG with `mlp_ratio=0.25`). *ok* also means that the closed-form cost model gives exactly the FLOPs and parameters "
            "counted on each exported subnet. *narrower at min*: of the convolutions that see more than one "
            "pixel (so not squeeze-excite ones), how many the subnet of minimal widths (every block kept) narrows.",
            "",
            "| model | family | configurable hparams | search-space size | convert time (s) | narrower at min | status |",
            "| --- | --- | ---: | ---: | ---: | ---: | --- |",
        ]
        for r in timm_results:
            narrower = "" if r.narrower is None else f"{r.narrower[0]}/{r.narrower[1]}"
            lines.append(
                f"| {r.name.removeprefix(TIMM)} | {r.family} | {r.hparams} | {r.size:.3g} | {r.seconds:.2f} | "
                f"{narrower} | {r.status} |"
            )
    path.write_text("\n".join(lines) + "\n")


def _summary(results: list[ZooResult]) -> str:
    ok = sum(r.ok for r in results)
    families = {r.family for r in results}
    passing = {r.family for r in results if r.ok}
    return f"{ok} of {len(results)} models convert and pass; {len(passing)} of {len(families)} families."


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
