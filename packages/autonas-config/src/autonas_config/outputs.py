"""The ``outputs`` section: which outputs of a model may change width when a subnet is active.

A model's outputs keep their sizes unless this section lets them change: the layers that produce
an output that keeps its size keep their widths too. The section maps glob patterns over an
output's *path* in the model's return value to ``True`` (its width may change) or ``False`` (it
keeps its size). A path names the keys and positions from the return value down to the tensor,
joined by ``.``: ``"logits"`` and ``"last_hidden_state"`` of a Hugging Face model output (or any
dict), ``"0"`` and ``"1"`` of a returned tuple, ``"0.features"`` of a dict inside a tuple, and
``""`` for a model that returns one tensor.

Patterns are matched with ``fnmatch`` (case-sensitive, ``*`` also matches dots) in the order
given; the last matching pattern decides, and an output no pattern matches keeps its size.
"""

from __future__ import annotations

from collections.abc import Mapping
from fnmatch import fnmatchcase
from typing import Any

__all__ = ["DEFAULT_OUTPUTS", "OUTPUTS_KEY", "OutputsSection", "output_may_change", "validate_outputs"]

OUTPUTS_KEY = "outputs"
"""The section of model outputs whose width may change; its glob patterns match output paths, not modules."""

DEFAULT_OUTPUTS: dict[str, bool] = {"last_hidden_state": True, "encoder_last_hidden_state": True}
"""By default the residual stream a Hugging Face model returns may change width (a bare encoder's
``last_hidden_state``, the ``encoder_last_hidden_state`` of a sequence-to-sequence model), so their
hidden width is searched; every other output (``logits``, ``pooler_output``, a returned tensor)
keeps its size."""

OutputsSection = dict[str, bool]
"""The ``outputs`` section as stored: glob pattern over output paths -> whether the width may change."""


def validate_outputs(value: Any) -> OutputsSection:
    """Validate an ``outputs`` section: a dict of glob patterns (strings) to ``True`` or ``False``.

    ``None`` is short for ``{}`` (every output keeps its size).

    Raises:
        ValueError: The section is not such a dict; the message names the pattern at fault.
    """
    if value is None:
        return {}
    expected = 'a dict of glob patterns over output paths to True or False, e.g. {"last_hidden_state": True}'
    if not isinstance(value, Mapping):
        raise ValueError(f"{OUTPUTS_KEY}: expected {expected}; got {value!r}")
    for pattern, may_change in value.items():
        if not isinstance(pattern, str):
            raise ValueError(f"{OUTPUTS_KEY}: pattern {pattern!r} is not a string; expected {expected}")
        if not isinstance(may_change, bool):
            raise ValueError(
                f"{OUTPUTS_KEY} pattern {pattern!r}: expected True (its width may change) or False (it keeps "
                f"its size); got {may_change!r}"
            )
    return dict(value)


def output_may_change(section: Mapping[str, bool] | None, path: str) -> bool:
    """Whether the output at ``path`` may change width under ``section`` (the last matching pattern decides).

    Examples:
        >>> output_may_change({"*": True, "logits": False}, "last_hidden_state")
        True
        >>> output_may_change(DEFAULT_OUTPUTS, "logits")
        False
    """
    may_change = False
    for pattern, value in validate_outputs(section).items():
        if fnmatchcase(path, pattern):
            may_change = value
    return may_change
