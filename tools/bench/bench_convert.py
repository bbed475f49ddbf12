"""Time to turn torchvision ResNet-50 and MobileNetV2 into search spaces (default AutoNASConfig), and timm models.

Measured: ``generate_search_space(model, AutoNASConfig().model_dump())`` on a freshly built model
(building the model is not timed), median over several runs, one CPU thread. The reference
(NVIDIA Model Optimizer's ``mtn.convert(model, mode="autonas")``) is timed side by side when it is
installed; otherwise its recorded figures on this machine class are used (0.35 s and 0.55 s).
Target: ratio <= 1.0. For context, the time of one plain ``torch.fx.symbolic_trace`` of the model
is printed too (measured in the same run).

With transformers installed, a 12-layer BERT-base-sized model (``BertModel(BertConfig())``, random
init) is timed against ResNet-50, the two conversions interleaved in the same run; target:
BERT / ResNet-50 <= 2.0.

With timm installed, timm models are timed against the torchvision models of the same
architecture and size (``TIMM_PAIRS``); target: timm / torchvision <= 1.0 (converting a timm
model costs no more than converting its torchvision counterpart, although timm's norm-activation
layers are probed before they convert).

Run: ``nox -s bench -- tools/bench/bench_convert.py`` (needs torchvision).
"""

from __future__ import annotations

import statistics
import time
import warnings
from collections.abc import Callable

import torch
import torch.fx
import torch.nn as nn

from autonas_config import AutoNASConfig
from autonas_dynamic.space import generate_search_space

RECORDED_REFERENCE_S = {"resnet50": 0.35, "mobilenet_v2": 0.55}
RUNS = 7
#: timm model -> the torchvision model of the same architecture and size.
TIMM_PAIRS = {
    "resnet50": "resnet50",
    "efficientnet_b0": "efficientnet_b0",
    "mobilenetv3_large_100": "mobilenet_v3_large",
    "regnetx_004": "regnet_x_400mf",
    "densenet121": "densenet121",
    "inception_v3": "inception_v3",
    "convnext_tiny": "convnext_tiny",
    "vit_base_patch16_224": "vit_b_16",
}


def _median_time(build: Callable[[], nn.Module], convert: Callable[[nn.Module], object], runs: int = RUNS) -> float:
    times = []
    for _ in range(runs):
        model = build().eval()
        start = time.perf_counter()
        convert(model)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _reference_convert() -> Callable[[nn.Module], object] | None:
    try:
        import modelopt.torch.nas as mtn  # the reference implementation, if installed
    except ImportError:
        return None
    return lambda model: mtn.convert(model, mode="autonas")


def main() -> None:
    try:
        import torchvision
    except ImportError:
        print("bench_convert: torchvision is not installed; run it in the torchvision environment (nox -s bench)")
        return
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    rules = AutoNASConfig().model_dump()
    reference = _reference_convert()
    print("search-space generation time (median of", RUNS, "runs, 1 thread)")
    for name in RECORDED_REFERENCE_S:

        def build(name: str = name) -> nn.Module:
            return torchvision.models.get_model(name, weights=None)

        ours = _median_time(build, lambda model: generate_search_space(model, rules))
        fx_trace = _median_time(build, torch.fx.symbolic_trace)
        if reference is not None:
            baseline, source = _median_time(build, reference), "reference measured now"
        else:
            baseline, source = RECORDED_REFERENCE_S[name], "reference recorded"
        print(
            f"  {name:14s} ours {ours:.3f} s | {source} {baseline:.3f} s | ratio {ours / baseline:.2f} "
            f"(target <= 1.0) | one plain fx trace {fx_trace:.3f} s"
        )

    _bert_against_resnet(rules)
    _timm_against_torchvision(rules)


def _bert_against_resnet(rules: dict) -> None:
    try:
        import torchvision
        import transformers
    except ImportError:
        print("bench_convert: transformers is not installed; skipping BERT")
        return
    builds = {
        "resnet50": lambda: torchvision.models.resnet50(weights=None),
        "bert-base": lambda: transformers.BertModel(transformers.BertConfig()),
    }
    times: dict[str, list[float]] = {name: [] for name in builds}
    for _ in range(RUNS):  # interleaved, so that both see the same load
        for name, build in builds.items():
            times[name].append(_median_time(build, lambda model: generate_search_space(model, rules), runs=1))
    resnet, bert = (statistics.median(times[name]) for name in builds)
    print(
        f"BERT-base (12 layers) vs ResNet-50 (median of {RUNS} interleaved runs, 1 thread): "
        f"{bert:.3f} s | {resnet:.3f} s | ratio {bert / resnet:.2f} (target <= 2.0)"
    )


def _timm_against_torchvision(rules: dict) -> None:
    try:
        import timm
        import torchvision
    except ImportError:
        print("bench_convert: timm is not installed; skipping the timm models")
        return
    print("timm vs torchvision, same architecture (median of", RUNS, "runs, 1 thread)")
    ratios = []
    for timm_name, torchvision_name in TIMM_PAIRS.items():
        theirs = _median_time(
            lambda name=torchvision_name: torchvision.models.get_model(name, weights=None),
            lambda model: generate_search_space(model, rules),
        )
        ours = _median_time(
            lambda name=timm_name: timm.create_model(name, pretrained=False),
            lambda model: generate_search_space(model, rules),
        )
        ratios.append(ours / theirs)
        print(
            f"  {timm_name:22s} {ours:.3f} s | torchvision {torchvision_name:18s} {theirs:.3f} s | "
            f"ratio {ours / theirs:.2f}"
        )
    print(f"  median ratio {statistics.median(ratios):.2f} (target <= 1.0)")


if __name__ == "__main__":
    main()
