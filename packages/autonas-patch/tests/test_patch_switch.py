"""The global patches switch in all its forms, checked on a real training forward."""

from __future__ import annotations

import pytest
import torch
from patch_models import patched_supernet

from autonas_patch import PatchManager, enable_patches, is_patches_enabled, no_patches, set_patches_enabled


def samples_in_training() -> bool:
    """Whether a training forward of a freshly patched supernet activates a sampled subnet right now."""
    model, _ = patched_supernet(seed=3)
    manager = PatchManager.get_manager(model)
    model.train()
    model(torch.randn(2, 3, 8, 8))
    data = manager.patch_data
    sampled = data["autosampled"]
    assert len(data["queue"]) == data["count"] == (1 if sampled else 0)
    return sampled


def test_default_is_on_and_forward_samples() -> None:
    assert is_patches_enabled()
    assert samples_in_training()


@pytest.mark.parametrize("switch_off", [no_patches, lambda: set_patches_enabled(False)])
def test_off_as_context_manager_restores(switch_off) -> None:
    with switch_off():
        assert not is_patches_enabled()
        assert not samples_in_training()
    assert is_patches_enabled()
    assert samples_in_training()


def test_nested_inversions_restore_each_level() -> None:
    with no_patches():
        assert not is_patches_enabled()
        with enable_patches():
            assert is_patches_enabled()
            assert samples_in_training()
            with set_patches_enabled(False):
                assert not samples_in_training()
                with no_patches():
                    assert not is_patches_enabled()
                assert not is_patches_enabled()
            assert is_patches_enabled()
        assert not is_patches_enabled()
        with set_patches_enabled(True):
            assert is_patches_enabled()
        assert not is_patches_enabled()
    assert is_patches_enabled()


def test_decorators_switch_only_during_the_call() -> None:
    @no_patches()
    def off() -> bool:
        return samples_in_training()

    @enable_patches()
    def on() -> bool:
        return samples_in_training()

    @set_patches_enabled(False)
    def off_by_flag() -> bool:
        return is_patches_enabled()

    assert is_patches_enabled(), "decorating with set_patches_enabled must not switch anything yet"
    assert off() is False
    assert off_by_flag() is False
    assert is_patches_enabled()
    with no_patches():
        assert on() is True
        assert not is_patches_enabled()
    assert on.__name__ == "on"


def test_decorated_function_can_recurse() -> None:
    @no_patches()
    def depth(n: int) -> int:
        assert not is_patches_enabled()
        return 0 if n == 0 else 1 + depth(n - 1)

    assert depth(3) == 3
    assert is_patches_enabled()


def test_plain_call_switches_for_good() -> None:
    set_patches_enabled(False)
    try:
        assert not is_patches_enabled()
        assert not samples_in_training()
    finally:
        set_patches_enabled(True)
    assert is_patches_enabled()


def test_exceptions_restore_the_switch() -> None:
    with pytest.raises(ValueError), no_patches():
        raise ValueError
    assert is_patches_enabled()

    @no_patches()
    def fails() -> None:
        raise KeyError

    with no_patches(), pytest.raises(KeyError), enable_patches():
        fails()
    assert is_patches_enabled()


def test_eval_does_not_calibrate_while_off() -> None:
    model, _ = patched_supernet()
    manager = PatchManager.get_manager(model)
    manager.sample()
    stats = model.stem_bn.running_mean.clone()
    manager.patch_data["queue"].extend([(torch.randn(2, 3, 8, 8), {})] * 50)
    with no_patches():
        model.eval()
    assert torch.equal(model.stem_bn.running_mean, stats)
    assert manager.patch_data["train_count_since_sample"] == 0


def test_rejects_non_bool() -> None:
    with pytest.raises(TypeError, match="bool"):
        set_patches_enabled(1)  # type: ignore[arg-type]
    assert is_patches_enabled()
