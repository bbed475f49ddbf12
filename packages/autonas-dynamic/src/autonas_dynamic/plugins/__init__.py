"""Optional integrations with third-party layer libraries, activated when the library is installed.

Importing :mod:`autonas_dynamic` installs each integration without importing its library: the
integration completes itself when the library's layer module is first imported (see
:mod:`.imports`), so a model built from that library is searchable and ``autonas_dynamic`` stays
fast to import. Integrations: :mod:`.transformers` (Hugging Face ``Conv1D``, as in GPT-2) and
:mod:`.timm` (PyTorch Image Models' mixed, scaled and same-padding convs, scales, blur pools).
"""

from __future__ import annotations

from . import timm, transformers

__all__ = ["timm", "transformers"]

transformers.install()
timm.install()
