"""Optional compiled extension: the fused training path of sliced parameters.

On the fused path, the active block of a full-size parameter (any subnet below the maximal one, in
training) comes from a C++ autograd function (``csrc/sliced_parameter.cpp``) whose backward writes
the block gradient straight into the active block of the full-size ``.grad`` instead of building a
full-size gradient per parameter and step. :mod:`.fused` decides per slice; the library is compiled
on first use (:mod:`.loader`); without a compiler everything runs on the reference path with the same
results. ``AUTONAS_EXTENSIONS=0|1|auto`` chooses (see :mod:`.state`); :func:`extensions_status`
tells what is in use. See docs/extensions.md.
"""

from .state import ENV_VAR, ExtensionsStatus, extensions_status

__all__ = ["ENV_VAR", "ExtensionsStatus", "extensions_status"]
