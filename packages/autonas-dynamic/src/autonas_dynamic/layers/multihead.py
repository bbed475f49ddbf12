"""Dynamic MultiheadAttention: a searchable head count (whole heads; the head width stays).

``nn.MultiheadAttention`` packs the query, key and value projections into ``in_proj_weight``
(``3 x embed_dim`` rows; or ``q_proj_weight`` / ``k_proj_weight`` / ``v_proj_weight`` when
``kdim`` / ``vdim`` differ) and reads ``heads x head_dim`` features in ``out_proj``. Its hparam
``num_heads`` keeps the first heads of each of q, k and v (and of ``bias_k`` / ``bias_v``) and the
matching input features of ``out_proj``; the width of its inputs and output (``embed_dim``,
``kdim``, ``vdim``) stays, so to the tracer the module is a leaf whose sizes are fixed. The rule
key is the ``heads`` section (``heads_ratio``, ``heads_divisor``).

At its original head count the module runs torch's own forward (fast path included) and exports
to itself. Only while torch's fused fast path is switched off (the cost model's counting forwards
switch it off) does it run :func:`~.multihead_ops.attend`, the code of fewer heads, so that the
costed calls are the same at every head count. The plain class cannot hold fewer heads of the
same width (it derives ``head_dim`` as ``embed_dim // num_heads`` and projects the query with a
square matrix): at fewer heads the module exports, in place, to a ``torch.fx.GraphModule`` of
plain torch operations (:mod:`.multihead_export`) that computes exactly what the dynamic module
computed. A 3-D ``attn_mask`` (one mask per original head) is refused at fewer heads.
:func:`~autonas_dynamic.sort_parameters` reorders whole heads by the norms of their ``out_proj``
columns.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from autonas_config import HEADS_KEY

from ..dynamic import DynamicModule, HparamAttribute
from ..hparam import DerivedHparam, Hparam
from ..registry import DYNAMIC_REGISTRY, register_layer
from .multihead_export import export_graph
from .multihead_ops import AttentionCall, AttentionTensors, attend
from .rules import head_counts

__all__ = ["DynamicMultiheadAttentionBase", "HeadsWidthHparam"]

#: The separate projection tensors (no ``in_proj_weight``: ``kdim`` / ``vdim`` differ), sliced along dim 0.
_PROJECTIONS = ("q_proj_weight", "k_proj_weight", "v_proj_weight")


class HeadsWidthHparam(DerivedHparam):
    """The width of the active heads, ``heads x head_dim``: the output projection's ``in_features``."""

    def __init__(self, heads: Hparam, head_dim: int) -> None:
        super().__init__(heads, heads.original * head_dim, name="in_features")
        self._head_dim = head_dim

    def derive(self, value: int) -> int:
        return value * self._head_dim


def _heads_sliced(name: str) -> property:
    """The stored tensor ``name`` cut to the active heads (``None`` when the module has none)."""

    def getter(self: DynamicMultiheadAttentionBase) -> torch.Tensor | None:
        tensor = self._parameters.get(name)
        if tensor is None:
            return None
        heads = self._hparams["num_heads"]
        width, full = heads.active * self.head_dim, heads.original * self.head_dim
        if width == full:
            return tensor
        if name.startswith("in_proj"):  # q, k and v stacked along dim 0
            return tensor.unflatten(0, (3, full))[:, :width].flatten(0, 1)
        return tensor[..., :width] if name.startswith("bias_") else tensor[:width]

    return property(getter)


class DynamicMultiheadAttentionBase(DynamicModule):
    """Dynamic ``nn.MultiheadAttention``: ``num_heads`` heads of the original ``head_dim`` are active."""

    num_heads = HparamAttribute()
    _dynamic_tensors = ("in_proj_weight", *_PROJECTIONS, "in_proj_bias", "bias_k", "bias_v")
    in_proj_weight = _heads_sliced("in_proj_weight")
    q_proj_weight = _heads_sliced("q_proj_weight")
    k_proj_weight = _heads_sliced("k_proj_weight")
    v_proj_weight = _heads_sliced("v_proj_weight")
    in_proj_bias = _heads_sliced("in_proj_bias")
    bias_k = _heads_sliced("bias_k")
    bias_v = _heads_sliced("bias_v")
    embed_dim: int
    head_dim: int
    batch_first: bool
    dropout: float
    add_zero_attn: bool
    out_proj: nn.Linear

    def _setup(self) -> None:
        heads = self.__dict__["num_heads"]
        hparam = Hparam(range(1, heads + 1), original=heads)
        self._register_hparam("num_heads", hparam, importance=True)
        self.__dict__["_calls"] = []
        self._move_aside(*(name for name in ("bias_k", "bias_v") if name in self.__dict__))  # None: no add_bias_kv
        out = DYNAMIC_REGISTRY.convert(self.out_proj)
        out.get_hparam("out_features").pin()
        out.set_hparam("in_features", HeadsWidthHparam(hparam, self.head_dim))

    def modify(self, *, heads_ratio: Sequence[float] | None = None, heads_divisor: int = 1) -> None:
        """Restrict the head counts to those of the ``heads`` rule (see :func:`.rules.head_counts`)."""
        hparam = self._hparams["num_heads"]
        hparam.restrict_to(head_counts(hparam.original, {"heads_ratio": heads_ratio, "heads_divisor": heads_divisor}))

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        key_padding_mask: torch.Tensor | None = None,
        need_weights: bool = True,
        attn_mask: torch.Tensor | None = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        call = AttentionCall.of(
            query, key, value, key_padding_mask, need_weights, attn_mask, average_attn_weights, is_causal
        )
        calls = self.__dict__["_calls"]
        if call not in calls:
            calls.append(call)
        hparam = self._hparams["num_heads"]
        whole = hparam.active == hparam.original
        if whole and torch.backends.mha.get_fastpath_enabled():
            return self._original_cls.forward(  # type: ignore[no-any-return]
                self, query, key, value, key_padding_mask, need_weights, attn_mask, average_attn_weights, is_causal
            )
        return attend(
            self._active_tensors(),
            call,
            (query, key, value),
            (key_padding_mask, attn_mask),
            heads=hparam.active,
            head_dim=self.head_dim,
            batch_first=self.batch_first,
            add_zero_attn=self.add_zero_attn,
            dropout_p=self.dropout if self.training else 0.0,
            contiguous=not whole,
        )

    def _importance(self, name: str) -> torch.Tensor | None:
        """Per head: the norms of its columns of ``out_proj.weight``, summed."""
        heads = self._hparams["num_heads"].original
        weight = self.out_proj._parameters["weight"]
        assert weight is not None
        return weight.detach().norm(dim=0).reshape(heads, self.head_dim).sum(1)

    def permute(self, name: str, order: torch.Tensor) -> bool:
        """Reorder whole heads: in each of the q, k and v blocks, ``bias_k`` / ``bias_v`` and ``out_proj``'s columns."""
        if name != "num_heads":
            return False
        channels = (order[:, None] * self.head_dim + torch.arange(self.head_dim)).reshape(-1)
        width = channels.numel()
        tensors = [(self._parameters.get(n), 0, 1) for n in _PROJECTIONS]
        tensors += [(self._parameters.get(n), 0, 3) for n in ("in_proj_weight", "in_proj_bias")]
        tensors += [(self._parameters.get(n), -1, 1) for n in ("bias_k", "bias_v")]
        tensors.append((self.out_proj._parameters["weight"], 1, 1))
        for tensor, dim, blocks in tensors:
            for stored in () if tensor is None else (tensor, tensor.grad):
                if stored is None:
                    continue
                for block in range(blocks):
                    part = stored.narrow(dim, block * width, width)
                    part.copy_(part.index_select(dim, channels.to(stored.device)))
        return True

    def _active_tensors(self) -> AttentionTensors:
        out = self.out_proj
        return AttentionTensors(
            self.in_proj_weight,
            self.q_proj_weight,
            self.k_proj_weight,
            self.v_proj_weight,
            self.in_proj_bias,
            self.bias_k,
            self.bias_v,
            out.weight.contiguous(),  # as exported: kernels differ on strided weights
            out.bias,
        )

    def export(self) -> nn.Module:
        """Export in place: the module itself at its original head count, else a ``torch.fx.GraphModule``."""
        hparam = self._hparams["num_heads"]
        if hparam.active == hparam.original:
            del self.__dict__["_calls"]
            super().export()
            self.out_proj.export()  # type: ignore[operator]
            return self
        calls = self.__dict__["_calls"]
        with torch.no_grad():
            exported = export_graph(
                self._active_tensors(),
                calls[-1] if calls else AttentionCall(),
                training=self.training,
                requires_grad=any(p.requires_grad for p in self.parameters()),
                heads=hparam.active,
                head_dim=self.head_dim,
                batch_first=self.batch_first,
                add_zero_attn=self.add_zero_attn,
            )
        hooks = {name: value for name, value in self.__dict__.items() if "hook" in name}
        self.__dict__.clear()
        self.__dict__.update(exported.__dict__)
        self.__dict__.update(hooks)
        self.__class__ = type(exported)  # type: ignore[assignment]
        return self


register_layer(nn.MultiheadAttention, key=HEADS_KEY, dynamic=DynamicMultiheadAttentionBase)
