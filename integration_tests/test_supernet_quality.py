"""The supernet-quality benchmark in a reduced form: two epochs, one seed, the smallest and largest subnet.

``tools/bench/bench_supernet_quality.py`` trains a residual 1-D CNN on MNIST-1D four ways (each subnet
alone, uniform sampling, sandwich, sandwich with in-place distillation); here it runs short enough for
the test suite and its numbers are checked for sanity.
"""

from __future__ import annotations

from types import ModuleType

import pytest
import torch

CHANCE = 10.0


@pytest.fixture(scope="module")
def reduced_setup(supernet_quality_bench: ModuleType):
    return supernet_quality_bench.Setup(epochs=2, seeds=(0,), subnets=("min", "max"))


@pytest.fixture(scope="module")
def reduced_runs(supernet_quality_bench: ModuleType, reduced_setup) -> list:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        data = supernet_quality_bench.load_mnist1d(num_samples=4000)  # 2000 train / 2000 test examples
        return supernet_quality_bench.run_benchmark(reduced_setup, data, log=lambda line: None)
    finally:
        torch.set_num_threads(threads)


def test_every_method_trains_every_subnet_well_above_chance(
    supernet_quality_bench: ModuleType, reduced_setup, reduced_runs: list
) -> None:
    assert [run.method for run in reduced_runs] == list(supernet_quality_bench.METHODS)
    for run in reduced_runs:
        assert set(run.accuracy) == {"min", "max"}
        for name, value in run.accuracy.items():
            assert 2 * CHANCE < value <= 100.0, (run.method, name, value)
        assert run.steps == supernet_quality_bench.method_epochs(run.method, reduced_setup) * (2000 // 128)
        assert run.wall_s > 0
    # the equal-compute supernet trains as many subnet steps as the standalone subnets together:
    # 2 subnets x 2 epochs = 4 subnets per step x 1 epoch
    assert supernet_quality_bench.method_epochs(supernet_quality_bench.EQUAL_COMPUTE, reduced_setup) == 1


def test_the_max_subnet_trained_alone_is_at_least_as_good_as_from_a_uniform_supernet(reduced_runs: list) -> None:
    by_method = {run.method: run for run in reduced_runs}
    assert by_method["standalone"].accuracy["max"] >= by_method["uniform"].accuracy["max"] - 2.0
    # the largest subnet alone beats the smallest alone: the model is big enough to tell methods apart
    assert by_method["standalone"].accuracy["max"] > by_method["standalone"].accuracy["min"]


def test_the_table_lists_every_method_with_its_cost(supernet_quality_bench: ModuleType, reduced_runs: list) -> None:
    table = supernet_quality_bench.format_table(reduced_runs)
    lines = table.splitlines()
    assert lines[0] == "| method | min | max | mean | wall s | step / static max step |"
    assert [line.split(" | ")[0] for line in lines[2:]] == [f"| {method}" for method in supernet_quality_bench.METHODS]
    ratios = {method: row["step_vs_static_max"] for method, row in supernet_quality_bench.summary(reduced_runs).items()}
    assert ratios["standalone"] is None
    assert ratios["sandwich"] > ratios["uniform"] > 0, "a sandwich step trains four subnets, a uniform step one"
