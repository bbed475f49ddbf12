"""Attention modules whose heads are searched: the head counts they keep follow the active heads.

When the analysis finds a module's query/key/value split into heads (see
:mod:`autonas_dynamic.trace.handlers.reshape`), their shared width hparam moves by whole heads. The
module itself is not converted; its attributes that state the head count or the width of all heads
(``num_heads``, ``num_attention_heads``, ``n_head``, ``n_heads``; ``all_head_size``, ``inner_dim``,
where they hold the original values) are set from the active width before each forward, and for
good on export, so the exported model is the original class with consistent attributes. A forward
that reshapes into ``self.num_heads`` heads therefore reshapes into the active heads. A split size
a module keeps in an attribute (``torch.split(x, self.width, 1)``) follows the width of the parts
the same way (:class:`SplitAttribute`).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from .hparam import DerivedHparam, Hparam
from .trace.heads import HEAD_COUNT_ATTRIBUTES, HEAD_WIDTH_ATTRIBUTES, int_attribute

__all__ = [
    "FollowedAttributes",
    "HeadAttributes",
    "KeyValueWidthHparam",
    "QueryGroupsHparam",
    "SplitAttribute",
    "follow_heads",
    "follow_split",
    "settle_heads",
]


class FollowedAttributes:
    """A forward pre-hook that sets plain attributes of a module from hparams before each forward."""

    def __call__(self, module: nn.Module, args: Any) -> None:
        self.apply(module)

    def apply(self, module: nn.Module) -> None:
        """Set the attributes from the active values."""
        raise NotImplementedError


class HeadAttributes(FollowedAttributes):
    """A forward pre-hook that sets an attention module's head attributes from the heads' width hparam.

    Args:
        module: The attention module.
        width: The shared hparam of the query/key/value widths (a multiple of ``head_dim``).
        head_dim: The width of one head.
    """

    def __init__(self, module: nn.Module, width: Hparam, head_dim: int) -> None:
        self.width, self.head_dim = width, head_dim
        heads = width.original // head_dim
        self.counts = [name for name in HEAD_COUNT_ATTRIBUTES if int_attribute(module, name) == heads]
        self.widths = [name for name in HEAD_WIDTH_ATTRIBUTES if int_attribute(module, name) == width.original]

    def apply(self, module: nn.Module) -> None:
        """Set the attributes from the active width."""
        for name in self.counts:
            setattr(module, name, self.width.active // self.head_dim)
        for name in self.widths:
            setattr(module, name, self.width.active)


class SplitAttribute(FollowedAttributes):
    """A split size a module keeps in an attribute (Res2Net's ``torch.split(x, self.width, 1)``): the
    active width of each equal part.

    Args:
        name: The attribute.
        part: The hparam of one part.
    """

    def __init__(self, name: str, part: Hparam) -> None:
        self.name, self.part = name, part

    def apply(self, module: nn.Module) -> None:
        setattr(module, self.name, self.part.active)


def follow_split(module: nn.Module, name: str, part: Hparam) -> None:
    """Let ``module``'s split-size attribute ``name`` follow the width of each part."""
    module.register_forward_pre_hook(SplitAttribute(name, part))


def follow_heads(module: nn.Module, width: Hparam, head_dim: int) -> None:
    """Let ``module``'s head attributes follow ``width`` (nothing to do when it has none)."""
    hook = HeadAttributes(module, width, head_dim)
    if hook.counts or hook.widths:
        module.register_forward_pre_hook(hook)


def settle_heads(model: nn.Module, keep_following: bool = False) -> None:
    """Set every followed attribute of ``model`` (head counts and widths, split sizes) to its active
    value, for good unless ``keep_following``.

    For good, the hooks go (export); ``keep_following`` only brings the attributes up to date
    before the next forward sets them.
    """
    for module in model.modules():
        for key, hook in list(module._forward_pre_hooks.items()):
            if isinstance(hook, FollowedAttributes):
                hook.apply(module)
                if not keep_following:
                    del module._forward_pre_hooks[key]


class QueryGroupsHparam(Hparam):
    """The query width of grouped-query attention; the key/value width follows as ``1 / groups`` of it.

    Each key/value head serves ``groups`` query heads, so both shrink together by whole groups: the
    query width takes multiples of ``groups * head_dim`` whose ``1 / groups`` the key/value hparam
    allows, and :attr:`key_values` (installed on the key and value projections in place of their
    hparam) follows. Neither is sorted (heads of one group must stay together). The same link makes
    the narrower side of a grouped layer with unequal widths follow the wider one (``head_dim`` 1:
    whole groups).

    Args:
        queries: The shared hparam of the query projection's width and the output projection's input.
        key_values: The shared hparam of the key and value projections' widths.
        groups: Query heads per key/value head.
        head_dim: The width of one head.
    """

    def __init__(self, queries: Hparam, key_values: Hparam, groups: int, head_dim: int) -> None:
        choices = [c for c in queries.choices if c % (groups * head_dim) == 0 and c // groups in key_values.choices]
        super().__init__(choices, original=queries.original, name=queries.name)
        self.block = queries.block
        self.make_unsortable()
        self.active = queries.active if queries.active in self.choices else self.original
        self.key_values = KeyValueWidthHparam(self, groups, name=key_values.name)


class KeyValueWidthHparam(DerivedHparam):
    """The key/value width of grouped-query attention: ``1 / groups`` of the query width it follows."""

    def __init__(self, queries: Hparam, groups: int, name: str | None = None) -> None:
        super().__init__(queries, queries.original // groups, name)
        self._groups = groups

    def derive(self, value: int) -> int:
        return value // self._groups
