"""GPT-2's MLP widths are searchable through the transformers ``Conv1D`` integration of autonas_dynamic.

``transformers.pytorch_utils.Conv1D`` is a linear layer with a transposed weight. Checked here: the
dynamic layer computes what a plain ``Conv1D`` of the active size computes and exports to one; a GPT-2
built from a tiny config gets its MLP hidden widths (``c_fc.out_features``, coupled with
``c_proj.in_features``) and its attention heads (the fused ``c_attn`` split into queries, keys and
values of whole heads) as searchable hparams under the default ``AutoNASConfig``, keeps its logits
at the maximal subnet, exports exactly at other subnets, has exact closed-form costs and sorts its
hidden units by importance; importing ``autonas_dynamic`` does not import transformers.
"""

from __future__ import annotations

import copy
import random
import subprocess
import sys
import textwrap

import pytest
import torch

transformers = pytest.importorskip("transformers")

from transformers.pytorch_utils import Conv1D  # noqa: E402

from autonas_config import AutoNASConfig, get_layer_type  # noqa: E402
from autonas_dynamic import DYNAMIC_REGISTRY, SearchSpace, export_model, generate_search_space  # noqa: E402
from autonas_dynamic.cost import CostModel, count_flops, count_params  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

VOCAB, N_EMBD, N_INNER = 100, 64, 128
MLP_WIDTHS = [64, 96, 128]  # make_divisible(ratio * 128, 32) for the nn.Linear default ratios 0.5, 0.67, 1.0


def _gpt2() -> torch.nn.Module:
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        vocab_size=VOCAB, n_positions=32, n_embd=N_EMBD, n_layer=2, n_head=4, n_inner=N_INNER,
        bos_token_id=0, eos_token_id=0,
    )  # fmt: skip
    return transformers.GPT2LMHeadModel(config).eval()


def _input_ids() -> torch.Tensor:
    return torch.randint(0, VOCAB, (2, 8), generator=torch.Generator().manual_seed(1))


def _logits(model: torch.nn.Module, input_ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=input_ids).logits


def test_conv1d_takes_the_linear_rule() -> None:
    assert DYNAMIC_REGISTRY.get_key(Conv1D) == "transformers.Conv1D"
    conv1d, linear = get_layer_type("transformers.Conv1D"), get_layer_type("nn.Linear")
    assert (conv1d.rule_class, conv1d.default) == (linear.rule_class, linear.default)
    assert AutoNASConfig().model_dump()["transformers.Conv1D"] == {"*": linear.base_rule()}


def test_dynamic_conv1d_slices_the_transposed_weight_and_exports_a_plain_conv1d() -> None:
    torch.manual_seed(0)
    layer = Conv1D(nf=12, nx=8)
    torch.nn.init.normal_(layer.bias)
    full_weight, full_bias = layer.weight.detach().clone(), layer.bias.detach().clone()
    x = torch.randn(2, 3, 8)
    reference = layer(x)

    dynamic = DYNAMIC_REGISTRY.convert(layer)
    assert dict(dynamic.named_hparams()).keys() == {"in_features", "out_features"}
    assert dynamic.get_hparam("out_features").choices == list(range(1, 13))
    torch.testing.assert_close(dynamic(x), reference, rtol=0, atol=0)

    dynamic.in_features, dynamic.out_features = 5, 7
    assert (dynamic.nx, dynamic.nf) == (5, 7)
    assert repr(dynamic) == "DynamicConv1D(nf=7, nx=5)"
    assert dynamic.weight.shape == (5, 7) and dynamic.bias.shape == (7,)
    active = dynamic(x[..., :5])
    expected = x[..., :5] @ full_weight[:5, :7] + full_bias[:7]
    torch.testing.assert_close(active, expected, rtol=1e-6, atol=1e-6)

    dynamic.modify(features_ratio=(0.5, 1.0), feature_divisor=4)
    assert dynamic.get_hparam("out_features").choices == [8, 12]
    assert dynamic.get_hparam("in_features").choices == [4, 8]
    dynamic.in_features, dynamic.out_features = 4, 8
    active = dynamic(x[..., :4])

    exported = dynamic.export()
    assert type(exported) is Conv1D
    assert (exported.nx, exported.nf) == (4, 8) and repr(exported) == "Conv1D(nf=8, nx=4)"
    assert exported.weight.shape == (4, 8) and exported.bias.shape == (8,)
    assert not hasattr(exported, "in_features") and not hasattr(exported, "out_features")
    torch.testing.assert_close(exported(x[..., :4]), active, rtol=0, atol=0)


def test_gpt2_mlp_widths_are_searchable_and_export_exactly() -> None:
    model = _gpt2()
    input_ids = _input_ids()
    reference = _logits(model, input_ids)
    space = generate_search_space(model, AutoNASConfig().model_dump())

    widths = {f"transformer.h.{i}.mlp.c_fc.out_features": MLP_WIDTHS for i in range(2)}
    heads = {f"transformer.h.{i}.attn.c_attn.out_features": [96, 144, 192] for i in range(2)}  # q, k, v of 2-4 heads
    hidden = {"transformer.wte.embedding_dim": [32, 64]}  # the residual stream, lm_head tied to wte
    assert space.hparams() == {**widths, **heads, **hidden, "transformer.h.depth": [0, 1, 2]}
    for block in model.transformer.h:
        assert block.mlp.c_proj.get_hparam("in_features") is block.mlp.c_fc.get_hparam("out_features")
        # the fused c_attn is three parts of whole heads; the output projection reads one part
        assert [hp.original for hp in block.attn.c_attn.get_hparam("out_features").inputs] == [64, 64, 64]
        assert block.attn.c_attn.get_hparam("out_features").inputs[0] is block.attn.c_proj.get_hparam("in_features")
    torch.testing.assert_close(_logits(model, input_ids), reference, rtol=0, atol=0)

    rng = random.Random(0)
    for sample in (min, rng.choice, rng.choice, rng.choice):
        space.sample(sample)
        dynamic = _logits(model, input_ids)
        exported = SearchSpace(copy.deepcopy(model)).export()
        widths = [block.mlp.c_fc.weight.shape[1] for block in exported.transformer.h]
        assert widths == [block.mlp.c_fc.out_features for block in model.transformer.h]
        torch.testing.assert_close(_logits(exported, input_ids), dynamic, rtol=1e-5, atol=1e-6)


def test_gpt2_cost_model_is_exact_against_the_exported_subnet() -> None:
    model = _gpt2()
    space = generate_search_space(model, AutoNASConfig().model_dump())
    dummy = _input_ids()
    costs = CostModel(model, dummy)
    rng = random.Random(0)
    seen = set()
    for sample in (max, min, rng.choice, rng.choice, rng.choice):
        space.sample(sample)
        exported = export_model(copy.deepcopy(model))
        flops, params = costs.flops(), costs.params()
        assert flops == count_flops(exported, dummy), f"FLOPs at {space.config(configurable=True)}"
        assert params == count_params(exported) == sum(p.numel() for p in exported.parameters())  # tied once
        seen.add(flops)
    assert len(seen) >= 3, "the checked subnets should differ in cost"


def test_gpt2_hidden_units_sort_by_the_norm_of_their_c_proj_rows() -> None:
    model = _gpt2()
    input_ids = _input_ids()
    reference = _logits(model, input_ids)
    space = generate_search_space(model, AutoNASConfig().model_dump())
    space.sort_parameters()
    torch.testing.assert_close(_logits(model, input_ids), reference, rtol=1e-5, atol=1e-5)
    for block in model.transformer.h:
        norms = block.mlp.c_proj.weight.detach().norm(dim=1)
        assert torch.all(norms[:-1] >= norms[1:]), "hidden units should be in decreasing importance"


def test_importing_autonas_dynamic_does_not_import_transformers() -> None:
    script = textwrap.dedent(
        """
        import sys
        import autonas_dynamic
        from autonas_config import registered_layer_types
        assert "transformers" not in sys.modules, "autonas_dynamic imported transformers"
        assert "transformers.Conv1D" in registered_layer_types()
        from transformers.pytorch_utils import Conv1D
        assert autonas_dynamic.DYNAMIC_REGISTRY.get_key(Conv1D) == "transformers.Conv1D"
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
