"""Hugging Face ``transformers.pytorch_utils.Conv1D`` (GPT-2's MLP and attention projections) as a searchable layer.

``Conv1D(nf, nx)`` is a linear layer whose weight is stored transposed, ``(nx, nf)``, with a bias of
``nf``: ``forward(x) = addmm(bias, x.view(-1, nx), weight).view(..., nf)``. Its dynamic version
searches ``in_features`` (over ``nx``) and ``out_features`` (over ``nf``) like ``nn.Linear``, takes
the rule key ``"transformers.Conv1D"`` with the ``nn.Linear`` rule and default, and exports back to
a plain ``Conv1D`` at the active sizes.

:func:`install` registers the rule key at once when transformers is installed (so configs built
before the model already carry it) and the layer itself when ``transformers.pytorch_utils`` is
imported, which never happens before a model that holds a ``Conv1D`` exists.
"""

from __future__ import annotations

import importlib.util
import types
import warnings
from collections.abc import Sequence

import torch

from autonas_config import get_layer_type, register_layer_type, registered_layer_types

from ..dynamic import DynamicModule, HparamAttribute, sliced_tensor_property
from ..hparam import Hparam
from ..layers.rules import restrict_by_ratio
from ..layout import LayerLayout
from ..registry import DYNAMIC_REGISTRY, register_layer
from ..slicing import slice_tensor
from .imports import when_imported

__all__ = ["CONV1D_LAYOUT", "RULE_KEY", "DynamicConv1DBase", "install"]

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
