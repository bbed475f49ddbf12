"""FLOPs and parameter counts: a reference forward counter and a closed-form cost model.

* :func:`count_flops` / :func:`count_params`: the reference, from one recorded forward (FLOPs)
  and the module tree (parameters), on any model, plain or dynamic.
* :class:`CostModel`: built once over a converted model, the same two numbers for the active
  subnet in closed form, in microseconds, with no forward.

The FLOP conventions are listed in :mod:`autonas_dynamic.cost.ops`.
"""

from .counter import count_flops, count_params
from .model import CostModel, CostModelError

__all__ = ["CostModel", "CostModelError", "count_flops", "count_params"]
