"""Exporting dynamic models back to plain torch modules."""

import copy
import random

import torch
from example_models import SharedBlock
from layer_models import ConvNet, coupled_convnet, warm_up_batchnorm
from torch import nn

from autonas_dynamic import export_model, generate_search_space, is_dynamic
from autonas_dynamic.dynamic import DynamicModule


def sample(model: nn.Module, rng: random.Random) -> None:
    seen = set()
    for module in model.modules():
        if isinstance(module, DynamicModule):
            for _, hparam in module.named_hparams(configurable=True):
                if id(hparam) not in seen:
                    seen.add(id(hparam))
                    hparam.active = rng.choice(hparam.choices)


def test_random_subnets_export_to_identical_plain_models():
    torch.manual_seed(0)
    model, groups = coupled_convnet()
    warm_up_batchnorm(model, 4, 3, 8, 8)
    x = torch.randn(2, 3, 8, 8)
    rng = random.Random(0)
    for _ in range(5):
        sample(model, rng)
        out = model(x)
        clone = copy.deepcopy(model)
        assert clone.bn1.get_hparam("num_features") is clone.conv1.get_hparam("out_channels")  # still coupled
        assert clone.conv1.get_hparam("out_channels") is not groups["conv1"]
        exported = export_model(clone)
        assert not is_dynamic(exported) and is_dynamic(model)
        assert all(type(m).__module__.startswith("torch.nn") or m is exported for m in exported.modules())
        torch.testing.assert_close(exported(x), out)
        assert exported.conv2.out_channels == model.conv2.out_channels == exported.head.in_features


def test_export_at_max_keeps_the_same_tensors_and_state():
    torch.manual_seed(0)
    plain = ConvNet().eval()
    model, _ = coupled_convnet()
    model.load_state_dict(plain.state_dict())
    model.eval()
    params = {name: p for name, p in model.named_parameters()}
    export_model(model)
    assert {name: p for name, p in model.named_parameters()} == params  # no copy of any weight
    for name, module in model.named_modules():
        assert type(module) is type(plain.get_submodule(name))
        assert set(module.__dict__) == set(plain.get_submodule(name).__dict__), name
    x = torch.randn(1, 3, 8, 8)
    torch.testing.assert_close(model(x), plain(x))


def test_export_keeps_requires_grad_and_clones_sliced_tensors():
    model, groups = coupled_convnet()
    model.conv1.bias.requires_grad_(False)
    model.bn1._parameters["weight"].requires_grad_(False)
    groups["conv1"].active = 8
    full_weight = model.conv1._parameters["weight"]
    export_model(model)
    assert not model.conv1.bias.requires_grad and not model.bn1.weight.requires_grad
    assert model.conv1.weight.requires_grad and isinstance(model.conv1.weight, nn.Parameter)
    assert model.conv1.weight.shape == (8, 3, 3, 3)
    assert model.conv1.weight.untyped_storage().data_ptr() != full_weight.untyped_storage().data_ptr()
    assert model.bn1.running_mean.shape == (8,) and "running_mean" in model.bn1._buffers


def test_shared_module_is_exported_once():
    shared = nn.Linear(6, 6)
    model = nn.Sequential(shared, nn.ReLU(), shared)
    from autonas_dynamic import DYNAMIC_REGISTRY

    DYNAMIC_REGISTRY.convert(shared)
    shared.in_features = shared.get_hparam("out_features")
    shared.out_features = 4
    x = torch.randn(2, 4)
    out = model[2](torch.relu(model[0](x)))
    export_model(model)
    assert model[0] is model[2] and type(shared) is nn.Linear and shared.weight.shape == (4, 4)
    torch.testing.assert_close(model(x), out)


def test_export_model_on_plain_model_is_a_no_op():
    model = ConvNet()
    params = list(model.parameters())
    assert export_model(model) is model and list(model.parameters()) == params


def test_a_block_filling_every_position_exports_at_each_depth():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 8, 8)
    for depth in range(5):
        model = SharedBlock().eval()
        space = generate_search_space(model)
        space.select({"blocks.depth": depth, "blocks.0.conv_a.out_channels": 5}, strict=False)
        expected = model(x)
        block = model.blocks[0]
        export_model(model)
        assert type(model.blocks) is nn.Sequential and len(model.blocks) == depth
        assert all(child is block for child in model.blocks)  # still one module, called depth times
        assert not is_dynamic(model)
        if depth:
            assert block.conv_a.out_channels == 5
        torch.testing.assert_close(model(x), expected)
