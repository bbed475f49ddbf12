"""ConstraintsFunc: limits in every form, relative lower bounds, evaluation and errors."""

from __future__ import annotations

import math

import pytest
from search_problem import CHOICES, MAX_FLOPS, flops, params

from autonas_search import ChoiceSpace, ConstraintsFunc


def test_limit_forms_normalise_to_bounds() -> None:
    func = ConstraintsFunc(
        {"flops": (flops, 1e5), "params": (params, (100, 2000)), "latency": (flops, None), "n": (params, 7)}
    )
    assert func.limits == {
        "flops": (0.0, 1e5),
        "params": (100.0, 2000.0),
        "latency": (0.0, math.inf),
        "n": (0.0, 7.0),
    }
    assert func.effective_limits == {"flops": (0.0, 1e5), "params": (100.0, 2000.0), "n": (0.0, 7.0)}
    assert func.names == ["flops", "params", "latency", "n"]


def test_percentage_is_measured_at_the_original_config_and_restores_the_space() -> None:
    space = ChoiceSpace(CHOICES)
    smallest = {name: values[0] for name, values in space.hparams().items()}
    space.select(smallest)
    func = ConstraintsFunc({"flops": (flops, "60%"), "params": (params, " 25.5% ")}, space)
    original = space.original()
    assert func.limits["flops"] == (0.0, pytest.approx(0.6 * MAX_FLOPS))
    assert func.limits["params"] == (0.0, pytest.approx(0.255 * params(original)))
    assert space.config() == {**space.original(), **smallest}
    func.limits = {"flops": "10%"}
    assert func.limits["flops"] == (0.0, pytest.approx(0.1 * MAX_FLOPS))


def test_pairs_may_be_lists_with_open_and_percentage_bounds() -> None:
    space = ChoiceSpace(CHOICES)
    func = ConstraintsFunc(
        {"a": (flops, [100, None]), "b": (flops, (None, 7)), "c": (flops, ("20%", "60%")), "d": (flops, (-5, -1))},
        space,
    )
    assert func.limits == {
        "a": (100.0, math.inf),
        "b": (0.0, 7.0),
        "c": (pytest.approx(0.2 * MAX_FLOPS), pytest.approx(0.6 * MAX_FLOPS)),
        "d": (-5.0, -1.0),
    }


def test_parse_limit_asks_for_the_reference_once_and_only_for_percentages() -> None:
    calls = []

    def reference() -> float:
        calls.append(1)
        return 200.0

    parse = ConstraintsFunc.parse_limit
    assert parse("x", 50, reference) == (0.0, 50.0) and parse("x", (1, None), reference) == (1.0, math.inf)
    assert calls == []
    assert parse("x", ["10%", " 50% "], reference) == (20.0, 100.0) and len(calls) == 1
    assert parse("x", None) == (0.0, math.inf)
    with pytest.raises(ValueError, match="limit of 'x' is a percentage, but nothing gives the value it refers to"):
        parse("x", "50%")


def test_evaluation_checks_every_bound() -> None:
    space = ChoiceSpace(CHOICES)
    config = space.config()
    value = flops(config)
    for limit, satisfied in [(value, True), (value - 1, False), ((value, value), True), ((value + 1, 1e12), False)]:
        func = ConstraintsFunc({"flops": (flops, limit), "params": (params, None)})
        assert func(config) == (satisfied, {"flops": value, "params": params(config)})


def test_relative_lower_bounds_only_where_there_is_none() -> None:
    func = ConstraintsFunc(
        {"a": (flops, 1000), "b": (flops, (10, 100)), "c": (flops, None), "d": (flops, (5, math.inf))}
    )
    func.set_rel_lower_bounds(0.85)
    assert func.limits == {"a": (850.0, 1000.0), "b": (10.0, 100.0), "c": (0.0, math.inf), "d": (5.0, math.inf)}
    with pytest.raises(ValueError, match=r"rel_lower must be a number in \[0, 1\], got 1.5"):
        func.set_rel_lower_bounds(1.5)


def test_value_ranges_are_the_costs_of_the_smallest_and_largest_configs_and_restore_the_space() -> None:
    space = ChoiceSpace(CHOICES)
    space.select({"layer2.width": 16})
    active = space.config()
    func = ConstraintsFunc({"flops": (flops, 1e5), "neg": (lambda c: -flops(c), None)}, space)
    smallest = {**{name: values[0] for name, values in CHOICES.items()}}
    largest = {**{name: values[-1] for name, values in CHOICES.items()}}
    assert func.value_ranges() == {
        "flops": (flops(smallest), MAX_FLOPS),
        "neg": (-MAX_FLOPS, -flops(smallest)),  # a cost that falls with the choices
    }
    assert flops(largest) == MAX_FLOPS and space.config() == active
    with pytest.raises(ValueError, match="value_ranges needs a search space"):
        ConstraintsFunc({"flops": (flops, 1e5)}).value_ranges()


@pytest.mark.parametrize("limit", [1.5 * MAX_FLOPS, 1e12, "150%"])
def test_relative_lower_bound_is_clamped_to_the_largest_value_the_space_reaches(limit: object) -> None:
    func = ConstraintsFunc({"flops": (flops, limit), "small": (flops, 0.5 * MAX_FLOPS)}, ChoiceSpace(CHOICES))
    upper = func.limits["flops"][1]
    func.set_rel_lower_bounds(0.85)
    assert func.limits == {
        "flops": (pytest.approx(0.85 * MAX_FLOPS), upper),  # not 0.85 * upper, above every config
        "small": (pytest.approx(0.85 * 0.5 * MAX_FLOPS), 0.5 * MAX_FLOPS),  # within reach: as before
    }
    unbound = ConstraintsFunc({"flops": (flops, 1e12)})  # no space: the upper bound is the budget
    unbound.set_rel_lower_bounds(0.85)
    assert unbound.limits == {"flops": (0.85e12, 1e12)}
    unbound.set_rel_lower_bounds(0.85, ChoiceSpace(CHOICES))  # already banded: left alone
    assert unbound.limits == {"flops": (0.85e12, 1e12)}
    given = ConstraintsFunc({"flops": (flops, 1e12)})
    given.set_rel_lower_bounds(0.85, ChoiceSpace(CHOICES))
    assert given.limits == {"flops": (pytest.approx(0.85 * MAX_FLOPS), 1e12)}


def test_copy_has_its_own_limits() -> None:
    func = ConstraintsFunc({"a": (flops, 1000)})
    clone = func.copy()
    clone.set_rel_lower_bounds()
    assert func.limits == {"a": (0.0, 1000.0)} and clone.limits == {"a": (850.0, 1000.0)}


def test_violation_is_relative_distance_to_the_bounds() -> None:
    func = ConstraintsFunc({"a": (flops, 100), "b": (flops, (50, 80))})
    assert func.violation({"a": 100, "b": 60}) == 0
    assert func.violation({"a": 150, "b": 40}) == pytest.approx(0.5 + 0.2)


@pytest.mark.parametrize(
    ("constraints", "error", "match"),
    [
        ([("a", (flops, 1))], TypeError, "must be a dict of name"),
        ({"a": flops}, TypeError, r"constraint 'a' must be a \(cost_function, limit\) tuple"),
        ({"a": (1000, flops)}, TypeError, r"constraint 'a' must be a \(cost_function, limit\) tuple"),
        ({3: (flops, 1)}, TypeError, "constraint names must be strings"),
        ({"a": (flops, "60")}, ValueError, "limit of 'a' is the string '60'; a string limit must be a percentage"),
        ({"a": (flops, "abc%")}, ValueError, "cannot read a percentage from 'abc%'"),
        ({"a": (flops, "-5%")}, ValueError, "percentage must be finite and >= 0"),
        ({"a": (flops, (5, 1))}, ValueError, "lower bound 5.0 exceeds upper bound 1.0"),
        ({"a": (flops, (1, "x"))}, ValueError, "limit of 'a' is the string 'x'; a string limit must be a percentage"),
        ({"a": (flops, (1, [2]))}, TypeError, r"bound \[2\] is not a number"),
        ({"a": (flops, -3)}, ValueError, "limit of 'a' is -3; an upper bound alone must be a non-negative number"),
        ({"a": (flops, True)}, TypeError, "limit of 'a' is True; allowed: a number"),
        ({"a": (flops, [1, 2, 3])}, ValueError, r"limit of 'a' is \[1, 2, 3\]; a pair must be \(lower, upper\)"),
        ({"a": (flops, {1, 2})}, TypeError, r"limit of 'a' is \{1, 2\}; allowed"),
        ({"a": (flops, math.nan)}, TypeError, "bound nan is not a number"),
        ({"a": (flops, "50%")}, ValueError, "percentage, which needs a search space with original"),
    ],
)
def test_bad_constraints_are_named(constraints: object, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        ConstraintsFunc(constraints)  # type: ignore[arg-type]


def test_bad_limit_updates_and_cost_values_are_named() -> None:
    func = ConstraintsFunc({"flops": (flops, 10), "text": (lambda config: "big", None)})
    with pytest.raises(KeyError, match=r"no constraint named \['latency'\]; constraints are: \['flops', 'text'\]"):
        func.limits = {"latency": 5}
    with pytest.raises(TypeError, match="cost function of constraint 'text' returned 'big'"):
        func(ChoiceSpace(CHOICES).config())
