"""How a layer rule (ratios and a divisor) restricts an hparam's choices."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from autonas_config import make_divisible

from ..hparam import Hparam

__all__ = ["head_counts", "restrict_by_ratio"]


def restrict_by_ratio(hparam: Hparam, ratios: Sequence[float] | None, divisor: int) -> None:
    """Restrict ``hparam`` to ``make_divisible(ratio * original, divisor)`` for each ratio.

    With ``ratios=None`` the current choices are rounded instead. Values above the original or not
    currently allowed drop out; the original always stays.
    """
    if isinstance(divisor, bool) or not isinstance(divisor, int) or divisor < 1:
        raise ValueError(f"{hparam.label}: divisor must be a positive int, got {divisor!r}")
    if ratios is None:
        candidates = hparam.choices
    else:
        bad = [ratio for ratio in ratios if not ratio > 0]
        if bad:
            raise ValueError(f"{hparam.label}: ratios must be positive, got {list(ratios)}")
        candidates = [ratio * hparam.original for ratio in ratios]
    hparam.restrict_to({make_divisible(value, divisor) for value in candidates})


def head_counts(heads: int, rule: Mapping[str, Any] | None) -> set[int]:
    """The head counts a ``heads`` rule allows a module of ``heads`` heads (the original always stays).

    ``make_divisible(ratio * heads, heads_divisor)`` for each of ``heads_ratio``, or every count
    rounded so when the ratios are ``None``; counts above ``heads`` drop out. ``rule=None``: only
    ``heads``.
    """
    if rule is None:
        return {heads}
    ratios, divisor = rule["heads_ratio"], rule["heads_divisor"]
    candidates = range(1, heads + 1) if ratios is None else [ratio * heads for ratio in ratios]
    return {count for count in (int(make_divisible(c, divisor)) for c in candidates) if count <= heads} | {heads}
