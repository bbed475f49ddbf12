"""The sampling generator: seeding, copies, and the one-time broadcast under torch.distributed."""

from __future__ import annotations

import copy
import pickle
import random
import socket

import pytest
import torch.distributed as dist
import torch.multiprocessing as mp

from autonas_patch import SyncedRandom


def draws(generator: SyncedRandom, n: int = 8) -> list[int]:
    return [generator.rng.getrandbits(32) for _ in range(n)]


@pytest.mark.parametrize("seed", [0, 1, 2**70])
def test_seed_gives_the_random_module_sequence(seed: int) -> None:
    reference = random.Random(seed)
    assert draws(SyncedRandom(seed)) == [reference.getrandbits(32) for _ in range(8)]


def test_seed_zero_is_a_seed_and_none_is_random() -> None:
    assert draws(SyncedRandom(0)) == draws(SyncedRandom(0))
    assert draws(SyncedRandom(None)) != draws(SyncedRandom(None))


def test_reseed_starts_over() -> None:
    generator = SyncedRandom(None)
    draws(generator, 3)
    generator.reseed(0)
    assert generator.seed == 0
    assert draws(generator) == draws(SyncedRandom(0))


@pytest.mark.parametrize("seed", [-1, 1.5, "3", True])
def test_bad_seed(seed: object) -> None:
    with pytest.raises(ValueError, match="seed must be a non-negative int or None"):
        SyncedRandom(seed)  # type: ignore[arg-type]


@pytest.mark.parametrize("clone", [copy.deepcopy, lambda g: pickle.loads(pickle.dumps(g))])
def test_copies_continue_the_sequence(clone) -> None:
    generator = SyncedRandom(5)
    draws(generator, 3)
    copied = clone(generator)
    assert draws(copied) == draws(generator)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _rank_draws(rank: int, port: int, seeds: list[int | None], results: dict) -> None:
    # each rank has its own seed and uses the generator once before the process group exists
    generator = SyncedRandom(seeds[rank])
    before = draws(generator, 2)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        after = draws(generator)
        copied = copy.deepcopy(generator)  # a deep copy stays in step without another broadcast
        results[rank] = (before, after, draws(copied, 4), draws(generator, 4))
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("seeds", [[None, None], [3, 4]])
def test_ranks_draw_the_same_numbers_after_the_first_use_in_a_process_group(seeds) -> None:
    with mp.Manager() as manager:
        results = manager.dict()
        mp.spawn(_rank_draws, args=(_free_port(), seeds, results), nprocs=2)
        (before0, after0, copy0, rest0), (before1, after1, copy1, rest1) = results[0], results[1]
    assert before0 != before1, "ranks must differ before synchronisation for the test to mean anything"
    assert after0 == after1
    assert copy0 == rest0 == copy1 == rest1
    if seeds[0] is not None:
        reference = random.Random(seeds[0])
        expected = [reference.getrandbits(32) for _ in range(10)]
        assert before0 + after0 == expected, "rank 0's sequence continues undisturbed"
