"""Every precondition of a model raises one error type, whichever entry point reaches it; export is idempotent."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from modes_models import RULES, make_tiny

import autonas_modes as am
from autonas_dynamic.errors import AlreadyConvertedError, DynamicError, UnsupportedModelError
from autonas_dynamic.space import generate_search_space
from autonas_modes.errors import ApplyModeError, InvalidStateError, ModesError, NotConvertedError


def _convert(model: nn.Module) -> nn.Module:
    return am.convert(model, mode=[("autonas", RULES)])


def _saved_state() -> dict:
    return am.autonas_state(_convert(make_tiny()))


# ----------------------------------------------------------------------------- export


def test_export_of_an_exported_model_returns_the_same_model_unchanged(images: torch.Tensor) -> None:
    model = _convert(make_tiny())
    am.sample(model, min)
    exported = am.export(model)
    state, params = am.autonas_state(exported), dict(exported.named_parameters())
    with torch.no_grad():
        expected = exported(images)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = am.export(exported, calib=True)
    assert again is exported
    assert am.autonas_state(again) == state
    assert all(param is params[name] for name, param in again.named_parameters())  # nothing copied
    with torch.no_grad():
        torch.testing.assert_close(again(images), expected)


def test_the_documented_workflow_exports_what_search_returned(images: torch.Tensor) -> None:
    model = _convert(make_tiny())
    model, _ = am.search(
        model,
        {"flops": "90%"},
        images[:1],
        config={"score_func": lambda m: 0.0, "num_iters": 5, "data_loader": [images]},
        searcher="random",
    )
    assert am.export(model) is model
    assert [entry["mode"] for entry in am.autonas_state(model)["modes"]] == ["autonas", "export_nas"]


def test_a_model_exported_and_converted_again_exports_again() -> None:
    model = am.export(_convert(make_tiny()))
    _convert(model)
    assert am.is_dynamic(am.export(model)) is False
    assert [entry["mode"] for entry in am.autonas_state(model)["modes"]] == ["autonas", "export_nas"] * 2


def test_export_of_a_never_converted_model_says_so_and_how_to_convert() -> None:
    with pytest.raises(
        NotConvertedError, match=r"TinyNet was never converted.*autonas\.convert\(model, mode='autonas'\)"
    ):
        am.export(make_tiny())


# ----------------------------------------------------------------------------- model preconditions


def _channels_last() -> nn.Module:
    return make_tiny().to(memory_format=torch.channels_last)


def _scripted() -> nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.script is deprecated
        return torch.jit.script(make_tiny())


def _traced() -> nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.jit.trace(make_tiny(), torch.randn(1, 3, 12, 12))


#: Every function that converts a model, applied to a fresh model of the kind given.
ENTRY_POINTS: dict[str, Callable[[nn.Module], object]] = {
    "convert": _convert,
    "generate_search_space": lambda model: generate_search_space(model, RULES),
    "restore_from_autonas_state": lambda model: am.restore_from_autonas_state(model, _saved_state()),
}

UNSUPPORTED: dict[str, tuple[Callable[[], nn.Module], str]] = {
    "channels_last": (_channels_last, r"'stem\.0\.weight' of TinyNet is in channels_last memory format"),
    "torch.jit.script": (_scripted, r"TorchScript module \(RecursiveScriptModule.*pass the eager nn\.Module"),
    "torch.jit.trace": (_traced, r"TorchScript module \(TopLevelTracedModule.*pass the eager nn\.Module"),
}


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
@pytest.mark.parametrize("kind", sorted(UNSUPPORTED))
def test_a_model_that_cannot_be_converted_raises_one_type_at_every_entry_point(entry: str, kind: str) -> None:
    build, message = UNSUPPORTED[kind]
    model = build()
    with pytest.raises(UnsupportedModelError, match=message):
        ENTRY_POINTS[entry](model)
    assert not hasattr(model, "_autonas_state")  # refused before anything was written onto the model


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
@pytest.mark.parametrize("first", ["convert", "generate_search_space"])
def test_converting_a_search_space_again_raises_one_type_at_every_entry_point(first: str, entry: str) -> None:
    model = make_tiny()
    ENTRY_POINTS[first](model)
    with pytest.raises(AlreadyConvertedError, match="TinyNet is already converted into a search space"):
        ENTRY_POINTS[entry](model)


@pytest.mark.parametrize(
    "restore",
    [
        lambda model, path: am.restore(model, path),
        lambda model, path: am.restore_from_autonas_state(model, am.autonas_state(am.restore(make_tiny(), path))),
    ],
    ids=["restore", "restore_from_autonas_state"],
)
def test_restoring_into_a_wrapped_model_is_refused(restore: Callable, tmp_path: Path) -> None:
    path = tmp_path / "arch.pth"
    am.save(_convert(make_tiny()), path)
    with pytest.raises(
        UnsupportedModelError, match="DataParallel wrapper around TinyNet; restore needs the bare model"
    ):
        restore(nn.DataParallel(make_tiny()), path)


def test_generate_search_space_refuses_a_wrapped_model() -> None:
    with pytest.raises(UnsupportedModelError, match=r"DataParallel wrapper around TinyNet; convert its \.module"):
        generate_search_space(nn.DataParallel(make_tiny()), RULES)


@pytest.mark.parametrize("call", ["convert", "export", "save", "search"])
def test_functions_that_return_or_store_the_model_warn_once_when_they_unwrap_it(
    call: str, images: torch.Tensor, tmp_path: Path
) -> None:
    model = make_tiny() if call == "convert" else _convert(make_tiny())
    calls = {
        "convert": lambda wrapped: _convert(wrapped),
        "export": am.export,
        "save": lambda wrapped: am.save(wrapped, tmp_path / "arch.pth"),
        "search": lambda wrapped: am.search(
            wrapped,
            {"flops": "90%"},
            images[:1],
            config={"score_func": lambda m: 0.0, "num_iters": 3},
            searcher="random",
        ),
    }
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        calls[call](nn.DataParallel(model))
    unwrapping = [str(w.message) for w in caught if "unwraps" in str(w.message)]
    assert unwrapping == [f"{call}() unwraps the DataParallel model and works on the inner TinyNet; " + _ADVICE]
    assert am.get_mode(model) is not None


_ADVICE = "pass the bare model to avoid this warning."


# ----------------------------------------------------------------------------- the hierarchy


@pytest.mark.parametrize(
    ("error", "base", "builtin"),
    [
        (ApplyModeError, ModesError, RuntimeError),
        (NotConvertedError, ModesError, RuntimeError),
        (InvalidStateError, ModesError, ValueError),
        (UnsupportedModelError, DynamicError, ValueError),
        (AlreadyConvertedError, DynamicError, ValueError),
    ],
)
def test_each_error_derives_from_its_package_base_and_its_builtin(error: type, base: type, builtin: type) -> None:
    assert issubclass(error, base) and issubclass(error, builtin)
    assert getattr(am, error.__name__, error) is error


def test_the_old_import_paths_still_give_the_same_classes() -> None:
    from autonas_dynamic.cost import CostModelError as from_cost
    from autonas_dynamic.cost.model import CostModelError as from_cost_model
    from autonas_dynamic.errors import CostModelError
    from autonas_modes.mode import ApplyModeError as from_mode

    assert from_mode is ApplyModeError and from_cost is from_cost_model is CostModelError


def test_a_malformed_checkpoint_is_an_invalid_state_error(tmp_path: Path) -> None:
    path = tmp_path / "weights.pth"
    torch.save(make_tiny().state_dict(), path)
    with pytest.raises(InvalidStateError, match="Not an autonas checkpoint"):
        am.restore(make_tiny(), path)
    with pytest.raises(InvalidStateError, match="missing keys"):
        am.restore_from_autonas_state(make_tiny(), {"modes": []})
