"""The attributes in which attention modules keep their head count and the width of all heads."""

from __future__ import annotations

from torch import nn

__all__ = ["HEAD_COUNT_ATTRIBUTES", "HEAD_WIDTH_ATTRIBUTES", "holds", "int_attribute"]

#: Attributes that hold a module's number of heads.
HEAD_COUNT_ATTRIBUTES = ("num_heads", "num_attention_heads", "n_head", "n_heads")
#: Attributes that hold the width of all heads together (``heads * head_dim``).
HEAD_WIDTH_ATTRIBUTES = ("all_head_size", "inner_dim", "split_size", "attn_dim")


def int_attribute(module: nn.Module, name: str) -> int | None:
    """The plain int attribute ``name`` of ``module``, else None."""
    value = module.__dict__.get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def holds(module: nn.Module | None, names: tuple[str, ...], value: int) -> bool:
    """Whether one of ``module``'s int attributes ``names`` is ``value`` (such an attribute follows the heads)."""
    return module is not None and any(int_attribute(module, name) == value for name in names)
