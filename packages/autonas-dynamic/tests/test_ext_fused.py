"""The fused training path of sliced parameters (the compiled extension) against the reference path.

Every test runs the same subnet twice, once per path, from identical copies of a model, and
compares outputs, gradients and (over several SGD steps) parameters. The extension is built once
per session (conftest.py); without a compiler these tests skip.
"""

from __future__ import annotations

import copy
import gc
import random
from collections.abc import Callable
from types import ModuleType

import pytest
import torch
import torch.nn.functional as F
from layer_models import InvertedResidual, convert_all
from torch import nn

from autonas_dynamic.ext import fused as fused_path
from autonas_dynamic.ext import state
from autonas_dynamic.space import SearchSpace, generate_search_space

pytestmark = pytest.mark.usefixtures("fused")


def run_path(mode: str, fn: Callable[..., object], *args: object) -> object:
    """``fn(*args)`` with the reference path (``"0"``) or the fused path (``"1"``)."""
    state.reset(mode)
    return fn(*args)


def slice_node(module: nn.Module) -> str:
    """The autograd node that produced the module's active weight."""
    weight = module.weight
    return "none (whole)" if weight.grad_fn is None else weight.grad_fn.name()


class SmallNet(nn.Module):
    """ResNet/MobileNetV2-shaped: stem conv with a 5x5 kernel, an inverted residual, a grouped conv, a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 5, padding=2, bias=False)
        self.bn = nn.BatchNorm2d(16)
        self.block = InvertedResidual(16, 3)
        self.grouped = nn.Conv2d(16, 32, 3, padding=1, groups=1, bias=True)
        self.head = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn(self.stem(x)))
        x = F.relu(self.grouped(self.block(x)))
        return self.head(x.mean(dim=(2, 3)))


def train_step(
    model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, set_to_none: bool
) -> torch.Tensor:
    out = model(x)
    optimizer.zero_grad(set_to_none=set_to_none)
    F.cross_entropy(out, y).backward()
    return out.detach()


def random_subnet(model: nn.Module, seed: int) -> dict:
    space = SearchSpace(model)
    rng = random.Random(seed)
    return space.sample(rng.choice)


def grads(model: nn.Module) -> dict[str, torch.Tensor | None]:
    return {name: None if p.grad is None else p.grad.clone() for name, p in model.named_parameters()}


def assert_same(actual: dict, expected: dict) -> None:
    assert actual.keys() == expected.keys()
    for name in expected:
        if expected[name] is None:
            assert actual[name] is None, name
        else:
            torch.testing.assert_close(actual[name], expected[name], rtol=1e-5, atol=1e-6, msg=name)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_training_steps_match_reference(seed: int) -> None:
    torch.manual_seed(seed)
    base = SmallNet()
    generate_search_space(base)
    models = {mode: copy.deepcopy(base) for mode in ("0", "1")}
    optimizers = {mode: torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9) for mode, m in models.items()}
    data = torch.Generator().manual_seed(seed)
    sliced_steps = 0
    for step in range(4):
        x = torch.randn(4, 3, 12, 12, generator=data)
        y = torch.randint(0, 10, (4,), generator=data)
        config = random_subnet(models["0"], seed * 10 + step)
        outputs = {}
        for mode, model in models.items():
            SearchSpace(model).select(config)
            # both ways of clearing .grad: set to None (buffers reused) and zeroed in place (accumulation)
            outputs[mode] = run_path(mode, train_step, model, optimizers[mode], x, y, step % 2 == 0)
        sliced_steps += models["1"].stem.out_channels < 16
        torch.testing.assert_close(outputs["1"], outputs["0"], rtol=1e-5, atol=1e-6)
        assert_same(grads(models["1"]), grads(models["0"]))
        for optimizer in optimizers.values():
            optimizer.step()
    assert sliced_steps > 0, "no step ran a sliced subnet"
    assert_same(dict(models["1"].named_parameters()), dict(models["0"].named_parameters()))


CONV_CASES = [
    dict(cls=nn.Conv1d, cin=6, cout=8, k=3, groups=1, bias=True, active=(4, 5, (3,))),
    dict(cls=nn.Conv2d, cin=6, cout=8, k=5, groups=1, bias=False, active=(3, 6, (3, 3))),
    dict(cls=nn.Conv2d, cin=8, cout=8, k=3, groups=8, bias=True, active=(5, 5, (1, 1))),  # depthwise
    dict(cls=nn.Conv2d, cin=8, cout=8, k=3, groups=4, bias=True, active=(6, 6, (3, 3))),  # grouped
    dict(cls=nn.Conv3d, cin=4, cout=6, k=3, groups=1, bias=True, active=(2, 3, (1, 3, 3))),
]


def _conv_case(case: dict) -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    conv = case["cls"](
        case["cin"], case["cout"], case["k"], padding=case["k"] // 2, groups=case["groups"], bias=case["bias"]
    )
    convert_all(conv)
    conv.in_channels, conv.out_channels, conv.kernel_size = case["active"]
    ndim = len(conv.stride)
    x = torch.randn(2, case["active"][0], *([7] * ndim), requires_grad=True)
    return conv, x


@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: f"{c['cls'].__name__}-g{c['groups']}-k{c['active'][2]}")
def test_sliced_conv_output_and_gradients_match_reference(case: dict) -> None:
    results = {}
    for mode in ("0", "1"):
        conv, x = _conv_case(case)

        def forward_backward(conv: nn.Module = conv, x: torch.Tensor = x) -> tuple:
            out = conv(x)
            (out * torch.arange(out.numel()).reshape(out.shape).sin()).sum().backward()
            return out.detach(), x.grad, conv._parameters["weight"].grad, conv._parameters["bias"]

        out, grad_x, grad_w, bias = run_path(mode, forward_backward)
        results[mode] = (out, grad_x, grad_w, None if bias is None else bias.grad)
    for actual, expected in zip(results["1"], results["0"], strict=True):
        if expected is None:
            assert actual is None
        else:
            torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("bias", [True, False])
def test_sliced_linear_on_3d_input_matches_reference(bias: bool) -> None:
    results = {}
    for mode in ("0", "1"):
        torch.manual_seed(0)
        linear = convert_all(nn.Linear(12, 9, bias=bias))
        linear.in_features, linear.out_features = 7, 4
        x = torch.randn(3, 5, 7, requires_grad=True)

        def forward_backward(linear: nn.Module = linear, x: torch.Tensor = x) -> tuple:
            out = linear(x)
            (out**2).sum().backward()
            return out.detach(), x.grad, linear._parameters["weight"].grad

        results[mode] = run_path(mode, forward_backward)
        results[mode] += (linear._parameters["bias"].grad if bias else None,)
    for actual, expected in zip(results["1"], results["0"], strict=True):
        if expected is None:
            assert actual is None
        else:
            torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-6)


def test_fused_path_writes_into_grad_and_reference_path_builds_full_temporaries() -> None:
    conv, x = _conv_case(CONV_CASES[1])
    weight = conv._parameters["weight"]
    state.reset("1")
    assert "SliceParameter" in slice_node(conv)
    conv(x).sum().backward()
    first = weight.grad
    assert first.shape == weight.shape and torch.count_nonzero(first[6:]) == torch.count_nonzero(first[:, 3:]) == 0
    expected = first.clone()
    first_address = first.data_ptr()
    del first
    weight.grad = None  # as zero_grad(set_to_none=True) does
    conv(x).sum().backward()
    assert weight.grad.data_ptr() == first_address, "the unshared gradient buffer was not reused"
    torch.testing.assert_close(weight.grad, expected)
    state.reset("0")
    assert slice_node(conv) == "AsStridedBackward0"


def test_reused_buffer_holds_each_new_block_alone(fused: ModuleType) -> None:
    """Over a run of random blocks (overlapping, nested, disjoint, centred kernel crops), the reused
    buffer is zero outside the current block: the stale part of the previous one is cleared."""
    weight = nn.Parameter(torch.randn(12, 10, 5, 5))
    rng = random.Random(0)
    addresses = set()
    for step in range(60):
        kernel = rng.choice([1, 3, 5])
        sizes = [rng.randint(1, 12), rng.randint(1, 10), kernel, kernel]
        offsets = [rng.randint(0, 12 - sizes[0]) if step % 3 == 0 else 0, 0, (5 - kernel) // 2, (5 - kernel) // 2]
        weight.grad = None
        block = fused.slice_parameter(weight, offsets, sizes)
        upstream = torch.randn(block.shape)
        (block * upstream).sum().backward()
        expected = torch.zeros_like(weight)
        expected[tuple(slice(o, o + n) for o, n in zip(offsets, sizes, strict=True))] = upstream
        torch.testing.assert_close(weight.grad, expected, rtol=0, atol=0, msg=f"step {step}")
        addresses.add(weight.grad.data_ptr())
    assert len(addresses) == 1, "the gradient buffer was not reused"


def test_held_gradient_is_never_reused() -> None:
    conv, x = _conv_case(CONV_CASES[1])
    weight = conv._parameters["weight"]
    state.reset("1")
    conv(x).sum().backward()
    held = weight.grad
    snapshot = held.clone()
    weight.grad = None
    conv.out_channels = 6
    conv(x).sum().backward()
    assert weight.grad is not held
    assert torch.equal(held, snapshot), "a gradient the caller still holds was overwritten"


def test_autograd_grad_hooks_and_maximal_subnet_take_the_full_gradient() -> None:
    reference_conv, x = _conv_case(CONV_CASES[1])
    state.reset("0")
    (expected,) = torch.autograd.grad(reference_conv(x).sum(), [reference_conv._parameters["weight"]])

    conv, x = _conv_case(CONV_CASES[1])
    weight = conv._parameters["weight"]
    state.reset("1")
    (got,) = torch.autograd.grad(conv(x).sum(), [weight])
    torch.testing.assert_close(got, expected)
    assert weight.grad is None

    seen = []
    handle = weight.register_hook(lambda grad: seen.append(grad.clone()))
    conv(x).sum().backward()
    handle.remove()
    torch.testing.assert_close(seen[0], expected)
    torch.testing.assert_close(weight.grad, expected)

    conv.in_channels, conv.out_channels, conv.kernel_size = 6, 8, (5, 5)
    assert conv.weight is weight  # the maximal subnet slices nothing


def test_gradients_accumulate_over_several_backward_calls() -> None:
    results = {}
    for mode in ("0", "1"):
        conv, x = _conv_case(CONV_CASES[0])

        def twice(conv: nn.Module = conv, x: torch.Tensor = x) -> torch.Tensor:
            conv(x).sum().backward()
            conv.out_channels = 7  # a second subnet adds into the same .grad
            conv(x).pow(2).sum().backward()
            return conv._parameters["weight"].grad.clone()

        results[mode] = run_path(mode, twice)
    torch.testing.assert_close(results["1"], results["0"])


def test_gradient_buffer_is_zeroed_whole_after_a_foreign_write() -> None:
    results = {}
    for mode in ("0", "1"):
        conv, x = _conv_case(CONV_CASES[1])
        weight = conv._parameters["weight"]
        state.reset(mode)
        conv(x).sum().backward()
        weight.grad[-1].fill_(5.0)  # someone writes outside the block in place (e.g. a clipping tool)
        weight.grad = None
        conv.out_channels, conv.in_channels = 4, 2
        conv(x[:, :2]).sum().backward()
        results[mode] = weight.grad.clone()
    assert torch.count_nonzero(results["1"][4:]) == 0
    torch.testing.assert_close(results["1"], results["0"])


def test_two_subnets_in_one_graph_keep_their_own_weight_copies() -> None:
    results = {}
    for mode in ("0", "1"):
        conv, x = _conv_case(CONV_CASES[1])

        def two_forwards(conv: nn.Module = conv, x: torch.Tensor = x) -> tuple:
            first = conv(x).sum()
            conv.out_channels, conv.kernel_size = 4, (5, 5)  # the first graph still holds its weight copy
            second = conv(x).pow(2).sum()
            (first + second).backward()
            return x.grad.clone(), conv._parameters["weight"].grad.clone()

        results[mode] = run_path(mode, two_forwards)
    for actual, expected in zip(results["1"], results["0"], strict=True):
        torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-6)


def test_frozen_weight_and_input_without_grad(fused: ModuleType) -> None:
    results = {}
    for mode in ("0", "1"):
        conv, x = _conv_case(CONV_CASES[0])
        conv._parameters["weight"].requires_grad_(False)

        def backward(conv: nn.Module = conv, x: torch.Tensor = x) -> tuple:
            conv(x).sum().backward()
            return x.grad.clone(), conv._parameters["bias"].grad.clone()

        results[mode] = run_path(mode, backward)
    assert conv._parameters["weight"].grad is None
    for actual, expected in zip(results["1"], results["0"], strict=True):
        torch.testing.assert_close(actual, expected)


def test_buffers_are_dropped_with_their_parameters(fused: ModuleType) -> None:
    fused.clear_buffers()
    conv, x = _conv_case(CONV_CASES[1])
    state.reset("1")
    conv(x).sum().backward()
    assert fused.buffer_count() == 1  # the gradient buffer of the one sliced weight
    del conv
    gc.collect()
    other, x = _conv_case(CONV_CASES[3])
    other(x).sum().backward()  # a new entry sweeps out those of dead parameters
    assert fused.buffer_count() == 2  # the grouped conv's weight and bias gradients, nothing of conv


def test_unbatched_conv_input_matches_the_batched_one() -> None:
    conv, x = _conv_case(CONV_CASES[0])
    state.reset("1")
    single = x[0].detach()
    torch.testing.assert_close(conv(single), conv(single[None])[0])
    assert "SliceParameter" in slice_node(conv)


def test_only_large_leaf_parameters_in_training_take_the_fused_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fused_path, "MIN_FUSED_NUMEL", 1 << 15)
    state.reset("1")
    small, _ = _conv_case(CONV_CASES[1])  # 8 x 6 x 5 x 5 weight
    assert slice_node(small) == "AsStridedBackward0"
    large = convert_all(nn.Conv2d(64, 64, 3, padding=1))  # 36864 elements
    large.out_channels = 48
    assert "SliceParameter" in slice_node(large)
    with torch.no_grad():
        assert large.weight.grad_fn is None and large.weight.shape[0] == 48
    norm = convert_all(nn.LayerNorm(256 * 256))  # a norm weight of 65536 elements takes it too
    norm.num_features = 128 * 256
    assert "SliceParameter" in norm.weight.grad_fn.name()


@pytest.mark.parametrize("bucket_view", [False, True])
def test_distributed_data_parallel_gets_the_reference_gradients(tmp_path, bucket_view: bool) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        torch.manual_seed(0)
        base = SmallNet()
        generate_search_space(base)
        results = {}
        for mode in ("0", "1"):
            model = copy.deepcopy(base)
            wrapped = DistributedDataParallel(model, gradient_as_bucket_view=bucket_view, find_unused_parameters=True)
            state.reset(mode)
            grads_per_step = []
            for step in range(3):
                SearchSpace(model).select(random_subnet(model, step))
                wrapped.zero_grad(set_to_none=True)
                x = torch.randn(4, 3, 12, 12, generator=torch.Generator().manual_seed(step))
                F.cross_entropy(wrapped(x), torch.arange(4) % 10).backward()
                grads_per_step.append(grads(model))
            results[mode] = grads_per_step
        for fused_grads, reference_grads in zip(results["1"], results["0"], strict=True):
            assert_same(fused_grads, reference_grads)
    finally:
        dist.destroy_process_group()
