"""Optional compiled kernels and the fused training path of the dynamic layers.

On the fused path a sliced dynamic conv or linear layer (any subnet below the maximal one) trains
as one autograd function that copies its active weight out once and, in backward, writes the
weight gradient straight into the active block of the full-size ``.grad`` instead of building a
full-size gradient per parameter and step (see :mod:`.gradients`). The block copies run on
compiled C++ (CPU) and CUDA kernels when built (:mod:`.loader`), else on torch ops; results are
the same either way. ``AUTONAS_EXTENSIONS=0|1|auto`` chooses (see :mod:`.state`; the default keeps
the reference path wherever the fused one was not measured faster); :func:`extensions_status`
tells what is in use. See docs/extensions.md.
"""

from .dispatch import install
from .state import ENV_VAR, ExtensionsStatus, extensions_status

install()

__all__ = ["ENV_VAR", "ExtensionsStatus", "extensions_status"]
