"""The closed-form cost model: FLOPs and parameters of the active subnet without a forward.

Built once over a converted model, :class:`CostModel` records the costed aten calls of a few
inference forwards, run on meta tensors (:mod:`~autonas_dynamic.cost.forwards`) -- the largest
subnet, then probed subnets that each change several configurable hparams
(:mod:`~autonas_dynamic.cost.probing`) -- and learns, for every dimension in
every cost term, which hparam values it follows (:mod:`~autonas_dynamic.cost.fit`); hparams whose
effects the shared subnets cannot tell apart get subnets of their own. Calls inside a block of a dynamic
``Sequential`` are gated by its depth (each call of a block that fills several positions by its own position). The result is a sum of gated monomials over the active
hparam values (:mod:`~autonas_dynamic.cost.polynomial`), checked at build time against recorded
forwards of the narrowest subnet with every block, the smallest and random subnets, and evaluated in microseconds.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from torch import nn

from ..dynamic import distinct_hparams
from ..errors import CostModelError
from ..hparam import DepthHparam
from .fit import DimensionFitter, Monomial, NeedIsolation, UnexplainedDimension, multiply
from .forwards import ProbeForwards
from .polynomial import GatedTerm, Polynomials
from .probing import Variables, applied, coded_subnets, isolated_subnets, plan_probes, random_subnets
from .recorder import OpRecord
from .structure import Gate, depth_hparam, repeated_blocks, walk_modules

__all__ = ["CostModel", "CostModelError"]

#: Subnets checked against a real forward at build time: the smallest one and random ones.
NUM_CHECKED_SUBNETS = 3


@dataclass(frozen=True, eq=False)
class _ParameterSlot:
    """A distinct parameter: where it is registered and which blocks must run for it to exist."""

    module_name: str
    module: nn.Module
    name: str
    gates: tuple[Gate, ...]

    @property
    def label(self) -> str:
        return f"{self.module_name}.{self.name}" if self.module_name else self.name

    def shape(self) -> tuple[int, ...]:
        return tuple(getattr(self.module, self.name).shape)


@dataclass(frozen=True)
class _Snapshot:
    """What one subnet looks like: hparam values, costed calls, parameter shapes."""

    variables: list[int]
    ops: dict[tuple[str, int], OpRecord]
    shapes: list[tuple[int, ...]]


class _Collecting:
    """Fits with a :class:`DimensionFitter`, collecting the probes that need isolated subnets."""

    def __init__(self, fitter: DimensionFitter) -> None:
        self.fitter = fitter
        self.needed: set[int] = set()

    def __call__(self, values: Sequence[int]) -> Monomial:
        try:
            return self.fitter.fit(values)
        except NeedIsolation as need:
            self.needed |= need.probes
            return Fraction(0), ()


class _Layout:
    """What the cost model reads from a converted model: hparams, variables, gates, parameters."""

    def __init__(self, model: nn.Module, dummy_input: Any, *, meta_forwards: bool) -> None:
        self.model = model
        self.forwards = ProbeForwards(model, dummy_input, meta=meta_forwards)
        self.hparams = list(distinct_hparams(model))
        modules = list(walk_modules(model))
        depth_ids = {id(hp) for _, module, _ in modules if (hp := depth_hparam(module)) is not None}
        depth_ids |= {id(hp) for _, hp in self.hparams if isinstance(hp, DepthHparam)}
        varying = [(name, hp) for name, hp in self.hparams if len(hp.choices) > 1 and _is_size(hp.original)]
        # Sizes first, then depths: only the former are fitted, the latter gate.
        self.varying = sorted(varying, key=lambda item: id(item[1]) in depth_ids)
        self.variables = Variables([hp for _, hp in self.varying])
        self.configurable = [hp for _, hp in self.hparams if hp.is_configurable]
        self.probed = [(name, hp) for name, hp in self.hparams if hp.is_configurable and id(hp) not in depth_ids]
        gates = {name: tuple(gate for gate in module_gates if gate.can_close) for name, _, module_gates in modules}
        self.slots = _parameter_slots(modules, gates)
        self.gate_positions = {
            name: tuple((self.variables.position[id(gate.depth), None], gate.index) for gate in module_gates)
            for name, module_gates in gates.items()
        }
        try:
            repeats = repeated_blocks(model)
        except ValueError as error:
            raise CostModelError(f"the calls of a repeated block cannot be told apart: {error}") from None
        #: Modules inside a block that fills several positions of a dynamic Sequential whose depth varies.
        self.repeats = {
            name: repeats[id(module)]
            for name, module, _ in modules
            if id(module) in repeats and len(repeats[id(module)].depth.choices) > 1
        }

    def call_gates(self, record: OpRecord, calls_per_module: Counter[str]) -> tuple[tuple[int, int], ...]:
        """The gates of one costed call of the largest subnet.

        A call of a module is gated by the blocks its module lives in; inside a block that fills
        several positions, the i-th group of ``calls_per_module[module] / positions`` calls belongs
        to the i-th position, whose gate replaces that of the first.
        """
        gates = self.gate_positions[record.module]
        repeat = self.repeats.get(record.module)
        if repeat is None:
            return gates
        positions = repeat.positions
        per_position, rest = divmod(calls_per_module[record.module], len(positions))
        if rest:
            raise CostModelError(
                f"{_where(record.op, record.module, record.index)}: the block it lives in fills {len(positions)} "
                f"positions but the module makes {calls_per_module[record.module]} costed calls"
            )
        variable = self.variables.position[id(repeat.depth), None]
        position = positions[record.index // per_position]
        kept = tuple(gate for gate in gates if gate != (variable, positions[0]))
        return (*kept, (variable, position)) if repeat.depth.min <= position else kept

    def snapshot(self, subnet: dict[int, Any], *, real: bool = False) -> _Snapshot:
        """Select ``subnet`` (unlisted hparams at their maximum), record it, select the previous subnet again.

        The forward runs on meta tensors while :attr:`forwards` allows it, unless ``real`` is set.
        """
        with applied(self.configurable, subnet):
            records = self.forwards.record(real=real)
            shapes = [slot.shape() for slot in self.slots]
            return _Snapshot(self.variables.read(), {record.key: record for record in records}, shapes)

    def checked_snapshots(self, subnets: Sequence[dict[int, Any]]) -> list[_Snapshot]:
        """Snapshots of ``subnets``; the first is recorded with a real forward too, which must agree.

        When the meta forward records other costed calls than the real one, every later forward is
        real (and the other subnets are recorded again).
        """
        shots = [self.snapshot(subnet) for subnet in subnets]
        if not shots or not self.forwards.on_meta:
            return shots
        real = self.snapshot(subnets[0], real=True)
        difference = _first_difference(real.ops, shots[0].ops)
        if difference is not None:
            self.forwards.fall_back(f"on meta tensors its forward records other costs than on real ones ({difference})")
            shots = [real, *(self.snapshot(subnet) for subnet in subnets[1:])]
        return shots


class CostModel:
    """FLOPs and parameter count of the active subnet of a converted model, in closed form.

    Building runs a few inference forwards (the largest subnet, probed subnets that change several
    hparams at once, and four checks), on meta tensors: only shapes matter, so they cost
    milliseconds at any input size (:mod:`~autonas_dynamic.cost.forwards`); one real forward (every
    width at its smallest, every block kept) confirms that the meta forwards record what real ones
    do. Afterwards :meth:`flops` and :meth:`params` read the active hparam values and evaluate a
    precompiled polynomial, with no forward. Both equal :func:`~autonas_dynamic.cost.count_flops` /
    :func:`~autonas_dynamic.cost.count_params` of the exported subnet, for every subnet.

    Args:
        model: A converted model (dynamic modules with their shared hparams installed) or any
            plain model (then both costs are constants). Its active subnet is restored after building.
        dummy_input: The forward's input, as for :func:`~autonas_dynamic.cost.count_flops`.
        meta_forwards: Run the probe forwards on meta tensors where the model allows it (a model
            whose forward needs values falls back to real forwards, with a ``RuntimeWarning``
            that says why). ``False``: every forward is real.

    Raises:
        CostModelError: If some cost does not follow the hparams in closed form (the message
            names the module, the aten call and the hparam).

    Example:
        >>> costs = CostModel(model, torch.randn(1, 3, 224, 224))
        >>> space.select(config)
        >>> costs.flops(), costs.params()
    """

    def __init__(self, model: nn.Module, dummy_input: Any, *, meta_forwards: bool = True) -> None:
        layout = _Layout(model, dummy_input, meta_forwards=meta_forwards)
        checks = random_subnets(layout.configurable, NUM_CHECKED_SUBNETS) if layout.configurable else []
        # Every size at its smallest and every block kept: the cheapest real forward that runs every costed call.
        narrowest = {id(hparam): hparam.min for _, hparam in layout.probed}
        with applied(layout.configurable):
            checked = layout.checked_snapshots([narrowest, *checks] if checks else [])
            op_terms, slot_terms, snapshots = _learn(layout, isolate=False)
            #: Forwards run to build the model (on meta tensors or real ones), the real check excluded.
            self.num_forwards = len(checked) + len(snapshots)
            try:
                for shot in checked:
                    _check(shot, op_terms, slot_terms, layout.slots)
            except CostModelError:
                # A coincidence on the shared probed subnets; probing one hparam at a time is unambiguous.
                op_terms, slot_terms, snapshots = _learn(layout, isolate=True)
                self.num_forwards += len(snapshots)
                for shot in checked:
                    _check(shot, op_terms, slot_terms, layout.slots)
        #: Whether the probe forwards ran on meta tensors (``False`` when they had to run for real).
        self.meta_forwards = layout.forwards.on_meta
        all_terms = [*op_terms.values(), *slot_terms]
        used = {p for terms in all_terms for term in terms for p in (*term.factors, *(g for g, _ in term.gates))}
        used_ids = {id(layout.variables.owners[p]) for p in used}
        self._variables = Variables([hp for _, hp in layout.varying if id(hp) in used_ids])
        remap = _position_map(layout.variables, self._variables)
        flop_terms = [_reindex(term, remap) for terms in op_terms.values() for term in terms]
        param_terms = [_reindex(term, remap) for terms in slot_terms for term in terms]
        self._costs = Polynomials([flop_terms, param_terms], self._variables.maxima)
        self._last: tuple[list[int], list[int]] | None = None

    def _evaluate(self) -> list[int]:
        """``[flops, params]`` of the active subnet (the last result is reused while the subnet is the same)."""
        values = self._variables.read()
        if self._last is None or self._last[0] != values:
            self._last = values, self._costs(values)
        return self._last[1]

    def flops(self) -> int:
        """FLOPs (``2 x MACs``) of one forward of the active subnet on the dummy input."""
        return self._evaluate()[0]

    def params(self) -> int:
        """Number of parameters of the active subnet (of its exported model)."""
        return self._evaluate()[1]

    def __repr__(self) -> str:
        flop_terms, param_terms = self._costs.num_terms
        return (
            f"CostModel({len(self._variables.hparams)} hparams, {flop_terms} FLOP terms, {param_terms} parameter terms)"
        )


def _learn(
    layout: _Layout, *, isolate: bool
) -> tuple[dict[tuple[str, int], list[GatedTerm]], list[list[GatedTerm]], list[_Snapshot]]:
    """Record the largest and the probed subnets and fit every cost term (adding isolated probes as needed).

    Args:
        layout: The model's layout.
        isolate: Probe every hparam on subnets of its own instead of on shared (coded) subnets.
    """
    probes = plan_probes(layout.probed, layout.variables)
    probed = [s for probe in probes for s in isolated_subnets(probe)] if isolate else coded_subnets(probes)
    subnets: list[dict[int, Any]] = [{}, *probed]
    snapshots: list[_Snapshot] = []
    while True:
        snapshots += [layout.snapshot(subnet) for subnet in subnets[len(snapshots) :]]
        fit = _Collecting(DimensionFitter(probes, subnets, [shot.variables for shot in snapshots]))
        op_terms = _fit_ops(snapshots, fit, layout)
        slot_terms = _fit_parameters(layout.slots, snapshots, fit, layout.gate_positions)
        if not fit.needed:
            return op_terms, slot_terms, snapshots
        subnets += [subnet for p in sorted(fit.needed) for subnet in isolated_subnets(probes[p])]


def _first_difference(expected: dict[tuple[str, int], OpRecord], actual: dict[tuple[str, int], OpRecord]) -> str | None:
    """Where two recordings of one subnet differ (the first such costed call), or ``None`` if they agree."""
    for key in sorted(expected.keys() | actual.keys()):
        if expected.get(key) != actual.get(key):
            record = expected.get(key) or actual[key]
            return _where(record.op, record.module, record.index)
    return None


def _is_size(value: Any) -> bool:
    """Whether an hparam value is a size (an int or a tuple of ints) that tensor dimensions can follow."""
    values = value if isinstance(value, tuple) else (value,)
    return all(isinstance(v, int) and not isinstance(v, bool) for v in values)


def _parameter_slots(
    modules: Sequence[tuple[str, nn.Module, tuple[Gate, ...]]], gates: dict[str, tuple[Gate, ...]]
) -> list[_ParameterSlot]:
    """Every distinct parameter once; a parameter shared by differently gated modules is refused."""
    slots: dict[int, _ParameterSlot] = {}
    for module_name, module, _ in modules:
        for name, stored in module._parameters.items():
            if stored is None:
                continue
            slot = _ParameterSlot(module_name, module, name, gates[module_name])
            first = slots.setdefault(id(stored), slot)
            if _gate_key(first.gates) != _gate_key(slot.gates):
                raise CostModelError(
                    f"parameter {first.label!r} is also registered as {slot.label!r}, in blocks of a dynamic "
                    "Sequential that are dropped at different depths; its count is not a closed-form sum"
                )
    return list(slots.values())


def _gate_key(gates: tuple[Gate, ...]) -> set[tuple[int, int]]:
    return {(id(gate.depth), gate.index) for gate in gates}


def _describe(error: UnexplainedDimension) -> str:
    probe = error.probe
    if probe is None:
        return f"is {error.values[0]} on the largest subnet and changes on probed subnets where no size it could follow does"
    values = ", ".join(
        f"{value} when it is {choice!r}" for value, choice in zip(error.values[1:], probe.choices, strict=True)
    )
    return (
        f"is {error.values[0]} on the largest subnet and {values}; it follows none of the sizes "
        f"that hparam {probe.name!r} sets"
    )


def _where(op: str, module: str, index: int) -> str:
    place = f"module {module!r}" if module else "the root module"
    return f"{op} in {place} (costed call {index})"


def _fit_ops(
    snapshots: Sequence[_Snapshot], fit: _Collecting, layout: _Layout
) -> dict[tuple[str, int], list[GatedTerm]]:
    """The gated terms of every costed call of the largest subnet."""
    largest = snapshots[0].ops
    calls_per_module = Counter(module for module, _ in largest)
    for state, shot in enumerate(snapshots[1:], start=1):
        for key in shot.ops.keys() - largest.keys():
            record = shot.ops[key]
            raise CostModelError(
                f"{_where(record.op, record.module, record.index)} runs on a probed subnet (state {state}) but "
                "not on the largest one; its cost is not a closed-form function of the hparams"
            )
    fitted: dict[tuple[str, int], list[GatedTerm]] = {}
    for key, record in largest.items():
        where = _where(record.op, record.module, record.index)
        others = [shot.ops.get(key) for shot in snapshots[1:]]
        if any(other is None or other.op != record.op or len(other.terms) != len(record.terms) for other in others):
            raise CostModelError(f"{where} does not run the same way on every probed subnet")
        terms = []
        for t, (coefficient, dims) in enumerate(record.terms):
            monomials: list[Monomial] = []
            for d in range(len(dims)):
                values = [dims[d], *(other.terms[t][1][d] for other in others)]  # type: ignore[union-attr]
                try:
                    monomials.append(fit(values))
                except UnexplainedDimension as error:
                    raise CostModelError(
                        f"cannot express the cost of {where}: dimension {d} {_describe(error)}"
                    ) from None
            product, factors = multiply(monomials, coefficient)
            terms.append(GatedTerm(product, factors, layout.call_gates(record, calls_per_module)))
        fitted[key] = terms
    return fitted


def _fit_parameters(
    slots: Sequence[_ParameterSlot],
    snapshots: Sequence[_Snapshot],
    fit: _Collecting,
    gate_positions: dict[str, tuple[tuple[int, int], ...]],
) -> list[list[GatedTerm]]:
    """One gated term per parameter: its number of elements."""
    fitted = []
    for index, slot in enumerate(slots):
        shapes = [shot.shapes[index] for shot in snapshots]
        monomials = []
        for d in range(len(shapes[0])):
            try:
                monomials.append(fit([shape[d] for shape in shapes]))
            except UnexplainedDimension as error:
                raise CostModelError(
                    f"cannot express the size of parameter {slot.label!r}: dimension {d} {_describe(error)}"
                ) from None
        product, factors = multiply(monomials)
        fitted.append([GatedTerm(product, factors, gate_positions[slot.module_name])])
    return fitted


def _check(
    shot: _Snapshot,
    op_terms: dict[tuple[str, int], list[GatedTerm]],
    slot_terms: Sequence[list[GatedTerm]],
    slots: Sequence[_ParameterSlot],
) -> None:
    """Compare the closed form with a recorded forward of another subnet, call by call."""
    for key, terms in op_terms.items():
        runs = terms[0].is_open(shot.variables)
        record = shot.ops.get(key)
        where = _where(record.op if record else "the costed call", *key)
        if runs and record is None:
            raise CostModelError(f"{where} did not run on a checked subnet although its block was active")
        if not runs and record is not None:
            raise CostModelError(f"{where} ran on a checked subnet although its block was dropped")
        if record is not None:
            predicted = sum((term.value(shot.variables) for term in terms), Fraction(0))
            if predicted != record.flops:
                raise CostModelError(
                    f"cannot express the cost of {where} in closed form: a checked subnet has "
                    f"{record.flops} FLOPs where the fitted hparam dependence predicts {predicted}"
                )
    extra = shot.ops.keys() - op_terms.keys()
    if extra:
        record = shot.ops[min(extra)]
        raise CostModelError(
            f"{_where(record.op, record.module, record.index)} runs on a checked subnet but not on the largest one"
        )
    for slot, (term,), shape in zip(slots, slot_terms, shot.shapes, strict=True):
        predicted = term.value(shot.variables)
        actual = _numel(shape) if term.is_open(shot.variables) else 0
        if predicted != actual:
            raise CostModelError(
                f"cannot express the size of parameter {slot.label!r} in closed form: a checked subnet has {actual} "
                f"elements where the fitted hparam dependence predicts {predicted}"
            )


def _numel(shape: tuple[int, ...]) -> int:
    total = 1
    for size in shape:
        total *= size
    return total


def _position_map(old: Variables, new: Variables) -> dict[int, int]:
    return {position: new.position[key] for key, position in old.position.items() if key in new.position}


def _reindex(term: GatedTerm, remap: dict[int, int]) -> GatedTerm:
    return GatedTerm(
        term.coefficient,
        tuple(sorted(remap[f] for f in term.factors)),
        tuple((remap[g], index) for g, index in term.gates),
    )
