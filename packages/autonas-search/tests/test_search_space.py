"""ChoiceSpace and the SearchSpace protocol."""

from __future__ import annotations

import pytest
from search_problem import CHOICES

from autonas_search import ChoiceSpace, EvolveSearcher, RandomSearcher, SearchSpace
from autonas_search.space import check_search_space


def test_choice_space_separates_configurable_from_fixed_hparams() -> None:
    space = ChoiceSpace(CHOICES)
    assert "act" not in space.hparams() and "act" in space.config()
    assert set(space.hparams()) == set(CHOICES) - {"act"}
    assert space.size() == 4**6 * 2 * 3
    assert isinstance(space, SearchSpace)


def test_choice_space_starts_at_original_and_selects_partially() -> None:
    space = ChoiceSpace({"width": [16, 32, 64], "depth": [1, 2]})
    assert space.config() == space.original() == {"width": 64, "depth": 2}
    space.select({"width": 16})
    assert space.config() == {"width": 16, "depth": 2}
    assert space.original() == {"width": 64, "depth": 2}
    custom = ChoiceSpace({"width": [16, 32, 64], "depth": [1, 2]}, original={"width": 32, "depth": 1})
    assert custom.config() == custom.original() == {"width": 32, "depth": 1}


def test_config_is_a_copy() -> None:
    space = ChoiceSpace({"width": [16, 32]})
    space.config()["width"] = 16
    assert space.config() == {"width": 32}


BAD_CHOICES = [
    ({"a": "abc"}, ValueError, "choices of 'a' must be a non-empty list or tuple, got 'abc'"),
    ({"a": []}, ValueError, r"choices of 'a' must be a non-empty list or tuple, got \[\]"),
    ({"a": 3}, ValueError, "choices of 'a' must be a non-empty list or tuple, got 3"),
    ({1: [1, 2]}, TypeError, "hparam names must be strings, got 1"),
    ({"a": [1, 2, 1]}, ValueError, r"choices of 'a' contain 1 twice: \[1, 2, 1\]"),
    ({"a": [1.0, float("nan")]}, ValueError, "choices of 'a' contain NaN"),
]


@pytest.mark.parametrize(
    ("choices", "error", "match"),
    [({}, ValueError, "non-empty dict"), ([("a", [1, 2])], ValueError, "non-empty dict"), *BAD_CHOICES],
)
def test_bad_choices_are_named(choices: object, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        ChoiceSpace(choices)  # type: ignore[arg-type]


@pytest.mark.parametrize("searcher_cls", [RandomSearcher, EvolveSearcher])
@pytest.mark.parametrize(("choices", "error", "match"), BAD_CHOICES)
def test_bad_choices_of_a_custom_space_get_the_choice_space_error(
    searcher_cls: type, choices: dict, error: type, match: str
) -> None:
    class CustomSpace:
        def hparams(self) -> dict:
            return {"b": [1, 2], **choices}

        def config(self) -> dict:
            return {"b": 1}

        def select(self, config: dict) -> None:
            pass

    with pytest.raises(error, match=r"^CustomSpace.hparams\(\): " + match):
        searcher_cls().search(CustomSpace(), {"cost": (lambda c: 1.0, None)}, {"score_func": lambda c: 1.0})
    with pytest.raises(error, match=r"^ChoiceSpace: " + match):
        ChoiceSpace({"b": [1, 2], **choices})


def test_bad_selections_are_named() -> None:
    space = ChoiceSpace({"width": [16, 32], "depth": [1, 2]})
    with pytest.raises(KeyError, match=r"unknown hparam\(s\) \['widht'\].*'depth', 'width'"):
        space.select({"widht": 16})
    with pytest.raises(ValueError, match=r"48 is not a choice of 'width'; allowed: \[16, 32\]"):
        space.select({"width": 48})
    with pytest.raises(TypeError, match="must be a dict"):
        space.select([("width", 16)])  # type: ignore[arg-type]
    with pytest.raises(KeyError, match=r"config lacks hparam\(s\) \['depth'\]"):
        ChoiceSpace({"width": [16, 32], "depth": [1, 2]}, original={"width": 16})
    assert space.config() == {"width": 32, "depth": 2}


def test_check_search_space_names_missing_methods() -> None:
    class HalfSpace:
        def hparams(self) -> dict:
            return {}

    with pytest.raises(TypeError, match=r"HalfSpace is not a search space: it lacks config\(\), select\(\)"):
        check_search_space(HalfSpace())
