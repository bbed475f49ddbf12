"""Dynamic Sequential (depth)."""

import copy

import pytest
import torch
from layer_models import InvertedResidual, convert_all
from torch import nn

from autonas_dynamic import DYNAMIC_REGISTRY, export_model


@pytest.mark.parametrize(("depth", "width", "active"), [(2, 4, 2), (4, 3, 3), (3, 1, 1)])
def test_sequential_depth(depth, width, active):
    torch.manual_seed(0)
    seq = nn.Sequential(*(nn.Linear(width, width) for _ in range(depth)))
    layers = list(seq)
    keys = list(seq.state_dict())
    DYNAMIC_REGISTRY.convert(seq)
    assert seq.get_hparam("depth").choices == list(range(depth + 1))
    with pytest.raises(ValueError, match=r"'depth'.*choices are"):
        seq.depth = depth + 1
    seq.depth = active
    x = torch.randn(2, width)
    torch.testing.assert_close(seq(x), nn.Sequential(*layers[:active])(x))
    assert len(seq) == depth and list(seq.state_dict()) == keys and seq[depth - 1] is layers[-1]
    assert repr(seq).count("Linear") == active
    seq.modify(min_depth=active)
    assert seq.get_hparam("depth").choices == list(range(active, depth + 1))
    exported = copy.deepcopy(seq).export()
    assert type(exported) is nn.Sequential and len(exported) == active
    assert set(exported.__dict__) == set(nn.Sequential().__dict__)  # no stray depth attribute
    torch.testing.assert_close(exported(x), seq(x))


def test_depth_zero_is_identity():
    seq = DYNAMIC_REGISTRY.convert(nn.Sequential(nn.Linear(3, 3)))
    seq.depth = 0
    x = torch.randn(2, 3)
    assert seq(x) is x


def test_min_depth_validation():
    seq = DYNAMIC_REGISTRY.convert(nn.Sequential(nn.Linear(3, 3)))
    with pytest.raises(ValueError, match="min_depth must be a non-negative int, got -1"):
        seq.modify(min_depth=-1)
    seq.modify(min_depth=5)  # deeper than the container: only the full depth stays
    assert seq.get_hparam("depth").choices == [1]


def test_nested_blocks_with_dynamic_layers_export():
    torch.manual_seed(0)
    model = nn.Sequential(*(InvertedResidual(16, 2) for _ in range(4))).eval()
    convert_all(model, skip=())
    model.depth = 2
    for block in model:
        block.conv[0].out_channels = 20  # hidden width of each block (coupled by hand below)
        block.conv[1].num_features = 20
        block.conv[3].in_channels = block.conv[3].out_channels = 20
        block.conv[4].num_features = 20
        block.conv[6].in_channels = 20
    x = torch.randn(1, 16, 8, 8)
    out = model(x)
    exported = export_model(copy.deepcopy(model))
    assert type(exported) is nn.Sequential and len(exported) == 2
    assert not any(type(m).__name__.startswith("Dynamic") for m in exported.modules())
    assert exported[0].conv[3].groups == 20
    torch.testing.assert_close(exported(x), out)


def _run_block_by_block(seq: nn.Module, x: torch.Tensor, via_children: bool) -> torch.Tensor:
    """As timm's ``checkpoint_seq`` runs a Sequential: every block in turn, not the container."""
    for block in seq.children() if via_children else seq:
        x = block(x)
    return x


@pytest.mark.parametrize("via_children", [True, False])
def test_blocks_run_one_by_one_compute_the_active_depth_and_dropped_blocks_get_no_gradient(via_children):
    torch.manual_seed(0)
    seq = DYNAMIC_REGISTRY.convert(nn.Sequential(*(nn.Linear(4, 4) for _ in range(3))))
    x = torch.randn(2, 4, requires_grad=True)  # depth 0 returns it
    for depth in range(4):
        seq.depth = depth
        seq.zero_grad(set_to_none=True)
        out = _run_block_by_block(seq, x, via_children)
        torch.testing.assert_close(out, seq(x))
        out.sum().backward()
        assert [block.weight.grad is not None for block in seq.children()] == [i < depth for i in range(3)]


def test_copies_pass_through_by_their_own_depth_and_export_drops_the_hooks():
    import pickle

    seq = DYNAMIC_REGISTRY.convert(nn.Sequential(*(nn.Linear(4, 4) for _ in range(3))))
    x = torch.randn(2, 4)
    for copied in (copy.deepcopy(seq), pickle.loads(pickle.dumps(seq))):
        copied.depth, seq.depth = 1, 3
        torch.testing.assert_close(_run_block_by_block(copied, x, True), copied[0](x))
    seq.depth = 2
    exported = export_model(seq)
    assert all(not block._forward_hooks for block in exported)
    torch.testing.assert_close(_run_block_by_block(exported, x, True), exported(x))
