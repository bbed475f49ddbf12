"""The hidden width of a transformer stack: embeddings, norms on the residual stream, every projection on it.

A hand-written decoder: token and position embeddings (``nn.Embedding``, a dynamic layer type), an
RMSNorm written as module code (a mean of squares over the width and a per-channel weight), a
block of attention and MLP on a residual stream, a final norm and an output head whose weight is
the token embedding's (tied). One hparam sizes the stream: the embeddings' ``embedding_dim``, the
norms, the in-features of q/k/v and MLP-in, the out-features of the attention output and MLP-out,
and the head's in-features. Checked: the exact groups and choices, the largest subnet is the
original, exported subnets compute what the dynamic model does with the embedding still tied,
exact costs, sorting keeps the outputs. A module held outside the module tree (a shared
activation) is traced inline.
"""

from __future__ import annotations

import copy

import torch
import torch.nn as nn
import torch.nn.functional as F
from subnet_checks import assert_exact_subnets

from autonas_config import AutoNASConfig
from autonas_dynamic import export_model, sort_parameters
from autonas_dynamic.space import generate_search_space

VOCAB, HIDDEN, HEADS, HEAD_DIM, MLP = 50, 64, 2, 16, 128
_SHARED_ACTIVATION = nn.GELU()  # held by no module: the MLP calls it


class RMSNorm(nn.Module):
    """The norm of Llama-style models, written as module code."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.rand(width) + 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6))


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.norm1, self.norm2 = RMSNorm(HIDDEN), RMSNorm(HIDDEN)
        self.q, self.k, self.v = (nn.Linear(HIDDEN, HEADS * HEAD_DIM) for _ in range(3))
        self.o = nn.Linear(HEADS * HEAD_DIM, HIDDEN)
        self.up, self.down = nn.Linear(HIDDEN, MLP), nn.Linear(MLP, HIDDEN)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        q, k, v = (p(h).view(*h.shape[:-1], -1, HEAD_DIM).transpose(1, 2) for p in (self.q, self.k, self.v))
        attended = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.o(attended.transpose(1, 2).reshape(*x.shape[:-1], -1))
        return x + self.down(_SHARED_ACTIVATION(self.up(self.norm2(x))))


class Decoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.tokens, self.positions = nn.Embedding(VOCAB, HIDDEN), nn.Embedding(16, HIDDEN)
        self.block, self.norm = Block(), RMSNorm(HIDDEN)
        self.head = nn.Linear(HIDDEN, VOCAB, bias=False)
        self.head.weight = self.tokens.weight  # tied

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(ids.shape[1], device=ids.device)
        return self.head(self.norm(self.block(self.tokens(ids) + self.positions(positions))))


def _ids() -> torch.Tensor:
    return torch.randint(0, VOCAB, (2, 7), generator=torch.Generator().manual_seed(0))


def test_one_hparam_sizes_the_residual_stream_and_the_tied_embedding_stays_tied() -> None:
    torch.manual_seed(0)
    model, ids = Decoder().eval(), _ids()
    with torch.no_grad():
        reference = model(ids)
    space = generate_search_space(model, AutoNASConfig().model_dump(), example_input=ids)
    assert space.hparams() == {
        "tokens.embedding_dim": [32, 64],  # the stream (the nn.Embedding rule: the nn.Linear default)
        "block.q.out_features": [16, 32],  # 1 or 2 heads
        "block.up.out_features": [64, 96, 128],
    }
    stream = model.tokens.get_hparam("embedding_dim")
    followers = [
        (model.positions, "embedding_dim"), (model.block.q, "in_features"), (model.block.v, "in_features"),
        (model.block.o, "out_features"), (model.block.up, "in_features"), (model.block.down, "out_features"),
        (model.head, "in_features"),
    ]  # fmt: skip
    assert all(module.get_hparam(name) is stream for module, name in followers)
    assert model.head.weight is model.tokens.weight

    def check(model: nn.Module, exported: nn.Module) -> None:
        width = model.tokens.embedding_dim
        assert exported.block.norm1.weight.shape == (width,) and exported.tokens.embedding_dim == width
        assert exported.head.weight is exported.tokens.weight  # still tied

    assert_exact_subnets(model, space, ids, reference, check)
    with torch.no_grad():
        space.sample(max)
        sort_parameters(model)
        torch.testing.assert_close(model(ids), reference, rtol=1e-5, atol=1e-5)
    assert model.head.weight is model.tokens.weight


def test_a_channel_sum_is_not_a_statistic_and_keeps_the_stream() -> None:
    """Only means and variances over the width leave no width behind; a sum grows with it."""

    class SumNorm(RMSNorm):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.weight * x / x.sum(-1, keepdim=True)

    model = Decoder()
    model.norm = SumNorm(HIDDEN)
    space = generate_search_space(model, AutoNASConfig().model_dump(), example_input=_ids())
    assert "tokens.embedding_dim" not in space.hparams()


class ScaledEmbedding(nn.Embedding):
    """Bart's word embedding: an ``nn.Embedding`` subclass with its own forward."""

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return super().forward(ids) * 8.0


class EncoderDecoder(nn.Module):
    """Two embeddings holding one weight (tied): one feeds the model's output, one a searchable stream."""

    def __init__(self) -> None:
        super().__init__()
        self.shared = nn.Embedding(VOCAB, HIDDEN)  # never called: its copies are
        self.encoder_tokens, self.decoder_tokens = ScaledEmbedding(VOCAB, HIDDEN), ScaledEmbedding(VOCAB, HIDDEN)
        self.encoder_tokens.weight = self.decoder_tokens.weight = self.shared.weight
        self.up, self.down = nn.Linear(HIDDEN, MLP), nn.Linear(MLP, 8)

    def forward(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        encoded = self.encoder_tokens(ids)  # returned: its width stays
        return encoded, self.down(self.up(self.decoder_tokens(ids)).relu())


def test_an_embedding_subclass_converts_and_tied_holders_of_a_weight_slice_it_alike() -> None:
    torch.manual_seed(0)
    model, ids = EncoderDecoder().eval(), _ids()
    space = generate_search_space(model, AutoNASConfig().model_dump(), example_input=ids)
    # the decoder's stream alone could shrink, but its weight is the encoder's, whose output keeps its width
    assert space.hparams() == {"up.out_features": [64, 96, 128]}
    space.sample(min)
    with torch.no_grad():
        exported = export_model(copy.deepcopy(model))
        assert exported.encoder_tokens.weight is exported.decoder_tokens.weight is exported.shared.weight
        torch.testing.assert_close(exported(ids), model(ids), rtol=0, atol=0)

    class Searchable(EncoderDecoder):
        def forward(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return self.down(self.up(self.encoder_tokens(ids) + self.decoder_tokens(ids)).relu())

    model = Searchable().eval()
    space = generate_search_space(model, AutoNASConfig().model_dump(), example_input=ids)
    assert space.hparams() == {"shared.embedding_dim": [32, 64], "up.out_features": [64, 96, 128]}
    space.sample(min)
    with torch.no_grad():
        exported = export_model(copy.deepcopy(model))
        assert exported.shared.weight.shape == (VOCAB, 32) and exported.encoder_tokens.weight is exported.shared.weight
        torch.testing.assert_close(exported(ids), model(ids), rtol=0, atol=0)
