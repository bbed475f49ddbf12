"""autonas_config: what a user may configure in autonas, validated with pydantic (no torch)."""

from importlib.metadata import version as _version

from .rounding import make_divisible

__version__ = _version("autonas-config")

__all__ = ["make_divisible"]
