"""Dynamic BatchNorm, SyncBatchNorm, InstanceNorm, LayerNorm and GroupNorm."""

import copy

import pytest
import torch
import torch.nn.functional as F
from example_models import ConvChain, SkippableDepth
from layer_models import warm_up_batchnorm
from torch import nn

from autonas_config import make_divisible
from autonas_dynamic import DYNAMIC_REGISTRY, SearchSpace, generate_search_space
from autonas_dynamic.layers.norm import group_norm_choices


def randomise(module: nn.Module) -> None:
    """Non-trivial affine parameters, so slicing mistakes show in the outputs."""
    with torch.no_grad():
        for param in module.parameters():
            param.normal_()


@pytest.mark.parametrize(
    ("cls", "size", "active", "shape"),
    [(nn.BatchNorm1d, 10, 6, (4, 10)), (nn.BatchNorm2d, 8, 4, (4, 8, 3, 3)), (nn.BatchNorm3d, 6, 2, (4, 6, 2, 2, 2))],
)
def test_batchnorm(cls, size, active, shape):
    torch.manual_seed(0)
    bn = cls(size)
    randomise(bn)
    plain = copy.deepcopy(bn)
    tensors = {name: getattr(bn, name) for name in ("weight", "bias", "running_mean", "running_var")}
    DYNAMIC_REGISTRY.convert(bn)
    assert all(getattr(bn, name) is tensor for name, tensor in tensors.items())
    x = torch.randn(*shape)
    torch.testing.assert_close(bn(x), plain(x))  # training forward at max, stats updated alike
    torch.testing.assert_close(bn.running_mean, plain.running_mean)

    bn.num_features = active
    stats_before = bn._buffers["running_mean"].clone()
    for _ in range(10):
        out = bn(x[:, :active])
    running_mean = bn._buffers["running_mean"]
    assert not torch.equal(running_mean[:active], stats_before[:active])  # updates write through the view
    assert torch.equal(running_mean[active:], stats_before[active:])
    assert int(bn.num_batches_tracked) == 11
    out.sum().backward()
    assert torch.count_nonzero(tensors["weight"].grad[active:]) == 0
    assert torch.count_nonzero(tensors["bias"].grad[:active]) > 0

    bn.eval()
    exported = copy.deepcopy(bn).export()
    assert type(exported) is cls and not exported.training and exported.num_features == active
    assert set(exported.__dict__) == set(cls(active).__dict__)
    assert exported.running_var.shape == (active,)
    torch.testing.assert_close(exported(x[:, :active]), bn(x[:, :active]))
    expected = F.batch_norm(
        x[:, :active],
        running_mean[:active],
        bn._buffers["running_var"][:active],
        tensors["weight"][:active],
        tensors["bias"][:active],
        False,
        0.0,
        bn.eps,
    )
    torch.testing.assert_close(bn(x[:, :active]), expected)

    bn.modify(features_ratio=[2 / size, 1.0], feature_divisor=2)
    assert bn.get_hparam("num_features").choices == [2, size]


def test_batchnorm_without_affine_or_running_stats():
    bn = DYNAMIC_REGISTRY.convert(nn.BatchNorm2d(6, affine=False, track_running_stats=False))
    bn.num_features = 3
    assert bn.weight is None and bn.running_mean is None
    x = torch.randn(2, 3, 4, 4)
    torch.testing.assert_close(bn(x), F.batch_norm(x, None, None, training=True))
    bn.eval()
    torch.testing.assert_close(bn(x), F.batch_norm(x, None, None, training=True))
    exported = copy.deepcopy(bn).export()
    assert exported.num_features == 3 and exported.weight is None
    torch.testing.assert_close(exported(x), bn(x))


def test_batchnorm_cumulative_average_momentum():
    plain = nn.BatchNorm1d(4, momentum=None)
    bn = DYNAMIC_REGISTRY.convert(copy.deepcopy(plain))
    for _ in range(3):
        x = torch.randn(5, 4)
        plain(x), bn(x)
    torch.testing.assert_close(bn.running_var, plain.running_var)


def test_syncbatchnorm_without_process_group_matches_batchnorm():
    torch.manual_seed(0)
    sync = nn.SyncBatchNorm(8)
    randomise(sync)
    DYNAMIC_REGISTRY.convert(sync)
    sync.num_features = 4
    x = torch.randn(3, 4, 5)
    reference = nn.BatchNorm1d(4)
    with torch.no_grad():
        reference.weight.copy_(sync.weight)
        reference.bias.copy_(sync.bias)
    torch.testing.assert_close(sync(x), reference(x))
    torch.testing.assert_close(sync.running_mean, reference.running_mean)
    assert torch.count_nonzero(sync._buffers["running_mean"][4:]) == 0
    sync.eval()
    exported = copy.deepcopy(sync).export()
    assert type(exported) is nn.SyncBatchNorm and exported.num_features == 4
    torch.testing.assert_close(exported(x), sync(x))


@pytest.mark.parametrize("factory", [ConvChain, SkippableDepth])
def test_convert_sync_batchnorm_keeps_the_search_space_and_the_subnet(factory):
    torch.manual_seed(0)
    model = factory()
    space = generate_search_space(model)
    warm_up_batchnorm(model, 4, 3, 8, 8)
    model.eval()
    space.sample(lambda choices: choices[(len(choices) - 1) // 2])
    norms = {name: m for name, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)}
    hparams = {name: m.get_hparam("num_features") for name, m in norms.items()}
    assert all(hparam.active < hparam.original for hparam in hparams.values())
    config = space.config()
    x = torch.randn(2, 3, 8, 8)
    expected = model(x)

    converted = nn.SyncBatchNorm.convert_sync_batchnorm(model)

    assert converted is model
    for name, hparam in hparams.items():
        sync = model.get_submodule(name)
        assert type(sync).__name__ == "DynamicSyncBatchNorm" and isinstance(sync, nn.SyncBatchNorm)
        assert sync.get_hparam("num_features") is hparam
        assert sync.weight.shape == (hparam.active,)
        assert sync._parameters["weight"] is norms[name]._parameters["weight"]  # the full-size tensors
        assert sync._buffers["running_mean"] is norms[name]._buffers["running_mean"]
    assert SearchSpace(model).config() == config
    torch.testing.assert_close(model(x), expected)
    space.sample(max)
    assert all(model.get_submodule(name).weight.shape == (h.original,) for name, h in hparams.items())
    assert model(x).shape == expected.shape


def test_convert_sync_batchnorm_of_a_plain_batchnorm_is_unchanged():
    plain = nn.SyncBatchNorm.convert_sync_batchnorm(nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4)))
    assert type(plain[1]) is nn.SyncBatchNorm and plain[1].num_features == 4


@pytest.mark.parametrize(
    ("cls", "size", "active", "shape"),
    [
        (nn.InstanceNorm1d, 10, 6, (2, 10, 7)),
        (nn.InstanceNorm1d, 10, 8, (2, 10, 7)),
        (nn.InstanceNorm2d, 8, 4, (2, 8, 3, 3)),
        (nn.InstanceNorm3d, 6, 2, (2, 6, 2, 2, 2)),
    ],
)
def test_instancenorm_affine_with_running_stats(cls, size, active, shape):
    torch.manual_seed(0)
    norm = cls(size, affine=True, track_running_stats=True)
    randomise(norm)
    weight = norm.weight
    DYNAMIC_REGISTRY.convert(norm)
    assert norm.weight is weight
    x = torch.randn(*shape)
    norm.num_features = active
    out = norm(x[:, :active])
    expected = F.instance_norm(x[:, :active], None, None, weight[:active], norm.bias, eps=norm.eps)
    torch.testing.assert_close(out, expected)
    assert torch.count_nonzero(norm._buffers["running_mean"][:active]) == active
    assert torch.count_nonzero(norm._buffers["running_mean"][active:]) == 0
    out.sum().backward()
    assert torch.count_nonzero(weight.grad[active:]) == 0
    norm.eval()
    exported = copy.deepcopy(norm).export()
    assert type(exported) is cls and exported.num_features == active
    torch.testing.assert_close(exported(x[:, :active]), norm(x[:, :active]))
    with pytest.raises(ValueError, match="match num_features"):
        norm(x)


def test_instancenorm_default_has_no_tensors():
    norm = DYNAMIC_REGISTRY.convert(nn.InstanceNorm2d(6))
    norm.num_features = 3
    x = torch.randn(2, 3, 4, 4)
    torch.testing.assert_close(norm(x), F.instance_norm(x))
    exported = copy.deepcopy(norm).export()
    assert exported.num_features == 3 and exported.weight is None


@pytest.mark.parametrize(("shape", "active"), [([10], 8), ([32, 6], 4), ([32, 28, 7], 7), ([6], 3)])
def test_layernorm(shape, active):
    torch.manual_seed(0)
    norm = nn.LayerNorm(shape)
    randomise(norm)
    weight = norm.weight
    DYNAMIC_REGISTRY.convert(norm)
    assert norm.weight is weight and norm.normalized_shape == tuple(shape)
    norm.num_features = active
    assert norm.normalized_shape == (*shape[:-1], active)
    x = torch.randn(2, *shape[:-1], active)
    out = norm(x)
    torch.testing.assert_close(out, F.layer_norm(x, (*shape[:-1], active), weight[..., :active], norm.bias, norm.eps))
    out.sum().backward()
    assert torch.count_nonzero(weight.grad[..., active:]) == 0
    exported = copy.deepcopy(norm).export()
    assert type(exported) is nn.LayerNorm and exported.normalized_shape == (*shape[:-1], active)
    assert set(exported.__dict__) == set(nn.LayerNorm([*shape[:-1], active]).__dict__)  # no stray num_features
    torch.testing.assert_close(exported(x), out)
    norm.modify(features_ratio=[0.5, 1.0], feature_divisor=1)
    assert norm.get_hparam("num_features").choices == sorted({make_divisible(0.5 * shape[-1], 1), shape[-1]})


def test_layernorm_without_bias_or_affine():
    for norm in (nn.LayerNorm(6, bias=False), nn.LayerNorm(6, elementwise_affine=False)):
        DYNAMIC_REGISTRY.convert(norm)
        norm.num_features = 4
        x = torch.randn(3, 4)
        torch.testing.assert_close(copy.deepcopy(norm).export()(x), norm(x))
        assert norm.bias is None


@pytest.mark.parametrize(
    ("groups", "channels", "choices"),
    [(2, 8, [4, 8]), (4, 8, [4, 8]), (1, 8, [8]), (8, 8, [8]), (4, 12, [12]), (4, 16, [4, 8, 12, 16])],
)
def test_groupnorm_choices(groups, channels, choices):
    assert group_norm_choices(groups, channels) == choices
    assert DYNAMIC_REGISTRY.convert(nn.GroupNorm(groups, channels)).get_hparam("num_channels").choices == choices


def test_groupnorm_keeps_group_size():
    torch.manual_seed(0)
    norm = nn.GroupNorm(4, 16)
    randomise(norm)
    weight = norm.weight
    DYNAMIC_REGISTRY.convert(norm)
    assert not norm.get_hparam("num_channels").is_sortable
    norm.num_channels = 8
    assert norm.num_groups == 2
    x = torch.randn(2, 8, 5)
    out = norm(x)
    torch.testing.assert_close(out, F.group_norm(x, 2, weight[:8], norm.bias, norm.eps))
    out.sum().backward()
    assert torch.count_nonzero(weight.grad[8:]) == 0
    exported = copy.deepcopy(norm).export()
    assert type(exported) is nn.GroupNorm and (exported.num_groups, exported.num_channels) == (2, 8)
    assert set(exported.__dict__) == set(nn.GroupNorm(2, 8).__dict__)
    torch.testing.assert_close(exported(x), out)
    norm.modify(channels_ratio=(0.5, 1.0), channel_divisor=8)
    assert norm.get_hparam("num_channels").choices == [8, 16]
