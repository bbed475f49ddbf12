"""autonas.huggingface without its optional extra: an ImportError that names the extra to install."""

from __future__ import annotations

import importlib.util

import pytest


@pytest.mark.skipif(importlib.util.find_spec("transformers") is not None, reason="transformers is installed")
def test_import_without_transformers_names_the_extra() -> None:
    with pytest.raises(ImportError, match=r"pip install 'autonas\[huggingface\]'"):
        import autonas.huggingface  # noqa: F401
