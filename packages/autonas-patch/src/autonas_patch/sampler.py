"""The protocol through which a patch manager drives a model's search space."""

from __future__ import annotations

import random
from typing import Protocol, runtime_checkable

__all__ = ["SubnetSampler"]


@runtime_checkable
class SubnetSampler(Protocol):
    """Activates subnets of one supernet; implemented by whoever converts the model.

    A patch manager calls these methods and nothing else. The sampler usually holds references to
    the model's searchable modules (or their hyperparameters). It is stored in the model's patch data,
    so it must survive ``copy.deepcopy`` and, for pickling a patched model, ``pickle``: a plain
    class (no lambdas, no local functions) whose attributes are modules, tensors or plain data.
    """

    def is_configurable(self) -> bool:
        """Whether the model has more than one subnet (some hyperparameter has several choices)."""
        ...

    def sample(self, rng: random.Random) -> None:
        """Activate a subnet drawn uniformly per hyperparameter, taking every draw from ``rng``.

        All randomness must come from ``rng`` and the draws must not depend on the rank or on
        data: that is what keeps every torch.distributed rank on the same subnet.
        """
        ...

    def sample_max(self) -> None:
        """Activate the maximal subnet (the largest choice of every hyperparameter)."""
        ...

    def sample_min(self) -> None:
        """Activate the minimal subnet (the smallest choice of every hyperparameter)."""
        ...
