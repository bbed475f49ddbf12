"""The searchable layer types: one declaration each, read by conversion, tracing, rules and sorting.

:func:`register_layer` declares a layer type once: its torch class, its rule key with the rule
class and AutoNAS default (registered with :mod:`autonas_config`), its
:class:`~autonas_dynamic.layout.LayerLayout` (which sizes can change and which tensor dims follow
them; the tracer derives the layer's coupling from it) and its dynamic implementation. The
built-in ``torch.nn`` types and the library plugins use the same call. For every convertible
class a concrete class ``Dynamic<Name>(<dynamic implementation>, <class>)`` is generated once.

A subclass of a registered class converts as that class. If it keeps the class's ``forward``,
the dynamic implementation's forward runs. If it has its own ``forward`` (timm's
``BatchNormAct2d`` is a ``BatchNorm2d`` with an activation), that forward runs on the dynamic
attributes, which hand it the active sizes and tensor slices; such a forward -- and the layer's own
forward under the generic implementation (:class:`~autonas_dynamic.generic.LayoutModule`) -- is
verified on probe inputs before a layer is converted (:mod:`autonas_dynamic.probe`). A layer that
fails the check, or whose tensors are computed (``weight_norm``), keeps its sizes; the search
space names it in one warning per class.

Declaring your own layer::

    class Scale(nn.Module):
        def __init__(self, width):
            super().__init__()
            self.width = width
            self.scale = nn.Parameter(torch.ones(width))

        def forward(self, x):
            return x * self.scale[:, None, None]

    register_layer(
        Scale,
        LayerLayout(incoming="width", tensors={"scale": {0: "width"}}),
        key="my.Scale",
        rule=ChannelRule,
        default={"channels_ratio": (0.5, 1.0), "channel_divisor": 8},
    )
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from autonas_config import BaseRule, get_layer_type, register_layer_type, registered_layer_types
from autonas_config import unregister_layer_type as _unregister_layer_type

from .dynamic import DynamicModule, HparamAttribute, layout_tensor_property
from .generic import LayoutModule, TensorHolder, check_generic_rule
from .layout import LayerLayout
from .repeated import RepeatedCalls

if TYPE_CHECKING:
    from .trace.repeats import RepeatedBlock

__all__ = ["DYNAMIC_REGISTRY", "DMRegistry", "LayerMatch", "SearchableLayer", "register_layer", "unregister_layer"]

#: Containers declared without a layout: traced through, only their depth is searched.
_CONTAINERS = (nn.Sequential, nn.ModuleList)


@dataclass(frozen=True)
class SearchableLayer:
    """One declared layer type.

    Attributes:
        cls: The torch class (its subclasses convert as it).
        key: The rule key (``"nn.Conv2d"``) of its section in rule-based configs.
        layout: Its sizes and tensor dims; ``None`` for a container that is traced through
            (``nn.Sequential``, ``nn.ModuleList``).
        dynamic: The dynamic implementation (a :class:`DynamicModule` subclass).
        own_forward: Whether ``dynamic`` implements ``cls.forward``; otherwise ``cls.forward`` runs
            on the dynamic attributes and is verified on probe inputs.
    """

    cls: type[nn.Module]
    key: str
    layout: LayerLayout | None
    dynamic: type[DynamicModule]
    own_forward: bool


@dataclass(frozen=True)
class LayerMatch:
    """How one module converts: as ``layer`` with ``layout``, or not at all (``refusal`` says why)."""

    layer: SearchableLayer | None
    layout: LayerLayout | None = None
    refusal: str | None = None

    @property
    def searchable(self) -> bool:
        """Whether the module converts into a dynamic layer."""
        return self.layer is not None and self.refusal is None


_NO_MATCH = LayerMatch(None)


@dataclass(frozen=True)
class _Resolved:
    layer: SearchableLayer
    foreign_forward: bool  # the converted class runs a forward autonas did not write: verify it


class DMRegistry:
    """Maps torch layer classes to their declarations; converts modules in place."""

    def __init__(self, prefix: str = "Dynamic") -> None:
        self._prefix = prefix
        self._layers: dict[type[nn.Module], SearchableLayer] = {}
        self._generated: dict[type[nn.Module], type[DynamicModule]] = {}
        self._names: dict[str, type[DynamicModule]] = {}
        self._resolved: dict[type, _Resolved | None] = {}
        self._verdicts: dict[tuple[Any, ...], LayerMatch] = {}
        self._matches: weakref.WeakKeyDictionary[nn.Module, tuple[type, LayerMatch]] = weakref.WeakKeyDictionary()
        self._holders: dict[tuple[type, tuple[tuple[str, int], ...]], type[DynamicModule]] = {}
        self._repeaters: dict[type, type[DynamicModule]] = {}

    # ----------------------------------------------------------------------------- registration
    def register(self, layer: SearchableLayer) -> None:
        """Add a declared layer type (:func:`register_layer` builds and adds one; it also registers the rule key)."""
        if layer.cls in self._layers:
            raise ValueError(f"{layer.cls.__qualname__} is already registered (key {self._layers[layer.cls].key!r})")
        self._layers[layer.cls] = layer
        self._forget(layer.cls)

    def unregister(self, cls: type[nn.Module]) -> SearchableLayer:
        """Remove a registered class and every dynamic class generated from it or its subclasses."""
        if cls not in self._layers:
            raise KeyError(f"{getattr(cls, '__qualname__', cls)!r} is not registered")
        layer = self._layers.pop(cls)
        self._forget(cls)
        return layer

    def _forget(self, cls: type[nn.Module] | None = None) -> None:
        """Drop what was derived from the declarations (the dynamic classes generated for ``cls`` and its subclasses)."""
        for generated_from in [c for c in self._generated if cls is not None and issubclass(c, cls)]:
            generated = self._generated.pop(generated_from)
            self._names.pop(generated.__name__, None)
        self._resolved.clear()
        self._verdicts.clear()
        self._matches = weakref.WeakKeyDictionary()

    # ----------------------------------------------------------------------------- lookup
    def _resolve(self, cls: type) -> _Resolved | None:
        """The declaration ``cls`` converts as, and whether its forward must be verified."""
        if cls in self._resolved:
            return self._resolved[cls]
        found = None
        if isinstance(cls, type) and issubclass(cls, nn.Module):
            plain: type[nn.Module] = cls._original_cls if issubclass(cls, DynamicModule) else cls
            for base in plain.__mro__:
                layer = self._layers.get(base)
                if layer is None:
                    continue
                if plain.forward is base.forward:  # type: ignore[attr-defined]
                    found = _Resolved(layer, not layer.own_forward)
                elif layer.layout is not None:
                    found = _Resolved(layer, True)
                elif base is nn.Sequential and nn.ModuleList in self._layers:
                    # a Sequential with its own forward loops over its blocks like an iterated ModuleList
                    found = _Resolved(self._layers[nn.ModuleList], True)
                break
        self._resolved[cls] = found
        return found

    def layer_of(self, cls_or_module: type | nn.Module) -> SearchableLayer | None:
        """The declaration a class (or a module's class) converts as, before any check of the module itself."""
        resolved = self._resolve(_as_class(cls_or_module))
        return None if resolved is None else resolved.layer

    def match(self, module: nn.Module) -> LayerMatch:
        """How ``module`` converts, after checking it (cached per module and per kind of module).

        A module of a registered type is refused when a tensor its layout names is not stored in it
        (computed by a parametrization or a hook), or when a forward autonas did not write fails
        the probe check (see :mod:`autonas_dynamic.probe`).
        """
        cls = type(module)
        resolved = self._resolve(cls)
        if resolved is None:
            return _NO_MATCH
        cached = self._matches.get(module)
        if cached is not None and cached[0] is cls:
            return cached[1]
        result = LayerMatch(resolved.layer) if resolved.layer.layout is None else self._check(module, resolved)
        self._matches[module] = (cls, result)
        return result

    def _check(self, module: nn.Module, resolved: _Resolved) -> LayerMatch:
        from .probe import probe_signature, verify_forward

        layer = resolved.layer
        assert layer.layout is not None
        layout = layer.dynamic.instance_layout(module, layer.layout)
        computed = _computed_tensors(module, layout)
        if computed is not None:
            return LayerMatch(layer, layout, computed)
        if not resolved.foreign_forward:
            return LayerMatch(layer, layout)
        if isinstance(module, DynamicModule):  # converted: it passed the check
            return LayerMatch(layer, layout)
        signature = probe_signature(module, layout)
        verdict = self._verdicts.get(signature)
        if verdict is None:
            other = layout.with_axis("last") if layout.axis == "channels" else layout.with_axis("channels")
            found, refusal = verify_forward(module, self.dynamic_class(type(module)), [layout, other])
            verdict = self._verdicts[signature] = LayerMatch(layer, found or layout, refusal)
        return verdict

    def __contains__(self, cls_or_module: object) -> bool:
        if isinstance(cls_or_module, nn.Module):
            return self.match(cls_or_module).searchable
        return self._resolve(cls_or_module) is not None  # type: ignore[arg-type]

    def get_key(self, cls_or_module: type | nn.Module) -> str | None:
        """The rule key (e.g. ``"nn.Conv2d"``) of a class, module or dynamic module; ``None`` if unsupported."""
        layer = self.layer_of(cls_or_module)
        return None if layer is None else layer.key

    @property
    def keys(self) -> list[str]:
        """Every registered key, in registration order (each once)."""
        return list(dict.fromkeys(layer.key for layer in self._layers.values()))

    def dynamic_class(self, nn_cls: type[nn.Module]) -> type[DynamicModule]:
        """The generated ``Dynamic<Name>`` class for ``nn_cls`` (created on first use)."""
        generated = self._generated.get(nn_cls)
        if generated is not None:
            return generated
        resolved = self._resolve(nn_cls)
        if resolved is None:
            raise KeyError(self._unsupported_message(nn_cls))
        layer = resolved.layer
        name = f"{self._prefix}{nn_cls.__name__}"
        if name in self._names:
            name = f"{nn_cls.__module__.replace('.', '_')}_{name}"
        namespace: dict[str, Any] = {
            "_original_cls": nn_cls,
            "_layout": layer.layout,
            "__module__": layer.dynamic.__module__,
        }
        if resolved.foreign_forward:
            namespace["forward"] = nn_cls.forward
        generated = type(name, (layer.dynamic, nn_cls), namespace)
        self._generated[nn_cls] = generated
        self._names[name] = generated
        return generated

    def convert_holder(self, module: nn.Module, held: dict[str, int]) -> DynamicModule:
        """Make a module that is no layer hold per-channel or per-head tensors dynamically (see :class:`TensorHolder`)."""
        if isinstance(module, DynamicModule):
            return module
        return self.holder_class(type(module), held)._convert(module)

    def holder_class(self, nn_cls: type[nn.Module], held: dict[str, int]) -> type[DynamicModule]:
        """The generated ``Dynamic<Name>`` tensor holder for ``nn_cls`` holding ``held``."""
        key = (nn_cls, tuple(sorted(held.items())))
        generated = self._holders.get(key)
        if generated is None:
            name = f"{self._prefix}{nn_cls.__name__}"
            namespace = {"_original_cls": nn_cls, "__module__": TensorHolder.__module__}
            generated = self._holders[key] = type(name, (TensorHolder.for_tensors(held), nn_cls), namespace)
        return generated

    def convert_repeater(self, module: nn.Module, repeat: RepeatedBlock) -> DynamicModule:
        """Give a module whose forward calls a block ``repeat`` times a depth (see :class:`RepeatedCalls`)."""
        if isinstance(module, DynamicModule):
            raise ValueError(f"{type(module).__qualname__} is already dynamic; its layer count cannot be searched too")
        module.__dict__["_repeat"] = repeat
        return self.repeater_class(type(module))._convert(module)

    def repeater_class(self, nn_cls: type[nn.Module]) -> type[DynamicModule]:
        """The generated ``Dynamic<Name>`` with a searchable count of repeated calls, for ``nn_cls``."""
        generated = self._repeaters.get(nn_cls)
        if generated is None:
            name = f"{self._prefix}{nn_cls.__name__}"
            namespace = {
                "_original_cls": nn_cls,
                "__module__": RepeatedCalls.__module__,
                "forward": RepeatedCalls.forward_like(nn_cls),
            }
            generated = self._repeaters[nn_cls] = type(name, (RepeatedCalls, nn_cls), namespace)
        return generated

    def convert(self, module: nn.Module) -> DynamicModule:
        """Make ``module`` dynamic in place (a class swap, no copy) and return it.

        Raises:
            KeyError: the module's class is not registered, or the module does not pass its check
                (the message says why).
        """
        if isinstance(module, DynamicModule):
            return module
        found = self.match(module)
        if found.refusal is not None:
            raise KeyError(f"{type(module).__qualname__} cannot be converted: {found.refusal}")
        return self.dynamic_class(type(module))._convert(module)

    def _unsupported_message(self, cls: type) -> str:
        overridden = [base for base in self._layers if issubclass(cls, base)]
        if overridden:
            return (
                f"{cls.__qualname__} subclasses the container {overridden[0].__qualname__} but overrides forward; "
                "only a container's own forward can change its depth"
            )
        return f"{cls.__qualname__} has no dynamic implementation; supported: {', '.join(self.keys)}"


def _as_class(cls_or_module: type | nn.Module) -> type:
    return cls_or_module if isinstance(cls_or_module, type) else type(cls_or_module)


def _computed_tensors(module: nn.Module, layout: LayerLayout) -> str | None:
    """Why a tensor the layout names is not stored in ``module`` (None when every one is)."""
    for name in layout.tensors:
        if name in module._parameters or name in module._buffers:
            continue
        parametrizations = getattr(module, "parametrizations", None)
        if isinstance(parametrizations, nn.ModuleDict) and name in parametrizations:
            kinds = ", ".join(type(p).__name__ for p in parametrizations[name].children())
            return f"its {name!r} is computed by a parametrization ({kinds}); only stored tensors can be sliced"
        if isinstance(getattr(module, name, None), torch.Tensor):
            return f"its {name!r} is not a parameter or buffer of its own (a hook computes it, as weight_norm does)"
        return f"it has no parameter or buffer {name!r}, which its layout names"
    return None


def _new_dynamic_instance(original_cls: type[nn.Module]) -> DynamicModule:
    """Unpickling helper: an empty instance of the dynamic class of ``original_cls``."""
    cls = DYNAMIC_REGISTRY.dynamic_class(original_cls)
    return cls.__new__(cls)


def _new_repeater_instance(original_cls: type[nn.Module]) -> DynamicModule:
    """Unpickling helper: an empty instance of the repeated-calls class of ``original_cls``."""
    cls = DYNAMIC_REGISTRY.repeater_class(original_cls)
    return cls.__new__(cls)


def _new_holder_instance(original_cls: type[nn.Module], held: dict[str, int]) -> DynamicModule:
    """Unpickling helper: an empty instance of the tensor holder class of ``original_cls``."""
    cls = DYNAMIC_REGISTRY.holder_class(original_cls, held)
    return cls.__new__(cls)


#: The registry of the built-in dynamic layers (and of user layers registered with it).
DYNAMIC_REGISTRY = DMRegistry()


# --------------------------------------------------------------------------------- the declaration
def register_layer(
    cls: type[nn.Module],
    layout: LayerLayout | None = None,
    *,
    key: str | None = None,
    rule: type[BaseRule] | None = None,
    default: BaseRule | Mapping[str, Any] | None = None,
    dynamic: type[DynamicModule] | None = None,
) -> SearchableLayer:
    """Declare a searchable layer type: everything conversion, tracing, rules and sorting need.

    Args:
        cls: The torch layer class. Its subclasses convert as it (see the module doc).
        layout: Which sizes of the layer can change and which tensor dims follow them. A subclass
            of a registered class may leave it out to take its base's, or give its base's layout
            with an extra tensor (:meth:`LayerLayout.with_tensors`). ``None`` with a ``dynamic``
            implementation declares a layer whose inputs and outputs keep their sizes (the tracer
            sees a leaf) and whose hparams are its own (``nn.MultiheadAttention``'s head count),
            or, for ``nn.Sequential`` / ``nn.ModuleList``, a container that is traced through.
        key: The rule key, a dotted name such as ``"mylib.MyConv"``. A subclass of a registered
            class takes its base's key (and so its rules) unless it gives its own.
        rule: The rule class (an ``autonas_config.BaseRule`` subclass, e.g.
            ``autonas_config.ChannelRule``) whose fields are the keyword arguments of the dynamic
            implementation's ``modify()``. Needed for a new key; an already registered key (such
            as ``"nn.Conv2d"``) keeps its rule class and default.
        default: The rule AutoNAS applies to every layer of a new key unless a config says
            otherwise; ``None`` leaves such layers unsearched (and their neighbours' widths fixed)
            unless a config names them.
        dynamic: The dynamic implementation. A subclass takes its base's by default, or a
            refinement of it (a subclass of the base's implementation, e.g.
            :class:`~autonas_dynamic.layers.conv.RuntimePaddingConv`); either way the subclass's own
            forward runs on it, unless the refinement adds a ``forward``. Any other class gets
            :class:`~autonas_dynamic.generic.LayoutModule`, under which the layer's own forward
            reads the active widths and tensor slices through its attributes. A forward autonas
            did not write is verified on probe inputs; any other implementation given here is
            trusted to implement ``cls``'s forward.

    Returns:
        The declaration, as stored.

    Raises:
        ValueError: ``cls`` is already registered, a required part is missing, or the key is malformed.
        TypeError: an argument has the wrong type.
    """
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise TypeError(f"register_layer expects an nn.Module subclass, got {cls!r}")
    if cls in DYNAMIC_REGISTRY._layers:
        raise ValueError(f"{cls.__qualname__} is already registered (key {DYNAMIC_REGISTRY._layers[cls].key!r})")
    if layout is not None and not isinstance(layout, LayerLayout):
        raise TypeError(f"layout of {cls.__qualname__} must be a LayerLayout, got {layout!r}")
    base = DYNAMIC_REGISTRY.layer_of(cls)
    if base is not None and base.cls not in cls.__mro__:
        base = None  # a Sequential with its own forward, iterated like a ModuleList: declared afresh
    if base is not None and base.layout is None:
        raise ValueError(
            f"{cls.__qualname__} subclasses the container {base.cls.__qualname__}, which cannot be redeclared"
        )
    layout = layout or (base.layout if base is not None else None)
    key = key or (base.key if base is not None else None)
    if key is None:
        raise ValueError(f"{cls.__qualname__} needs a key (a dotted name such as 'mylib.{cls.__name__}')")
    if dynamic is not None and not (isinstance(dynamic, type) and issubclass(dynamic, DynamicModule)):
        raise TypeError(f"the dynamic implementation of {key!r} must subclass DynamicModule, got {dynamic!r}")
    if layout is None and dynamic is None:
        raise ValueError(
            f"{cls.__qualname__} needs a LayerLayout (which widths it has and which tensor dims follow them)"
        )
    if dynamic is None and base is None:
        assert layout is not None
        dynamic, own_forward = LayoutModule.for_layout(layout), False
    elif base is not None and (dynamic is None or issubclass(dynamic, base.dynamic)):
        # the base's implementation (or a refinement of it): the class's own forward runs unless one is added
        dynamic = dynamic or base.dynamic
        keeps_forward = cls.forward is base.cls.forward and base.own_forward
        own_forward = keeps_forward or _adds_forward(dynamic, base.dynamic)
    else:
        assert dynamic is not None
        own_forward = True
    if layout is not None:
        dynamic = _with_layout_tensors(dynamic, layout)
        _check_widths(dynamic, layout, key)
    rule_class = _rule_class(key, rule, default)
    if issubclass(dynamic, LayoutModule):
        check_generic_rule(rule_class, key)
    if key not in registered_layer_types():
        assert rule is not None
        register_layer_type(key, rule, default)
    layer = SearchableLayer(cls, key, layout, dynamic, own_forward)
    DYNAMIC_REGISTRY.register(layer)
    return layer


def unregister_layer(cls: type[nn.Module]) -> None:
    """Undo :func:`register_layer`; the rule key goes too when no other class uses it (and it is not built in).

    Raises:
        KeyError: ``cls`` is not registered.
    """
    layer = DYNAMIC_REGISTRY.unregister(cls)
    if layer.key not in DYNAMIC_REGISTRY.keys and not get_layer_type(layer.key).builtin:
        _unregister_layer_type(layer.key)


def _rule_class(key: str, rule: type[BaseRule] | None, default: Any) -> type[BaseRule]:
    if key in registered_layer_types():
        registered = get_layer_type(key)
        if rule not in (None, registered.rule_class) or default is not None:
            raise ValueError(
                f"{key!r} is already a layer type (rule {registered.rule_class.__name__}, default "
                f"{registered.default}); leave out rule and default, or give another key"
            )
        return registered.rule_class
    if rule is None:
        raise ValueError(f"the new layer type {key!r} needs its rule class (e.g. autonas_config.ChannelRule)")
    return rule


def _adds_forward(dynamic: type[DynamicModule], base: type[DynamicModule]) -> bool:
    """Whether ``dynamic`` defines a forward of its own on top of ``base``."""
    mro = dynamic.__mro__
    return any("forward" in vars(klass) for klass in mro[: mro.index(base)])


def _with_layout_tensors(dynamic: type[DynamicModule], layout: LayerLayout) -> type[DynamicModule]:
    """``dynamic``, or a subclass of it slicing the layout's tensors it does not expose yet."""
    missing = [name for name in layout.tensors if name not in dynamic._dynamic_tensors]
    if not missing:
        return dynamic
    namespace: dict[str, Any] = {name: layout_tensor_property(name) for name in missing}
    namespace.update(_dynamic_tensors=(*dynamic._dynamic_tensors, *missing), __module__=dynamic.__module__)
    return type(f"{dynamic.__name__}With{''.join(n.title() for n in missing)}", (dynamic,), namespace)


def _check_widths(dynamic: type[DynamicModule], layout: LayerLayout, key: str) -> None:
    for name in layout.widths:
        if not isinstance(getattr(dynamic, name, None), HparamAttribute):
            raise ValueError(f"{key!r}: the dynamic implementation {dynamic.__name__} has no hparam {name!r}")
