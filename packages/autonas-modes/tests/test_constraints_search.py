"""Constraints (analytic FLOPs/params, percentages, latency), profile() and search() on a small CNN."""

from __future__ import annotations

import copy
import math
import random

import pytest
import torch
import torch.nn as nn
from modes_models import RULES, FlopsLatency, make_tiny

import autonas_modes as am
from autonas_dynamic.cost import count_flops, count_params
from autonas_modes.constraints import ModelConstraints


def _exported_costs(model: nn.Module, dummy: torch.Tensor) -> tuple[int, int]:
    plain = copy.deepcopy(model)
    am.export(plain)
    plain.eval()
    return count_flops(plain, dummy), count_params(plain)


def test_unsupported_constraint_keys_list_the_supported_ones(space: nn.Module, images: torch.Tensor) -> None:
    with pytest.raises(
        KeyError, match=r"Unsupported constraint keys \['macs'\]; supported keys are \['params', 'flops'"
    ):
        ModelConstraints(space, {"macs": 1e6}, images)


@pytest.mark.parametrize(
    ("limit", "message"),
    [
        ("60", "must be a percentage"),
        ("abc%", "cannot read a percentage from 'abc%'"),
        (-1, "non-negative number"),
        ((-1, 5), "flops is never negative"),
        ([5, 1], "lower bound 5.0 exceeds upper bound 1.0"),
        ((1, 2, 3), "a pair must be \\(lower, upper\\)"),
    ],
)
def test_malformed_limits_name_the_key_and_value(
    space: nn.Module, images: torch.Tensor, limit: object, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        ModelConstraints(space, {"flops": limit}, images)


def test_a_limit_of_the_wrong_type_is_a_type_error(space: nn.Module, images: torch.Tensor) -> None:
    with pytest.raises(TypeError, match="limit of 'params': bound True is not a number"):
        ModelConstraints(space, {"params": (0, True)}, images)


def test_values_equal_the_counts_of_the_exported_subnet(space: nn.Module, images: torch.Tensor) -> None:
    functor = ModelConstraints(space, {"flops": None, "params": None}, images[:1])
    rng = random.Random(0)
    for func in (min, max, rng.choice, rng.choice, rng.choice):
        am.sample(space, func)
        flops, params = _exported_costs(space, images[:1])
        assert functor.costs.evaluate() == {"params": params, "flops": flops}
        assert functor(am.get_subnet_config(space)) == (True, {"params": params, "flops": flops})
    bounded = ModelConstraints(space, {"flops": (0, flops - 1)}, images[:1])
    assert bounded(am.get_subnet_config(space)) == (False, {"params": params, "flops": flops})


def test_percentages_refer_to_the_original_model_in_eval_mode_with_patches_off(images: torch.Tensor) -> None:
    original = make_tiny()
    flops, params = count_flops(original, images[:1]), count_params(original)
    model = am.convert(make_tiny(), mode=[("autonas", RULES)])
    am.sample(model, min)
    model.train()
    config = am.get_subnet_config(model)
    functor = ModelConstraints(model, {"flops": "60%", "params": "40%"}, images[:1])
    assert functor.limits["flops"] == (0.0, pytest.approx(0.6 * flops))
    assert functor.limits["params"] == (0.0, pytest.approx(0.4 * params))
    assert model.training and am.get_subnet_config(model) == config  # nothing sampled, flags restored
    pairs = ModelConstraints(model, {"flops": ["20%", "60%"], "params": ("40%", None)}, images[:1])
    assert pairs.limits["flops"] == (pytest.approx(0.2 * flops), pytest.approx(0.6 * flops))
    assert pairs.limits["params"] == (pytest.approx(0.4 * params), math.inf)


def test_fake_latency_is_measured_at_profile_points_and_interpolated_after(
    space: nn.Module, images: torch.Tensor
) -> None:
    fake_latency = FlopsLatency(ms_per_mflop=1.8, offset_ms=0.5)
    calls = fake_latency.calls
    functor = ModelConstraints(space, {"latency": 1e9}, images[:1], latency_func=fake_latency)
    assert functor.costs.interpolation_keys == ("flops", "flops_min_depth")  # the block stack has a depth hparam
    stats = am.profile(space, constraints=functor, verbose=False, use_centroid=True)
    # 9 sample points (the block stack has a depth hparam), then 3 random subnets check the interpolation
    assert len(calls) == 9 + 3 and {"min", "centroid", "max", "min_regular_max_depth"} <= set(stats)
    assert len(stats["latency interpolation"]["points"]) == 3
    assert stats["min"]["latency"] == pytest.approx(1.8 * stats["min"]["flops"] / 1e6 + 0.5)
    # mixed points are real subnets (the last matching glob wins): min widths at max depth cost more
    assert stats["min"]["flops"] < stats["min_regular_max_depth"]["flops"] < stats["max"]["flops"]
    rng = random.Random(1)
    for _ in range(5):
        am.sample(space, rng.choice)
        before = len(calls)
        truth = 1.8 * count_flops(space, images[:1]) / 1e6 + 0.5
        value = functor.costs.evaluate()["latency"]
        assert len(calls) - before <= 1  # interpolated, or measured once when outside the measured range
        assert value == pytest.approx(truth, rel=0.1)


def test_profile_numbers_equal_the_cost_model_and_the_plain_model(space: nn.Module, images: torch.Tensor) -> None:
    stats = am.profile(space, images[:1], verbose=False, use_centroid=True)
    for point, func in (("min", min), ("max", max)):
        am.sample(space, func)
        flops, params = _exported_costs(space, images[:1])
        assert stats[point] == {"params": params, "flops": flops}
    assert stats["search space size"] == am.search_space_size(space)
    assert stats["number of configurable hparams"] == len(list(am.named_hparams(space, configurable=True)))
    assert stats["max/min ratio"]["flops"] == pytest.approx(stats["max"]["flops"] / stats["min"]["flops"])
    plain = am.profile(make_tiny(), images[:1], verbose=False)
    assert set(plain) == {"full"} and plain["full"] == stats["max"]


def test_profile_prints_the_tables(space: nn.Module, images: torch.Tensor, capsys: pytest.CaptureFixture) -> None:
    am.profile(space, images[:1], constraints={"flops": "80%"})
    out = capsys.readouterr().out
    for text in (
        "Profiling Results",
        "Constraints Evaluation",
        "max/min ratio",
        "Total size of the search space",
        "all constraints can be satisfied",
    ):
        assert text in out


def test_profile_strict_raises_when_no_subnet_fits(space: nn.Module, images: torch.Tensor) -> None:
    with pytest.raises(ValueError, match=r"No subnet of the search space can satisfy.*flops"):
        am.profile(space, images[:1], constraints={"flops": 10}, strict=True, verbose=False)
    with pytest.warns(UserWarning, match="params"):
        am.profile(space, images[:1], constraints={"params": 10}, verbose=False)


def test_search_finds_a_subnet_within_85_to_100_percent_of_the_flops_limit(
    space: nn.Module, images: torch.Tensor
) -> None:
    limit = 0.6 * count_flops(make_tiny(), images[:1])
    scores = []

    def score(model: nn.Module) -> float:
        assert not model.training
        scores.append(1)
        return -float(count_params(model))  # prefer few parameters

    model, state = am.search(space, {"flops": "60%"}, images[:1], config={"score_func": score, "num_iters": 40})
    assert not am.is_dynamic(model)
    assert [m["mode"] for m in am.autonas_state(model)["modes"]] == ["autonas", "export_nas"]
    flops = count_flops(model, images[:1])
    assert 0.85 * limit <= flops <= limit
    assert state["best"]["constraints"]["flops"] == flops
    assert len(scores) == len([c for c in state["samples"].values() if c["is_satisfied"]])


def test_searched_model_equals_the_dynamic_model_at_the_best_subnet_with_recalibrated_bn(
    space: nn.Module, images: torch.Tensor
) -> None:
    batches = [(torch.randn(4, 3, 12, 12, generator=torch.Generator().manual_seed(i)), 0) for i in range(3)]
    reference = copy.deepcopy(space)
    model, state = am.search(
        space,
        {"params": "70%"},
        images[:1],
        config={"score_func": lambda m: float(m(images).mean().detach()), "num_iters": 15, "data_loader": batches},
    )
    from autonas_patch import no_patches, recalibrate_batchnorm

    am.select(reference, state["best"]["config"], strict=False)
    with no_patches():
        reference.eval()
    recalibrate_batchnorm(reference, lambda m: [m(x) for x, _ in batches])
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(images), reference(images))


def test_search_with_unsatisfiable_limits_is_a_clear_error(space: nn.Module, images: torch.Tensor) -> None:
    before = am.get_subnet_config(space)
    with pytest.raises(ValueError, match=r"No subnet of the search space can satisfy.*params"):
        am.search(space, {"params": 5}, images[:1], config={"score_func": lambda m: 0.0, "num_iters": 5})
    assert am.get_subnet_config(space) == before and am.is_dynamic(space)


def test_search_needs_a_converted_model_and_a_score(images: torch.Tensor) -> None:
    with pytest.raises(RuntimeError, match="not converted to a search space"):
        am.search(make_tiny(), {"flops": "60%"}, images[:1], config={"score_func": lambda m: 0.0})
    model = am.convert(make_tiny(), mode=[("autonas", RULES)])
    with pytest.raises(ValueError, match="score_func"):
        am.search(model, {"flops": "60%"}, images[:1], config={})
    with pytest.raises(ValueError, match="Unknown searcher 'grid'"):
        am.search(model, {"flops": "60%"}, images[:1], config={"score_func": lambda m: 0.0}, searcher="grid")


@pytest.mark.parametrize("searcher", ["random", "evolve", "RandomSearcher"])
def test_searcher_argument(searcher: str, space: nn.Module, images: torch.Tensor) -> None:
    import autonas_search

    chosen = getattr(autonas_search, searcher) if searcher[0].isupper() else searcher
    _, state = am.search(
        space,
        {"flops": "80%"},
        images[:1],
        config={"score_func": lambda m: 0.0, "num_iters": 40, "seed": 1},
        searcher=chosen,
    )
    assert state["iter_num"] == 40 and state["best"]["is_satisfied"]


def test_inference_flops_of_a_grouped_conv_and_units() -> None:
    conv = nn.Conv2d(2, 4, 3, groups=2, padding="same", bias=False)
    assert am.inference_flops(conv, data_shape=(1, 2, 3, 5), unit=1) == 2 * 4 * 3 * 5 * 1 * 9
    assert am.inference_flops(conv, torch.zeros(1, 2, 3, 5)) == pytest.approx(1080 / 1e6)
    assert am.inference_flops(conv, data_shape=(1, 2, 3, 5), return_str=True) == "1.08K"
    with pytest.raises(ValueError, match="exactly one of dummy_input and data_shape"):
        am.inference_flops(conv)


def test_inference_flops_and_param_count_follow_the_active_subnet(space: nn.Module, images: torch.Tensor) -> None:
    space.train()
    am.sample(space, min)
    config = am.get_subnet_config(space)
    flops, params = _exported_costs(space, images[:1])
    assert am.inference_flops(space, images[:1], unit=1) == flops
    assert am.param_count(space) == params
    assert space.training and am.get_subnet_config(space) == config


def test_search_that_satisfies_nothing_names_the_closest_candidate_and_keeps_the_model(
    space: nn.Module, images: torch.Tensor
) -> None:
    from autonas_search import NoSatisfiedCandidateError

    stats = am.profile(space, images[:1], verbose=False, use_centroid=True)
    before = am.get_subnet_config(space)
    space.train()
    with pytest.raises(NoSatisfiedCandidateError, match="Closest candidate"):
        am.search(
            space,
            {"flops": stats["min"]["flops"]},  # only the smallest subnet fits: profiling passes
            images[:1],
            config={"score_func": lambda m: 0.0, "num_iters": 3, "seed": 0},
            searcher="random",
        )
    assert am.get_subnet_config(space) == before and am.is_dynamic(space) and space.training
    from autonas_patch import PatchManager

    assert PatchManager.get_manager(space).patch_data["train_count_since_sample"] == 0  # BN stats stale


def test_search_refuses_an_executor(space: nn.Module, images: torch.Tensor) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool, pytest.raises(ValueError, match="'executor' is not supported"):
        am.search(space, {"flops": "80%"}, images[:1], config={"score_func": lambda m: 0.0, "executor": pool})


def test_search_under_a_latency_limit_and_flops_at_min_depth(space: nn.Module, images: torch.Tensor) -> None:
    def fake_latency(model: nn.Module, dummy: torch.Tensor) -> float:
        return 2.0 * count_flops(model, dummy) / 1e6 + 1.0

    max_latency = fake_latency(make_tiny(), images[:1])
    model, state = am.search(
        space,
        {"latency": "70%", "flops_min_depth": None},
        images[:1],
        config={"score_func": lambda m: 0.0, "num_iters": 30, "latency_func": fake_latency, "seed": 0},
    )
    latency = fake_latency(model, images[:1])
    assert 0.85 * 0.7 * max_latency <= latency <= 0.7 * max_latency
    assert state["best"]["constraints"]["latency"] == pytest.approx(latency)
    assert set(state["best"]["constraints"]) == {"params", "flops", "flops_min_depth", "latency"}


def test_a_search_resumed_from_its_checkpoint_ends_as_an_uninterrupted_one(images: torch.Tensor, tmp_path) -> None:
    def run(num_iters: int, checkpoint: str | None) -> tuple[dict, int]:
        model = am.convert(make_tiny(), mode=[("autonas", RULES)])
        scored = []

        def score(m: nn.Module) -> float:
            scored.append(1)
            return -float(count_params(m))

        config = {"score_func": score, "num_iters": num_iters, "seed": 3, "checkpoint": checkpoint}
        _, state = am.search(model, {"flops": "90%"}, images[:1], config=config)
        return state, len(scored)

    uninterrupted, scored_all = run(24, None)
    checkpoint = str(tmp_path / "search.json")
    _, scored_first = run(10, checkpoint)  # stops after 10 iterations, as an interrupted search would
    resumed, scored_rest = run(24, checkpoint)
    assert scored_first > 0 and scored_first + scored_rest == scored_all  # nothing scored twice
    assert resumed["iter_num"] == 24
    assert resumed["best"]["config"] == uninterrupted["best"]["config"]
    assert resumed["history"] == uninterrupted["history"]


@pytest.mark.parametrize("constraints", [{"flops": "150%"}, {"params": 1e12}, {"flops": 1e15, "params": "150%"}])
def test_limits_above_the_largest_subnet_search_the_largest_subnets(
    space: nn.Module, images: torch.Tensor, constraints: dict
) -> None:
    largest_flops, largest_params = count_flops(make_tiny(), images[:1]), count_params(make_tiny())
    model, state = am.search(
        space, constraints, images[:1], config={"score_func": lambda m: float(count_params(m)), "num_iters": 60}
    )
    flops, params = count_flops(model, images[:1]), count_params(model)
    assert state["best"]["constraints"] == {"params": params, "flops": flops}
    for key, largest, value in (("flops", largest_flops, flops), ("params", largest_params, params)):
        if key in constraints:  # the band starts at 85 % of the largest subnet's value, not of the limit
            assert 0.85 * largest <= value <= largest
    assert state["best"]["metric"] == params and not am.is_dynamic(model)


def test_unknown_search_config_keys_list_every_accepted_key(space: nn.Module, images: torch.Tensor) -> None:
    import autonas_search

    with pytest.raises(ValueError) as info:
        am.search(space, {"flops": "80%"}, images[:1], config={"score_func": lambda m: 0.0, "dataloader": []})
    message = str(info.value)
    assert message.startswith("unknown search config key(s) ['dataloader'] for searching a model with EvolveSearcher")
    model_keys = [
        "score_func",
        "data_loader",
        "forward_loop",
        "collect_func",
        "max_iter_data_loader",
        "latency_func",
        "deployment",
    ]
    searcher_keys = set(autonas_search.EvolveSearcher().default_search_config) - {"executor"}
    accepted = message.split("accepted keys: ")[1]
    assert accepted == str(sorted({*model_keys, *searcher_keys}))
    assert am.is_dynamic(space)


@pytest.mark.parametrize(
    ("returned", "error", "says"),
    [
        (None, TypeError, "score_func returned None for candidate {"),
        ("0.5", TypeError, "score_func returned '0.5' for candidate {"),
        (math.nan, ValueError, "score_func returned nan for candidate {"),
        (torch.tensor([0.1, 0.2]), TypeError, "score_func returned tensor([0.1000, 0.2000]) for candidate {"),
    ],
)
def test_a_score_that_is_not_a_number_names_score_func_the_candidate_and_the_value(
    space: nn.Module, images: torch.Tensor, returned: object, error: type, says: str
) -> None:
    candidates = []

    def score(model: nn.Module) -> object:
        candidates.append(am.get_subnet_config(model, configurable=True))
        return returned

    with pytest.raises(error) as info:
        am.search(space, {"flops": "90%"}, images[:1], config={"score_func": score, "num_iters": 5})
    assert len(candidates) == 1
    assert str(info.value).startswith(says) and str(candidates[0]) in str(info.value)
    assert am.is_dynamic(space)


def test_a_one_element_tensor_score_is_a_number(space: nn.Module, images: torch.Tensor) -> None:
    _, state = am.search(
        space,
        {"flops": "90%"},
        images[:1],
        config={"score_func": lambda m: m(images).mean().detach(), "num_iters": 10, "seed": 0},
    )
    assert isinstance(state["best"]["metric"], float) and math.isfinite(state["best"]["metric"])


def test_model_constraints_are_the_functor_the_searcher_uses(space: nn.Module, images: torch.Tensor) -> None:
    from autonas_modes.modelspace import ModelSearchSpace
    from autonas_search import ConstraintsFunc, RandomSearcher

    functor = ModelConstraints(space, {"flops": "50%"}, images[:1])
    assert isinstance(functor, ConstraintsFunc) and functor.names == ["params", "flops"]
    searcher = RandomSearcher()
    searcher.search(ModelSearchSpace(space), functor, {"score_func": lambda config: 0.0, "num_iters": 12, "seed": 0})
    assert searcher.constraints_func.limits == functor.limits  # no second parse of the limits
    samples = list(searcher.samples.values())
    assert len(samples) >= 3 and any(not sample["is_satisfied"] for sample in samples)
    for sample in samples:
        am.select(space, sample["config"])
        flops, params = _exported_costs(space, images[:1])
        assert sample["constraints"] == {"params": params, "flops": flops}
        assert sample["is_satisfied"] == (flops <= functor.limits["flops"][1])


def test_the_search_space_reads_json_lists_back_as_kernel_size_tuples() -> None:
    import json

    from autonas_modes.modelspace import ModelSearchSpace

    model = am.convert(
        nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 4, 3, padding=1)),
        mode=[("autonas", {"nn.Conv2d": {"*": {"kernel_size": (1, 3)}}})],
    )
    space = ModelSearchSpace(model)
    kernels = [name for name in space.hparams() if name.endswith("kernel_size")]
    assert kernels and all(isinstance(choice, tuple) for name in kernels for choice in space.hparams()[name])
    smallest = {name: choices[0] for name, choices in space.hparams().items()}
    space.select(json.loads(json.dumps(smallest)))  # tuples come back from JSON as lists
    assert space.config() == smallest
    assert model(torch.randn(1, 3, 8, 8)).shape == (1, 4, 8, 8)
