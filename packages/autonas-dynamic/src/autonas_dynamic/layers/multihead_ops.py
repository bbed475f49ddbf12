"""Multi-head attention over any number of heads of a given width, in torch operations.

``nn.MultiheadAttention``'s own functional form derives the head width from the stream's width,
so it cannot run fewer heads of the original width; :func:`attend` can. It makes the costed
calls of ``F.multi_head_attention_forward``, in its order (one packed projection where query, key
and value are one tensor), so the cost model sees the same calls at every head count. It runs on
tensors and on fx proxies alike (the exported module is its trace): every decision comes from the
:class:`AttentionCall`, none from the values.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
import torch.fx as fx
import torch.nn.functional as F

__all__ = ["AttentionCall", "AttentionTensors", "attend"]

#: What each kind of ``AttentionCall.inputs`` means.
INPUT_KINDS = {"self": "query is key is value", "shared": "key is value"}


class AttentionCall(NamedTuple):
    """How a forward was called: the decisions :func:`attend` takes (and an export is specialised to)."""

    batched: bool = True
    inputs: str = "separate"  # "self" (query is key is value), "shared" (key is value) or "separate"
    need_weights: bool = True
    average_attn_weights: bool = True
    is_causal: bool = False
    key_padding_mask: str | None = None  # None, "bool" or "float"
    attn_mask: str | None = None

    @classmethod
    def of(
        cls,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        key_padding_mask: torch.Tensor | None,
        need_weights: bool,
        attn_mask: torch.Tensor | None,
        average_attn_weights: bool,
        is_causal: bool,
    ) -> AttentionCall:
        """The call made with these arguments of ``nn.MultiheadAttention.forward``."""
        inputs = ("self" if query is key else "shared") if key is value else "separate"
        return cls(
            query.dim() == 3,
            inputs,
            bool(need_weights),
            bool(average_attn_weights),
            bool(is_causal),
            _mask_kind(key_padding_mask),
            _mask_kind(attn_mask),
        )


def _mask_kind(mask: torch.Tensor | None) -> str | None:
    if mask is None:
        return None
    return "bool" if mask.dtype == torch.bool else "float"


class AttentionTensors(NamedTuple):
    """The active tensors of one attention module (projections already cut to the active heads)."""

    in_proj_weight: torch.Tensor | None
    q_proj_weight: torch.Tensor | None
    k_proj_weight: torch.Tensor | None
    v_proj_weight: torch.Tensor | None
    in_proj_bias: torch.Tensor | None
    bias_k: torch.Tensor | None
    bias_v: torch.Tensor | None
    out_weight: torch.Tensor
    out_bias: torch.Tensor | None


class _Shape(NamedTuple):
    length: Any  # query tokens (an int, or a proxy while traced)
    batch: Any
    heads: int
    head_dim: int

    @property
    def width(self) -> int:
        return self.heads * self.head_dim


def attend(
    tensors: AttentionTensors,
    call: AttentionCall,
    inputs: tuple[Any, Any, Any],
    masks: tuple[Any, Any],
    *,
    heads: int,
    head_dim: int,
    batch_first: bool,
    add_zero_attn: bool,
    dropout_p: float,
    contiguous: bool = True,
) -> tuple[Any, Any]:
    """``(output, weights)`` of attention over ``heads`` heads of ``head_dim``, as torch's own computes them.

    Args:
        inputs: Query, key and value.
        masks: ``key_padding_mask`` and ``attn_mask`` (boolean: True masks; float: added).
        contiguous: Make batch-first inputs contiguous before the projections. torch's matmul folds
            a strided input or not by whether the weight requires grad, which a slice made under
            ``no_grad`` does not and an exported parameter does; ``False`` keeps torch's own layout
            (for the original tensors, whose results must not change).
    """
    key_padding_mask, attn_mask = masks
    if call.is_causal and attn_mask is None:
        raise RuntimeError("need attn_mask if specifying the is_causal hint (as nn.MultiheadAttention does)")
    if call.attn_mask is not None and not isinstance(attn_mask, fx.Proxy) and attn_mask.dim() == 3:
        raise ValueError(
            f"a 3-D attn_mask holds one mask per head; at {heads} active heads (fewer than the original) "
            "nn.MultiheadAttention can only take a 2-D attn_mask (L, S)"
        )
    query, key, value, key_padding_mask = _sequence_first(call, inputs, key_padding_mask, batch_first, contiguous)
    shape = _Shape(query.size(0), query.size(1), heads, head_dim)
    key_padding_mask, attn_mask, is_causal = _canonical_masks(call, key_padding_mask, attn_mask, query.dtype)
    q, k, v = _project(tensors, call.inputs, query, key, value, shape.width)
    q, k, v, key_padding_mask, attn_mask = _split_heads(
        tensors, shape, (q, k, v), key_padding_mask, attn_mask, add_zero_attn
    )
    merged = key_padding_mask is not None
    if merged:
        source = k.size(1)
        key_padding_mask = key_padding_mask.view(shape.batch, 1, 1, source).expand(-1, heads, -1, -1)
        key_padding_mask = key_padding_mask.reshape(shape.batch * heads, 1, source)
        attn_mask = key_padding_mask if attn_mask is None else attn_mask + key_padding_mask
    if call.need_weights:
        output, weights = _with_weights(tensors, call, shape, (q, k, v), attn_mask, dropout_p)
    else:
        output, weights = _fused(tensors, call, shape, (q, k, v), attn_mask, merged, dropout_p, is_causal), None
    if call.batched and batch_first:
        output = output.transpose(1, 0)
    return output, weights


def _sequence_first(
    call: AttentionCall, inputs: tuple[Any, Any, Any], key_padding_mask: Any, batch_first: bool, contiguous: bool
) -> tuple[Any, Any, Any, Any]:
    """Query, key and value as ``(length, batch, features)``; inputs that were one tensor stay one."""
    query, key, value = inputs
    if call.inputs != "separate":
        value = key = query if call.inputs == "self" else key
    if call.batched and batch_first:
        query, key, value = _each(lambda x: x.transpose(1, 0), query, key, value)
        if contiguous:
            query, key, value = _each(lambda x: x.contiguous(), query, key, value)
    if not call.batched:
        query, key, value = _each(lambda x: x.unsqueeze(1), query, key, value)
        if key_padding_mask is not None:
            key_padding_mask = key_padding_mask.unsqueeze(0)
    return query, key, value, key_padding_mask


def _each(function: Any, query: Any, key: Any, value: Any) -> tuple[Any, Any, Any]:
    """``function`` of each input, computed once for inputs that are one tensor."""
    query_out = function(query)
    key_out = query_out if key is query else function(key)
    return query_out, key_out, key_out if value is key else function(value)


def _canonical_masks(call: AttentionCall, key_padding_mask: Any, attn_mask: Any, dtype: torch.dtype) -> tuple:
    """Both masks additive; the causal hint kept only where scaled dot-product attention takes it alone."""
    key_padding_mask = _float_mask(key_padding_mask, call.key_padding_mask, dtype)
    is_causal = call.is_causal
    if is_causal and key_padding_mask is None and not call.need_weights:
        return key_padding_mask, None, True
    attn_mask = _float_mask(attn_mask, call.attn_mask, dtype)
    return key_padding_mask, attn_mask, is_causal and key_padding_mask is None


def _float_mask(mask: Any, kind: str | None, dtype: torch.dtype) -> Any:
    """A mask as an additive float mask (``-inf`` where a boolean mask is True), as torch canonicalises it."""
    if mask is None or kind != "bool":
        return mask
    return torch.zeros_like(mask, dtype=dtype).masked_fill_(mask, float("-inf"))


def _project(
    tensors: AttentionTensors, inputs: str, query: Any, key: Any, value: Any, width: int
) -> tuple[Any, Any, Any]:
    """The query, key and value projections: one packed call where the inputs are one tensor."""
    weight, bias = tensors.in_proj_weight, tensors.in_proj_bias
    biases = (None, None, None) if bias is None else _thirds(bias)
    if weight is None:
        assert tensors.q_proj_weight is not None and tensors.k_proj_weight is not None
        assert tensors.v_proj_weight is not None
        weights = (tensors.q_proj_weight, tensors.k_proj_weight, tensors.v_proj_weight)
    elif inputs == "self":
        packed = _unpacked(F.linear(query, weight, bias), 3, width)
        return packed[0], packed[1], packed[2]
    elif inputs == "shared":
        weight_q, weight_kv = weight.split([width, 2 * width])
        bias_q, bias_kv = (None, None) if bias is None else bias.split([width, 2 * width])
        packed = _unpacked(F.linear(key, weight_kv, bias_kv), 2, width)
        return F.linear(query, weight_q, bias_q), packed[0], packed[1]
    else:
        weights = _thirds(weight)
    return (
        F.linear(query, weights[0], biases[0]),
        F.linear(key, weights[1], biases[1]),
        F.linear(value, weights[2], biases[2]),
    )


def _unpacked(projected: Any, parts: int, width: int) -> Any:
    """A packed projection's parts stacked in front, each contiguous (as torch lays them out)."""
    return projected.unflatten(-1, (parts, width)).unsqueeze(0).transpose(0, -2).squeeze(-2).contiguous()


def _thirds(tensor: Any) -> tuple[Any, Any, Any]:
    """The q, k and v blocks of a packed tensor (indexed, so that fx proxies split too)."""
    parts = tensor.chunk(3)
    return parts[0], parts[1], parts[2]


def _split_heads(
    tensors: AttentionTensors,
    shape: _Shape,
    qkv: tuple[Any, Any, Any],
    key_padding_mask: Any,
    attn_mask: Any,
    add_zero_attn: bool,
) -> tuple[Any, Any, Any, Any, Any]:
    """Queries, keys and values as ``(batch x heads, tokens, head_dim)``, extra keys appended (masks too)."""
    q, k, v = qkv
    if attn_mask is not None:
        attn_mask = attn_mask.unsqueeze(0)  # (L, S) -> (1, L, S)
    if tensors.bias_k is not None and tensors.bias_v is not None:
        k = torch.cat([k, tensors.bias_k.repeat(1, shape.batch, 1)])
        v = torch.cat([v, tensors.bias_v.repeat(1, shape.batch, 1)])
        attn_mask, key_padding_mask = _one_more_key(attn_mask), _one_more_key(key_padding_mask)
    rows = shape.batch * shape.heads
    q = q.view(shape.length, rows, shape.head_dim).transpose(0, 1)
    k = k.view(k.size(0), rows, shape.head_dim).transpose(0, 1)
    v = v.view(v.size(0), rows, shape.head_dim).transpose(0, 1)
    if add_zero_attn:
        k = torch.cat([k, torch.zeros((rows, 1, shape.head_dim), dtype=k.dtype, device=k.device)], dim=1)
        v = torch.cat([v, torch.zeros((rows, 1, shape.head_dim), dtype=v.dtype, device=v.device)], dim=1)
        attn_mask, key_padding_mask = _one_more_key(attn_mask), _one_more_key(key_padding_mask)
    return q, k, v, key_padding_mask, attn_mask


def _one_more_key(mask: Any) -> Any:
    return None if mask is None else F.pad(mask, (0, 1))


def _with_weights(
    tensors: AttentionTensors,
    call: AttentionCall,
    shape: _Shape,
    qkv: tuple[Any, Any, Any],
    attn_mask: Any,
    dropout_p: float,
) -> tuple[Any, Any]:
    """Attention with its weights: scaled scores, softmax, the weighted values, the output projection."""
    q, k, v = qkv
    scaled = q * math.sqrt(1.0 / float(shape.head_dim))
    if attn_mask is not None:
        weights = torch.baddbmm(attn_mask, scaled, k.transpose(-2, -1))
    else:
        weights = torch.bmm(scaled, k.transpose(-2, -1))
    weights = F.softmax(weights, dim=-1)
    if dropout_p > 0.0:
        weights = F.dropout(weights, p=dropout_p)
    output = torch.bmm(weights, v).transpose(0, 1).contiguous().view(shape.length * shape.batch, shape.width)
    output = F.linear(output, tensors.out_weight, tensors.out_bias)
    output = output.view(shape.length, shape.batch, output.size(1))
    weights = weights.view(shape.batch, shape.heads, shape.length, k.size(1))
    if call.average_attn_weights:
        weights = weights.mean(dim=1)
    if not call.batched:
        output, weights = output.squeeze(1), weights.squeeze(0)
    return output, weights


def _fused(
    tensors: AttentionTensors,
    call: AttentionCall,
    shape: _Shape,
    qkv: tuple[Any, Any, Any],
    attn_mask: Any,
    merged: bool,
    dropout_p: float,
    is_causal: bool,
) -> Any:
    """Attention by ``F.scaled_dot_product_attention``, then the output projection."""
    q, k, v = qkv
    source = k.size(1)
    if attn_mask is not None:
        attn_mask = attn_mask.view(shape.batch, shape.heads, -1, source) if merged else attn_mask.unsqueeze(0)
    q = q.view(shape.batch, shape.heads, shape.length, shape.head_dim)
    k = k.view(shape.batch, shape.heads, source, shape.head_dim)
    v = v.view(shape.batch, shape.heads, source, shape.head_dim)
    output = F.scaled_dot_product_attention(q, k, v, attn_mask, dropout_p, is_causal)
    output = output.permute(2, 0, 1, 3).contiguous().view(shape.batch * shape.length, shape.width)
    output = F.linear(output, tensors.out_weight, tensors.out_bias)
    output = output.view(shape.length, shape.batch, output.size(1))
    return output.squeeze(1) if not call.batched else output
