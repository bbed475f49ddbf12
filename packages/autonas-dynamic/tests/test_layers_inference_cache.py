"""Forward arguments reused during inference: always in step with hparams and stored tensors."""

import copy

import torch
from torch import nn

from autonas_dynamic import DYNAMIC_REGISTRY


def test_cached_arguments_follow_every_change():
    torch.manual_seed(0)
    conv = DYNAMIC_REGISTRY.convert(nn.Conv2d(8, 8, 3, padding=1))
    x = torch.randn(1, 8, 5, 5)

    def reference() -> torch.Tensor:
        with torch.enable_grad():
            return conv(x[:, : conv.in_channels])

    with torch.no_grad():
        conv.in_channels, conv.out_channels = 4, 6
        first = conv(x[:, :4])
        torch.testing.assert_close(first, reference())
        assert conv._memo[1][0].is_contiguous()  # the strided weight view was made contiguous once
        assert conv(x[:, :4]) is not first and conv._memo[1][0] is conv._memo[1][0]
        conv._parameters["weight"].mul_(2)  # in-place update: version bump
        torch.testing.assert_close(conv(x[:, :4]), reference())
        conv.out_channels = 3
        assert conv(x[:, :4]).shape == (1, 3, 5, 5)
        conv.load_state_dict({k: torch.randn_like(v) for k, v in conv.state_dict().items()})
        torch.testing.assert_close(conv(x[:, :4]), reference())
        conv.weight = nn.Parameter(torch.randn(8, 8, 3, 3))  # a new tensor altogether
        torch.testing.assert_close(conv(x[:, :4]), reference())
        conv.double()
        assert conv(x[:, :4].double()).dtype == torch.float64
    exported = copy.deepcopy(conv).export()
    assert "_memo" not in exported.__dict__ and "_memo" not in copy.deepcopy(conv).__dict__


def test_batchnorm_eval_sees_statistics_updated_in_training():
    torch.manual_seed(0)
    bn = DYNAMIC_REGISTRY.convert(nn.BatchNorm2d(8))
    bn.num_features = 4
    x = torch.randn(4, 4, 3, 3) * 3 + 1
    bn.eval()
    with torch.no_grad():
        before = bn(x)
        bn.train()
        bn(x)
        bn.eval()
        after = bn(x)
    assert not torch.allclose(before, after)
    expected = nn.functional.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)
    torch.testing.assert_close(after, expected)


def test_frozen_weights_are_cached_in_grad_mode_and_inputs_still_get_gradients():
    layer = DYNAMIC_REGISTRY.convert(nn.Linear(6, 6))
    layer.requires_grad_(False)
    layer.in_features, layer.out_features = 3, 2
    x = torch.randn(2, 3, requires_grad=True)
    layer(x).sum().backward()
    assert "_memo" in layer.__dict__
    torch.testing.assert_close(x.grad, layer.weight.sum(dim=0).expand(2, 3))
