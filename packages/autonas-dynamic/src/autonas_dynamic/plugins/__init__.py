"""Optional integrations with third-party layer libraries, activated when the library is installed.

:func:`install` installs each integration without importing its library (``autonas_dynamic``
calls it on import): the rule keys of the library's layer types become valid config keys at once,
and the integration completes itself when the library's layer module is first imported (see
:mod:`.imports`), so a model built from that library is searchable and ``autonas_dynamic`` stays
fast to import. Integrations: :mod:`.transformers` (Hugging Face ``Conv1D``, as in GPT-2) and
:mod:`.timm` (PyTorch Image Models' mixed, scaled and same-padding convs, scales, blur pools).
"""

from __future__ import annotations

import functools

from . import timm, transformers

__all__ = ["install", "timm", "transformers"]


@functools.cache
def install() -> None:
    """Install every integration whose library is installed (once; later calls do nothing).

    Code that validates a stored config naming such a layer type (``"transformers.Conv1D"``) in a
    fresh process calls it first.
    """
    transformers.install()
    timm.install()
