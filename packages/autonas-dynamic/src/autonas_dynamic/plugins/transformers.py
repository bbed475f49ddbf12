"""Hugging Face transformers: ``Conv1D`` as a searchable layer, and example inputs for tracing.

``transformers.pytorch_utils.Conv1D`` (GPT-2's MLP and attention projections) becomes searchable.

``Conv1D(nf, nx)`` is a linear layer whose weight is stored transposed, ``(nx, nf)``, with a bias of
``nf``: ``forward(x) = addmm(bias, x.view(-1, nx), weight).view(..., nf)``. Its dynamic version
searches ``in_features`` (over ``nx``) and ``out_features`` (over ``nf``) like ``nn.Linear``, takes
the rule key ``"transformers.Conv1D"`` with the ``nn.Linear`` rule and default, and exports back to
a plain ``Conv1D`` at the active sizes.

:func:`install` registers the rule key at once when transformers is installed (so configs built
before the model already carry it) and the layer itself when ``transformers.pytorch_utils`` is
imported, which never happens before a model that holds a ``Conv1D`` exists.

Hugging Face models read their input sizes in Python (``batch_size, seq_length = input_ids.shape``,
``if input_features.shape[-1] != expected: raise``); :func:`example_input` gives the tracer an input
of the right kind for a ``PreTrainedModel`` from its ``main_input_name`` and config, so those reads
are answered (see :mod:`autonas_dynamic.trace.examples`). It is registered once
``transformers.modeling_utils`` is imported.
"""

from __future__ import annotations

import contextlib
import importlib.util
import inspect
import types
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import torch

from autonas_config import get_layer_type, register_layer_type, registered_layer_types

from ..dynamic import DynamicModule, HparamAttribute, sliced_tensor_property
from ..hparam import Hparam
from ..layers.rules import restrict_by_ratio
from ..layout import LayerLayout
from ..meta import register_meta_context
from ..registry import DYNAMIC_REGISTRY, register_layer
from ..slicing import slice_tensor
from ..trace import register_example_input_maker
from .imports import when_imported

__all__ = ["CONV1D_LAYOUT", "RULE_KEY", "DynamicConv1DBase", "example_input", "install"]

#: The rule key of ``transformers.pytorch_utils.Conv1D`` in rule-based configs.
RULE_KEY = "transformers.Conv1D"
_LAYER_MODULE = "transformers.pytorch_utils"

#: A linear map over the last dimension with its weight stored transposed, ``(in, out)``.
CONV1D_LAYOUT = LayerLayout(
    incoming="in_features",
    outgoing="out_features",
    tensors={"weight": {0: "in_features", 1: "out_features"}, "bias": {0: "out_features"}},
    axis="last",
)


def install() -> None:
    """Activate the integration if transformers is installed; imports nothing from it."""
    if importlib.util.find_spec("transformers") is None:
        return
    if RULE_KEY not in registered_layer_types():  # the rule key first, so configs built before the model carry it
        linear = get_layer_type("nn.Linear")
        register_layer_type(RULE_KEY, linear.rule_class, linear.default)
    when_imported(_LAYER_MODULE, _register_layer)
    when_imported("transformers.modeling_utils", _register_example_inputs)
    when_imported("transformers.utils.import_utils", _register_meta_tracing)


def _register_meta_tracing(module: types.ModuleType) -> None:
    """Runs on meta tensors count as tracing for transformers' ``is_tracing(tensor)``.

    Masking code asks it before reading tensor values (``if not is_tracing(mask) and mask.all()``):
    a meta tensor has no values, so the traced path (always build the mask) is the one to take.
    """
    is_fake_tensor = getattr(module, "is_fake_tensor", None)
    if is_fake_tensor is None:
        return

    def is_fake_or_meta(x: object) -> bool:
        return is_fake_tensor(x) or (isinstance(x, torch.Tensor) and x.is_meta)

    @contextlib.contextmanager
    def meta_is_tracing() -> Iterator[None]:
        setattr(module, "is_fake_tensor", is_fake_or_meta)  # noqa: B010 -- read by is_tracing at call time
        try:
            yield
        finally:
            setattr(module, "is_fake_tensor", is_fake_tensor)  # noqa: B010

    register_meta_context(meta_is_tracing)


_BATCH, _SEQUENCE, _IMAGE, _AUDIO = 2, 8, 224, 16000


def _register_example_inputs(module: types.ModuleType) -> None:
    pretrained = module.PreTrainedModel

    def maker(model: torch.nn.Module) -> tuple[dict[str, torch.Tensor]] | None:
        return example_input(model) if isinstance(model, pretrained) else None

    register_example_input_maker(maker)


def example_input(model: torch.nn.Module) -> tuple[dict[str, torch.Tensor]] | None:
    """A meta-tensor input for a Hugging Face model's main input, sized from its config; None if unknown.

    ``input_ids``: ``(2, 8)`` token ids (also as ``decoder_input_ids`` of an encoder-decoder);
    ``pixel_values``: ``(2, num_channels, image_size, image_size)`` (of the ``vision_config`` of a
    composite config);
    ``input_features`` (Whisper): ``(2, num_mel_bins, 2 * max_source_positions)``; ``input_values``:
    ``(2, 16000)`` samples. Returned as keyword arguments (``({name: tensor},)``), with
    ``use_cache=False`` where the forward takes it (a cache only adds state the search does not use).
    """
    config: Any = getattr(model, "config", None)
    name = getattr(model, "main_input_name", None)
    if not isinstance(name, str):
        return None
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    shape: tuple[int, ...] | None = None
    if name == "input_ids":
        length = min(_SEQUENCE, _first_int(config, "max_position_embeddings", "n_positions") or _SEQUENCE)
        ids = {name: torch.zeros(_BATCH, length, dtype=torch.long, device="meta")}
        if getattr(config, "is_encoder_decoder", False) and _takes(model, "decoder_input_ids"):
            ids["decoder_input_ids"] = ids[name].clone()  # T5 does not derive them from input_ids, as BART does
        return (_without_cache(model, ids),)
    if name == "pixel_values":
        vision = getattr(config, "vision_config", None) or config  # a composite config (CLIP) sizes its images there
        size = getattr(vision, "image_size", None) or _IMAGE
        height, width = (size, size) if isinstance(size, int) else tuple(size)[-2:]
        shape = (_BATCH, getattr(vision, "num_channels", 3), height, width)
    elif name == "input_features" and _first_int(config, "num_mel_bins") and _first_int(config, "max_source_positions"):
        shape = (_BATCH, config.num_mel_bins, 2 * config.max_source_positions)
    elif name == "input_values":
        shape = (_BATCH, _AUDIO)
    if shape is None:
        return None
    return (_without_cache(model, {name: torch.zeros(shape, dtype=dtype, device="meta")}),)


def _without_cache(model: torch.nn.Module, inputs: dict[str, Any]) -> dict[str, Any]:
    if _takes(model, "use_cache"):
        inputs["use_cache"] = False
    return inputs


def _takes(model: torch.nn.Module, argument: str) -> bool:
    """Whether ``model``'s forward has a parameter ``argument``."""
    return argument in inspect.signature(model.forward).parameters


def _first_int(config: object, *names: str) -> int | None:
    """The first of the attributes ``names`` that ``config`` sets to an int, else None."""
    return next((v for name in names if isinstance(v := getattr(config, name, None), int)), None)


def _register_layer(module: types.ModuleType) -> None:
    conv1d = getattr(module, "Conv1D", None)
    if conv1d is None:
        warnings.warn(
            f"{_LAYER_MODULE} has no Conv1D in this transformers version; its layers stay unsearchable", stacklevel=2
        )
        return
    if DYNAMIC_REGISTRY.layer_of(conv1d) is None:
        register_layer(conv1d, CONV1D_LAYOUT, key=RULE_KEY, dynamic=DynamicConv1DBase)


class DynamicConv1DBase(DynamicModule):
    """Dynamic ``Conv1D``: the transposed weight is sliced to ``(in_features, out_features)``.

    While dynamic, ``nx`` and ``nf`` read the active ``in_features`` and ``out_features``.
    """

    in_features = HparamAttribute()
    out_features = HparamAttribute()
    _dynamic_tensors = ("weight", "bias")
    bias = sliced_tensor_property("bias", "out_features")

    def _setup(self) -> None:
        self._move_aside("nx", "nf")
        for name, size in (("in_features", self._saved["nx"]), ("out_features", self._saved["nf"])):
            self._register_hparam(name, Hparam(range(1, size + 1), original=size), importance=name == "in_features")

    @property
    def nx(self) -> int:
        """The active number of input features."""
        return self.in_features

    @property
    def nf(self) -> int:
        """The active number of output features."""
        return self.out_features

    @property
    def weight(self) -> torch.Tensor:
        hparams = self._hparams
        return slice_tensor(
            self._tensor("weight"), (hparams["in_features"].active_slice, hparams["out_features"].active_slice)
        )

    def __repr__(self) -> str:  # Conv1D's own reads nx and nf from __dict__, where they are not while dynamic
        return f"{type(self).__name__}(nf={self.nf}, nx={self.nx})"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight, bias = self._memoized(self._active_arguments)
        out = torch.addmm(bias, x.reshape(-1, x.size(-1)), weight)
        return out.view(*x.shape[:-1], out.size(-1))

    def _active_arguments(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.weight, self.bias

    def modify(self, *, features_ratio: Sequence[float] | None = None, feature_divisor: int = 1) -> None:
        """Restrict both feature counts to ``make_divisible(ratio * original, feature_divisor)``."""
        for name in ("in_features", "out_features"):
            restrict_by_ratio(self._hparams[name], features_ratio, feature_divisor)

    def _importance(self, name: str) -> torch.Tensor | None:
        return self._tensor("weight").detach().norm(dim=1) if name == "in_features" else None

    def _export_attributes(self) -> dict[str, int]:
        return {"nx": self.in_features, "nf": self.out_features}
