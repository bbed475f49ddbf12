"""`RandomSearcher`: uniform random sampling of every configurable hparam."""

from __future__ import annotations

from typing import Any

from .iterative import IterativeSearcher

__all__ = ["RandomSearcher"]

BATCH = 100


class RandomSearcher(IterativeSearcher):
    """Draws every candidate uniformly at random; a baseline, and the searcher for tiny budgets."""

    def propose(self, limit: int) -> list[dict[str, Any]]:
        """Up to 100 independent random configs (one draw sequence, however it is batched)."""
        return [self.random_config() for _ in range(min(limit, BATCH))]
