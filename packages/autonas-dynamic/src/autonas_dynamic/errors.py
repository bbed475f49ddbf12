"""The errors autonas_dynamic raises on purpose.

Each one derives from :class:`DynamicError` and from the built-in a caller would catch anyway:
all of them are bad input (``ValueError``): a model that cannot be converted as given, or a cost
the cost model cannot express.
"""

from __future__ import annotations

__all__ = ["AlreadyConvertedError", "CostModelError", "DynamicError", "UnsupportedModelError"]


class DynamicError(Exception):
    """Base class of every error autonas_dynamic raises on purpose."""


class UnsupportedModelError(DynamicError, ValueError):
    """The model cannot be converted as given.

    Raised for a TorchScript module (``torch.jit.script`` / ``torch.jit.trace``: pass the eager
    module), a DataParallel / DistributedDataParallel wrapper where the bare model is needed, and
    parameters in ``channels_last`` memory format.
    """


class AlreadyConvertedError(DynamicError, ValueError):
    """The model already is a search space; conversion needs a model that holds no dynamic layer."""


class CostModelError(DynamicError, ValueError):
    """A cost that the cost model cannot express as a closed-form function of the hparams."""
