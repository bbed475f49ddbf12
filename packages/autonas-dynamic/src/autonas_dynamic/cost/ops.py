"""The FLOP conventions: which aten operators cost something, and how much.

Every cost is ``2 x MACs`` and is returned as a list of :data:`Term`\\ s, each a coefficient times
a product of tensor dimensions. Keeping the dimensions (instead of their product) lets the
closed-form cost model attribute each one to an hparam.

What counts (MACs per call):

* convolution, also transposed and grouped: ``batch x spatial x prod(weight.shape)``, where
  ``spatial`` is the output's spatial size (the input's for a transposed convolution), i.e.
  ``out.numel() x in/groups x prod(kernel)`` for a plain convolution -- the same numbers as
  ``torch.utils.flop_counter``;
* ``mm``/``addmm``/``bmm``/``baddbmm``/``mv``/``addmv``/``dot`` (so ``linear``, ``matmul`` and
  ``einsum``): the products only, bias additions are free;
* scaled dot-product attention: both products, ``L x S x E`` and ``L x S x Ev`` per batch and
  head, whichever kernel torch picks (``F.scaled_dot_product_attention`` is counted as one call;
  the operations of its unfused fallback are not counted again);
* layer norm, group norm and instance norm with affine parameters: ``out.numel()``;
* average pooling (fixed or adaptive) and ``mean``: ``out.numel()``;
* elementwise multiplication (``mul``) and ``leaky_relu``: ``out.numel()``;
* bilinear upsampling: ``4 x out.numel()``.

Everything else is free: batch norm, additions, activations other than ``leaky_relu``,
max pooling, concatenation, softmax, views and copies.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

__all__ = ["Term", "attention_terms", "op_terms"]

#: One summand of an op's cost: ``coefficient * prod(dims)``.
Term = tuple[int, tuple[int, ...]]

_Handler = Callable[[Sequence[Any], Any, nn.Module | None], list[Term]]


def _shape(value: Any) -> tuple[int, ...]:
    return tuple(int(size) for size in value.shape)


def _first(out: Any) -> Any:
    return out[0] if isinstance(out, tuple | list) else out


def _convolution(transposed: bool | None) -> _Handler:
    """Convolution with a fixed direction, or (``None``) the direction given by argument 6."""

    def handler(args: Sequence[Any], out: Any, module: nn.Module | None) -> list[Term]:
        x, weight = args[0], args[1]
        is_transposed = bool(args[6]) if transposed is None else transposed
        spatial = _shape(x)[2:] if is_transposed else _shape(out)[2:]
        return [(2, (_shape(out)[0], *spatial, *_shape(weight)))]

    return handler


def _matmul(first: int) -> _Handler:
    """A (batched) matrix product whose operands start at argument ``first``."""

    def handler(args: Sequence[Any], out: Any, module: nn.Module | None) -> list[Term]:
        a, b = _shape(args[first]), _shape(args[first + 1])
        if len(b) < 2:
            return [(2, a)]
        return [(2, (math.prod(a[:-1]), a[-1], b[-1]))]  # batch folded into rows: mm and bmm agree

    return handler


def attention_terms(query: Any, key: Any, value: Any) -> list[Term]:
    """Scaled dot-product attention: ``query @ key^T`` and ``weights @ value`` per batch and query head."""
    q, k, v = _shape(query), _shape(key), _shape(value)
    batch, length, source = q[:-2], q[-2], k[-2]
    return [(2, (*batch, length, source, q[-1])), (2, (*batch, length, source, v[-1]))]


def _attention(args: Sequence[Any], out: Any, module: nn.Module | None) -> list[Term]:
    return attention_terms(args[0], args[1], args[2])


def _numel(coefficient: int) -> _Handler:
    def handler(args: Sequence[Any], out: Any, module: nn.Module | None) -> list[Term]:
        return [(coefficient, _shape(_first(out)))]

    return handler


def _affine_norm(weight_arg: int) -> _Handler:
    """A normalisation that costs ``out.numel()`` when it has affine parameters."""

    def handler(args: Sequence[Any], out: Any, module: nn.Module | None) -> list[Term]:
        return [(2, _shape(_first(out)))] if args[weight_arg] is not None else []

    return handler


def _batch_norm(args: Sequence[Any], out: Any, module: nn.Module | None) -> list[Term]:
    """Batch norm is free; instance norm runs as a batch norm over a reshaped input and is not."""
    if isinstance(module, nn.modules.instancenorm._InstanceNorm) and args[1] is not None:
        return [(2, _shape(_first(out)))]
    return []


_MATMUL = _matmul(0)
_ADD_MATMUL = _matmul(1)
_NUMEL = _numel(2)

# aten operator name -> handler. Names missing from an older torch are skipped.
_HANDLERS: dict[str, _Handler] = {
    "convolution": _convolution(None),
    "_convolution": _convolution(None),
    "convolution_overrideable": _convolution(None),
    "cudnn_convolution": _convolution(False),
    "mkldnn_convolution": _convolution(False),
    "cudnn_convolution_transpose": _convolution(True),
    "mm": _MATMUL,
    "bmm": _MATMUL,
    "mv": _MATMUL,
    "dot": _MATMUL,
    "vdot": _MATMUL,
    "addmm": _ADD_MATMUL,
    "baddbmm": _ADD_MATMUL,
    "addmv": _ADD_MATMUL,
    "_scaled_dot_product_flash_attention_for_cpu": _attention,
    "_scaled_dot_product_flash_attention": _attention,
    "_scaled_dot_product_efficient_attention": _attention,
    "_scaled_dot_product_cudnn_attention": _attention,
    "_scaled_dot_product_fused_attention_overrideable": _attention,
    "native_layer_norm": _affine_norm(2),
    "native_group_norm": _affine_norm(1),
    "native_batch_norm": _batch_norm,
    "_native_batch_norm_legit": _batch_norm,
    "_native_batch_norm_legit_no_training": _batch_norm,
    "_batch_norm_with_update": _batch_norm,
    "_batch_norm_no_update": _batch_norm,
    "cudnn_batch_norm": _batch_norm,
    "miopen_batch_norm": _batch_norm,
    "mean": _NUMEL,
    "avg_pool1d": _NUMEL,
    "avg_pool2d": _NUMEL,
    "avg_pool3d": _NUMEL,
    "_adaptive_avg_pool2d": _NUMEL,
    "_adaptive_avg_pool3d": _NUMEL,
    "mul": _NUMEL,
    "mul_": _NUMEL,
    "leaky_relu": _NUMEL,
    "leaky_relu_": _NUMEL,
    "upsample_bilinear2d": _numel(8),
}


def _packets() -> dict[Any, _Handler]:
    packets = {}
    for name, handler in _HANDLERS.items():
        try:
            packets[getattr(torch.ops.aten, name)] = handler
        except (AttributeError, RuntimeError):
            continue
    return packets


_BY_PACKET = _packets()


def op_terms(func: Any, args: Sequence[Any], out: Any, module: nn.Module | None) -> list[Term] | None:
    """The cost terms of one aten call, or ``None`` if the operator is free.

    Args:
        func: The aten operator overload that ran.
        args: Its positional arguments.
        out: What it returned.
        module: The innermost module whose forward issued the call (``None`` outside any module).
    """
    handler = _BY_PACKET.get(func.overloadpacket)
    if handler is None:
        return None
    return handler(args, out, module)


_PRODUCTS = {"mm", "bmm", "addmm", "baddbmm"}


def op_label(func: Any) -> str:
    """How a costed call is named in records: matrix products by one name, whichever kernel ran.

    A linear layer runs as ``addmm``, ``mm`` or ``bmm`` depending on its input's layout, which may
    change with the active widths (and differs between meta and real tensors); they cost alike.
    """
    name = func.overloadpacket.__name__
    return "aten.mm (matrix product)" if name in _PRODUCTS else str(func)
