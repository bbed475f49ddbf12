"""autonas_patch."""

from importlib.metadata import version as _version

__version__ = _version("autonas-patch")
