"""Model search over torch.distributed ranks: the communicator, and what keeps the ranks in step.

Under ``torchrun`` every rank holds the supernet and runs the same search; ``autonas_search``
splits the scoring of each proposed batch over the ranks (see ``autonas_search.Ranks``). What is
measured rather than computed, latency, is measured on rank 0 and shared, so that every rank
sees the same constraint values.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch.distributed as dist
import torch.nn as nn

__all__ = ["TorchRanks", "collectives_refused", "distributed_ranks", "latency_on_rank_zero"]

#: The torch.distributed collectives a ``score_func`` must not call while each rank scores its own candidate.
COLLECTIVES = (
    "all_gather",
    "all_gather_into_tensor",
    "all_gather_object",
    "all_reduce",
    "all_to_all",
    "all_to_all_single",
    "barrier",
    "broadcast",
    "broadcast_object_list",
    "gather",
    "gather_object",
    "reduce",
    "reduce_scatter",
    "reduce_scatter_tensor",
    "scatter",
    "scatter_object_list",
)


class TorchRanks:
    """The ranks of a torch.distributed process group as an ``autonas_search.Ranks``.

    Args:
        group: The process group (default: the whole world). With NCCL, objects travel through
            the current CUDA device, so set it on each rank (``torch.cuda.set_device``) first.
    """

    def __init__(self, group: Any = None) -> None:
        self.group = group
        self.rank = dist.get_rank(group)
        self.size = dist.get_world_size(group)

    def all_gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order (pickled through the group)."""
        gathered: list[Any] = [None] * self.size
        dist.all_gather_object(gathered, obj, group=self.group)
        return gathered

    def __repr__(self) -> str:
        return f"TorchRanks(rank={self.rank}, size={self.size})"


def distributed_ranks() -> TorchRanks | None:
    """The ranks of the default process group when several processes run, else None."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return TorchRanks()
    return None


def latency_on_rank_zero(
    latency_func: Callable[[nn.Module, Any], float], ranks: Any
) -> Callable[[nn.Module, Any], float]:
    """``latency_func`` measured on rank 0 alone and shared, so every rank interpolates the same points.

    A collective: every rank calls it at the same points of the search, which it does, since every
    rank evaluates the same constraints in the same order.
    """

    def measured_on_rank_zero(model: nn.Module, dummy_input: Any) -> float:
        latency = float(latency_func(model, dummy_input)) if ranks.rank == 0 else None
        return ranks.all_gather(latency)[0]

    return measured_on_rank_zero


@contextlib.contextmanager
def collectives_refused() -> Iterator[None]:
    """Inside, calling a torch.distributed collective raises a ``RuntimeError`` that says why.

    While each rank scores a different candidate, a collective in ``score_func`` (an all-reduced
    accuracy, a metric that syncs across processes) would meet other ranks' calls for other
    candidates: mixed results or a hang. The reference's scoring, where every rank scores every
    candidate on its shard and all-reduces, is ``score_on="every_rank"``.
    """
    originals = {name: getattr(dist, name) for name in COLLECTIVES if hasattr(dist, name)}

    def refused(name: str) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            raise RuntimeError(
                f"score_func called torch.distributed.{name} while each rank scores its own candidate "
                "(score_on='one_rank'). Give every rank the same data and score without collectives "
                "(e.g. a metric with sync_on_compute=False), or pass score_on='every_rank' in the search "
                "config: every rank then scores every candidate on its shard and score_func all-reduces."
            )

        return call

    for name in originals:
        setattr(dist, name, refused(name))
    try:
        yield
    finally:
        for name, function in originals.items():
            setattr(dist, name, function)
