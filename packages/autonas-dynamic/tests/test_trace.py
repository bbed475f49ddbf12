"""The tracer and the coupling analysis, without dynamic layers or rules."""

from __future__ import annotations

import operator

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from example_models import (
    AuxiliaryHead,
    ConcatConvs,
    DefaultFlag,
    FailingSubmodule,
    KeptOutputs,
    NonSkippableDepth,
    ResBlock,
    ResidualOnInput,
    SharedBlock,
    SkippableDepth,
    conv,
)

from autonas_config import FeatureRule
from autonas_dynamic import LayerLayout, register_layer, unregister_layer
from autonas_dynamic.trace import analyze, register_leaf, unregister_leaf
from autonas_dynamic.trace.depth import trailing_residual_blocks
from autonas_dynamic.trace.dims import after_reduction, is_elastic
from autonas_dynamic.trace.layers import is_layer, make_layer_symbols, spatial_ndim
from autonas_dynamic.trace.tracer import reads_training_flag, trace_recursively


def _fixed(model: nn.Module, module_name: str, hparam: str) -> str | None:
    analysis = analyze(model)
    return analysis.group(model.get_submodule(module_name), hparam).fixed_reason


def test_elastic_axis_notations() -> None:
    nchw = frozenset({1, -3})
    assert is_elastic(1, nchw) and is_elastic(-3, nchw)
    assert is_elastic(0, nchw) is False and is_elastic(-1, nchw) is False
    assert is_elastic(0, frozenset({-1})) is None  # rank unknown: cannot tell
    assert after_reduction(nchw, [2, 3], keepdim=False) == {1, -1}
    assert after_reduction(nchw, [2, 3], keepdim=True) == nchw
    assert spatial_ndim(nn.Conv3d) == 3 and spatial_ndim(nn.Linear) is None


def test_default_arguments_are_specialised() -> None:
    class Flagged(nn.Module):
        def forward(self, x: torch.Tensor, add_one: bool = False) -> torch.Tensor:
            return x + 1 if add_one else x * 2

    graph = trace_recursively(Flagged()).graphs[0].graph
    targets = [node.target for node in graph.nodes if node.op == "call_function"]
    assert operator.mul in targets and operator.add not in targets


def test_unvisited_layers_are_fixed_with_the_reason() -> None:
    model = DefaultFlag()
    analysis = analyze(model)
    assert analysis.unvisited == ["extra"]
    assert "never called" in analysis.group(model.extra, "out_channels").fixed_reason
    assert analysis.group(model.conv1, "out_channels").fixed_reason is None


def test_failing_submodule_is_a_leaf_and_its_children_are_traced() -> None:
    model = FailingSubmodule()
    analysis = analyze(model)
    assert list(analysis.failed) == ["block"]
    assert "TraceError" in analysis.failed["block"]
    inner = model.block.inner
    assert analysis.group(inner[0], "out_channels") is analysis.group(inner[2], "in_channels")
    assert not analysis.group(inner[0], "out_channels").fixed
    assert analysis.group(model.stem, "out_channels").fixed


def test_failing_root_traces_its_children() -> None:
    class Root(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Sequential(conv(3, 8), nn.ReLU(), conv(8, 4))
            self.b = nn.Sequential(conv(3, 8), conv(8, 4))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.a(x) if x.mean() > 0 else self.b(x)

    model = Root()
    analysis = analyze(model)
    assert list(analysis.failed) == [""]
    for seq in (model.a, model.b):
        assert analysis.group(seq[0], "out_channels") is analysis.group(seq[-1], "in_channels")
        assert not analysis.group(seq[0], "out_channels").fixed


def test_user_leaves_are_boundaries() -> None:
    class Opaque(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = conv(8, 8)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv(x)

    def model() -> nn.Module:
        return nn.Sequential(conv(3, 8), Opaque(), conv(8, 4))

    free = model()
    assert not analyze(free).group(free[0], "out_channels").fixed
    register_leaf(Opaque)
    try:
        leaf = model()
        analysis = analyze(leaf)
        assert "Opaque" in analysis.group(leaf[0], "out_channels").fixed_reason
        assert analysis.group(leaf[1].conv, "out_channels").fixed  # traced alone: unknown surroundings
    finally:
        unregister_leaf(Opaque)
    with pytest.raises(KeyError, match="Opaque is not a registered leaf"):
        unregister_leaf(Opaque)
    with pytest.raises(TypeError, match=r"nn\.Module subclass"):
        register_leaf(len)


def test_model_inputs_and_outputs_are_fixed() -> None:
    model = ResidualOnInput()
    assert "conv1" in _fixed(model, "conv1", "in_channels")
    assert _fixed(model, "conv2", "out_channels") is not None
    assert _fixed(model, "conv1", "out_channels") is None


def test_concat_group_lists_its_inputs_in_order() -> None:
    model = ConcatConvs()
    analysis = analyze(model)
    group = analysis.group(model.c3, "in_channels")
    assert group is analysis.group(model.bn, "num_features")
    assert group.concat_inputs == [analysis.group(model.c1, "out_channels"), analysis.group(model.c2, "out_channels")]


def test_partial_dims_ops() -> None:
    class Pads(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.c1, self.c2, self.c3, self.c4 = conv(3, 8), conv(8, 6), conv(6, 4), conv(6, 4)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            y = self.c2(F.pad(self.c1(x), (1, 1, 1, 1)))  # pads H and W only
            return self.c3(F.max_pool2d(y, 2)), self.c4(F.pad(y, (0, 0, 0, 0, 0, 2)))  # pads channels

    model = Pads()
    analysis = analyze(model)
    assert analysis.group(model.c1, "out_channels") is analysis.group(model.c2, "in_channels")
    assert analysis.group(model.c2, "out_channels").fixed  # reaches a channel pad
    assert analysis.group(model.c2, "out_channels") is analysis.group(model.c3, "in_channels")


_GLOBAL_POOL_HEADS = {
    "torch.flatten(p, start_dim=1)": (lambda x, p: torch.flatten(p, start_dim=1), True),
    "p.flatten(1, -1)": (lambda x, p: p.flatten(1, -1), True),
    "p.view(p.shape[0], -1)": (lambda x, p: p.view(p.shape[0], -1), True),
    "p.reshape((p.size()[0], -1))": (lambda x, p: p.reshape((p.size()[0], -1)), True),
    "torch.reshape(p, (x.size(0), -1))": (lambda x, p: torch.reshape(p, (x.size(0), -1)), True),
    "p.flatten(1, 2).flatten(1)": (lambda x, p: p.flatten(1, 2).flatten(1), False),
    "p.view(-1, 8)": (lambda x, p: p.view(-1, 8), False),
    "p.reshape(p.size(0), 8)": (lambda x, p: p.reshape(p.size(0), 8), False),
    "p.view(x.size(1), -1)": (lambda x, p: p.view(x.size(1), -1), False),
    "p.view(x.permute(1, 0, 2, 3).size(0), -1)": (lambda x, p: p.view(x.permute(1, 0, 2, 3).size(0), -1), False),
    "torch.flatten(p, 2).flatten(1)": (lambda x, p: torch.flatten(p, 2).flatten(1), False),
    "p.mean(-1, keepdim=True).flatten(1)": (lambda x, p: p.mean(-1, keepdim=True).flatten(1), False),
}


@pytest.mark.parametrize("head", _GLOBAL_POOL_HEADS, ids=str)
def test_flattening_a_global_pool_couples_only_from_axis_1_keeping_the_batch(head: str) -> None:
    function, couples = _GLOBAL_POOL_HEADS[head]

    class GlobalPoolHead(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.fc = conv(3, 8), nn.Linear(8, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(function(x, F.adaptive_avg_pool2d(self.conv(x), 1)))

    model = GlobalPoolHead()
    assert model(torch.randn(3, 3, 8, 8)).shape == (3, 2)  # every head is a valid program at batch 3
    analysis = analyze(model)
    group = analysis.group(model.conv, "out_channels")
    assert (group is analysis.group(model.fc, "in_features")) is couples
    assert group.fixed is not couples
    assert analysis.group(model.fc, "in_features").fixed is not couples


def is_residual_block(block: nn.Module) -> bool:
    """Whether ``block`` alone is a shape-preserving residual block (traced on its own)."""
    seq = nn.Sequential(block)
    return trailing_residual_blocks(seq, trace_recursively(seq)).get(seq, [False])[0]


def test_residual_blocks_are_recognised() -> None:
    assert is_residual_block(ResBlock(4))
    assert not is_residual_block(conv(4, 4))
    assert not is_residual_block(nn.Sequential(conv(4, 4), nn.ReLU()))


def test_skippable_flags_cover_trailing_blocks_only() -> None:
    model = SkippableDepth()
    assert analyze(model).skippable == {model.blocks: [False, True, True]}
    assert analyze(NonSkippableDepth()).skippable == {}


class _TwoBlocks(nn.Module):
    """A Sequential of two residual blocks; subclasses say what the forward does with it."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.Sequential(ResBlock(4), ResBlock(4))


def test_blocks_used_outside_their_sequential_stay() -> None:
    class Peeks(_TwoBlocks):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.blocks(x) + self.blocks[0].conv_a.weight.sum()

    model = Peeks()
    assert analyze(model).skippable == {model.blocks: [False, True]}  # block 0 is read directly


def test_per_channel_parameters_fix_the_channels() -> None:
    shared = nn.Sequential(conv(3, 8), nn.PReLU(), conv(8, 4))
    per_channel = nn.Sequential(conv(3, 8), nn.PReLU(8), conv(8, 4))
    assert not analyze(shared).group(shared[0], "out_channels").fixed
    assert analyze(per_channel).group(per_channel[0], "out_channels").fixed


def test_blocks_whose_results_are_looked_up_later_stay() -> None:
    class Caching(ResBlock):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = super().forward(x)
            CACHE[id(self)] = out
            return out

    class UsesCache(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.blocks = nn.Sequential(ResBlock(4), Caching(4), ResBlock(4))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.blocks(x) + CACHE[id(self.blocks[1])]

    CACHE: dict[int, torch.Tensor] = {}
    model = UsesCache()
    assert analyze(model).skippable == {model.blocks: [False, False, True]}


def test_blocks_whose_outputs_are_read_after_their_sequential_stay() -> None:
    """The last block's output is read through a dict after the Sequential: only a shortened trace shows it."""
    model = KeptOutputs()
    assert analyze(model).skippable == {}
    graph_only = trailing_residual_blocks(model, trace_recursively(model))
    assert graph_only == {model.blocks: [False, False, True, True]}  # what the graphs alone allow


def test_a_block_filling_every_position_may_lose_its_trailing_calls() -> None:
    model = SharedBlock()
    assert analyze(model).skippable == {model.blocks: [True, True, True, True]}
    model.blocks.append(conv(8, 8))  # the last call is no residual block
    assert analyze(model).skippable == {}


def test_a_block_also_called_outside_its_sequential_stays() -> None:
    class CalledTwice(SharedBlock):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.stem(x)
            return self.head(self.blocks(x) + self.blocks[0](x))

    assert analyze(CalledTwice()).skippable == {}


def test_sequentials_inside_modules_that_fail_to_trace_keep_their_depth() -> None:
    class Untraceable(_TwoBlocks):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.blocks(x) if x.sum() > 0 else x  # what it does with the blocks cannot be seen

    analysis = analyze(Untraceable())
    assert list(analysis.failed) == [""] and analysis.skippable == {}


def test_a_second_mode_is_traced_only_for_code_reading_the_training_flag() -> None:
    assert reads_training_flag(AuxiliaryHead())
    assert not reads_training_flag(SkippableDepth())

    class PassesTheFlagOn(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return F.dropout(F.dropout(x, 0.1, self.training), p=0.1, training=self.training)

    class NegatesIt(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x if not self.training else x * 2

    assert not reads_training_flag(PassesTheFlagOn())  # the same module calls in both modes
    assert reads_training_flag(NegatesIt())


def test_the_second_mode_is_traced_only_when_the_forward_read_the_training_flag(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Hugging Face layers read ``self.training`` only behind ``self.gradient_checkpointing and ...``."""
    import autonas_dynamic.trace as trace_package

    class Checkpointed(nn.Module):
        def __init__(self, checkpointing: bool) -> None:
            super().__init__()
            self.gradient_checkpointing = checkpointing
            self.linear = nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if self.gradient_checkpointing and self.training:
                return self.linear(x) * 2
            return self.linear(x)

    traced = []
    original = trace_package.trace_recursively
    monkeypatch.setattr(trace_package, "trace_recursively", lambda *args: traced.append(1) or original(*args))
    for checkpointing, traces in ((False, 1), (True, 2)):
        traced.clear()
        model = Checkpointed(checkpointing).eval()
        assert reads_training_flag(model)
        analyze(model, torch.randn(2, 4))
        assert len(traced) == traces
        assert model.training is False and "training" in vars(model) and "training" not in vars(Checkpointed)

    class OwnFlag(Checkpointed):  # a class attribute of its own cannot be watched: it counts as read
        training = False

    traced.clear()
    analyze(OwnFlag(False).eval(), torch.randn(2, 4))
    assert len(traced) == 2


class _AffineMap(nn.Module):
    """A third-party-style linear map with its own forward (not an nn.Linear subclass)."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Parameter(torch.randn(in_features, out_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight


def test_a_declared_layer_gets_the_symbols_of_its_layout() -> None:
    assert not is_layer(_AffineMap(4, 6))
    layout = LayerLayout(
        incoming="in_features",
        outgoing="out_features",
        tensors={"weight": {0: "in_features", 1: "out_features"}},
        axis="last",
    )
    register_layer(_AffineMap, layout, key="tests.AffineMap", rule=FeatureRule)
    try:
        layer = _AffineMap(4, 6)
        assert is_layer(layer)
        symbols = make_layer_symbols(layer)
        assert symbols.in_dims == frozenset({-1}) and symbols.out_dims == frozenset({-1})
        assert symbols.outgoing is not None and symbols.outgoing is not symbols.incoming
        with pytest.raises(ValueError, match="already registered"):
            register_layer(_AffineMap, layout, key="tests.AffineMap2", rule=FeatureRule)
    finally:
        unregister_layer(_AffineMap)
    assert not is_layer(_AffineMap(4, 6))


class TwoStreams(nn.Module):
    """A forward whose second input comes after an optional parameter the example leaves out."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder, self.decoder = nn.Linear(4, 64), nn.Linear(6, 64)
        self.head = nn.Linear(64, 2)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, y: torch.Tensor | None = None) -> torch.Tensor:
        if mask is not None:
            raise ValueError("no mask was given")
        return self.head(self.encoder(x) + self.decoder(y).mean(1, keepdim=True))


def test_example_inputs_given_by_keyword_reach_their_parameters_past_a_skipped_one() -> None:
    model = TwoStreams()
    analysis = analyze(model, ({"x": torch.randn(2, 3, 4), "y": torch.randn(2, 5, 6)},))
    assert analysis.failed == {}
    (group,) = [g for g in analysis.groups if not g.fixed]
    assert {(s.module, s.name) for s in group.slots} == {
        (model.encoder, "out_features"), (model.decoder, "out_features"), (model.head, "in_features")
    }  # fmt: skip
