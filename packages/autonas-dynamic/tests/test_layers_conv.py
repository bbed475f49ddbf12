"""Dynamic Conv1d/2d/3d and ConvTranspose1d/2d/3d."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from autonas_config import make_divisible
from autonas_dynamic import DYNAMIC_REGISTRY
from autonas_dynamic.layers.conv import kernel_choices

CONVS = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
TRANSPOSED = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}


def make_input(ndim: int, channels: int, size: int = 6) -> torch.Tensor:
    return torch.randn(2, channels, *([size] * ndim))


# (class, in, out, groups, expected in choices, expected out choices, active in, active out, active groups)
CHANNEL_CASES = [
    *[(CONVS[d], 4, 6, 1, range(1, 5), range(1, 7), 3, 2, 1) for d in (1, 2, 3)],
    *[(TRANSPOSED[d], 4, 6, 1, range(1, 5), range(1, 7), 3, 2, 1) for d in (1, 2, 3)],
    (nn.Conv2d, 8, 8, 8, range(1, 9), range(1, 9), 4, 4, 4),  # depthwise
    (nn.ConvTranspose2d, 8, 8, 8, range(1, 9), range(1, 9), 5, 5, 5),
    (nn.Conv2d, 8, 8, 4, [2, 4, 6, 8], [2, 4, 6, 8], 6, 6, 3),  # grouped, in == out
    (nn.ConvTranspose1d, 8, 8, 2, [4, 8], [4, 8], 4, 4, 1),
    (nn.Conv2d, 8, 16, 4, [2, 4, 6, 8], [4, 8, 12, 16], 4, 8, 2),  # grouped, in != out: by whole groups
    (nn.ConvTranspose3d, 4, 8, 2, [2, 4], [4, 8], 2, 4, 1),
    (nn.Conv2d, 6, 8, 2, [6], [8], 6, 8, 2),  # group sizes 3 and 4 do not divide: fixed
]


@pytest.mark.parametrize(
    ("cls", "cin", "cout", "groups", "in_choices", "out_choices", "ain", "aout", "agroups"), CHANNEL_CASES
)
def test_channels_groups_weights_grads_and_export(cls, cin, cout, groups, in_choices, out_choices, ain, aout, agroups):
    torch.manual_seed(0)
    conv = cls(cin, cout, 3, padding=1, groups=groups)
    ndim = len(conv.kernel_size)
    x = make_input(ndim, cin)
    reference = conv(x)
    weight, bias = conv.weight, conv.bias
    DYNAMIC_REGISTRY.convert(conv)
    assert conv.get_hparam("in_channels").choices == list(in_choices)
    assert conv.get_hparam("out_channels").choices == list(out_choices)
    assert conv.get_hparam("in_channels").max == cin
    assert conv.weight is weight and conv.bias is bias  # identity at the maximal subnet
    assert torch.equal(conv(x), reference)
    with pytest.raises(ValueError, match=rf"'out_channels'.*{2 * cout}"):
        conv.out_channels = 2 * cout

    conv.in_channels, conv.out_channels = ain, aout
    assert (conv.in_channels, conv.out_channels, conv.groups) == (ain, aout, agroups)
    assert conv.get_hparam("out_channels").active_slice == slice(0, aout)
    lead, other = (ain, aout) if conv._transposed else (aout, ain)
    assert conv.weight.shape == (lead, other // agroups, *([3] * ndim)) and conv.bias.shape == (aout,)
    assert conv._parameters["weight"].shape == weight.shape  # storage stays full size

    out = conv(x[:, :ain])
    expected_fn = getattr(F, f"conv_transpose{ndim}d" if conv._transposed else f"conv{ndim}d")
    if conv._transposed:
        expected = expected_fn(x[:, :ain], weight[:ain, : aout // agroups], bias[:aout], 1, 1, 0, agroups)
    else:
        expected = expected_fn(x[:, :ain], weight[:aout, : ain // agroups], bias[:aout], 1, 1, 1, agroups)
    torch.testing.assert_close(out, expected)

    out.sum().backward()
    grad = weight.grad
    assert grad.shape == weight.shape
    assert torch.count_nonzero(grad[lead:]) == 0 and torch.count_nonzero(grad[:, other // agroups :]) == 0
    assert torch.count_nonzero(grad[:lead, : other // agroups]) > 0
    assert torch.count_nonzero(bias.grad[aout:]) == 0

    exported = copy.deepcopy(conv).export()
    assert type(exported) is cls
    assert (exported.in_channels, exported.out_channels, exported.groups) == (ain, aout, agroups)
    assert exported.weight.shape == conv.weight.shape and exported.weight.is_contiguous()
    torch.testing.assert_close(exported(x[:, :ain]), out)


def test_mismatched_groups_is_an_error():
    conv = DYNAMIC_REGISTRY.convert(nn.Conv2d(8, 8, 3, groups=4))
    conv.in_channels = 4
    with pytest.raises(ValueError, match="in_channels=4 and out_channels=8 must span the same number of groups"):
        conv(torch.randn(1, 4, 5, 5))


@pytest.mark.parametrize(
    ("kernel", "padding", "dilation", "expected"),
    [
        ((5, 5), (2, 2), (1, 1), [(1, 1), (1, 3), (1, 5), (3, 1), (3, 3), (3, 5), (5, 1), (5, 3), (5, 5)]),
        ((7, 7), (1, 1), (1, 1), [(5, 5), (5, 7), (7, 5), (7, 7)]),
        ((3, 5), (1, 2), (2, 2), [(3, 3), (3, 5)]),
        ((3, 3), "same", (1, 1), [(1, 1), (1, 3), (3, 1), (3, 3)]),
        ((4,), (2,), (1,), [(2,), (4,)]),
    ],
)
def test_kernel_choices(kernel, padding, dilation, expected):
    assert kernel_choices(kernel, padding, dilation, "zeros") == expected


def test_kernel_choices_only_with_zero_padding():
    conv = DYNAMIC_REGISTRY.convert(nn.Conv2d(3, 8, 5, padding=2, padding_mode="circular"))
    assert conv.get_hparam("kernel_size").choices == [(5, 5)]


def test_kernel_rule_crops_and_adjusts_padding():
    torch.manual_seed(0)
    conv = DYNAMIC_REGISTRY.convert(nn.Conv2d(3, 32, 7, padding=3))
    weight = conv.weight
    conv.modify(kernel_size=(3, (3, 5), 5))
    assert conv.get_hparam("kernel_size").choices == [(3, 3), (3, 5), (5, 5), (7, 7)]
    conv.kernel_size = (3, 5)
    assert conv.padding == (1, 2)
    x = torch.randn(1, 3, 24, 24)
    out = conv(x)
    assert out.shape == (1, 32, 24, 24)
    torch.testing.assert_close(out, F.conv2d(x, weight[:, :, 2:5, 1:6], conv.bias, padding=(1, 2)))
    out.sum().backward()
    assert torch.count_nonzero(weight.grad[:, :, :2]) == 0 and torch.count_nonzero(weight.grad[:, :, :, 6:]) == 0
    assert torch.count_nonzero(weight.grad[:, :, 2:5, 1:6]) > 0
    exported = copy.deepcopy(conv).export()
    assert (exported.kernel_size, exported.padding) == ((3, 5), (1, 2))
    plain = nn.Conv2d(3, 32, (3, 5), padding=(1, 2))
    assert exported._reversed_padding_repeated_twice == plain._reversed_padding_repeated_twice
    torch.testing.assert_close(exported(x), out)


def test_transposed_kernel_keeps_output_size():
    conv = DYNAMIC_REGISTRY.convert(nn.ConvTranspose2d(4, 6, 7, stride=2, padding=3, output_padding=1))
    x = torch.randn(1, 4, 5, 5)
    full = conv(x)
    conv.kernel_size = (5, 5)
    assert conv.padding == (2, 2)
    assert conv(x).shape == full.shape
    assert conv(x, output_size=[9, 9]).shape == (1, 6, 9, 9)
    torch.testing.assert_close(copy.deepcopy(conv).export()(x), conv(x))


def test_same_padding_kernel_change():
    conv = DYNAMIC_REGISTRY.convert(nn.Conv1d(2, 2, 5, padding="same", dilation=2))
    conv.kernel_size = (3,)
    x = torch.randn(1, 2, 11)
    assert conv.padding == "same" and conv(x).shape == x.shape
    exported = copy.deepcopy(conv).export()
    plain = nn.Conv1d(2, 2, 3, padding="same", dilation=2)
    assert exported._reversed_padding_repeated_twice == plain._reversed_padding_repeated_twice
    torch.testing.assert_close(exported(x), conv(x))


@pytest.mark.parametrize(
    ("channels", "expected"),
    [
        (3, [3]),
        (32, [32]),
        (40, [32, 40]),
        (64, [32, 64]),
        (100, [64, 96, 100]),
        (200, [96, 128, 192, 200]),
        (256, [128, 160, 256]),
        (576, [288, 384, 576]),
    ],
)
def test_autonas_default_rule(channels, expected):
    conv = DYNAMIC_REGISTRY.convert(nn.Conv2d(channels, channels, 1))
    conv.modify(channels_ratio=(0.5, 0.67, 1.0), channel_divisor=32)
    assert conv.get_hparam("in_channels").choices == expected
    assert conv.get_hparam("out_channels").choices == expected
    assert conv.get_hparam("kernel_size").choices == [(1, 1)]


@pytest.mark.parametrize(
    ("cls", "cin", "cout", "groups"), [(nn.Conv2d, 6, 10, 1), (nn.ConvTranspose1d, 7, 5, 1), (nn.Conv2d, 8, 8, 8)]
)
def test_modify_ratio_rule(cls, cin, cout, groups):
    conv = DYNAMIC_REGISTRY.convert(cls(cin, cout, 3, groups=groups))
    conv.modify(channels_ratio=[0.5, 1.0], channel_divisor=2)
    for name, size in (("in_channels", cin), ("out_channels", cout)):
        assert conv.get_hparam(name).choices == sorted({make_divisible(0.5 * size, 2), size})
    conv.modify()  # no rule fields: choices unchanged apart from the kernel (not searched by default)
    assert conv.get_hparam("out_channels").choices == sorted({make_divisible(0.5 * cout, 2), cout})


def test_modify_resets_active_values_that_drop_out():
    conv = DYNAMIC_REGISTRY.convert(nn.Conv2d(4, 16, 3))
    conv.out_channels = 3
    conv.modify(channels_ratio=(0.5, 1.0), channel_divisor=4)
    assert conv.out_channels == 16 and conv.get_hparam("out_channels").choices == [8, 16]


def test_kernel_rule_errors_and_even_kernels():
    conv = DYNAMIC_REGISTRY.convert(nn.Conv2d(3, 8, 5, padding=2))
    with pytest.raises(
        ValueError, match=r"kernel_size \(4, 4\) has a different parity.*allowed kernel sizes: \[\(1, 1\)"
    ):
        conv.modify(kernel_size=(4,))
    with pytest.raises(ValueError, match="tuple of 2 positive ints"):
        conv.modify(kernel_size=((3, 3, 3),))
    patch = DYNAMIC_REGISTRY.convert(nn.Conv2d(3, 8, 16, stride=16))
    patch.modify(kernel_size=(3, 5))  # odd sizes do not apply to an even kernel
    assert patch.get_hparam("kernel_size").choices == [(16, 16)]


def test_freeze_pins_every_hparam():
    conv = DYNAMIC_REGISTRY.convert(nn.Conv2d(4, 8, 3, padding=1))
    conv.out_channels = 2
    conv.freeze()
    assert conv.out_channels == 8
    assert [hp.choices for _, hp in conv.named_hparams()] == [[4], [8], [(3, 3)]]
    assert not any(hp.is_configurable for _, hp in conv.named_hparams())


def test_repr_shows_active_sizes():
    conv = DYNAMIC_REGISTRY.convert(nn.Conv2d(4, 8, 5, padding=2, bias=False))
    conv.out_channels, conv.kernel_size = 6, (3, 3)
    assert repr(conv) == "DynamicConv2d(4, 6, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), bias=False)"
    assert "out_channels" not in conv.__dict__


def test_unbatched_input():
    conv = DYNAMIC_REGISTRY.convert(nn.Conv1d(4, 6, 3))
    conv.in_channels = 2
    x = torch.randn(2, 9)
    torch.testing.assert_close(conv(x), conv(x[None])[0])


def test_in_channel_importance_is_the_weight_norm_per_input_channel():
    conv = DYNAMIC_REGISTRY.convert(nn.Conv2d(3, 4, 3))
    expected = torch.stack([conv.weight[:, i].norm() for i in range(3)])
    normalised = expected / expected.max()
    torch.testing.assert_close(conv.get_hparam("in_channels").importance, normalised)
    transposed = DYNAMIC_REGISTRY.convert(nn.ConvTranspose2d(3, 4, 3))
    expected = torch.stack([transposed.weight[i].norm() for i in range(3)])
    torch.testing.assert_close(transposed.get_hparam("in_channels").importance, expected / expected.max())
    grouped = DYNAMIC_REGISTRY.convert(nn.Conv2d(4, 4, 3, groups=2))
    assert not grouped.get_hparam("in_channels").is_sortable
    assert not grouped.get_hparam("out_channels").is_sortable
    assert DYNAMIC_REGISTRY.convert(nn.Conv2d(4, 4, 3, groups=4)).get_hparam("in_channels").importance is None
