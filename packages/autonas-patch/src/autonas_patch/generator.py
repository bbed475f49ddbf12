"""The sampling generator of a patched model: seedable, and the same on every torch.distributed rank."""

from __future__ import annotations

import copy
import random
import secrets
from typing import Any

import torch.distributed as dist

__all__ = ["SyncedRandom"]


def _world_size() -> int:
    if not (dist.is_available() and dist.is_initialized()):
        return 1
    return dist.get_world_size()


class SyncedRandom:
    """One ``random.Random`` per model that draws the same numbers on every rank.

    The generator is created on first use from ``seed`` (any non-negative int, 0 included) or,
    without a seed, from 64 random bits. The first time it is used while a torch.distributed
    process group with more than one rank exists, rank 0 broadcasts its generator state and every
    rank continues from it; this is the only communication, so every rank must make that first
    call (all ranks run the same training loop, so they do). From then on the ranks stay in step
    because they make the same draws in the same order. A generator first used before
    ``init_process_group`` synchronises on its first use after it.

    Args:
        seed: Seed of the generator; ``None`` for a random one (made common by the broadcast).
    """

    def __init__(self, seed: int | None = None) -> None:
        self.reseed(seed)

    def reseed(self, seed: int | None) -> None:
        """Start over from ``seed`` (synchronising across ranks again on the next use in a process group)."""
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
            raise ValueError(f"seed must be a non-negative int or None, got {seed!r}")
        self.seed = seed
        self._rng: random.Random | None = None
        self._synced = False

    @property
    def rng(self) -> random.Random:
        """The generator to draw from (synchronised across ranks on the first use in a process group)."""
        if self._rng is None:
            self._rng = random.Random(secrets.randbits(64) if self.seed is None else self.seed)
        if not self._synced and _world_size() > 1:
            state = [self._rng.getstate()]
            dist.broadcast_object_list(state, src=0)
            self._rng.setstate(state[0])
            self._synced = True
        return self._rng

    def __getstate__(self) -> dict[str, Any]:
        # An unpickled copy may live in another process group: it synchronises again on first use.
        return {**self.__dict__, "_synced": False}

    def __deepcopy__(self, memo: dict[int, Any]) -> SyncedRandom:
        # A deep copy stays in this process group and continues in step with the original.
        clone = SyncedRandom(self.seed)
        clone._rng = copy.deepcopy(self._rng, memo)
        clone._synced = self._synced
        return clone

    def __repr__(self) -> str:
        return f"SyncedRandom(seed={self.seed!r})"
