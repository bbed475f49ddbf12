"""In-place distillation of padded sequences: over the real tokens (``mask=``) against every position.

A GPT-2 supernet (2 layers x 64, built from a config, converted with the default
``AutoNASConfig``) learns to predict the next pixel of scikit-learn's bundled 8x8 digits read as
sequences of 64 tokens (intensities 0-16 as tokens 1-17), each cut to a random length of 12-64
and right-padded (about 40% padding). Each optimizer step is ``an.sandwich(num_random=2)`` with
the built-in distillation, once averaged over the real tokens of the batch
(``an.soft_cross_entropy(..., mask=attention_mask)``, what ``SandwichTrainer`` does) and once over
every position. Reported: the held-out next-token loss (real tokens only) of fixed subnets (max,
min, three random), mean and spread over seeds, both variants side by side.

Run: ``python tools/bench/bench_masked_distillation.py [--epochs 10] [--seeds 0 1 2 3] [--width 64 --layers 2]
[--masked-weight 0.6 --only-masked]``; results in tools/bench/README.md.
"""

from __future__ import annotations

import argparse
import copy
import random
import statistics
import time
from typing import Any

import torch
import transformers
from sklearn.datasets import load_digits

import autonas as an

HELD_OUT = 397  # of the 1797 digits; the other 1400 train


def padded_digits(seed: int = 123) -> dict[str, torch.Tensor]:
    """The digits as right-padded token sequences of random lengths, shuffled, with their attention mask."""
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.tensor(load_digits().data, dtype=torch.long) + 1  # 0 is the padding token
    tokens = tokens[torch.randperm(len(tokens), generator=generator)]
    lengths = torch.randint(12, tokens.shape[1] + 1, (len(tokens),), generator=generator)
    mask = (torch.arange(tokens.shape[1]) < lengths[:, None]).long()
    tokens = tokens * mask
    return {"input_ids": tokens, "attention_mask": mask, "labels": tokens.masked_fill(mask == 0, -100)}


def supernet(seed: int, width: int, layers: int) -> torch.nn.Module:
    config = transformers.GPT2Config(
        vocab_size=18, n_embd=width, n_layer=layers, n_head=4, n_positions=64, resid_pdrop=0.0, embd_pdrop=0.0,
        attn_pdrop=0.0, bos_token_id=0, eos_token_id=0,
    )  # fmt: skip
    torch.manual_seed(seed)
    return an.convert(transformers.GPT2LMHeadModel(config), mode="autonas", mode_kwargs={"seed": seed})


def rows(data: dict[str, torch.Tensor], index: Any) -> dict[str, torch.Tensor]:
    return {key: value[index] for key, value in data.items()}


def fixed_subnets(model: torch.nn.Module, num_random: int = 3) -> list[dict]:
    """The configs of the maximal, the minimal and ``num_random`` random subnets, all of different sizes.

    Sizes (parameter counts of the exported subnets) tell architectures apart: two configs that
    differ only in the widths of a layer that the depth drops are the same subnet.
    """
    configs: list[dict] = []
    sizes: set[int] = set()
    rng = random.Random(7)
    with an.no_patches():
        for sample_func in [max, min] + [rng.choice] * 100:
            candidate = copy.deepcopy(model)
            an.sample(candidate, sample_func=sample_func)
            config = an.get_subnet_config(candidate, configurable=True)
            size = sum(p.numel() for p in an.export(candidate).parameters())
            if size not in sizes:
                configs.append(config)
                sizes.add(size)
            if len(configs) == 2 + num_random:
                break
    return configs


def train(
    model: torch.nn.Module, data: dict, masked: bool, epochs: int, lr: float, seed: int, batch: int, weight: float
) -> None:
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    size = len(data["input_ids"])
    model.train()
    for _ in range(epochs):
        order = torch.randperm(size, generator=generator)
        for start in range(0, size - batch + 1, batch):
            inputs = rows(data, order[start : start + batch])

            def real_tokens(output, teacher, mask=inputs["attention_mask"]):
                return weight * an.soft_cross_entropy(output.logits, teacher.logits, dim=-1, mask=mask)

            optimizer.zero_grad()
            for subnet in an.sandwich(model, num_random=2, distill=real_tokens if masked else True):
                subnet.loss(model(**inputs), None, lambda output, _: output.loss).backward()
            optimizer.step()


def held_out_losses(model: torch.nn.Module, data: dict, configs: list[dict]) -> list[float]:
    """The next-token loss over the real held-out tokens of each subnet."""
    model.eval()
    losses = []
    with torch.no_grad(), an.no_patches():
        for config in configs:
            an.select(model, config)
            losses.append(model(**data).loss.item())
    return losses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--masked-weight", type=float, default=1.0,
        help="scale of the masked distillation loss (the real tokens' share, ~0.6, weighs them as the unmasked mean does)",
    )  # fmt: skip
    parser.add_argument("--only-masked", action="store_true", help="train the masked variant only")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()
    data = padded_digits()
    train_data, test_data = rows(data, slice(HELD_OUT, None)), rows(data, slice(0, HELD_OUT))
    configs = fixed_subnets(supernet(0, args.width, args.layers))
    names = ["max", "min"] + [f"random {i}" for i in range(1, len(configs) - 1)]
    padding = 1 - data["attention_mask"].float().mean().item()
    results: dict[bool, list[list[float]]] = {True: [], False: []}
    for seed in args.seeds:
        for masked in (True,) if args.only_masked else (True, False):
            start = time.perf_counter()
            model = supernet(seed, args.width, args.layers)
            train(model, train_data, masked, args.epochs, args.lr, seed, args.batch, args.masked_weight)
            results[masked].append(held_out_losses(model, test_data, configs))
            label = "real tokens" if masked else "every position"
            losses = ", ".join(f"{loss:.4f}" for loss in results[masked][-1])
            print(f"seed {seed}, {label}: {losses} ({time.perf_counter() - start:.0f} s)", flush=True)

    def cell(values: list[float]) -> str:
        if not values:
            return "-"
        return f"{statistics.mean(values):.4f} ({min(values):.4f}-{max(values):.4f})"

    print(
        f"\nHeld-out next-token loss (lower is better), GPT-2 {args.layers} x {args.width}, {padding:.0%} padding, "
        f"{args.epochs} epochs, lr {args.lr}, seeds {args.seeds}: mean (range over seeds)"
    )
    print(f"| subnet | distillation over the real tokens (x {args.masked_weight}) | over every position |")
    print("| --- | --- | --- |")
    for index, name in enumerate(names):
        print(f"| {name} | {cell([r[index] for r in results[True]])} | {cell([r[index] for r in results[False]])} |")
    means = {masked: [statistics.mean(r) for r in runs] for masked, runs in results.items()}
    print(f"| mean of the subnets | {cell(means[True])} | {cell(means[False])} |")


if __name__ == "__main__":
    main()
