"""Two patterns of OPT's decoder, written by hand: tokens flattened around the MLP, positions from a mask.

* A block that flattens its tokens around the MLP (``reshape(-1, C)``, then ``view`` back to the
  input's shape) is still residual: its ModuleList gets a depth. A block whose output keeps the
  flattened shape is not (dropping it would change the shape downstream); the next one, whose
  input is flat already, is.
* A learned position embedding (an ``nn.Embedding`` subclass) whose forward counts an attention
  mask (``cumsum``) is verified on a mask of ones, converts, and joins the hidden width.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from subnet_checks import assert_exact_subnets

from autonas_dynamic.space import generate_search_space

VOCAB, HIDDEN, MLP, POSITIONS = 40, 32, 64, 16


class MaskPositions(nn.Embedding):
    """Positions counted from the attention mask, as OPT's learned positional embedding does."""

    def forward(self, attention_mask: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        positions = (torch.cumsum(attention_mask, dim=1) * attention_mask - 1).long()
        return super().forward(positions)


class FlatMLPBlock(nn.Module):
    """``x + mlp(norm(x))`` computed on the tokens flattened to rows; ``unflatten=False`` keeps them flat."""

    def __init__(self, unflatten: bool) -> None:
        super().__init__()
        self.unflatten = unflatten
        self.norm = nn.LayerNorm(HIDDEN)
        self.up, self.down = nn.Linear(HIDDEN, MLP), nn.Linear(MLP, HIDDEN)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        flat = x.reshape(-1, x.size(-1))
        out = flat + self.down(torch.relu(self.up(self.norm(flat))))
        return out.view(shape) if self.unflatten else out


class Decoder(nn.Module):
    def __init__(self, unflatten: bool = True) -> None:
        super().__init__()
        self.tokens = nn.Embedding(VOCAB, HIDDEN)
        self.positions = MaskPositions(POSITIONS, HIDDEN)
        self.layers = nn.ModuleList(FlatMLPBlock(unflatten) for _ in range(2))
        self.head = nn.Linear(HIDDEN, VOCAB)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        h = self.tokens(input_ids) + self.positions(torch.ones_like(input_ids))
        for layer in self.layers:
            h = layer(h)
        return self.head(h)


def _ids() -> torch.Tensor:
    return torch.randint(0, VOCAB, (2, 6), generator=torch.Generator().manual_seed(0))


def test_a_block_flattening_its_tokens_is_dropped_by_depth_and_mask_positions_join_the_hidden_width() -> None:
    torch.manual_seed(0)
    model = Decoder().eval()
    ids = _ids()
    with torch.no_grad():
        reference = model(ids)
    space = generate_search_space(model, example_input=ids)
    hparams = space.hparams()
    assert hparams["layers.depth"] == [0, 1, 2]
    assert hparams["tokens.embedding_dim"] == list(range(1, HIDDEN + 1))  # the stream, position table included
    assert type(model.positions).__name__ == "DynamicMaskPositions"
    assert model.positions.get_hparam("embedding_dim") is model.tokens.get_hparam("embedding_dim")

    def check(model: nn.Module, exported: nn.Module) -> None:
        assert type(exported.positions) is MaskPositions
        assert exported.positions.weight.shape[1] == space.config()["tokens.embedding_dim"]

    assert_exact_subnets(model, space, ids, reference, check)


def test_a_block_whose_output_stays_flattened_is_kept() -> None:
    model = Decoder(unflatten=False).eval()
    space = generate_search_space(model, example_input=_ids())
    assert space.hparams()["layers.depth"] == [1, 2]  # the second block's input is flat already
