"""The demo's data split, model and training loop on the real digits data."""

from __future__ import annotations

import pytest
import torch

import autonas as an
from autonas.demo.data import load_digit_splits
from autonas.demo.model import INPUT_SHAPE, NUM_CLASSES, SEARCH_RULES, DigitsNet, ResidualBlock
from autonas.demo.training import accuracy, train
from autonas_patch import prep_for_eval


@pytest.fixture(scope="module")
def digits():
    return load_digit_splits(seed=0)


def test_splits_are_disjoint_cover_the_data_and_are_stratified(digits) -> None:
    sizes = [len(digits.train), len(digits.val), len(digits.test)]
    assert sum(sizes) == 1797  # the size of scikit-learn's digits data set
    assert sizes[1] == sizes[2] == 270
    rows = torch.cat([digits.train.images, digits.val.images, digits.test.images]).flatten(1)
    assert len(torch.unique(rows, dim=0)) > 1700  # (the data set holds a few duplicate images)
    for split in (digits.val, digits.test):
        counts = torch.bincount(split.labels, minlength=NUM_CLASSES)
        assert counts.min() >= 26 and counts.max() <= 28  # about 27 per class


def test_images_are_scaled_to_unit_range(digits) -> None:
    images = digits.train.images
    assert images.shape[1:] == INPUT_SHAPE[1:] and images.dtype == torch.float32
    assert images.min() == 0.0 and images.max() == 1.0


def test_split_depends_only_on_the_seed() -> None:
    first, again, other = load_digit_splits(3), load_digit_splits(3), load_digit_splits(4)
    assert torch.equal(first.test.images, again.test.images)
    assert not torch.equal(first.test.images, other.test.images)


@pytest.mark.parametrize(("val", "test"), [(0.0, 0.2), (0.5, 0.5), (0.2, 1.2)])
def test_bad_split_fractions_are_rejected(val: float, test: float) -> None:
    with pytest.raises(ValueError, match="val_fraction"):
        load_digit_splits(0, val_fraction=val, test_fraction=test)


def test_residual_block_keeps_shape_and_adds_its_input() -> None:
    block = ResidualBlock(8, 4).eval()
    for conv in (block.conv1, block.conv2):
        torch.nn.init.zeros_(conv.weight)
    torch.nn.init.uniform_(block.bn2.bias, -1.0, 1.0)
    x = torch.rand(2, 8, 5, 5)
    assert torch.equal(block(x), torch.relu(x + block.bn2.bias.view(1, -1, 1, 1)))


def test_model_outputs_logits_per_class() -> None:
    model = DigitsNet(widths=(8, 16), blocks=2)
    assert len(model.stage1) == len(model.stage2) == 2
    assert model(torch.rand(5, *INPUT_SHAPE[1:])).shape == (5, NUM_CLASSES)


def test_training_learns_the_digits(digits) -> None:
    torch.manual_seed(0)
    model = DigitsNet(widths=(16, 32), blocks=1)
    before = accuracy(model.eval(), digits.val)
    train(model, digits.train, epochs=3, lr=0.1, progress=False)
    after = accuracy(model.eval(), digits.val)
    assert before < 0.3
    assert after > 0.9


def test_accuracy_refuses_a_model_in_train_mode(digits) -> None:
    with pytest.raises(ValueError, match="eval mode"):
        accuracy(DigitsNet().train(), digits.val)


def test_negative_epochs_are_rejected(digits) -> None:
    with pytest.raises(ValueError, match="epochs must be >= 0, got -1"):
        train(DigitsNet(), digits.train, epochs=-1, lr=0.1)


def test_single_thread_restores_the_thread_count_even_on_error() -> None:
    from autonas.demo.run import single_thread

    before = torch.get_num_threads()
    with pytest.raises(RuntimeError, match="inside"), single_thread():
        assert torch.get_num_threads() == 1
        raise RuntimeError("inside")
    assert torch.get_num_threads() == before


def test_sandwich_training_trains_max_min_and_random_subnets_and_the_min_subnet_learns(digits) -> None:
    torch.manual_seed(0)
    model = an.convert(DigitsNet(widths=(16, 32), blocks=2), mode=[("autonas", SEARCH_RULES)], mode_kwargs={"seed": 0})
    trained: list[dict] = []
    model.register_forward_pre_hook(lambda module, args: trained.append(an.get_subnet_config(module)))
    train(model, digits.train, epochs=3, lr=0.1, progress=False, sandwich_random=1)

    steps = 3 * len(digits.train.loader(64, shuffle=True))
    assert len(trained) == 3 * steps  # max, min, one random subnet per step
    configs = {"max": an.sample(model, max), "min": an.sample(model, min)}
    maxima, minima = trained[0::3], trained[1::3]
    assert all(config == configs["max"] for config in maxima)
    assert all(config == configs["min"] for config in minima)
    assert len({str(config) for config in trained[2::3]}) > steps // 2  # random subnets differ

    scores = {}
    for name, config in configs.items():
        an.select(model, config)
        prep_for_eval(model, lambda m: [m(images) for images, _ in digits.train.loader(64)])
        scores[name] = accuracy(model, digits.val)
    assert scores["max"] > 0.9 and scores["min"] > 0.8
