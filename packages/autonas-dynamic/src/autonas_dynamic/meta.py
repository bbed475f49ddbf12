"""Running modules on meta tensors: shapes and dtypes without arithmetic.

Both the tracer (which answers shape questions while it traces) and the cost model (whose probe
forwards only need shapes) run parts of a model on meta tensors. :class:`MetaStandIns` swaps every
parameter and buffer of some modules for a meta tensor of the same shape, strides and dtype for the
duration of a call, and puts the stored tensors back afterwards; :class:`MetaShortcuts` answers a
few operators whose meta kernels are slow (activations, inference batch norm) directly.
:func:`meta_run` is the context every such run is made in: the shortcuts plus the contexts that
integrations registered with :func:`register_meta_context` (a library that reads tensor values
unless it sees it is being traced, told that meta tensors are traced).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

__all__ = ["MetaShortcuts", "MetaStandIns", "meta_like", "meta_run", "model_on_meta", "register_meta_context"]

#: Attribute under which a dynamic module memoises its active tensors (see ``DynamicModule._memoized``).
_MEMO = "_memo"


def meta_like(tensor: torch.Tensor) -> torch.Tensor:
    """A meta tensor with ``tensor``'s shape, strides and dtype (a parameter stays a parameter)."""
    if tensor.is_meta and not isinstance(tensor, nn.Parameter):
        return tensor
    meta = torch.empty_strided(tensor.shape, tensor.stride(), dtype=tensor.dtype, device="meta")
    if isinstance(tensor, nn.Parameter):
        return nn.Parameter(meta, requires_grad=tensor.requires_grad)
    return meta


class MetaStandIns:
    """Meta stand-ins for the parameters and buffers of modules, each created once per stored tensor.

    A tensor registered in several places (tied weights) gets one stand-in, so it stays shared.
    """

    def __init__(self) -> None:
        self._known: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def of(self, tensor: torch.Tensor) -> torch.Tensor:
        """The stand-in of one stored tensor."""
        known = self._known.get(id(tensor))
        if known is None or known[0] is not tensor:
            known = self._known[id(tensor)] = tensor, meta_like(tensor)
        return known[1]

    @contextmanager
    def swapped(self, modules: Iterable[nn.Module]) -> Iterator[None]:
        """Every parameter and buffer of ``modules`` replaced by its stand-in; the stored ones put back on exit."""
        swapped: list[tuple[dict[str, Any], str, torch.Tensor]] = []
        try:
            for module in modules:
                stores: tuple[dict[str, Any], ...] = (module._parameters, module._buffers)
                for store in stores:
                    for name, tensor in store.items():
                        if tensor is not None and not tensor.is_meta:
                            swapped.append((store, name, tensor))
                            store[name] = self.of(tensor)
            yield
        finally:
            for store, name, tensor in swapped:
                store[name] = tensor


@contextmanager
def model_on_meta(model: nn.Module, stand_ins: MetaStandIns) -> Iterator[None]:
    """Every parameter and buffer of ``model`` replaced by its meta stand-in, for one or more runs.

    The stored tensors are put back on exit, and so are the active tensors dynamic modules had
    memoised (the runs memoise meta ones).
    """
    modules = list(model.modules())
    memos = [(module, module.__dict__.get(_MEMO)) for module in modules]
    try:
        with stand_ins.swapped(modules):
            yield
    finally:
        for module, memo in memos:
            if memo is None:
                module.__dict__.pop(_MEMO, None)
            else:
                module.__dict__[_MEMO] = memo


def _inference_batch_norm(args: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    x = args[0]
    return torch.empty_like(x), x.new_empty(0), x.new_empty(0)


def _activations(names: str) -> list[Any]:
    aten = torch.ops.aten
    return [getattr(aten, name).default for name in names.split() if hasattr(aten, name)]


_UNARY = "relu hardtanh hardswish hardsigmoid silu gelu sigmoid tanh leaky_relu"


#: Operators whose outputs are cheap to state but slow to derive on meta tensors (torch runs Python
#: meta functions or decompositions, a dozen elementwise steps for batch norm): aten overload ->
#: outputs from the positional arguments. Activations keep their input's shape and layout; in place
#: they return the input.
def _matrix_product(rows: int) -> Callable[[Any], Any]:
    """``mm``/``bmm`` (``rows=0``) or ``addmm`` (``rows=1``, after the bias): a contiguous product."""

    def shortcut(args: Any) -> Any:
        a, b = args[rows], args[rows + 1]
        if a.dtype != b.dtype:
            return None
        return a.new_empty((*a.shape[:-1], b.shape[-1]))

    return shortcut


def _same_dtype_broadcast(args: Any) -> Any:
    """A binary elementwise op of two floating tensors of one dtype: the broadcast shape, contiguous."""
    a, b = args[0], args[1]
    if not (isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.is_floating_point()):
        return None
    return a.new_empty(torch.broadcast_shapes(a.shape, b.shape))


def _layer_norm(args: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """``native_layer_norm`` of a float32/float64 input: its shape, and one mean and rstd per normalized row."""
    x, normalized = args[0], args[1]
    if x.dtype not in (torch.float32, torch.float64):  # reduced precision keeps statistics in another dtype
        return None
    rows = (*x.shape[: x.dim() - len(normalized)], *([1] * len(normalized)))
    return torch.empty_like(x, memory_format=torch.contiguous_format), x.new_empty(rows), x.new_empty(rows)


def _softmax(args: Any) -> torch.Tensor | None:
    """``_safe_softmax`` / ``_softmax`` in the input's own dtype: the input's shape, contiguous."""
    if len(args) > 2 and args[2] not in (None, False):
        return None
    return torch.empty_like(args[0], memory_format=torch.contiguous_format)


def _scaled(args: Any) -> torch.Tensor | None:
    """A floating tensor times a Python number keeps its dtype, shape and layout."""
    x, scale = args[0], args[1]
    if not (x.is_floating_point() and isinstance(scale, (int, float)) and not isinstance(scale, bool)):
        return None
    return torch.empty_like(x)


_aten = torch.ops.aten
_SHORTCUTS: dict[Any, Callable[[Any], Any]] = {
    _aten._native_batch_norm_legit_no_training.default: _inference_batch_norm,
    **dict.fromkeys(_activations(_UNARY), lambda args: torch.empty_like(args[0])),
    **dict.fromkeys(_activations(" ".join(f"{name}_" for name in _UNARY.split())), lambda args: args[0]),
    _aten.mm.default: _matrix_product(0),
    _aten.bmm.default: _matrix_product(0),
    _aten.addmm.default: _matrix_product(1),
    **dict.fromkeys((_aten.add.Tensor, _aten.sub.Tensor, _aten.mul.Tensor, _aten.div.Tensor), _same_dtype_broadcast),
    _aten.native_layer_norm.default: _layer_norm,
    _aten._safe_softmax.default: _softmax,
    _aten._softmax.default: _softmax,
    **dict.fromkeys((_aten.mul.Scalar, _aten.div.Scalar), _scaled),
}


class MetaShortcuts(TorchDispatchMode):
    """Answers :data:`_SHORTCUTS` (and inference ``native_batch_norm``) directly on meta tensors.

    A shortcut may decline (return None) for arguments it does not cover (mixed dtypes, keyword
    arguments such as ``alpha``); torch's own meta kernel answers those.
    """

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        shortcut = _SHORTCUTS.get(func)
        if func is torch.ops.aten.native_batch_norm.default and not args[5]:
            shortcut = _inference_batch_norm
        if shortcut is not None and not kwargs and args[0].device.type == "meta":
            out = shortcut(args)
            if out is not None:
                return out
        return func(*args, **(kwargs or {}))


_META_CONTEXTS: list[Callable[[], AbstractContextManager[Any]]] = []


def register_meta_context(factory: Callable[[], AbstractContextManager[Any]]) -> None:
    """Enter ``factory()`` around every run of model code on meta tensors (see :func:`meta_run`)."""
    if factory not in _META_CONTEXTS:
        _META_CONTEXTS.append(factory)


@contextmanager
def meta_run() -> Iterator[None]:
    """The context of a run on meta tensors: no autograd, :class:`MetaShortcuts`, the registered contexts."""
    with ExitStack() as stack:
        stack.enter_context(torch.no_grad())
        stack.enter_context(MetaShortcuts())
        for factory in _META_CONTEXTS:
            stack.enter_context(factory())
        yield
