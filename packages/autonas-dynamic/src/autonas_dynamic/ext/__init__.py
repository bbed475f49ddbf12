"""Optional compiled extension and the fused training path of the dynamic layers.

On the fused path a sliced dynamic conv or linear layer (any subnet below the maximal one) trains
through a C++ autograd function (``csrc/sliced_layers.cpp``) that copies its active weight into a
buffer reused across steps and, in backward, writes the weight gradient straight into the active
block of the full-size ``.grad`` instead of building a full-size gradient per parameter and step.
The library is compiled on first use (:mod:`.loader`); without a compiler everything runs on the
reference path with the same results. ``AUTONAS_EXTENSIONS=0|1|auto`` chooses (see :mod:`.state`);
:func:`extensions_status` tells what is in use. See docs/extensions.md.
"""

from .dispatch import install
from .state import ENV_VAR, ExtensionsStatus, extensions_status

install()

__all__ = ["ENV_VAR", "ExtensionsStatus", "extensions_status"]
