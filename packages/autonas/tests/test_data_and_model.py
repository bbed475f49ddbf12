"""The demo's data split, model and training loop on the real MNIST-1D data."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

import autonas as an
from autonas.demo.data import generate_mnist1d, load_splits
from autonas.demo.model import INPUT_SHAPE, NUM_CLASSES, SEARCH_RULES, ResidualBlock, SignalNet
from autonas.demo.training import accuracy, train
from autonas_patch import prep_for_eval


@pytest.fixture(scope="module")
def data():
    return load_splits(seed=0)


def test_splits_are_disjoint_cover_the_data_and_are_stratified(data) -> None:
    assert [len(data.train), len(data.val), len(data.test)] == [4000, 2000, 2000]
    signals = torch.cat([data.train.signals, data.val.signals, data.test.signals]).flatten(1)
    assert len(torch.unique(signals, dim=0)) == 8000  # every signal carries its own noise
    val_counts = torch.bincount(data.val.labels, minlength=NUM_CLASSES)
    test_counts = torch.bincount(data.test.labels, minlength=NUM_CLASSES)
    assert (val_counts - test_counts).abs().max() <= 1  # each class halved
    assert val_counts.min() > 150


def test_signals_are_standardised_float32(data) -> None:
    signals = torch.cat([data.train.signals, data.val.signals, data.test.signals])
    assert data.train.signals.shape[1:] == INPUT_SHAPE[1:] and signals.dtype == torch.float32
    assert abs(float(signals.mean())) < 1e-4 and abs(float(signals.std()) - 1.0) < 1e-3
    assert data.train.labels.dtype == torch.int64 and set(data.train.labels.tolist()) == set(range(NUM_CLASSES))


def test_split_depends_only_on_the_seed() -> None:
    first, again, other = load_splits(3), load_splits(3), load_splits(4)
    assert torch.equal(first.test.signals, again.test.signals)
    assert not torch.equal(first.test.signals, other.test.signals)
    assert torch.equal(first.train.signals, other.train.signals)  # the generated training split is fixed


def test_generation_leaves_the_global_generators_alone() -> None:
    random.seed(7)
    np.random.seed(7)
    expected = (random.random(), np.random.rand())
    random.seed(7)
    np.random.seed(7)
    train, test = generate_mnist1d(100, 0.8)
    assert (random.random(), np.random.rand()) == expected
    assert (len(train), len(test)) == (80, 20)


@pytest.mark.parametrize("val", [0.0, 1.0, -0.5])
def test_bad_split_fraction_is_rejected(val: float) -> None:
    with pytest.raises(ValueError, match="val_fraction must be in"):
        load_splits(0, val_fraction=val)


@pytest.mark.parametrize(("num_samples", "train_split"), [(5, 0.5), (100, 0.0), (100, 1.5)])
def test_bad_generation_settings_are_rejected(num_samples: int, train_split: float) -> None:
    with pytest.raises(ValueError, match="num_samples must be >= 10 and train_split in"):
        generate_mnist1d(num_samples, train_split)


def test_residual_block_keeps_shape_and_adds_its_input() -> None:
    block = ResidualBlock(8, 4).eval()
    for conv in (block.conv1, block.conv2):
        torch.nn.init.zeros_(conv.weight)
    torch.nn.init.uniform_(block.bn2.bias, -1.0, 1.0)
    x = torch.rand(2, 8, 20)
    assert torch.equal(block(x), torch.relu(x + block.bn2.bias.view(1, -1, 1)))


def test_zero_init_residual_starts_every_block_as_the_identity_and_leaves_the_rest() -> None:
    torch.manual_seed(0)
    plain = SignalNet(channels=8, hidden=16, blocks=2)
    torch.manual_seed(0)
    zeroed = SignalNet(channels=8, hidden=16, blocks=2, zero_init_residual=True)
    changed = {name for name, p in zeroed.state_dict().items() if not torch.equal(p, plain.state_dict()[name])}
    assert changed == {"blocks.0.bn2.weight", "blocks.1.bn2.weight"}
    x = torch.rand(3, 8, 20)  # non-negative: what a block gets after the stem's ReLU
    for block in zeroed.blocks:
        assert torch.equal(block.train()(x), x)


def test_model_outputs_logits_per_class() -> None:
    model = SignalNet(channels=8, hidden=16, blocks=2)
    assert len(model.blocks) == 2
    assert model(torch.rand(5, *INPUT_SHAPE[1:])).shape == (5, NUM_CLASSES)


def test_training_learns_the_signals(data) -> None:
    torch.manual_seed(0)
    model = SignalNet(channels=16, hidden=32, blocks=1)
    before = accuracy(model.eval(), data.val)
    train(model, data.train, epochs=3, lr=0.1, progress=False)
    after = accuracy(model.eval(), data.val)
    assert before < 0.3
    assert after > 0.8  # 0.88-0.91 over seeds 0-2 (chance: 0.1)


def test_accuracy_refuses_a_model_in_train_mode(data) -> None:
    with pytest.raises(ValueError, match="eval mode"):
        accuracy(SignalNet().train(), data.val)


def test_negative_epochs_are_rejected(data) -> None:
    with pytest.raises(ValueError, match="epochs must be >= 0, got -1"):
        train(SignalNet(), data.train, epochs=-1, lr=0.1)


def test_single_thread_restores_the_thread_count_even_on_error() -> None:
    from autonas.demo.run import single_thread

    before = torch.get_num_threads()
    with pytest.raises(RuntimeError, match="inside"), single_thread():
        assert torch.get_num_threads() == 1
        raise RuntimeError("inside")
    assert torch.get_num_threads() == before


def test_sandwich_training_trains_max_min_and_random_subnets_and_the_min_subnet_learns(data) -> None:
    torch.manual_seed(0)
    model = an.convert(
        SignalNet(channels=16, hidden=32, blocks=2), mode=[("autonas", SEARCH_RULES)], mode_kwargs={"seed": 0}
    )
    trained: list[dict] = []
    model.register_forward_pre_hook(lambda module, args: trained.append(an.get_subnet_config(module)))
    train(model, data.train, epochs=3, lr=0.1, progress=False, sandwich_random=1)

    steps = 3 * len(data.train.loader(64, shuffle=True))
    assert len(trained) == 3 * steps  # max, min, one random subnet per step
    configs = {"max": an.sample(model, max), "min": an.sample(model, min)}
    maxima, minima = trained[0::3], trained[1::3]
    assert all(config == configs["max"] for config in maxima)
    assert all(config == configs["min"] for config in minima)
    assert len({str(config) for config in trained[2::3]}) > an.search_space_size(model) // 2  # random subnets differ

    scores = {}
    for name, config in configs.items():
        an.select(model, config)
        prep_for_eval(model, lambda m: [m(signals) for signals, _ in data.train.loader(64)])
        scores[name] = accuracy(model, data.val)
    assert scores["max"] > 0.8 and scores["min"] > 0.7  # max 0.86-0.88, min 0.78-0.80 over seeds 0-2
