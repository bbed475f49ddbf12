"""Dynamic ModuleList: a searchable depth for blocks a forward iterates (Hugging Face's ``layers``).

A model that runs ``for layer in self.layers: h = layer(h, ...)`` keeps its own loop; the dynamic
list hands that loop only its first ``depth`` blocks: iterating, ``len``, indexing and slicing see
the active blocks (``self.layers[: self.config.num_hidden_layers]`` too), while ``state_dict``,
``named_modules`` and ``parameters`` see every block. Export keeps the active blocks. The rule key
is ``"nn.ModuleList"`` with the rule class and default of ``nn.Sequential`` (``min_depth``).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

from torch import nn

from autonas_config import get_layer_type

from ..registry import register_layer
from .container import DepthContainer

__all__ = ["RULE_KEY", "DynamicModuleListBase"]

#: The rule key of ``nn.ModuleList`` depths in rule-based configs.
RULE_KEY = "nn.ModuleList"


class DynamicModuleListBase(DepthContainer):
    """Dynamic ModuleList: a forward's loop over it sees only the first ``depth`` blocks."""

    def _active(self) -> list[nn.Module]:
        return list(itertools.islice(self._modules.values(), self._hparams["depth"].active))  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[nn.Module]:
        return iter(self._active())

    def __len__(self) -> int:
        return self._hparams["depth"].active if "depth" in self._hparams else len(self._modules)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return nn.ModuleList(self._active()[index])
        return self._active()[index]


_SEQUENTIAL = get_layer_type("nn.Sequential")
register_layer(
    nn.ModuleList,
    key=RULE_KEY,
    rule=_SEQUENTIAL.rule_class,
    default=_SEQUENTIAL.default,
    dynamic=DynamicModuleListBase,
)
