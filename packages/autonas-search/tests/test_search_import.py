"""autonas_search needs no torch, not even when torch is installed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import autonas_search

BLOCK_TORCH = """
import sys

class BlockTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is blocked")
        return None

sys.meta_path.insert(0, BlockTorch())
import autonas_search
from autonas_search import ChoiceSpace, RandomSearcher
best = RandomSearcher().search(
    ChoiceSpace({"w": [1, 2, 3]}), {"cost": (lambda c: c["w"], 2)}, {"score_func": lambda c: c["w"], "num_iters": 20}
)
assert best["config"] == {"w": 2}, best
print(sorted(m for m in sys.modules if m.split(".")[0] == "torch"))
"""


def test_import_and_search_work_with_torch_blocked() -> None:
    result = subprocess.run([sys.executable, "-c", BLOCK_TORCH], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_no_source_file_mentions_torch_imports() -> None:
    for path in Path(autonas_search.__file__).parent.rglob("*.py"):
        text = path.read_text()
        assert "import torch" not in text and "from torch" not in text, path


def test_public_names() -> None:
    assert set(autonas_search.__all__) >= {
        "SearchSpace",
        "ChoiceSpace",
        "ConstraintsFunc",
        "BaseSearcher",
        "IterativeSearcher",
        "RandomSearcher",
        "EvolveSearcher",
        "NoSatisfiedCandidateError",
        "CheckpointError",
        "pareto_front",
    }
    assert all(hasattr(autonas_search, name) for name in autonas_search.__all__)
