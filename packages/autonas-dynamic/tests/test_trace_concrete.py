"""Tracing shape-dependent Python with an example input: sizes are answered, the analysis keeps working.

Each block below reads sizes in Python the way Hugging Face models do. Traced with an example
input, none of them becomes a leaf, the MLP widths stay searchable, the model at its largest subnet
computes what it computed, exports exactly at smaller ones, and its parameters are untouched.
Without an example input the same code is a leaf, as before, with a reason that names the input.
"""

from __future__ import annotations

import copy
import math
import random

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from autonas_dynamic import export_model
from autonas_dynamic.space import SearchSpace, generate_search_space
from autonas_dynamic.trace import analyze
from autonas_dynamic.trace.tracer import trace_recursively

HIDDEN, INNER = 16, 32
FULL_WIDTHS = list(range(1, INNER + 1))


class DtypeNorm(nn.Module):
    """A norm of the user's own that branches on its weight's dtype (as ``T5LayerNorm`` does)."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)
        if self.weight.dtype in (torch.float16, torch.bfloat16):
            x = x.to(self.weight.dtype)
        return self.weight * x


class SizeReadingBlock(nn.Module):
    """A pre-norm MLP block whose forward reads sizes in Python at every step."""

    def __init__(self) -> None:
        super().__init__()
        self.norm = DtypeNorm(HIDDEN)
        self.fc1, self.fc2 = nn.Linear(HIDDEN, INNER), nn.Linear(INNER, HIDDEN)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, channels = x.shape  # unpacking
        if channels != HIDDEN:  # a check on a size
            raise ValueError("unexpected width")
        steps = [int(size) for size in x.shape[:2]]  # iterating over a shape, int() of sizes
        chunks = math.ceil(length / 3)  # math on sizes
        scale = torch.ones(batch, length, 1)  # sizes as varargs of a factory function
        h = self.fc2(F.gelu(self.fc1(self.norm(x)))) * scale
        assert steps == [batch, length] and chunks >= 1 and len(x) == batch
        return x + h.reshape(*x.shape[:-1], -1)  # a shape spread into a reshape


class SequenceAsImage(nn.Module):
    """Segformer's MLP: tokens are turned into an image for a depthwise conv, and back."""

    def __init__(self, baked: bool = False) -> None:
        super().__init__()
        self.baked = baked
        self.fc1 = nn.Linear(HIDDEN, INNER)
        self.dwconv = nn.Conv2d(INNER, INNER, 3, padding=1, groups=INNER)
        self.fc2 = nn.Linear(INNER, HIDDEN)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc1(x)
        batch, length, channels = h.shape
        side = int(math.sqrt(length))
        image = h.transpose(1, 2).view(batch, INNER if self.baked else channels, side, side)
        h = self.dwconv(image).flatten(2).transpose(1, 2)
        return x + self.fc2(F.gelu(h))


def _tokens() -> torch.Tensor:
    return torch.randn(2, 9, HIDDEN, generator=torch.Generator().manual_seed(0))


def _assert_exact_at_subnets(model: nn.Module, space: SearchSpace, x: torch.Tensor, reference: torch.Tensor) -> None:
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference, rtol=0, atol=0)
        rng = random.Random(0)
        widths = set()
        for sample in (min, rng.choice, rng.choice):
            space.sample(sample)
            widths.add(tuple(space.config(configurable=True).values()))
            exported = export_model(copy.deepcopy(model))
            torch.testing.assert_close(exported(x), model(x), rtol=1e-6, atol=1e-6)
        assert len(widths) == 3


def test_shape_reading_python_is_answered_and_the_mlp_stays_searchable() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(SizeReadingBlock(), SizeReadingBlock()).eval()
    x = _tokens()
    with torch.no_grad():
        reference = model(x)
    parameters = dict(model.named_parameters())

    assert "no example value for the input" in analyze(model).failed["0"]
    analysis = analyze(model, x)
    assert analysis.failed == {}
    assert {name: p for name, p in model.named_parameters()} == parameters  # the same objects
    assert all(not p.is_meta for p in model.parameters())

    space = generate_search_space(model, example_input=x)
    expected = {"depth": [0, 1, 2], "0.fc1.out_features": FULL_WIDTHS, "1.fc1.out_features": FULL_WIDTHS}
    assert space.hparams() == expected
    assert model[0].fc2.get_hparam("in_features") is model[0].fc1.get_hparam("out_features")
    _assert_exact_at_subnets(model, space, x, reference)


def test_a_size_python_reads_as_a_number_stays_fixed() -> None:
    class ReadsWidth(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(HIDDEN, INNER), nn.Linear(INNER, HIDDEN)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.fc1(x)
            width = int(h.size(-1))  # baked into the trace: the group cannot change
            return self.fc2(h[..., :width])

    model = ReadsWidth()
    analysis = analyze(model, _tokens())
    assert analysis.failed == {}
    reason = analysis.group(model.fc1, "out_features").fixed_reason
    assert reason is not None and "read as a Python int" in reason


@pytest.mark.parametrize("baked", [False, True])
def test_a_sequence_turned_into_an_image_and_back_keeps_its_channel_group(baked: bool) -> None:
    torch.manual_seed(0)
    model = SequenceAsImage(baked).eval()
    x = _tokens()
    with torch.no_grad():
        reference = model(x)
    analysis = analyze(model, x)
    group = analysis.group(model.fc1, "out_features")
    if baked:  # the view names the width as a constant: it cannot change
        assert group.fixed_reason == "reaches call_method view"
        assert analysis.group(model.dwconv, "in_channels").fixed_reason is not None
        return
    assert analysis.group(model.dwconv, "in_channels") is group
    assert analysis.group(model.fc2, "in_features") is group
    assert group.fixed_reason is None
    space = generate_search_space(model, example_input=x)
    kernels = [(1, 1), (1, 3), (3, 1), (3, 3)]
    assert space.hparams() == {"fc1.out_features": FULL_WIDTHS, "dwconv.kernel_size": kernels}
    _assert_exact_at_subnets(model, space, x, reference)


def test_children_of_a_failed_module_are_traced_with_the_inputs_it_gave_them() -> None:
    class DataDependent(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.block = SizeReadingBlock()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.block(x)
            return h if h.sum() > 0 else -h  # needs tensor data: this module stays a leaf

    model = nn.Sequential(DataDependent())
    trace = trace_recursively(model, _tokens())
    assert list(trace.failed) == [model[0]]
    assert "needs tensor data" in trace.failed[model[0]]
    block_graph = next(graph for graph in trace.graphs if graph.name == "0.block")
    assert block_graph.graph is not None  # traced with the input recorded when model[0] ran on meta tensors
    assert model[0].block not in trace.failed


class NumpyMaskBlock(nn.Module):
    """A block that computes a mask with numpy from its input's sizes (Wav2Vec2's SpecAugment does)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(HIDDEN, INNER), nn.Linear(INNER, HIDDEN)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, _ = x.size()
        keep = np.arange(length - 1) % 2 == 0  # numpy on a traced size
        mask = torch.ones(batch, length, 1)
        mask[:, : len(keep)] = torch.tensor(keep, dtype=torch.float32)[:, None]
        return x + self.fc2(F.gelu(self.fc1(x))) * mask


def test_numpy_code_on_traced_sizes_reads_their_values() -> None:
    torch.manual_seed(0)
    model = NumpyMaskBlock().eval()
    x = _tokens()
    with torch.no_grad():
        reference = model(x)
    analysis = analyze(model, x)
    assert analysis.failed == {}
    assert analysis.group(model.fc1, "out_features").fixed_reason is None
    space = generate_search_space(model, example_input=x)
    assert space.hparams() == {"fc1.out_features": FULL_WIDTHS}
    _assert_exact_at_subnets(model, space, x, reference)


def test_numpy_code_on_a_traced_tensor_without_data_names_the_value() -> None:
    class ToNumpy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(HIDDEN, HIDDEN)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x) * float(np.asarray(x).mean())  # needs the tensor's data

    trace = trace_recursively(nn.Sequential(ToNumpy()), _tokens())
    assert "asarray() of a traced value needs tensor data" in next(iter(trace.failed.values()))
