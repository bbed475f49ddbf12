"""Repeated work while tracing: a model of identical blocks runs each kind of layer once on meta tensors.

The values are those a real forward gives (shapes, strides, dtypes); modules and functions of the
user's own run at every call (they may count, cache or check); an output that was an input stays
that input. Each module a graph names is looked up once, for the trace and the analysis together.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from autonas_dynamic.trace import analyze, register_leaf, unregister_leaf
from autonas_dynamic.trace.memo import MetaMemo, function_key, module_key
from autonas_dynamic.trace.tracer import trace_recursively

BLOCKS, HIDDEN, INNER, LENGTH = 6, 16, 32, 10


class Block(nn.Module):
    """A transformer-style MLP block that reads its input's shape in Python (so values are computed)."""

    def __init__(self) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(HIDDEN)
        self.fc1, self.fc2 = nn.Linear(HIDDEN, INNER), nn.Linear(INNER, HIDDEN)
        self.drop = nn.Dropout(0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        *lead, width = x.shape
        h = self.fc2(F.gelu(self.fc1(self.norm(x))))
        return x + self.drop(h).reshape(*lead, width)


class Stack(nn.Module):
    def __init__(self, head: nn.Module | None = None) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(Block() for _ in range(BLOCKS))
        self.head = head if head is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.head(x)


LEAF_CALLS: list[tuple[int, ...]] = []


class CountingLeaf(nn.Module):
    """A leaf of the user's own whose forward has a side effect (outside the module, which tracing restores)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        LEAF_CALLS.append(tuple(x.shape))
        return x * 2


def _real_output_shapes(model: nn.Module, x: torch.Tensor) -> dict[str, tuple[tuple[int, ...], tuple[int, ...]]]:
    """Shape and strides of every leaf module's output in a real forward."""
    found: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {}

    def record(name: str) -> object:
        def hook(module: nn.Module, args: object, out: torch.Tensor) -> None:
            found[name] = tuple(out.shape), out.stride()

        return hook

    hooks = [
        module.register_forward_hook(record(name)) for name, module in model.named_modules() if not module._modules
    ]
    with torch.no_grad():
        model(x)
    for hook in hooks:
        hook.remove()
    return found


def test_identical_blocks_run_each_kind_of_layer_once_and_get_the_values_of_a_real_forward(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model = Stack().eval()
    runs: dict[type, int] = {}
    for cls in (nn.Linear, nn.LayerNorm, nn.Dropout):

        def counted(self: nn.Module, *args: object, forward=cls.forward) -> object:
            runs[type(self)] = runs.get(type(self), 0) + 1
            return forward(self, *args)

        monkeypatch.setattr(cls, "forward", counted)
    x = torch.randn(2, LENGTH, HIDDEN)
    expected = _real_output_shapes(model, x)
    runs.clear()

    traced = trace_recursively(model, x).graphs[0]

    # two kinds of Linear (16 -> 32, 32 -> 16), one LayerNorm, one Dropout: not once per block
    assert runs == {nn.Linear: 2, nn.LayerNorm: 1, nn.Dropout: 1}
    leaves = [node for node in traced.graph.nodes if node.op == "call_module"]
    assert len(leaves) == 4 * BLOCKS + 1
    for node in leaves:
        value = traced.values.of(node)
        name = str(node.target).removeprefix("module.")
        assert value.device.type == "meta" and value.dtype == torch.float32
        assert (tuple(value.shape), value.stride()) == expected[name], name
    # each computed output is a tensor of its own (in eval Dropout and Identity hand on their input)
    computed = [
        traced.values.of(node) for node in leaves if "drop" not in str(node.target) and "head" not in str(node.target)
    ]
    assert len({id(value) for value in computed}) == len(computed) == 3 * BLOCKS


def test_a_leaf_of_the_users_own_runs_at_every_call() -> None:
    register_leaf(CountingLeaf)
    LEAF_CALLS.clear()
    try:
        leaf = CountingLeaf()

        class Twice(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.leaf = leaf
                self.fc = nn.Linear(HIDDEN, HIDDEN)

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                for _ in range(3):
                    x = self.leaf(self.fc(x))
                    n = int(math.prod(x.shape[:-1]))  # a size read in Python: values are computed
                return x.reshape(n, -1)

        trace_recursively(Twice(), torch.randn(2, LENGTH, HIDDEN))
    finally:
        unregister_leaf(CountingLeaf)
    assert LEAF_CALLS == [(2, LENGTH, HIDDEN)] * 3


def test_modules_whose_attributes_differ_get_their_own_values() -> None:
    model = Stack(head=nn.Flatten(start_dim=1)).eval()
    other = Stack(head=nn.Flatten(start_dim=2)).eval()
    x = torch.randn(2, LENGTH, HIDDEN)
    for stack, shape in ((model, (2, LENGTH * HIDDEN)), (other, (2, LENGTH, HIDDEN))):
        traced = trace_recursively(stack, x).graphs[0]
        head = next(node for node in traced.graph.nodes if node.op == "call_module" and "head" in str(node.target))
        assert tuple(traced.values.of(head).shape) == shape
    assert module_key(nn.Flatten(start_dim=1)) != module_key(nn.Flatten(start_dim=2))
    assert module_key(nn.LayerNorm(HIDDEN)) == module_key(nn.LayerNorm(HIDDEN))
    assert module_key(nn.LayerNorm(HIDDEN)) != module_key(nn.LayerNorm(HIDDEN, eps=1e-3))
    assert module_key(nn.LayerNorm(HIDDEN).train()) != module_key(nn.LayerNorm(HIDDEN).eval())
    assert module_key(CountingLeaf()) is None  # not torch.nn's own
    assert module_key(Block()) is None  # has submodules


def test_an_output_that_was_an_input_stays_that_input_and_new_outputs_are_new_tensors() -> None:
    memo = MetaMemo()
    relu = nn.ReLU(inplace=True)
    first, second = (torch.empty(2, 3, 4, device="meta").transpose(1, 2) for _ in range(2))
    runs = []

    def run(x: torch.Tensor) -> torch.Tensor:
        runs.append(x)
        return relu(x)

    assert memo.call(module_key(relu), (first,), {}, lambda: run(first)) is first
    assert memo.call(module_key(relu), (second,), {}, lambda: run(second)) is second
    assert runs == [first]

    made = memo.call(function_key(torch.add), (first, 1.0), {}, lambda: torch.add(first, 1.0))
    again = memo.call(function_key(torch.add), (second, 1.0), {}, lambda: pytest.fail("computed again"))
    assert again is not made and again is not second
    assert (again.shape, again.stride(), again.dtype, again.device) == (
        made.shape,
        made.stride(),
        made.dtype,
        made.device,
    )
    other = memo.call(function_key(torch.add), (second, 2), {}, lambda: torch.add(second, 2))  # an int: another key
    assert other is not again


def test_functions_of_the_users_own_and_tensors_with_data_are_computed_at_every_call() -> None:
    def scale(x: torch.Tensor) -> torch.Tensor:
        return x * 2

    assert function_key(scale) is None
    assert function_key(F.scaled_dot_product_attention) is F.scaled_dot_product_attention
    assert function_key(F.layer_norm) is F.layer_norm
    memo, x = MetaMemo(), torch.empty(2, 3, device="meta")
    calls = []
    for _ in range(2):
        memo.call(function_key(scale), (x,), {}, lambda: calls.append(scale(x)))
    assert len(calls) == 2
    found = [
        memo.call(function_key(torch.nonzero), (mask,), {}, lambda mask=mask: torch.nonzero(mask))
        for mask in (torch.tensor([1, 0, 1]), torch.tensor([1, 0, 0]))  # same metadata, other data
    ]
    assert [tuple(indices.shape) for indices in found] == [(2, 1), (1, 1)]


def test_each_module_a_graph_names_is_looked_up_once(monkeypatch: pytest.MonkeyPatch) -> None:
    model = Stack().eval()
    lookups: list[str] = []
    get_submodule = nn.Module.get_submodule

    def counted(self: nn.Module, target: str) -> nn.Module:
        lookups.append(target)
        return get_submodule(self, target)

    monkeypatch.setattr(nn.Module, "get_submodule", counted)
    analysis = analyze(model, torch.randn(2, LENGTH, HIDDEN))

    searchable = [group for group in analysis.groups if group.fixed_reason is None]
    assert [[slot.module for slot in group.slots] for group in searchable] == [
        [block.fc1, block.fc2] for block in model.blocks
    ]  # each block's hidden width (the reshape by the stream's width fixes the stream)
    repeated = {target for target in lookups if lookups.count(target) > 1}
    assert not repeated
    assert {f"module.blocks.{i}.fc1" for i in range(BLOCKS)} <= set(lookups)
