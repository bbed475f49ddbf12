"""How a layer rule (ratios and a divisor) restricts an hparam's choices."""

from __future__ import annotations

from collections.abc import Sequence

from autonas_config import make_divisible

from ..hparam import Hparam

__all__ = ["restrict_by_ratio", "restrict_to"]


def restrict_to(hparam: Hparam, allowed: set) -> None:
    """Keep the choices that are in ``allowed`` (the original always stays).

    A pinned hparam (e.g. a concat input, which follows its concat) is left alone.
    """
    if not hparam._is_configurable:
        return
    new = (set(hparam.choices) & allowed) | {hparam.original}
    if hparam.active not in new:
        hparam.active = hparam.original
    hparam.choices = new


def restrict_by_ratio(hparam: Hparam, ratios: Sequence[float] | None, divisor: int) -> None:
    """Restrict ``hparam`` to ``make_divisible(ratio * original, divisor)`` for each ratio.

    With ``ratios=None`` the current choices are rounded instead. Values above the original or not
    currently allowed drop out; the original always stays.
    """
    if isinstance(divisor, bool) or not isinstance(divisor, int) or divisor < 1:
        raise ValueError(f"{hparam._label()}: divisor must be a positive int, got {divisor!r}")
    if ratios is None:
        candidates = hparam.choices
    else:
        bad = [ratio for ratio in ratios if not ratio > 0]
        if bad:
            raise ValueError(f"{hparam._label()}: ratios must be positive, got {list(ratios)}")
        candidates = [ratio * hparam.original for ratio in ratios]
    restrict_to(hparam, {make_divisible(value, divisor) for value in candidates})
