"""Synthetic NAS-like search problems whose best feasible configuration is known exactly.

A problem is a chain of layers, as in a convolutional network. Every layer has a width hparam
(2-4 choices, in quarter-width units 1..4) and some layers also a kernel-size hparam (3/5/7).
The FLOPs of a layer are `coef * resolution * width_in * width_out * kernel_factor` (integers,
adding up over layers as real FLOPs do); the constraint is `flops <= budget`, a fraction of the
largest network's FLOPs. The score, an accuracy-like number in [0, 100), saturates with size:

    raw   = sum_i s_i * (1 - exp(-width_i / tau_i))         (per-hparam sensitivity, diminishing returns)
          + sum_i t_i * kernel_gain(kernel_i)
          + sum_i J_i[width_{i-1}][width_i]                  (pairwise interactions of neighbours)
    score = 100 * (1 - exp(-raw / scale))

Because FLOPs are integers and both costs and score are sums over neighbouring layers, dynamic
programming over (layer, width, FLOPs so far) -- keeping for each width only the states that
no cheaper state beats -- finds the exact optimum and the exact Pareto front of (FLOPs, score);
`brute_force_front` checks that on small instances.
"""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import dataclass
from typing import Any

KERNEL_FACTOR = {3: 1, 5: 3, 7: 5}


@dataclass(frozen=True)
class Layer:
    """One layer: its width choices, kernel choices (empty if fixed at 3) and score/cost terms."""

    widths: tuple[int, ...]
    kernels: tuple[int, ...]
    coef: int
    sensitivity: float
    tau: float
    kernel_weight: float
    interaction: tuple[tuple[float, ...], ...]  # [width_in - 1][width_out - 1]


class Problem:
    """One instance: a chain of layers with a FLOPs budget."""

    def __init__(self, layers: list[Layer], input_width: int, budget_fraction: float, scale: float) -> None:
        self.layers = layers
        self.input_width = input_width
        self.scale = scale
        self.max_flops = self.flops({**self._max_config()})
        self.budget = int(budget_fraction * self.max_flops)
        self.budget_fraction = budget_fraction

    @property
    def choices(self) -> dict[str, list[Any]]:
        """hparam name -> choices (for ChoiceSpace or any other searcher)."""
        choices: dict[str, list[Any]] = {}
        for i, layer in enumerate(self.layers):
            choices[f"layer{i}.width"] = list(layer.widths)
            if layer.kernels:
                choices[f"layer{i}.kernel"] = list(layer.kernels)
        return choices

    @property
    def num_hparams(self) -> int:
        return len(self.choices)

    def _max_config(self) -> dict[str, Any]:
        return {name: values[-1] for name, values in self.choices.items()}

    def _kernel(self, config: dict[str, Any], i: int) -> int:
        return config[f"layer{i}.kernel"] if self.layers[i].kernels else 3

    def flops(self, config: dict[str, Any]) -> int:
        """Integer FLOPs of `config` (the constrained cost)."""
        total, w_in = 0, self.input_width
        for i, layer in enumerate(self.layers):
            w = config[f"layer{i}.width"]
            total += layer.coef * w_in * w * KERNEL_FACTOR[self._kernel(config, i)]
            w_in = w
        return total

    def raw(self, config: dict[str, Any]) -> float:
        total, w_in = 0.0, self.input_width
        for i, layer in enumerate(self.layers):
            w = config[f"layer{i}.width"]
            total += self._layer_raw(layer, w_in, w, self._kernel(config, i))
            w_in = w
        return total

    def score(self, config: dict[str, Any]) -> float:
        """Accuracy-like score in [0, 100): higher is better."""
        return self.from_raw(self.raw(config))

    def from_raw(self, raw: float) -> float:
        return 100.0 * (1.0 - math.exp(-raw / self.scale))

    @staticmethod
    def _layer_raw(layer: Layer, w_in: int, w: int, kernel: int) -> float:
        return (
            layer.sensitivity * (1.0 - math.exp(-w / layer.tau))
            + layer.kernel_weight * (1.0 - math.exp(-KERNEL_FACTOR[kernel] / 2.0))
            + layer.interaction[w_in - 1][w - 1]
        )

    def optimum(self) -> float:
        """The best feasible score, by dynamic programming over (width, FLOPs so far)."""
        return max(score for _, score in self.pareto_front())

    def pareto_front(self) -> list[tuple[int, float]]:
        """Every feasible (FLOPs, score) that no cheaper-or-equal configuration beats, cheapest first.

        Dynamic programming over (width, FLOPs so far): a prefix that another prefix ending in the
        same width beats (cheaper or equal, higher raw score) cannot start an optimal configuration.
        """
        # states: width of the last layer -> list of (flops, raw), pruned to the non-dominated ones
        states: dict[int, list[tuple[int, float]]] = {self.input_width: [(0, 0.0)]}
        for layer in self.layers:
            grown: dict[int, list[tuple[int, float]]] = {}
            for w_in, entries in states.items():
                for w in layer.widths:
                    for kernel in layer.kernels or (3,):
                        step_flops = layer.coef * w_in * w * KERNEL_FACTOR[kernel]
                        step_raw = self._layer_raw(layer, w_in, w, kernel)
                        bucket = grown.setdefault(w, [])
                        for flops, raw in entries:
                            if flops + step_flops <= self.budget:
                                bucket.append((flops + step_flops, raw + step_raw))
            states = {w: _non_dominated(entries) for w, entries in grown.items() if entries}
        final = _non_dominated([entry for entries in states.values() for entry in entries])
        return [(flops, self.from_raw(raw)) for flops, raw in final]

    def brute_force_front(self) -> list[tuple[int, float]]:
        """`pareto_front()` by enumerating every configuration (small instances only)."""
        names, choices = zip(*self.choices.items(), strict=True)
        feasible = []
        for values in itertools.product(*choices):
            config = dict(zip(names, values, strict=True))
            flops = self.flops(config)
            if flops <= self.budget:
                feasible.append((flops, self.raw(config)))
        return [(flops, self.from_raw(raw)) for flops, raw in _non_dominated(feasible)]


def _non_dominated(entries: list[tuple[int, float]]) -> list[tuple[int, float]]:
    """Keep the (flops, raw) states that no cheaper-or-equal state beats in raw."""
    kept: list[tuple[int, float]] = []
    for flops, raw in sorted(entries, key=lambda e: (e[0], -e[1])):
        if not kept or raw > kept[-1][1]:
            kept.append((flops, raw))
    return kept


def make_problem(seed: int, num_hparams: int, budget_fraction: float) -> Problem:
    """A random instance with (close to) `num_hparams` hparams and `flops <= budget_fraction * max`."""
    rng = random.Random(seed)
    layers: list[Layer] = []
    count = 0
    while count < num_hparams:
        num_widths = rng.choice((2, 3, 4))
        widths = tuple(range(5 - num_widths, 5))
        kernels: tuple[int, ...] = ()
        if count + 1 < num_hparams and rng.random() < 0.3:
            kernels = (3, 5, 7) if rng.random() < 0.5 else (3, 5)
        resolution = 2 ** (3 - 3 * len(layers) // max(1, num_hparams))  # early layers see larger maps
        layers.append(
            Layer(
                widths=widths,
                kernels=kernels,
                coef=rng.randint(1, 4) * resolution,
                sensitivity=rng.uniform(0.2, 2.0),
                tau=rng.uniform(0.8, 3.0),
                kernel_weight=rng.uniform(0.0, 0.6) if kernels else 0.0,
                interaction=tuple(tuple(rng.uniform(-0.25, 0.25) for _ in range(4)) for _ in range(4)),
            )
        )
        count += 1 + bool(kernels)
    scale = sum(layer.sensitivity + layer.kernel_weight for layer in layers) / 2
    return Problem(layers, input_width=2, budget_fraction=budget_fraction, scale=scale)


def problem_for_seed(seed: int) -> Problem:
    """The instance of benchmark seed `seed`: 20, 30 or 40 hparams and a 40/50/60 % FLOPs budget, in turn."""
    return make_problem(seed, num_hparams=(20, 30, 40)[seed % 3], budget_fraction=(0.4, 0.5, 0.6)[seed % 3])
