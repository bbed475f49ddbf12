"""AutoNASPatchManager behaviour: every timeline of training-time sampling, caching and BN recalibration."""

from __future__ import annotations

import random
import warnings
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import torch
from patch_models import SuperNet, SuperNetSampler, patched_supernet
from torch import nn

from autonas_patch import (
    BN_CALIB_ITERS,
    QUEUE_MAXLEN,
    AutoNASPatchManager,
    PatchManager,
    no_patches,
    prep_for_eval,
    recalibrate_batchnorm,
)

MAX_CONFIG = {"blocks.depth": 3, "blocks.0.hidden": 8, "blocks.1.hidden": 8, "blocks.2.hidden": 8}


def batch(seed: int) -> torch.Tensor:
    return torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(seed))


@contextmanager
def no_warnings() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def bn_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items() if "running" in k}


def same_bn_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


def expected_sample_sequence(seed: int, steps: int) -> list[dict[str, int]]:
    """The subnets a model patched with ``seed`` must activate in its first training forwards."""
    sampler = SuperNetSampler(SuperNet())
    rng = random.Random(seed)
    configs = []
    for _ in range(steps):
        sampler.sample(rng)
        configs.append(sampler.config())
    return configs


def expected_stem_stats(model: SuperNet, inputs: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Cumulative average over the batches of the stem BatchNorm's batch mean and unbiased variance."""
    with torch.no_grad():
        features = [model.stem(x) for x in inputs]
    means = torch.stack([f.mean(dim=(0, 2, 3)) for f in features]).mean(0)
    variances = torch.stack([f.transpose(0, 1).flatten(1).var(dim=1, unbiased=True) for f in features]).mean(0)
    return means, variances


@pytest.fixture
def patched() -> tuple[SuperNet, SuperNetSampler, AutoNASPatchManager]:
    model, sampler = patched_supernet(seed=11)
    manager = PatchManager.get_manager(model)
    assert isinstance(manager, AutoNASPatchManager)
    return model, sampler, manager


def test_fresh_patch_data(patched) -> None:
    _, _, manager = patched
    data = manager.patch_data
    assert data["queue"].maxlen == QUEUE_MAXLEN == 50
    assert (data["fill"], data["count"], data["train_count_since_sample"], data["autosampled"]) == (
        False,
        0,
        100,
        False,
    )
    assert (data["hold_subnet"], data["repeat_batch"]) == (False, False)


def test_eval_forwards_neither_sample_nor_queue(patched) -> None:
    model, sampler, manager = patched
    model.eval()
    for i in range(3):
        model(batch(i))
    assert sampler.config() == MAX_CONFIG
    assert len(manager.patch_data["queue"]) == 0 and manager.patch_data["count"] == 0


def test_train_forwards_sample_from_the_model_generator_and_queue(patched) -> None:
    model, sampler, manager = patched
    model.train()
    configs = []
    for i in range(3):
        model(batch(i))
        configs.append(sampler.config())
    assert configs == expected_sample_sequence(seed=11, steps=3)
    assert any(config != MAX_CONFIG for config in configs)
    data = manager.patch_data
    assert len(data["queue"]) == 3 and data["count"] == 3
    assert data["train_count_since_sample"] == 1 and data["autosampled"]


def test_under_torch_compile_every_training_forward_still_samples_and_queues(patched) -> None:
    model, sampler, manager = patched
    model.train()
    torch._dynamo.reset()
    compiled = torch.compile(model, backend="eager", dynamic=True)
    configs, outputs = [], []
    for i in range(3):
        outputs.append(compiled(batch(i)))
        configs.append(sampler.config())
    assert configs == expected_sample_sequence(seed=11, steps=3), "the hook runs outside the graph, at every call"
    data = manager.patch_data
    assert len(data["queue"]) == 3 and data["count"] == 3
    with no_patches():
        for i, config in enumerate(configs):
            sampler.select(config)
            torch.testing.assert_close(outputs[i], model(batch(i)))


def test_training_forwards_under_no_grad_still_sample(patched) -> None:
    model, sampler, manager = patched
    model.train()
    configs = []
    with torch.no_grad():
        for i in range(5):
            model(batch(i))
            configs.append(sampler.config())
    assert configs == expected_sample_sequence(seed=11, steps=5)
    assert len(manager.patch_data["queue"]) == 5


def test_fill_caches_eval_forwards_without_sampling(patched) -> None:
    model, sampler, manager = patched
    model.train()
    for i in range(3):
        model(batch(i))
    with pytest.warns(UserWarning, match="queue not filled"):
        model.eval()
    manager.patch_data["fill"] = True
    for i in range(3):
        model(batch(10 + i))
    assert sampler.config() == MAX_CONFIG
    assert len(manager.patch_data["queue"]) == 6
    assert torch.equal(manager.patch_data["queue"][-1][0], batch(12))


def test_training_with_patches_disabled_changes_nothing(patched) -> None:
    model, sampler, manager = patched
    model.train()
    with no_patches():
        for i in range(3):
            model(batch(i))
    assert sampler.config() == MAX_CONFIG
    assert len(manager.patch_data["queue"]) == 0 and manager.patch_data["count"] == 0


def test_queue_items_are_detached_cpu_copies_of_args_and_kwargs(patched) -> None:
    model, _, manager = patched
    model.train()
    x = batch(0).requires_grad_()
    bias = torch.ones(5, requires_grad=True)
    model(x, scale=2.0)
    model.head.register_forward_hook(lambda module, args, out: out + bias)
    model(x.detach(), scale=torch.tensor(3.0))
    with torch.no_grad():
        x.mul_(0)  # refilling an input buffer in place must not change the cached batch
    first, second = manager.patch_data["queue"]
    assert len(first) == 2 and first[1] == {"scale": 2.0}
    assert torch.equal(first[0], batch(0)) and not first[0].requires_grad
    assert first[0].device.type == "cpu"
    assert torch.equal(second[1]["scale"], torch.tensor(3.0))


def test_keyword_inputs_are_replayed_as_keywords(patched) -> None:
    model, _, manager = patched
    model.train()
    with torch.no_grad():
        for i in range(QUEUE_MAXLEN):
            model(x=batch(i), scale=0.5)
    assert manager.patch_data["queue"][0][:-1] == ()
    with no_warnings():
        model.eval()
    mean, _ = expected_stem_stats(model, [batch(i) for i in range(QUEUE_MAXLEN)])
    torch.testing.assert_close(model.stem_bn.running_mean, mean)


def test_full_queue_takes_a_new_batch_every_100th_forward(patched) -> None:
    model, _, manager = patched
    model.train()
    with torch.no_grad():
        for i in range(2 * BN_CALIB_ITERS + 1):
            model(batch(i))
    queue = manager.patch_data["queue"]
    assert len(queue) == QUEUE_MAXLEN
    # pushes at forwards 0..49, 100 and 200: the deque dropped forwards 0 and 1
    assert torch.equal(queue[0][0], batch(2))
    assert torch.equal(queue[-2][0], batch(100))
    assert torch.equal(queue[-1][0], batch(200))


def test_eval_after_training_with_full_queue_recalibrates_at_max_subnet(patched) -> None:
    model, sampler, manager = patched
    model.train()
    with torch.no_grad():
        for i in range(QUEUE_MAXLEN):
            model(batch(i))
    assert sampler.config() != MAX_CONFIG
    with no_warnings():
        model.eval()
    assert sampler.config() == MAX_CONFIG
    data = manager.patch_data
    assert data["train_count_since_sample"] == BN_CALIB_ITERS and not data["autosampled"]
    assert len(data["queue"]) == QUEUE_MAXLEN and data["count"] == QUEUE_MAXLEN, "replay must not queue"
    mean, var = expected_stem_stats(model, [batch(i) for i in range(QUEUE_MAXLEN)])
    torch.testing.assert_close(model.stem_bn.running_mean, mean)
    torch.testing.assert_close(model.stem_bn.running_var, var)
    assert model.stem_bn.momentum == 0.1
    assert not any(module.training for module in model.modules())

    stats = bn_state(model)
    with no_warnings():
        model.eval()  # statistics are trusted now: nothing happens
    assert same_bn_state(stats, bn_state(model))


def test_eval_after_training_with_short_queue_warns_and_returns_to_max(patched) -> None:
    model, sampler, _ = patched
    model.train()
    model(batch(0))
    stats = bn_state(model)
    with pytest.warns(UserWarning, match=r"queue not filled \(1 of 50 batches\)"):
        model.eval()
    assert sampler.config() == MAX_CONFIG
    assert same_bn_state(stats, bn_state(model))


def test_stale_statistics_and_a_fake_full_queue(patched) -> None:
    """A queue counts as full when its length reaches its own maxlen, as in a user-supplied queue."""
    model, sampler, manager = patched
    model.eval()
    manager.call_pre_sample()
    sampler.select({"blocks.depth": 2, "blocks.1.hidden": 2})
    before = model(batch(0))
    manager.patch_data["queue"] = deque([(batch(i), {}) for i in range(3)], maxlen=3)
    with no_warnings():
        manager.call_post_eval()
    assert sampler.config()["blocks.depth"] == 2, "a selected (not auto-sampled) subnet stays active"
    assert not torch.allclose(model(batch(0)), before)
    mean, _ = expected_stem_stats(model, [batch(i) for i in range(3)])
    torch.testing.assert_close(model.stem_bn.running_mean, mean)


def test_explicit_recalibration_of_a_training_model_neither_samples_nor_queues(patched) -> None:
    model, sampler, manager = patched
    model.head = nn.Sequential(nn.Dropout(0.5), model.head)
    model.train()
    manager.call_pre_sample()
    sampler.select({"blocks.depth": 2})
    manager.patch_data["queue"] = deque([(batch(i), {}) for i in range(3)], maxlen=3)
    seen = []
    model.head[0].register_forward_hook(lambda module, args, out: seen.append(module.training))
    manager.call_post_eval()
    assert sampler.config()["blocks.depth"] == 2
    assert manager.patch_data["count"] == 0 and len(manager.patch_data["queue"]) == 3
    assert seen == [False] * 3, "dropout must be off during calibration"
    assert all(module.training for module in model.modules())
    torch.testing.assert_close(model.stem_bn.running_mean, expected_stem_stats(model, [batch(i) for i in range(3)])[0])


def test_a_queue_without_maxlen_is_full_at_50_batches(patched) -> None:
    model, _, manager = patched
    manager.patch_data["queue"] = deque((batch(i), {}) for i in range(QUEUE_MAXLEN - 1))
    manager.call_pre_sample()
    with pytest.warns(UserWarning, match=r"queue not filled \(49 of 50 batches\)"):
        manager.call_post_eval()
    model.train()
    model(batch(99))
    model(batch(100))  # the queue is full now: the second batch is not cached
    assert len(manager.patch_data["queue"]) == QUEUE_MAXLEN
    with no_warnings():
        model.eval()
    assert manager.patch_data["train_count_since_sample"] == BN_CALIB_ITERS


def test_trusted_statistics_are_kept(patched) -> None:
    model, _, manager = patched
    model.eval()
    before = model(batch(0))
    manager.patch_data["queue"] = deque([(batch(i), {}) for i in range(3)], maxlen=3)
    manager.call_post_eval()
    assert torch.equal(model(batch(0)), before)


def test_prep_for_eval_timeline(patched) -> None:
    model, sampler, manager = patched
    data = manager.patch_data
    loader = [batch(100 + i) for i in range(3)]

    def forward_loop(m: nn.Module) -> None:
        for x in loader:
            m(x)

    model.train()
    # 1) patches off, no loader: eval mode only
    stats = bn_state(model)
    with no_patches(), no_warnings():
        assert prep_for_eval(model) is model
    assert not model.training and same_bn_state(stats, bn_state(model))
    assert len(data["queue"]) == 0 and sampler.config() == MAX_CONFIG

    # 2) patches off, with a loader: recalibrated, nothing queued (no pre-forward hook)
    with no_patches(), no_warnings():
        prep_for_eval(model, forward_loop)
    assert not same_bn_state(stats, bn_state(model))
    torch.testing.assert_close(model.stem_bn.running_mean, expected_stem_stats(model, loader)[0])
    assert len(data["queue"]) == 0

    # 3) after a select, no loader, short queue: warning, statistics untouched
    manager.call_pre_sample()
    sampler.select({"blocks.0.hidden": 4})
    config = sampler.config()
    stats = bn_state(model)
    with pytest.warns(UserWarning, match="queue not filled"):
        prep_for_eval(model)
    assert same_bn_state(stats, bn_state(model)) and len(data["queue"]) == 0

    # 4) with a loader: recalibrated, loader batches cached, fill reset, config unchanged
    with no_warnings():
        prep_for_eval(model, forward_loop)
    assert not same_bn_state(stats, bn_state(model))
    assert len(data["queue"]) == 3 and data["fill"] is False and sampler.config() == config
    assert data["train_count_since_sample"] == BN_CALIB_ITERS
    with no_warnings():
        prep_for_eval(model)  # trusted now

    # 4.5) after a sample: warns without a loader; a loader call, then a no-loader call, are silent
    manager.sample()
    with pytest.warns(UserWarning, match="queue not filled"):
        prep_for_eval(model)
    with no_warnings():
        prep_for_eval(model, forward_loop)
        prep_for_eval(model)
    assert len(data["queue"]) == 6

    # 5) auto-sampled training, then eval: queue grows, warning, back to the maximal subnet
    model.train()
    steps = 0
    while sampler.config() == MAX_CONFIG or steps == 0:
        model(batch(steps))
        steps += 1
    assert len(data["queue"]) == 6 + steps
    with pytest.warns(UserWarning, match="queue not filled"):
        model.eval()
    assert sampler.config() == MAX_CONFIG


def test_forward_loop_that_calls_eval_does_not_recurse(patched) -> None:
    model, _, manager = patched
    calls = []

    def forward_loop(m: nn.Module) -> None:
        calls.append(1)
        m.eval()
        m(batch(0))

    manager.sample()
    prep_for_eval(model, forward_loop)
    assert calls == [1]


def test_manager_without_training_time_sampling_only_counts_and_caches() -> None:
    class CountingPatchManager(AutoNASPatchManager):
        sample_during_training = False

    torch.manual_seed(0)
    model = SuperNet()
    sampler = SuperNetSampler(model)
    CountingPatchManager(model).patch(sampler, seed=0)
    manager = PatchManager.get_manager(model)
    assert type(manager) is CountingPatchManager
    manager.call_pre_sample()
    sampler.select({"blocks.depth": 1})
    model.train()
    with torch.no_grad():
        for i in range(BN_CALIB_ITERS):
            model(batch(i))
    data = manager.patch_data
    assert sampler.config()["blocks.depth"] == 1
    assert data["count"] == BN_CALIB_ITERS and data["train_count_since_sample"] == BN_CALIB_ITERS
    stats = bn_state(model)
    with no_warnings():
        model.eval()  # statistics were trained at this subnet: trusted
    assert same_bn_state(stats, bn_state(model))


def test_not_configurable_model_is_never_recalibrated() -> None:
    torch.manual_seed(0)
    model = SuperNet()
    sampler = SuperNetSampler(model, widths=(8,), depths=(3,))
    AutoNASPatchManager(model).patch(sampler)
    model.train()
    model(batch(0))
    stats = bn_state(model)
    with no_warnings():
        model.eval()
    assert same_bn_state(stats, bn_state(model))


def test_model_without_batchnorm_does_not_warn() -> None:
    torch.manual_seed(0)
    model = SuperNet()
    model.stem_bn = nn.Identity()
    for block in model.blocks:
        block.bn1, block.bn2 = nn.Identity(), nn.Identity()
    AutoNASPatchManager(model).patch(SuperNetSampler(model))
    model.train()
    model(batch(0))
    with no_warnings():
        model.eval()


def test_recalibration_restores_each_module_flag_and_momentum() -> None:
    torch.manual_seed(0)
    model = SuperNet()
    model.train()
    model.blocks[1].eval()  # e.g. a frozen block: its flag must survive recalibration
    model.stem_bn.momentum = 0.3
    flags = {name: m.training for name, m in model.named_modules()}
    seen = {}

    def forward_loop(m: nn.Module) -> None:
        seen["momentum"] = m.stem_bn.momentum
        seen["bn_training"] = m.blocks[1].bn1.training
        m(batch(0))

    recalibrate_batchnorm(model, forward_loop)
    assert seen == {"momentum": None, "bn_training": True}
    assert {name: m.training for name, m in model.named_modules()} == flags
    assert model.stem_bn.momentum == 0.3 and model.blocks[0].bn1.momentum == 0.1
    torch.testing.assert_close(model.stem_bn.running_mean, expected_stem_stats(model, [batch(0)])[0])

    def failing_loop(m: nn.Module) -> None:
        raise RuntimeError("data loader broke")

    with pytest.raises(RuntimeError, match="data loader broke"):
        recalibrate_batchnorm(model, failing_loop)
    assert {name: m.training for name, m in model.named_modules()} == flags
    assert model.stem_bn.momentum == 0.3
