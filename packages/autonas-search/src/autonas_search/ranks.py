"""Several processes searching together: the `Ranks` protocol, and the helpers every rank runs alike."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

__all__ = ["Ranks", "check_ranks", "share_from_first"]


@runtime_checkable
class Ranks(Protocol):
    """The processes (ranks) that run one search together, and how they exchange Python objects.

    Every rank runs the same search with the same seed; the ranks split the scoring of each
    proposed batch and gather the scores, so every rank holds the same state. Any communicator
    fits: autonas-modes wraps `torch.distributed`, and an `mpi4py` communicator needs three lines.
    """

    @property
    def rank(self) -> int:
        """This process's rank, 0 to `size - 1`."""
        ...

    @property
    def size(self) -> int:
        """The number of ranks."""
        ...

    def all_gather(self, obj: Any) -> list[Any]:
        """Every rank's `obj`, in rank order. A collective: every rank calls it, in the same order."""
        ...


def check_ranks(ranks: object) -> Ranks:
    """Return `ranks` if it implements `Ranks` with a valid rank and size, else raise a `ValueError`."""
    if not isinstance(ranks, Ranks) or not callable(getattr(ranks, "all_gather", None)):
        raise ValueError(
            f"search config 'ranks' must have rank, size and all_gather(obj) (see autonas_search.Ranks), got {ranks!r}"
        )
    rank, size = ranks.rank, ranks.size
    if not (isinstance(size, int) and size >= 1 and isinstance(rank, int) and 0 <= rank < size):
        raise ValueError(f"search config 'ranks' has rank {rank!r} of size {size!r}; need 0 <= rank < size")
    return ranks


def share_from_first(ranks: Ranks | None, value: Any) -> Any:
    """Rank 0's `value` on every rank (as is without ranks). A collective."""
    return value if ranks is None or ranks.size == 1 else ranks.all_gather(value if ranks.rank == 0 else None)[0]
