"""``import autonas`` time and search-loop throughput of this tree against a baseline tree, in one run.

Each figure is measured in fresh processes whose ``PYTHONPATH`` points at one tree's packages,
alternating between the two trees so that the load of a shared machine falls on both alike:

* import: wall time of ``import autonas`` (median of ``--imports`` processes per tree);
* search: iterations per second of ``autonas.search`` on a converted torchvision model with a
  trivial score (sampling, selecting, checking the FLOPs/params constraints), as
  ``bench_search_throughput.py`` measures it (median of ``--rounds`` processes per tree).

Run: ``python tools/bench/bench_import_and_search.py --baseline /path/to/other/checkout``
(with the dev venv's python; needs torchvision). Prints both figures and the ratio this/baseline.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

IMPORT_CODE = "import time; t = time.perf_counter(); import autonas; print((time.perf_counter() - t) * 1e3)"

SEARCH_CODE = """
import time, torch, torchvision
from autonas_modes import convert, search
from autonas_search import EvolveSearcher

class Timed(EvolveSearcher):
    seconds = 0.0
    def run_search(self):
        start = time.perf_counter()
        super().run_search()
        Timed.seconds = time.perf_counter() - start

torch.manual_seed(0)
model = getattr(torchvision.models, "{model}")(weights=None).eval()
convert(model, "autonas")
_, state = search(model, {{"flops": "60%"}}, dummy_input=torch.randn(1, 3, 224, 224),
                  config={{"score_func": lambda m: 0.0, "num_iters": {iters}, "seed": 0}}, searcher=Timed)
print(state["iter_num"] / Timed.seconds)
"""


def _run(tree: Path, code: str) -> float:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(p) for p in sorted(tree.glob("packages/*/src")))}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    return float(out.strip().splitlines()[-1])


def _compare(label: str, unit: str, trees: dict[str, Path], code: str, repeats: int) -> None:
    samples: dict[str, list[float]] = {name: [] for name in trees}
    for _ in range(repeats):
        for name, tree in trees.items():
            samples[name].append(_run(tree, code))
    this, base = (statistics.median(samples[name]) for name in ("this", "baseline"))
    print(f"{label:<28} this {this:10.2f} {unit}  baseline {base:10.2f} {unit}  ratio {this / base:6.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, required=True, help="root of the checkout to compare against")
    parser.add_argument("--imports", type=int, default=15)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--iters", type=int, default=1000)
    args = parser.parse_args()
    trees = {"this": ROOT, "baseline": args.baseline.resolve()}
    _compare("import autonas", "ms", trees, IMPORT_CODE, args.imports)
    search_code = SEARCH_CODE.format(model=args.model, iters=args.iters)
    _compare(f"search loop {args.model}", "it/s", trees, search_code, args.rounds)


if __name__ == "__main__":
    main()
