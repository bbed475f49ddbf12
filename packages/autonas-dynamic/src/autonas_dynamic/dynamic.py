"""The dynamic-module machinery: in-place conversion by class swap, hparam attributes, export.

A torch module becomes dynamic when its ``__class__`` is swapped to a generated class
``Dynamic<Name>(<dynamic base>, <original class>)`` (see :mod:`autonas_dynamic.registry`). The
instance keeps its identity, parameters (full size, same objects), buffers, hooks and children;
``isinstance(module, original_class)`` stays true and ``state_dict`` is unchanged.

A dynamic base class (e.g. the one for ``nn.Linear``) declares:

* its hparams as :class:`HparamAttribute` class attributes, registered in ``_setup()``: reading
  ``m.out_features`` gives the active int, assigning an int selects it, assigning an
  :class:`~autonas_dynamic.hparam.Hparam` installs a (shared) hparam object;
* its dynamic tensors (``_dynamic_tensors``) as properties returning the active slice of the stored
  tensor (the stored tensor itself at the maximal subnet);
* a ``forward`` that slices the stored tensors once and calls the functional op;
* which tensor dimensions each width hparam governs: read from the class's
  :class:`~autonas_dynamic.layout.LayerLayout` by :meth:`DynamicModule.hparam_tensor_dims` (used to
  sort channels by importance and by anyone who needs to know what an hparam resizes);
* ``modify(**rule)`` with the keyword-only fields of its ``autonas_config`` rule.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Mapping
from typing import Any, ClassVar

import torch
from torch import nn

from .hparam import Hparam
from .layout import LayerLayout
from .slicing import slice_tensor

__all__ = [
    "DynamicModule",
    "HparamAttribute",
    "LayerImportance",
    "distinct_hparams",
    "export_model",
    "is_dynamic",
    "layout_tensor_property",
    "sliced_tensor_property",
]


class HparamAttribute:
    """Class attribute that exposes an hparam of a dynamic module as a plain attribute.

    Reading gives the hparam's active value; assigning a value selects it; assigning an
    :class:`Hparam` installs that object (this is how coupled layers come to share one hparam).
    """

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, instance: DynamicModule | None, owner: type | None = None) -> Any:
        if instance is None:
            return self
        hparam = instance._hparams.get(self.name)
        if hparam is None:  # inside _setup, before registration: the plain attribute
            try:
                return instance.__dict__[self.name]
            except KeyError:
                raise AttributeError(f"{type(instance).__name__} has no attribute {self.name!r}") from None
        return hparam.active

    def __set__(self, instance: DynamicModule, value: Any) -> None:
        if isinstance(value, Hparam):
            instance.set_hparam(self.name, value)
        else:
            instance._hparams[self.name].active = value


def sliced_tensor_property(tensor_name: str, hparam_name: str, dim: int = 0) -> property:
    """A property giving the stored tensor ``tensor_name`` sliced on ``dim`` by hparam ``hparam_name``.

    ``dim`` may be negative (``-1``: the last dimension). Absent tensors read as ``None``.
    """

    def getter(self: DynamicModule) -> torch.Tensor | None:
        tensor = self._parameters[tensor_name] if tensor_name in self._parameters else self._buffers.get(tensor_name)
        if tensor is None:
            return None
        index = self._hparams[hparam_name].active_slice
        if dim == 0:
            return slice_tensor(tensor, (index,))
        position = dim % tensor.dim()
        return slice_tensor(tensor, (None,) * position + (index,))

    return property(getter, doc=f"The active part of ``{tensor_name}`` (dim {dim} follows ``{hparam_name}``).")


def layout_tensor_property(tensor_name: str) -> property:
    """A property giving the stored tensor ``tensor_name`` sliced as the class's layout says.

    Each dimension the layout maps to a width is cut to that width's active size (in a grouped
    layer only the first one, see :class:`~autonas_dynamic.layout.LayerLayout`); absent tensors
    read as ``None``.
    """

    def getter(self: DynamicModule) -> torch.Tensor | None:
        tensor = self._parameters[tensor_name] if tensor_name in self._parameters else self._buffers.get(tensor_name)
        if tensor is None:
            return None
        indices: list[slice | torch.Tensor | None] = [None] * tensor.dim()
        for dim, hparam in self._layout_dims(tensor_name, tensor.dim()):
            indices[dim] = self._hparams[hparam].active_slice
        return slice_tensor(tensor, indices)

    return property(getter, doc=f"The active part of ``{tensor_name}`` (the dims its layout maps to widths).")


class LayerImportance:
    """Importance estimator of one layer for one of its hparams (see ``DynamicModule._importance``).

    A picklable callable; two estimators are equal when they refer to the same layer and hparam,
    so merging coupled hparams never counts a layer twice.
    """

    def __init__(self, module: DynamicModule, hparam_name: str) -> None:
        self.module = module
        self.hparam_name = hparam_name

    def __call__(self) -> torch.Tensor | None:
        return self.module._importance(self.hparam_name)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, LayerImportance) and other.module is self.module and other.hparam_name == self.hparam_name
        )

    def __hash__(self) -> int:
        return hash((id(self.module), self.hparam_name))


class DynamicModule(nn.Module):
    """Base of every dynamic layer class; instances only come from converting a module in place.

    Subclasses implement ``_setup()`` (register hparams, move static attributes aside),
    ``forward``, ``modify(**rule)``, and optionally ``hparam_tensor_dims()``, ``_importance()``,
    ``_is_sortable()`` and ``_export_attributes()``.
    """

    #: The torch class the generated dynamic class was made from (set on generated classes).
    _original_cls: ClassVar[type[nn.Module]]
    #: Names of the tensors (parameters or buffers) whose active slice the class exposes.
    _dynamic_tensors: ClassVar[tuple[str, ...]] = ()
    #: How the layer's tensors follow its widths (set on generated classes of leaf layers).
    _layout: ClassVar[LayerLayout | None] = None

    _hparams: dict[str, Hparam]
    _hparam_roles: dict[str, tuple[bool, bool]]
    _saved: dict[str, Any]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError(
            f"{type(self).__name__} cannot be constructed directly; build the original module and convert it "
            "with autonas_dynamic.DYNAMIC_REGISTRY.convert(module)"
        )

    # ----------------------------------------------------------------------------- conversion
    @classmethod
    def _convert(cls, module: nn.Module) -> DynamicModule:
        """Swap ``module``'s class to ``cls`` (a generated dynamic class) and set it up."""
        patched_forward = module.__dict__.pop("forward", None)
        module.__class__ = cls
        dm: DynamicModule = module  # type: ignore[assignment]
        dm.__dict__.update(_hparams={}, _hparam_roles={}, _saved={})
        if patched_forward is not None:
            warnings.warn(
                f"{cls._original_cls.__name__} has a monkey-patched forward; the dynamic forward replaces it until "
                "export, which restores it",
                stacklevel=3,
            )
            dm._saved["forward"] = patched_forward
        dm._setup()
        return dm

    def _setup(self) -> None:
        """Register the hparams of this layer (called once, right after the class swap)."""
        raise NotImplementedError

    @classmethod
    def instance_layout(cls, module: nn.Module, layout: LayerLayout) -> LayerLayout:
        """The layout of one plain module of this layer type: its declared ``layout``, unless the
        implementation tells instances apart (a mixed convolution that is depthwise follows its input)."""
        return layout

    def _move_aside(self, *names: str) -> None:
        """Move plain attributes out of ``__dict__`` so the class's dynamic versions are used."""
        for name in names:
            self._saved[name] = self.__dict__.pop(name)

    def _register_hparam(self, name: str, hparam: Hparam, *, importance: bool = False, sortable: bool = True) -> None:
        """Register ``hparam`` under ``name`` (a :class:`HparamAttribute` of the class).

        Args:
            name: The attribute name, e.g. ``"out_channels"``; a plain attribute of that name is moved aside.
            hparam: The hparam object.
            importance: Whether this layer contributes an importance estimate (``_importance(name)``).
            sortable: Whether this layer allows reordering the channels of this hparam.
        """
        if not isinstance(getattr(type(self), name, None), HparamAttribute):
            raise TypeError(f"{type(self).__name__} declares no HparamAttribute named {name!r}")
        if name in self.__dict__:
            self._move_aside(name)
        self._hparam_roles[name] = (importance, sortable)
        self._install(name, hparam)

    def _install(self, name: str, hparam: Hparam) -> None:
        if hparam.name is None:
            hparam.name = name
        importance, sortable = self._hparam_roles[name]
        if not sortable:
            hparam.make_unsortable()
        elif importance and hparam.is_sortable:
            hparam.register_importance(LayerImportance(self, name))
        self._hparams[name] = hparam

    # ----------------------------------------------------------------------------- hparams
    def named_hparams(self, configurable: bool | None = None) -> Iterator[tuple[str, Hparam]]:
        """Yield ``(local name, hparam)``; ``configurable`` filters on :attr:`Hparam.is_configurable`."""
        for name, hparam in self._hparams.items():
            if configurable is None or hparam.is_configurable == configurable:
                yield name, hparam

    def get_hparam(self, name: str) -> Hparam:
        """The hparam registered under ``name``."""
        try:
            return self._hparams[name]
        except KeyError:
            raise KeyError(
                f"{type(self).__name__} has no hparam {name!r}; its hparams are {list(self._hparams)}"
            ) from None

    def set_hparam(self, name: str, hparam: Hparam) -> None:
        """Install ``hparam`` (typically shared with coupled layers) in place of the hparam ``name``."""
        current = self.get_hparam(name)
        if not isinstance(hparam, Hparam):
            raise TypeError(f"hparam {name!r} of {type(self).__name__} must be an Hparam, got {type(hparam).__name__}")
        if hparam.original != current.original:
            raise ValueError(
                f"cannot install an hparam with original {hparam.original!r} as {name!r} of "
                f"{type(self).__name__}, whose original is {current.original!r}"
            )
        self._install(name, hparam)

    def freeze(self) -> None:
        """Pin every hparam to its original value (its only choice from now on)."""
        for _, hparam in self.named_hparams():
            if len(hparam.choices) > 1:
                hparam.pin()

    def modify(self) -> None:
        """Restrict the choices by a rule; dynamic layers override this with their rule fields."""

    def unfit_rule_values(self, rule: Mapping[str, Any]) -> list[str]:
        """Why some values ``rule`` asks for cannot apply to this layer (``modify`` drops them).

        One note per kind of misfit, worded the same for layers in the same situation, so that a
        conversion can report them grouped. By default there are none.
        """
        return []

    @property
    def original_cls(self) -> type[nn.Module]:
        """The torch class this module had before conversion (and gets back on export)."""
        return self._original_cls

    # ----------------------------------------------------------------------------- tensors
    def hparam_tensor_dims(self) -> dict[str, list[tuple[str, int]]]:
        """Per hparam name, the ``(tensor name, dim)`` pairs whose size it governs.

        A permutation of an hparam's channels must be applied to every listed dimension (of every
        layer sharing the hparam) to keep the model's function. Absent tensors (e.g. ``bias=None``)
        are not listed. Read from the class's layout; in a depthwise layer (as many groups as
        channels) the dimension spanning the groups follows both widths.
        """
        layout = self._layout
        if layout is None:
            return {}
        dims: dict[str, list[tuple[str, int]]] = {name: [] for name in layout.widths}
        depthwise = self._is_depthwise()
        for tensor_name in layout.tensors:
            tensor = self._parameters.get(tensor_name, self._buffers.get(tensor_name))
            if tensor is None:
                continue
            for dim, hparam in self._layout_dims(tensor_name, tensor.dim()):
                dims[hparam].append((tensor_name, dim))
                if depthwise:
                    dims.update(
                        {other: [*dims[other], (tensor_name, dim)] for other in layout.widths if other != hparam}
                    )
        return dims

    def _layout_dims(self, tensor_name: str, rank: int) -> list[tuple[int, str]]:
        """The ``(dim, width)`` pairs of a tensor that are sliced (see :class:`LayerLayout`)."""
        assert self._layout is not None
        return self._layout.indexed_dims(tensor_name, rank, grouped=self._original_groups() > 1)

    def _original_groups(self) -> int:
        """The number of channel groups the layer was built with (1 unless its layout names a groups attribute)."""
        layout = self._layout
        if layout is None or layout.groups is None:
            return 1
        return int(self._saved.get(layout.groups, self.__dict__.get(layout.groups, 1)))

    def _is_depthwise(self) -> bool:
        groups = self._original_groups()
        return groups > 1 and all(self._hparams[name].original == groups for name in self._layout.widths)  # type: ignore[union-attr]

    def _memoized(self, compute: Callable[[], tuple[Any, ...]]) -> tuple[Any, ...]:
        """``compute()`` (the active arguments of ``forward``), reused while nothing changes.

        While no gradient flows into the stored tensors (evaluation, search), the result is kept,
        with its tensors made contiguous (kernels run faster on them), until an hparam's active
        value changes or a stored tensor is modified (in-place updates bump its version, ``.to()``
        and re-assignment move its storage). With gradients it is computed afresh each time.
        """
        if torch.compiler.is_compiling():  # the stamps (data pointers, versions) are eager bookkeeping
            return compute()
        parameters, buffers = self._parameters, self._buffers
        stored = [parameters[name] if name in parameters else buffers[name] for name in self._dynamic_tensors]
        with_grad = torch.is_grad_enabled()
        stamp: list[Any] = [torch.is_inference_mode_enabled()]
        add = stamp.append
        for tensor in stored:
            if tensor is None:
                add(None)
            elif with_grad and tensor.requires_grad:
                return compute()
            else:
                add(tensor.data_ptr())
                add(tensor._version)
        for hparam in self._hparams.values():
            add(hparam.active)
        entry = self.__dict__.get("_memo")
        if entry is None or entry[0] != stamp:
            values = tuple(v.contiguous() if isinstance(v, torch.Tensor) else v for v in compute())
            # Holding the stored tensors keeps their storage (and address) from being reused.
            entry = self.__dict__["_memo"] = (stamp, values, [t.detach() for t in stored if t is not None])
        return entry[1]

    def _tensor(self, name: str) -> torch.Tensor:
        """The stored (full-size) parameter or buffer ``name``."""
        tensor = self._parameters[name] if name in self._parameters else self._buffers[name]
        if tensor is None:
            raise AttributeError(f"{type(self).__name__} has no {name!r} tensor")
        return tensor

    def permute(self, name: str, order: torch.Tensor) -> bool:
        """Reorder the channels of hparam ``name`` itself, where its tensor dims are no plain ranges.

        For a layer whose channels of one hparam lie in several blocks of a dim (the query, key and
        value heads of a packed projection); :func:`~autonas_dynamic.sort_parameters` calls it with
        the new order (``order[i]``: the old index of channel ``i``). Returns whether it did (by
        default it does not: the dims of :meth:`hparam_tensor_dims` are permuted).
        """
        return False

    def _importance(self, name: str) -> torch.Tensor | None:
        """One score per channel of hparam ``name`` (full size), or ``None`` for no opinion."""
        return None

    # ----------------------------------------------------------------------------- printing
    def extra_repr(self) -> str:
        """The torch class's summary at the active sizes (what the exported module would print).

        torch formats many layers from ``__dict__`` (``"{num_features}, eps={eps}".format(**self.__dict__)``),
        where hparams and other dynamic attributes are not: they are put there, at their active
        values, while the original ``extra_repr`` runs.
        """
        active = self._export_attributes()
        shadowed = {name: self.__dict__[name] for name in active if name in self.__dict__}
        self.__dict__.update(active)
        try:
            return super().extra_repr()
        finally:
            for name in active:
                del self.__dict__[name]
            self.__dict__.update(shadowed)

    # ----------------------------------------------------------------------------- export
    def _export_attributes(self) -> dict[str, Any]:
        """The plain attributes the exported module gets (by default every hparam's active value)."""
        return {name: hparam.active for name, hparam in self._hparams.items()}

    def export(self) -> nn.Module:
        """Turn this module back, in place, into its original class at the active sizes.

        Active slices become new tensors (``requires_grad`` kept); tensors that are used whole are
        kept as the very same objects (no copy). Returns the module itself.
        """
        with torch.no_grad():
            attributes = self._export_attributes()
            tensors = {name: getattr(self, name) for name in self._dynamic_tensors}
        saved = self._saved
        original_cls = self._original_cls
        for name in ("_hparams", "_hparam_roles", "_saved"):
            del self.__dict__[name]
        self.__dict__.pop("_memo", None)
        self.__class__ = original_cls  # type: ignore[assignment]
        for name, value in saved.items():
            self.__dict__[name] = attributes.pop(name, value)
        self.__dict__.update(attributes)
        for name, active in tensors.items():
            _store_exported_tensor(self, name, active)
        return self

    def __reduce_ex__(self, protocol: Any) -> Any:
        from .registry import _new_dynamic_instance

        state = self.__dict__.copy()
        state.pop("_memo", None)
        return (_new_dynamic_instance, (self._original_cls,), state)


def _store_exported_tensor(module: nn.Module, name: str, active: torch.Tensor | None) -> None:
    """Replace the stored tensor ``name`` with its active part (kept as is when it is the whole)."""
    if active is None:
        return
    full = module._parameters.get(name)
    if full is not None:
        if active is not full:
            data = active.detach().clone(memory_format=torch.contiguous_format)
            module._parameters[name] = nn.Parameter(data, requires_grad=full.requires_grad)
    elif module._buffers.get(name) is not active:
        module._buffers[name] = active.detach().clone(memory_format=torch.contiguous_format)


def is_dynamic(module: nn.Module) -> bool:
    """Whether ``module`` or any of its submodules is a dynamic module."""
    return any(isinstance(m, DynamicModule) for m in module.modules())


def distinct_hparams(model: nn.Module, configurable: bool | None = None) -> Iterator[tuple[str, Hparam]]:
    """Yield each distinct hparam object of the model's dynamic modules once, under its first full name.

    Full names are ``"<module name>.<hparam name>"``; "first" is in ``named_modules`` order, so an
    hparam shared by coupled layers is named after the first module holding it.

    Args:
        configurable: ``None``: every hparam; ``True`` / ``False``: only those that are / are not
            configurable.
    """
    seen: set[int] = set()
    for module_name, module in model.named_modules():
        if not isinstance(module, DynamicModule):
            continue
        for local, hparam in module.named_hparams():
            if id(hparam) in seen or (configurable is not None and hparam.is_configurable != configurable):
                continue
            seen.add(id(hparam))
            yield (f"{module_name}.{local}" if module_name else local), hparam


def export_model(model: nn.Module) -> nn.Module:
    """Export every dynamic module of ``model`` in place (each shared module once); returns ``model``.

    Containers are exported before their children, so blocks a dynamic ``Sequential`` drops are
    never visited. A parameter shared by several modules (tied input and output embeddings) stays
    shared: the modules that held it get the first one's exported parameter, which the shared
    hparams sliced alike.
    """
    from .attention import settle_heads  # the head attributes read the hparams, before these go

    settle_heads(model)
    tied = _tied_parameters(model)
    seen: set[int] = set()

    def visit(module: nn.Module) -> None:
        if id(module) in seen:
            return
        seen.add(id(module))
        if isinstance(module, DynamicModule):
            module.export()
        for child in module.children():
            visit(child)

    visit(model)
    for (first, first_name), *others in tied:
        exported = first._parameters[first_name]
        for module, name in others:
            held = module._parameters[name]
            if exported is None or held is None or held.shape != exported.shape:
                raise RuntimeError(f"a tied parameter was exported at two shapes ({name!r} of {type(module).__name__})")
            module._parameters[name] = exported
    return model


def _tied_parameters(model: nn.Module) -> list[list[tuple[nn.Module, str]]]:
    """The holders of each parameter that several modules hold, when one of them is dynamic."""
    holders: dict[int, list[tuple[nn.Module, str]]] = {}
    for module in model.modules():
        for name, parameter in module._parameters.items():
            if parameter is not None:
                holders.setdefault(id(parameter), []).append((module, name))
    return [
        found
        for found in holders.values()
        if len(found) > 1 and any(isinstance(module, DynamicModule) for module, _ in found)
    ]
