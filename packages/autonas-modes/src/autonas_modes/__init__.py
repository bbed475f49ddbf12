"""autonas_modes."""

from importlib.metadata import version as _version

__version__ = _version("autonas-modes")
