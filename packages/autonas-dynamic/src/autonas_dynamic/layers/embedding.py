"""Dynamic Embedding: a searchable ``embedding_dim`` (the width of the vectors it looks up).

``nn.Embedding`` reads token ids, which have no width: its ``num_embeddings`` is coupled with its
input and so always keeps its size, while ``embedding_dim`` is the width of its output (the start
of a transformer's residual stream). The rule key is ``"nn.Embedding"`` with the rule class and
default of ``nn.Linear`` (``features_ratio``, ``feature_divisor``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from autonas_config import get_layer_type

from ..dynamic import DynamicModule, HparamAttribute
from ..hparam import Hparam
from ..layout import LayerLayout
from ..registry import register_layer
from .rules import restrict_by_ratio

__all__ = ["EMBEDDING_LAYOUT", "RULE_KEY"]

#: The rule key of ``nn.Embedding`` widths in rule-based configs.
RULE_KEY = "nn.Embedding"

#: A table of vectors over the last dimension: weight ``(num_embeddings, embedding_dim)``.
EMBEDDING_LAYOUT = LayerLayout(
    incoming="num_embeddings",
    outgoing="embedding_dim",
    tensors={"weight": {0: "num_embeddings", 1: "embedding_dim"}},
    axis="last",
)


class _DynamicEmbedding(DynamicModule):
    """Dynamic embedding; the weight is sliced to ``(num_embeddings, embedding_dim)`` as the layout says."""

    num_embeddings = HparamAttribute()
    embedding_dim = HparamAttribute()
    _dynamic_tensors = ()  # the layout's weight property is added at registration
    weight: torch.Tensor
    padding_idx: int | None
    max_norm: float | None
    norm_type: float
    scale_grad_by_freq: bool
    sparse: bool

    def _setup(self) -> None:
        for name in ("num_embeddings", "embedding_dim"):
            size = self.__dict__[name]
            self._register_hparam(name, Hparam(range(1, size + 1), original=size), importance=False)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        (weight,) = self._memoized(self._active_arguments)
        return F.embedding(
            input, weight, self.padding_idx, self.max_norm, self.norm_type, self.scale_grad_by_freq, self.sparse
        )

    def _active_arguments(self) -> tuple[torch.Tensor]:
        return (self.weight,)

    def modify(self, *, features_ratio: Sequence[float] | None = None, feature_divisor: int = 1) -> None:
        """Restrict ``embedding_dim`` to ``make_divisible(ratio * original, feature_divisor)``."""
        restrict_by_ratio(self._hparams["embedding_dim"], features_ratio, feature_divisor)


_LINEAR = get_layer_type("nn.Linear")
register_layer(
    nn.Embedding,
    EMBEDDING_LAYOUT,
    key=RULE_KEY,
    rule=_LINEAR.rule_class,
    default=_LINEAR.default,
    dynamic=_DynamicEmbedding,
)
