"""A model's costs (FLOPs, parameters, latency) and the constraints functor over them.

The model side only measures: :class:`ModelCosts` evaluates the costs of the active subnet.
FLOPs and parameters come from the closed-form cost model of ``autonas_dynamic`` (built once from
one recorded forward), so a check costs microseconds. Latency is measured on this machine, in the
runtime of the ``deployment`` (see :mod:`autonas_modes.deployment`), at a few subnets and
interpolated over FLOPs for the others (see :class:`autonas_modes.LatencyInterpolator`).

Limits, ``"N%"`` percentages and satisfaction are those of :class:`autonas_search.ConstraintsFunc`
alone: :class:`ModelConstraints` is that functor over the cost functions of a :class:`ModelCosts`.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch.nn as nn

from autonas_search import ConstraintsFunc, CostFunc

from .deployment import Deployment
from .latency import LatencyInterpolator
from .modelspace import ModelSearchSpace, frozen_eval, model_space

__all__ = ["SUPPORTED_CONSTRAINTS", "ModelConstraints", "ModelCosts"]

_ACTIVE = operator.attrgetter("active")

#: Constraint keys in evaluation order (later ones may use earlier values).
SUPPORTED_CONSTRAINTS = ("params", "flops", "flops_min_depth", "latency")


class ModelCosts:
    """The costs of a model's active subnet: ``params``, ``flops``, ``flops_min_depth``, ``latency``.

    Args:
        model: A converted (or plain) model.
        keys: The costs asked for (from :data:`SUPPORTED_CONSTRAINTS`). ``flops`` and ``params``
            are always tracked; with ``latency``, so are its interpolation coordinates (``flops``
            and, for models with a searchable depth, ``flops_min_depth``).
        dummy_input: Input of the recorded forward (and of latency measurements); see
            :func:`autonas_dynamic.calling.split_args` for tuples and keyword arguments.
        latency_func: ``(model, dummy_input) -> milliseconds`` for the active subnet, replacing
            the built-in timing (give either this or ``deployment``).
        deployment: Where latency is measured: ``{"runtime": "torch"}`` (default, eager PyTorch),
            ``{"runtime": "onnxruntime", "threads": 2, "provider": "CPUExecutionProvider"}`` or
            ``{"runtime": "torch.compile"}``, plus ``warmup`` / ``repeats`` (see
            :class:`autonas_modes.deployment.Deployment`). The median of the timed runs counts.

    Raises:
        KeyError: A key or deployment key is not supported (the message lists the supported ones).
        TypeError: A deployment value has a type that is not allowed.
        ValueError: No ``dummy_input``, a deployment value is not allowed, or both ``latency_func``
            and ``deployment`` are given.
    """

    def __init__(
        self,
        model: nn.Module,
        keys: Iterable[str],
        dummy_input: Any,
        latency_func: Callable[[nn.Module, Any], float] | None = None,
        deployment: Mapping[str, Any] | None = None,
    ) -> None:
        asked = set(keys)
        unknown = sorted(asked - set(SUPPORTED_CONSTRAINTS))
        if unknown:
            raise KeyError(f"Unsupported constraint keys {unknown}; supported keys are {list(SUPPORTED_CONSTRAINTS)}.")
        if dummy_input is None:
            raise ValueError("Constraints need a dummy_input to measure the model.")
        if latency_func is not None and deployment is not None:
            raise ValueError("Give either latency_func or deployment, not both: latency_func replaces the timing.")
        from autonas_dynamic import DepthHparam, is_dynamic

        self.model = model
        self.dummy_input = dummy_input
        #: The validated deployment (``None`` when a ``latency_func`` replaces the built-in timing).
        self.deployment: Deployment | None = None
        self.latency_func: Callable[[nn.Module, Any], float]
        if latency_func is None:
            self.deployment = Deployment.parse(deployment)
            self.latency_func = self.deployment.measure
        else:
            self.latency_func = latency_func
        named = list(model_space(model).named_hparams(configurable=True)) if is_dynamic(model) else []
        self._hparams = [hp for _, hp in named]
        self._depth_hparams = [hp for hp in self._hparams if isinstance(hp, DepthHparam)]
        #: measured latency of each subnet (by its active hparam values): a subnet is timed once
        self._measured: dict[tuple[Any, ...], float] = {}
        self.interpolation_keys: tuple[str, ...] = ("flops", "flops_min_depth") if self._depth_hparams else ("flops",)
        self._interpolator = LatencyInterpolator(len(self.interpolation_keys))
        self._costs = self._build_cost_model()
        self._cached: tuple[tuple[Any, ...] | None, dict[str, float]] = (None, {})

        tracked = {"params", "flops", *asked}
        if "latency" in asked:
            tracked.update(self.interpolation_keys)
        #: The tracked keys, in evaluation order.
        self.keys = [key for key in SUPPORTED_CONSTRAINTS if key in tracked]

    def _build_cost_model(self) -> Any:
        """The closed-form cost model, recorded once at the active subnet in eval mode with patches off."""
        from autonas_dynamic.cost import CostModel

        with frozen_eval(self.model):
            return CostModel(self.model, self.dummy_input)

    def evaluate(self, keys: list[str] | None = None, measure_latency: bool = False) -> dict[str, float]:
        """The values of ``keys`` (default: every tracked key) at the active subnet.

        FLOPs and params are closed-form (no forward); latency is timed in eval mode with
        patches off.

        Args:
            keys: Which keys to evaluate (dependencies such as latency's coordinates come along).
            measure_latency: Time the latency instead of interpolating it (the point is added to
                the interpolator; a subnet measured before keeps its first measurement).
        """
        wanted = set(self.keys if keys is None else keys)
        if "latency" in wanted:
            wanted.update(self.interpolation_keys)
        values: dict[str, float] = {}
        for key in SUPPORTED_CONSTRAINTS:
            if key in wanted:
                values[key] = self._value(key, values, measure_latency)
        return {key: values[key] for key in (keys or self.keys)}

    def cost_function(self, key: str) -> CostFunc:
        """``key`` as an ``autonas_search`` cost function: it reads the active subnet (the searcher selected it).

        Every tracked key is evaluated once per subnet; the searcher asks for them one at a time.
        """
        if key not in self.keys:
            raise KeyError(f"{key!r} is not tracked; tracked keys are {self.keys}")
        return lambda _config: self._cached_values()[key]

    def _subnet(self) -> tuple[Any, ...]:
        """The active value of every configurable hparam: identifies the active subnet."""
        return tuple(map(_ACTIVE, self._hparams))

    def _cached_values(self) -> dict[str, float]:
        subnet = self._subnet()
        if self._cached[0] != subnet:
            self._cached = (subnet, self.evaluate())
        return self._cached[1]

    def _value(self, key: str, values: dict[str, float], measure_latency: bool) -> float:
        if key == "params":
            return float(self._costs.params())
        if key == "flops":
            return float(self._costs.flops())
        if key == "flops_min_depth":
            return float(self._flops_at_min_depth())
        return self._latency(tuple(values[k] for k in self.interpolation_keys), measure_latency)

    def _flops_at_min_depth(self) -> int:
        previous = [hp.active for hp in self._depth_hparams]
        try:
            for hp in self._depth_hparams:
                hp.active = hp.min
            return self._costs.flops()
        finally:
            for hp, value in zip(self._depth_hparams, previous, strict=True):
                hp.active = value

    def _latency(self, coords: tuple[float, ...], measure: bool) -> float:
        latency = math.nan if measure else self._interpolator(coords)
        if math.isnan(latency):
            subnet = self._subnet()
            if subnet in self._measured:
                return self._measured[subnet]
            with frozen_eval(self.model):
                latency = float(self.latency_func(self.model, self.dummy_input))
            self._measured[subnet] = latency
            self._interpolator.add_point(coords, latency)
            self._cached = (None, {})  # interpolated values of other subnets may change with the new point
        return latency

    def interpolated_latency(self) -> float:
        """The latency interpolated at the active subnet, measuring nothing (NaN outside the measured range)."""
        values = self.evaluate(keys=list(self.interpolation_keys))
        return self._interpolator(tuple(values[key] for key in self.interpolation_keys))


class ModelConstraints(ConstraintsFunc):
    """The constraints of one search over one model: a ``ConstraintsFunc`` over its :class:`ModelCosts`.

    Args:
        model: A converted (or plain) model.
        constraints: ``{key: limit}`` with keys from ``params``, ``flops``, ``flops_min_depth``,
            ``latency``. A limit is a number (upper bound, raw units: FLOPs, parameters,
            milliseconds), a string ``"N%"`` (N percent of the value of the original model,
            measured in eval mode with patches disabled), ``None`` (tracked, unconstrained), or a
            ``(lower, upper)`` pair (tuple or list) of those, where ``None`` leaves that side
            open. Limits are read by :meth:`autonas_search.ConstraintsFunc.parse_limit`, as in
            standalone search; the costs here are never negative, so neither are their bounds.
        dummy_input: Input of the recorded forward (and of latency measurements).
        latency_func: Replaces the built-in latency timing, see :class:`ModelCosts`.
        deployment: Where latency is measured, see :class:`ModelCosts`.

    Every tracked cost (see :attr:`ModelCosts.keys`) is a constraint; the untracked ones have no
    limit. ``costs`` holds the :class:`ModelCosts`.

    Raises:
        KeyError: A constraint or deployment key is not supported (the message lists the supported ones).
        TypeError: A limit, or one of its bounds, or a deployment value has a type that is not allowed.
        ValueError: A limit is malformed or negative (the message names the key and the value), a
            deployment value is not allowed, or both ``latency_func`` and ``deployment`` are given.
    """

    def __init__(
        self,
        model: nn.Module,
        constraints: Mapping[str, Any],
        dummy_input: Any,
        latency_func: Callable[[nn.Module, Any], float] | None = None,
        deployment: Mapping[str, Any] | None = None,
    ) -> None:
        self.costs = ModelCosts(model, constraints, dummy_input, latency_func=latency_func, deployment=deployment)
        funcs = {key: (self.costs.cost_function(key), constraints.get(key)) for key in self.costs.keys}
        super().__init__(funcs, ModelSearchSpace(model))
        for key, (lower, _) in self.limits.items():
            if lower < 0:
                raise ValueError(
                    f"limit of {key!r} is {constraints[key]!r}; {key} is never negative, so its bounds must not be either"
                )

    @property
    def model(self) -> nn.Module:
        """The model whose costs are constrained."""
        return self.costs.model
