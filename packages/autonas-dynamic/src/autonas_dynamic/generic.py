"""The dynamic implementation of a declared layer that brings none: its own forward on dynamic attributes.

:class:`LayoutModule` is built from a :class:`~autonas_dynamic.layout.LayerLayout`. Each width
becomes an hparam (``1..N``, ``N`` read from the layer's attribute of that name, or from the first
tensor dim that follows it) readable as that attribute; each tensor the layout names reads as its
active slice. The layer's own ``forward`` then runs unchanged on the active sizes, which is why it
is verified on probe inputs before a layer is converted (:mod:`autonas_dynamic.probe`). Export
sets the width attributes to their active values and keeps the active slices.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch

from autonas_config import BaseRule

from .dynamic import DynamicModule, HparamAttribute, layout_tensor_property
from .hparam import Hparam
from .layers.rules import restrict_by_ratio
from .layout import LayerLayout
from .slicing import slice_tensor

__all__ = ["LayoutModule", "TensorHolder", "check_generic_rule", "holder_hparam"]

#: The rule fields ``LayoutModule.modify`` understands: ratios and a divisor, named for channels or features.
RULE_FIELDS = frozenset({"channels_ratio", "channel_divisor", "features_ratio", "feature_divisor"})


class LayoutModule(DynamicModule):
    """A layer whose widths and tensors follow its layout, run by the layer's own forward."""

    _layout: ClassVar[LayerLayout]

    @classmethod
    def for_layout(cls, layout: LayerLayout) -> type[LayoutModule]:
        """A subclass with one hparam attribute per width of ``layout`` and one property per tensor."""
        namespace: dict[str, Any] = {name: HparamAttribute() for name in layout.widths}
        namespace.update({name: layout_tensor_property(name) for name in layout.tensors})
        namespace.update(_layout=layout, _dynamic_tensors=tuple(layout.tensors), __module__=cls.__module__)
        name = "LayoutModuleFor" + "".join(width.title().replace("_", "") for width in layout.widths)
        return type(name, (cls,), namespace)

    def _setup(self) -> None:
        layout = self._layout
        for name in layout.widths:
            size = self._original_size(name)
            self._register_hparam(name, Hparam(range(1, size + 1), original=size), sortable=layout.sortable)

    def _original_size(self, name: str) -> int:
        size = self.__dict__.get(name)
        if isinstance(size, int) and not isinstance(size, bool):
            return size
        for tensor_name, dims in self._layout.tensors.items():
            tensor = self._parameters.get(tensor_name, self._buffers.get(tensor_name))
            for dim, width in dims.items():
                if tensor is not None and width == name:
                    return int(tensor.shape[dim])
        raise ValueError(
            f"{self._original_cls.__qualname__} has no int attribute {name!r} and no tensor dim following it, "
            "so the original width is unknown"
        )

    def _export_attributes(self) -> dict[str, Any]:
        """The widths the layer keeps as attributes, at their active values."""
        return {name: self._hparams[name].active for name in self._layout.widths if name in self._saved}

    def modify(self, **rule: Any) -> None:
        """Restrict every width to ``make_divisible(ratio * original, divisor)``.

        Accepts ``channels_ratio`` / ``channel_divisor`` or ``features_ratio`` / ``feature_divisor``.
        """
        unknown = sorted(set(rule) - RULE_FIELDS)
        if unknown:
            raise TypeError(
                f"{type(self).__name__}.modify() got unexpected rule keys {unknown}; known: {sorted(RULE_FIELDS)}"
            )
        ratios: Sequence[float] | None = rule.get("channels_ratio", rule.get("features_ratio"))
        divisor: int = rule.get("channel_divisor", rule.get("feature_divisor", 1))
        for name in self._layout.widths:
            restrict_by_ratio(self._hparams[name], ratios, divisor)


def check_generic_rule(rule_class: type[BaseRule], key: str) -> None:
    """Raise a ``ValueError`` when ``LayoutModule.modify`` cannot take the fields of ``rule_class``."""
    unknown = sorted(set(rule_class.model_fields) - RULE_FIELDS)
    if unknown:
        raise ValueError(
            f"{key!r}: the generic dynamic implementation takes only {sorted(RULE_FIELDS)} as rule fields, "
            f"{rule_class.__name__} also has {unknown}; give a dynamic implementation whose modify() accepts them"
        )


def holder_hparam(tensor: str) -> str:
    """The name of the hparam that sizes a held per-channel tensor: ``"gamma"`` -> ``"gamma_size"``."""
    return f"{tensor}_size"


class TensorHolder(DynamicModule):
    """A module, not a layer, whose own forward reads tensors it holds with one entry per channel or head.

    Each held tensor has one dim that follows an hparam (``<tensor>_size``): a per-channel tensor
    (ConvNeXt's ``gamma``, its other dims 1) shares the width of the activations it meets; a
    per-head one (EdgeNeXt's attention ``temperature``, Swin's relative position bias table) follows
    the head count of a width split into heads (a :class:`~autonas_dynamic.hparam.HeadCountHparam`).
    The module's forward runs unchanged and reads the active slices.
    """

    #: Per held tensor, the dim that follows its hparam.
    _held: ClassVar[dict[str, int]]

    @classmethod
    def for_tensors(cls, held: dict[str, int]) -> type[TensorHolder]:
        """A subclass holding ``held`` (tensor name -> the dim that follows its hparam)."""
        namespace: dict[str, Any] = {holder_hparam(name): HparamAttribute() for name in held}
        namespace.update({name: _held_tensor_property(name, dim) for name, dim in held.items()})
        namespace.update(_held=dict(held), _dynamic_tensors=tuple(held), __module__=cls.__module__)
        return type("TensorHolderOf" + "".join(name.title().replace("_", "") for name in held), (cls,), namespace)

    def _setup(self) -> None:
        for name, dim in self._held.items():
            size = int(self._tensor(name).shape[dim])
            self._register_hparam(holder_hparam(name), Hparam(range(1, size + 1), original=size))

    def hparam_tensor_dims(self) -> dict[str, list[tuple[str, int]]]:
        """The held tensors, each along its dim that follows."""
        return {holder_hparam(name): [(name, dim)] for name, dim in self._held.items()}

    def _export_attributes(self) -> dict[str, Any]:
        return {}

    def __reduce_ex__(self, protocol: Any) -> Any:
        from .registry import _new_holder_instance

        state = self.__dict__.copy()
        state.pop("_memo", None)
        return (_new_holder_instance, (self._original_cls, dict(self._held)), state)


def _held_tensor_property(name: str, dim: int) -> property:
    def getter(self: TensorHolder) -> Any:
        indices: list[slice | torch.Tensor | None] = [None] * (dim + 1)
        indices[dim] = self._hparams[holder_hparam(name)].active_slice
        return slice_tensor(self._tensor(name), indices)

    return property(getter, doc=f"The active part of ``{name}`` (dim {dim} follows ``{holder_hparam(name)}``).")
