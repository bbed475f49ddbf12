"""Patching mechanics: exact unpatch, one patched module per tree, pickling, deepcopy, replication, errors."""

from __future__ import annotations

import copy
import inspect
import io
import pickle
import random

import pytest
import torch
from patch_models import SuperNet, SuperNetSampler, patched_supernet
from torch import nn

from autonas_patch import AutoNASPatchManager, PatchManager

X = torch.randn(2, 3, 8, 8)


def test_patch_then_unpatch_restores_the_instance_exactly() -> None:
    torch.manual_seed(0)
    model = SuperNet()
    before = dict(model.__dict__)
    AutoNASPatchManager(model).patch(SuperNetSampler(model), seed=0)
    assert PatchManager.is_patched(model)
    assert set(model.__dict__) > set(before)
    assert "forward" in model.__dict__ and "train" in model.__dict__

    PatchManager.get_manager(model).unpatch()
    assert model.__dict__.keys() == before.keys()
    assert all(model.__dict__[key] is value for key, value in before.items())
    assert model.forward.__func__ is SuperNet.forward
    assert model.train.__func__ is nn.Module.train
    assert model._replicate_for_data_parallel.__func__ is nn.Module._replicate_for_data_parallel
    assert not PatchManager.is_patched(model)
    pickle.dumps(model)


def test_instance_level_forward_override_is_kept_and_restored() -> None:
    torch.manual_seed(0)
    model = SuperNet()
    calls = []

    def traced_forward(x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        calls.append(x.shape)
        return SuperNet.forward(model, x, scale)

    model.forward = traced_forward
    AutoNASPatchManager(model).patch(SuperNetSampler(model))
    model.eval()
    model(X)
    assert calls == [X.shape], "the patched forward must call the instance's own forward"
    PatchManager.get_manager(model).unpatch()
    assert model.forward is traced_forward


def test_patched_methods_keep_signature_and_return_values() -> None:
    model, _ = patched_supernet()
    assert list(inspect.signature(model.forward).parameters) == ["x", "scale"]
    assert model.train() is model
    assert model.eval() is model
    assert model.state_dict().keys() == SuperNet().state_dict().keys()


def test_patched_forward_computes_the_active_subnet() -> None:
    model, sampler = patched_supernet()
    reference = copy.deepcopy(model)
    PatchManager.get_manager(reference).unpatch()
    model.eval()
    reference.eval()
    sampler.select({"blocks.depth": 2, "blocks.0.hidden": 4})
    reference_sampler = SuperNetSampler(reference)
    reference_sampler.select({"blocks.depth": 2, "blocks.0.hidden": 4})
    assert torch.equal(model(X, scale=0.5), reference(X, scale=0.5))


def test_patching_twice_or_a_tree_with_a_patched_module_fails() -> None:
    model, sampler = patched_supernet()
    with pytest.raises(RuntimeError, match="the model itself is already patched by AutoNASPatchManager"):
        AutoNASPatchManager(model).patch(sampler)
    parent = nn.Sequential(nn.Identity(), model)
    with pytest.raises(RuntimeError, match="submodule '1' is already patched"):
        AutoNASPatchManager(parent).patch(sampler)
    assert not PatchManager.is_patched(parent[0])


def test_get_manager_finds_the_patched_submodule() -> None:
    model, _ = patched_supernet()
    wrapper = nn.Sequential(model)
    manager = PatchManager.get_manager(wrapper)
    assert type(manager) is AutoNASPatchManager
    assert manager.model is model


def test_bad_use_gives_clear_errors() -> None:
    plain = SuperNet()
    with pytest.raises(RuntimeError, match="SuperNet is not patched"):
        PatchManager.get_manager(plain)
    with pytest.raises(RuntimeError, match="cannot unpatch SuperNet: it is not patched"):
        AutoNASPatchManager(plain).unpatch()
    with pytest.raises(RuntimeError, match="not patched"):
        AutoNASPatchManager(plain).patch_data  # noqa: B018

    class HalfSampler:
        def is_configurable(self) -> bool:
            return True

    with pytest.raises(TypeError, match=r"sampler HalfSampler .* missing \['sample', 'sample_max', 'sample_min'\]"):
        AutoNASPatchManager(plain).patch(HalfSampler())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="seed must be a non-negative int"):
        AutoNASPatchManager(plain).patch(SuperNetSampler(plain), seed=-1)
    with pytest.raises(TypeError, match=r"nn\.Module"):
        AutoNASPatchManager("model")  # type: ignore[arg-type]
    assert not PatchManager.is_patched(plain), "a failed patch() must leave the model untouched"


def test_two_patched_modules_in_one_tree_are_reported() -> None:
    first, _ = patched_supernet()
    second, _ = patched_supernet()
    with pytest.raises(RuntimeError, match="more than one patched module"):
        PatchManager.get_manager(nn.ModuleList([first, second]))


def _train_steps(model: nn.Module, steps: int) -> list[dict[str, int]]:
    sampler = PatchManager.get_manager(model).sampler
    model.train()
    configs = []
    for _ in range(steps):
        model(X)
        configs.append(sampler.config())
    return configs


@pytest.mark.parametrize("clone", ["deepcopy", "pickle"])
def test_copies_are_patched_independent_models(clone: str) -> None:
    model, sampler = patched_supernet(seed=7)
    _train_steps(model, 3)
    copied = copy.deepcopy(model) if clone == "deepcopy" else pickle.loads(pickle.dumps(model))

    manager = PatchManager.get_manager(copied)
    assert copied.forward.__self__ is copied
    assert manager.sampler.model is copied
    assert len(manager.patch_data["queue"]) == 3
    assert manager.patch_data["count"] == 3
    # same generator state: both continue with the same subnets, each on its own modules
    assert _train_steps(copied, 4) == _train_steps(model, 4)
    with pytest.warns(UserWarning, match="queue not filled"):
        model.eval()
    with pytest.warns(UserWarning, match="queue not filled"):
        copied.eval()
    assert sampler.config() == manager.sampler.config()
    assert torch.equal(model(X), copied(X))

    buffer = io.BytesIO()
    torch.save(copied, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    assert torch.equal(loaded(X), copied(X))


def test_data_parallel_replica_is_a_working_plain_module() -> None:
    model, sampler = patched_supernet()
    model.eval()
    sampler.select({"blocks.depth": 1})
    replica = model._replicate_for_data_parallel()
    assert isinstance(replica, SuperNet)
    assert not PatchManager.is_patched(replica)
    assert "forward" not in replica.__dict__
    assert PatchManager.is_patched(model), "replicating must leave the original patched"
    replica._parameters = model._parameters  # what nn.parallel.replicate does with the device copies
    for name, module in model.named_children():
        replica._modules[name] = module
    assert torch.equal(replica(X), model(X))
    replica.train()
    replica(X)
    assert sampler.config()["blocks.depth"] == 1, "a replica must not sample"


def test_the_base_manager_patches_without_changing_behaviour() -> None:
    torch.manual_seed(0)
    model = SuperNet()
    sampler = SuperNetSampler(model)
    PatchManager(model).patch(sampler, seed=0)
    manager = PatchManager.get_manager(model)
    assert type(manager) is PatchManager and manager.patch_data.keys() == {"sampler", "generator"}
    model.train()
    model(X)
    model.eval()
    assert sampler.config()["blocks.depth"] == 3, "the base manager's hooks do nothing"
    manager.sample()
    sampled = sampler.config()
    reference = SuperNetSampler(SuperNet())
    reference.sample(random.Random(0))
    assert sampled == reference.config(), "sample() draws from the model's seeded generator"
    manager.sample_max()
    assert sampler.config()["blocks.depth"] == 3
