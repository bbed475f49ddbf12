"""The recipes of the docs run exactly as written and compute what they say."""

from __future__ import annotations

import re
from pathlib import Path

import torch

from autonas_dynamic import DynamicModule, unregister_layer
from autonas_dynamic.registry import DYNAMIC_REGISTRY

DOCS = Path(__file__).resolve().parents[1] / "docs"


def python_blocks(page: str, section: str) -> list[str]:
    """The python code blocks of one ``## section`` of a docs page."""
    text = (DOCS / page).read_text()
    start = text.index(f"\n## {section}\n")
    end = text.find("\n## ", start + 1)
    return re.findall(r"```python\n(.*?)```", text[start : end if end != -1 else None], flags=re.DOTALL)


def test_own_layer_type_recipe_runs_inside_a_model_between_two_convs() -> None:
    (recipe,) = python_blocks("dynamic.md", "Your own layer types")
    # test_docs.py may have run the same page in this process already: start with no "my.Scale" declared
    for declared in [cls for cls in list(DYNAMIC_REGISTRY._layers) if DYNAMIC_REGISTRY.get_key(cls) == "my.Scale"]:
        unregister_layer(declared)
    namespace: dict = {}
    exec(compile(recipe, "docs/dynamic.md", "exec"), namespace)  # the recipe asserts what it claims, too
    try:
        plain, x = namespace["plain"], namespace["x"]
        assert namespace["space"].hparams() == {}  # exported: nothing dynamic is left
        assert not any(isinstance(m, DynamicModule) for m in plain.modules())
        assert (plain[0].out_channels, plain[1].width, plain[3].in_channels) == (32, 32, 32)
        assert torch.equal(plain(x), namespace["small"]) and namespace["small"].shape == (2, 32, 16, 16)
        assert not torch.equal(namespace["small"], namespace["reference"])
    finally:
        unregister_layer(namespace["Scale"])
