"""Model outputs that may change width: the ``outputs`` section frees the stream behind them.

A hand-written encoder returns its residual stream (embedding, a pre-norm MLP block, a final
norm). An output keeps its size unless the section lets its path change, so without it the
stream (and the final norm) keeps its width; with it the stream is one hparam, exported subnets
compute what the dynamic model does and costs are exact. Paths name dict keys and tuple
positions (``"0"``, ``"1.features"``); the default frees Hugging Face's ``last_hidden_state``
only. A channel read off the stream (``x[:, :, -1]``, as Bart's encoder does for its shape) keeps
the stream searchable but unsorted.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from subnet_checks import assert_exact_subnets

from autonas_config import AutoNASConfig
from autonas_dynamic import sort_parameters
from autonas_dynamic.space import SearchSpace, generate_search_space

VOCAB, HIDDEN, MLP = 50, 64, 128
STREAM = {"tokens.embedding_dim": [32, 64]}
MLP_WIDTH = {"up.out_features": [64, 96, 128]}


class Encoder(nn.Module):
    """Returns its stream: a bare encoder, as ``T5EncoderModel`` is."""

    def __init__(self) -> None:
        super().__init__()
        self.tokens = nn.Embedding(VOCAB, HIDDEN)
        self.norm1, self.norm = nn.LayerNorm(HIDDEN), nn.LayerNorm(HIDDEN)
        self.up, self.down = nn.Linear(HIDDEN, MLP), nn.Linear(MLP, HIDDEN)

    def stream(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.tokens(ids)
        return self.norm(x + self.down(self.up(self.norm1(x)).relu()))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.stream(ids)


class HeadedEncoder(Encoder):
    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(HIDDEN, 3)


class DictEncoder(HeadedEncoder):
    """Returns its stream next to a head's output, by name (as a Hugging Face model output)."""

    def forward(self, ids: torch.Tensor) -> dict[str, torch.Tensor]:
        stream = self.stream(ids)
        return {"last_hidden_state": stream, "logits": self.head(stream[:, 0])}


class NestedEncoder(HeadedEncoder):
    """Returns a tuple holding a dict: paths ``"0"``, ``"1.features"`` and ``"1.logits"``."""

    def forward(self, ids: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        stream = self.stream(ids)
        return self.head(stream), {"features": stream, "logits": self.head(stream)}


def _ids() -> torch.Tensor:
    return torch.randint(0, VOCAB, (2, 7), generator=torch.Generator().manual_seed(0))


def _rules(**outputs: bool) -> dict:
    return {**AutoNASConfig().model_dump(), "outputs": outputs}


def _convert(model: nn.Module, rules: dict | None = None) -> tuple[torch.Tensor, torch.Tensor, SearchSpace]:
    """Example ids, the model's output on them before converting, and its space (default config unless ``rules``)."""
    ids = _ids()
    with torch.no_grad():
        reference = model.eval()(ids)
    return ids, reference, generate_search_space(model, rules or AutoNASConfig().model_dump(), example_input=ids)


def _check_stream(model: nn.Module, exported: nn.Module) -> None:
    width = model.tokens.embedding_dim
    assert exported.tokens.weight.shape == (VOCAB, width) and exported.norm.normalized_shape == (width,)


def test_an_output_keeps_its_width_unless_the_outputs_section_lets_it_change() -> None:
    torch.manual_seed(0)
    ids = _ids()
    assert generate_search_space(Encoder(), AutoNASConfig().model_dump(), example_input=ids).hparams() == MLP_WIDTH
    assert generate_search_space(Encoder(), None, example_input=ids).hparams().keys() == {"up.out_features"}
    model = Encoder()
    ids, reference, space = _convert(model, _rules(**{"": True}))  # "": the returned tensor
    assert space.hparams() == {**STREAM, **MLP_WIDTH}
    stream = model.tokens.get_hparam("embedding_dim")
    followers = [(model.up, "in_features"), (model.down, "out_features"), (model.norm, "num_features")]
    assert all(module.get_hparam(name) is stream for module, name in followers)
    assert_exact_subnets(model, space, ids, reference, _check_stream)


def test_the_default_frees_last_hidden_state_and_keeps_the_logits() -> None:
    torch.manual_seed(0)
    model = DictEncoder()
    ids, reference, space = _convert(model)
    assert space.hparams() == {**STREAM, **MLP_WIDTH}  # the head's out_features (the logits) keep their size
    assert model.head.get_hparam("in_features") is model.tokens.get_hparam("embedding_dim")
    assert_exact_subnets(model, space, ids, reference, _check_stream)
    assert model.tokens.get_hparam("embedding_dim").importance is None  # sorting would permute the output
    with torch.no_grad():
        space.sample(max)
        sort_parameters(model)  # sorts the MLP only
        torch.testing.assert_close(model(ids), reference, rtol=1e-5, atol=1e-5)
    frozen = _rules(last_hidden_state=True, logits=True, **{"*": False})  # the last matching pattern decides
    assert generate_search_space(DictEncoder(), frozen, example_input=ids).hparams() == MLP_WIDTH


@pytest.mark.parametrize(
    ("outputs", "expected"),
    [
        ({"1.features": True}, {**STREAM, **MLP_WIDTH}),  # the logits "0" and "1.logits" keep their size
        ({"0": True, "1.logits": True}, MLP_WIDTH),  # the stream is "1.features"
        ({"*": True, "1.features": False}, MLP_WIDTH),
        ({"*": True}, {**STREAM, **MLP_WIDTH}),  # the head's 3 logits are too few to search
    ],
)
def test_nested_outputs_are_named_by_their_keys_and_positions(outputs: dict, expected: dict) -> None:
    assert generate_search_space(NestedEncoder(), _rules(**outputs), example_input=_ids()).hparams() == expected


def test_a_malformed_outputs_section_is_refused_naming_the_pattern() -> None:
    with pytest.raises(ValueError, match=r"outputs pattern 'last_hidden_state': expected True .* got 'yes'"):
        generate_search_space(Encoder(), _rules(last_hidden_state="yes"), example_input=_ids())


class Positions(nn.Embedding):
    """Bart's learned positions: read only the sequence length of what they are given."""

    def forward(self, like: torch.Tensor) -> torch.Tensor:
        return super().forward(torch.arange(like.shape[1], device=like.device))


class LastChannelReader(HeadedEncoder):
    """Reads the last channel of its stream: for its shape (Bart's encoder) and as a gate."""

    def __init__(self) -> None:
        super().__init__()
        self.positions = Positions(16, HIDDEN)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.tokens(ids)
        x = x + self.positions(x[:, :, -1])
        x = x * torch.sigmoid(x[:, :, -1]).unsqueeze(-1)
        return self.head(self.norm(x + self.down(self.up(self.norm1(x)).relu())))


def test_a_stream_whose_last_channel_is_read_is_searched_unsorted() -> None:
    torch.manual_seed(0)
    model = LastChannelReader()
    ids, reference, space = _convert(model)
    assert space.hparams() == {**STREAM, **MLP_WIDTH}
    assert model.positions.get_hparam("embedding_dim") is model.tokens.get_hparam("embedding_dim")
    assert model.tokens.get_hparam("embedding_dim").importance is None  # the last channel is a subnet's own
    assert_exact_subnets(model, space, ids, reference)
    with torch.no_grad():
        space.sample(max)
        sort_parameters(model)  # sorts the MLP only: the stream's last channel stays where it is
        torch.testing.assert_close(model(ids), reference, rtol=1e-5, atol=1e-5)
