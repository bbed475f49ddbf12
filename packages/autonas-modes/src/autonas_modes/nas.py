"""The ``"autonas"`` mode (model -> search space) and the ``"export_nas"`` mode (search space -> plain model)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import torch.nn as nn
from pydantic import BaseModel

from .errors import ApplyModeError
from .mode import NAS_REGISTRY, ConvertReturn, Metadata, ModeDescriptor, ModeRegistry
from .modelspace import model_space, patch_model, restore_subnet, unpatch_model
from .state import as_plain_data

if TYPE_CHECKING:
    from autonas_config import ExportConfig

__all__ = [
    "AutoNASModeDescriptor",
    "ExportModeDescriptor",
    "convert_autonas_searchspace",
    "convert_searchspace",
    "export_searchspace",
    "restore_autonas_searchspace",
    "restore_export",
    "restore_searchspace",
    "update_autonas_metadata",
]


def _model_attributes(model: nn.Module) -> dict[str, Any]:
    return {
        "type(model)": type(model).__name__,
        "model.forward": getattr(model.forward, "__name__", None),
        "training": model.training,
    }


def _tensor_shapes(model: nn.Module) -> dict[str, list[int]]:
    """The shape of every ``state_dict`` entry: the layer sizes the model was built with."""
    return {key: list(tensor.shape) for key, tensor in model.state_dict().items()}


def _shape_text(shape: list[int] | None) -> str:
    return "absent" if shape is None else f"shape {tuple(shape)}"


def _check_tensor_shapes(model: nn.Module, saved: dict[str, list[int]] | None) -> None:
    """Raise naming the first layer whose tensor shapes differ from those recorded at conversion.

    States written before the shapes were recorded (``saved is None``) are not checked.
    """
    if saved is None:
        return
    current = _tensor_shapes(model)
    for key in [*current, *(key for key in saved if key not in current)]:
        here, there = current.get(key), saved.get(key)
        if here == there:
            continue
        layer = key.rpartition(".")[0] or "<root>"
        difference = f"{key}: {_shape_text(here)} in this model, {_shape_text(there)} in the saved one"
        raise ApplyModeError(
            f"Cannot restore the search space into this {type(model).__name__}: its layer sizes differ from the "
            f"saved model's, first at layer {layer!r} ({difference}). Build the model with the sizes it was saved "
            "with."
        )


def convert_searchspace(
    model: nn.Module, config: BaseModel, patch_manager: type | None, seed: int | None = None
) -> ConvertReturn:
    """Turn ``model`` into a search space in place with the rules of ``config``.

    Records the model's attributes (class name, forward name, train flag), traces and converts
    the model, activates the maximal subnet, patches the model with ``patch_manager`` (``None``:
    no patching; ``seed`` seeds its sampling generator) and records the full subnet config.

    Raises:
        autonas_dynamic.errors.UnsupportedModelError: The model cannot be converted (TorchScript,
            a DataParallel/DDP wrapper, channels-last parameters).
        autonas_dynamic.errors.AlreadyConvertedError: The model already is a search space.
        ApplyModeError: No hparam of the model is configurable under these rules.
    """
    from autonas_dynamic.space import generate_search_space

    metadata: Metadata = {"model_attributes": _model_attributes(model), "tensor_shapes": _tensor_shapes(model)}
    space = generate_search_space(model, rules=config.model_dump())
    if not space.is_configurable():
        raise ApplyModeError(_nothing_to_search(model, space.untraced))
    space.sample(max)
    if patch_manager is not None:
        patch_model(model, patch_manager, seed=seed)
    metadata["subnet_config"] = space.config()
    return model, metadata


def _nothing_to_search(model: nn.Module, untraced: dict[str, str]) -> str:
    """Why converting ``model`` found nothing to search: the modules torch.fx could not trace, or the rules."""
    message = f"The search space of {type(model).__name__} does not contain any configurable hyperparameters"
    if not untraced:
        return (
            f"{message} under the given rules: nothing to search. "
            "Loosen the rules (ratios, divisors, kernel sizes, min_depth)."
        )
    failures = "; ".join(f"{name or '<root>'!r}: {reason}" for name, reason in untraced.items())
    return (
        f"{message}: torch.fx could not trace {failures}. A module that cannot be traced keeps the sizes of its "
        "inputs and outputs, so the layers around it cannot change. Make its forward traceable (no Python "
        "control flow on tensor values), or convert a part of the model that traces."
    )


def restore_searchspace(
    model: nn.Module, config: BaseModel, metadata: Metadata, patch_manager: type | None
) -> nn.Module:
    """Replay :func:`convert_searchspace` on a fresh model and select the stored subnet.

    The stored subnet config gets back the tuples a JSON round trip turned into lists, so the
    restored state equals the saved one.

    Raises:
        ApplyModeError: The fresh model's class or forward differs from the converted one's, or
            its layer sizes do (conversion would not give the same search space); the message names
            what differs first. The train/eval flag of the conversion is replayed for tracing, then
            the model's own flag is restored.
    """
    recorded = metadata["model_attributes"]
    found = {**_model_attributes(model), "training": recorded["training"]}
    mismatched = sorted(key for key in recorded if recorded[key] != found.get(key))
    if mismatched:
        details = ", ".join(f"{key}: saved {recorded[key]!r}, got {found.get(key)!r}" for key in mismatched)
        raise ApplyModeError(
            f"Cannot restore the search space into this model; it differs from the saved one ({details})."
        )
    _check_tensor_shapes(model, metadata.get("tensor_shapes"))
    was_training = model.training
    model.train(recorded["training"])  # tracing follows the train/eval flag of the conversion
    model, _ = convert_searchspace(model, config, patch_manager)
    model.train(was_training)
    metadata["subnet_config"] = restore_subnet(model, metadata["subnet_config"], strict=True)
    return model


def update_autonas_metadata(model: nn.Module, config: BaseModel, metadata: Metadata) -> None:
    """Refresh the stored subnet config (before saving and before another mode is appended)."""
    metadata["subnet_config"] = model_space(model).config()


def convert_autonas_searchspace(model: nn.Module, config: BaseModel, seed: int | None = None) -> ConvertReturn:
    """The ``"autonas"`` convert entrypoint: a search space patched with ``AutoNASPatchManager``.

    ``seed`` seeds the generator that samples a subnet at every training step (``None``: random,
    made common to all torch.distributed ranks).
    """
    from autonas_patch import AutoNASPatchManager

    return convert_searchspace(model, config, patch_manager=AutoNASPatchManager, seed=seed)


def restore_autonas_searchspace(model: nn.Module, config: BaseModel, metadata: Metadata) -> nn.Module:
    """The ``"autonas"`` restore entrypoint."""
    from autonas_patch import AutoNASPatchManager

    return restore_searchspace(model, config, metadata, patch_manager=AutoNASPatchManager)


def export_searchspace(model: nn.Module, config: ExportConfig) -> ConvertReturn:
    """Export every dynamic module of ``model`` to its plain class at the active subnet.

    With ``config.calib`` the BN statistics are recalibrated first (from the patch manager's
    cached batches, if they are stale); the model is unpatched before export.
    """
    from autonas_dynamic import export_model

    metadata: Metadata = {"subnet_config": model_space(model).config()}
    unpatch_model(model, calibrate=config.calib)
    export_model(model)
    return model, metadata


def restore_export(model: nn.Module, config: ExportConfig, metadata: Metadata) -> nn.Module:
    """Replay the export: select the subnet stored at export time, then export again."""
    if "subnet_config" not in metadata:
        return model
    metadata["subnet_config"] = restore_subnet(model, metadata["subnet_config"], strict=config.strict)
    model, new_metadata = export_searchspace(model, config)
    if as_plain_data(new_metadata) != as_plain_data(metadata):
        raise ApplyModeError("The restored model's subnet differs from the one saved at export time.")
    return model


@NAS_REGISTRY.register_mode
class AutoNASModeDescriptor(ModeDescriptor):
    """The ``"autonas"`` mode: weight-sharing search space with training-time subnet sampling."""

    @property
    def name(self) -> str:
        return "autonas"

    @property
    def config_class(self) -> type[BaseModel]:
        from autonas_config import AutoNASConfig
        from autonas_dynamic.plugins import install

        install()  # the layer types of installed libraries (e.g. transformers' Conv1D) are config keys
        return AutoNASConfig

    def saved_config(self, config: dict[str, Any]) -> dict[str, Any]:
        """A config saved before the ``outputs`` section existed kept every model output's size: it still does."""
        return config if "outputs" in config else {**config, "outputs": {}}

    @property
    def next_modes(self) -> set[str] | None:
        """``"export_nas"``, and every registered mode that declares it may follow ``"autonas"``."""
        return {"export_nas", *ModeRegistry.followers_of(self.name)}

    @property
    def export_mode(self) -> str | None:
        return "export_nas"

    @property
    def search_algorithm(self) -> type:
        from autonas_search import EvolveSearcher

        return EvolveSearcher

    def check_model(self, model: nn.Module) -> None:
        from autonas_dynamic.checks import check_convertible

        check_convertible(model)

    def convert(self, model: nn.Module, config: BaseModel, seed: int | None = None) -> ConvertReturn:  # type: ignore[override]
        return convert_autonas_searchspace(model, config, seed=seed)

    def restore(self, model: nn.Module, config: BaseModel, metadata: Metadata) -> nn.Module:
        return restore_autonas_searchspace(model, config, metadata)

    def update_for_save(self, model: nn.Module, config: BaseModel, metadata: Metadata) -> None:
        update_autonas_metadata(model, config, metadata)

    def update_for_new_mode(self, model: nn.Module, config: BaseModel, metadata: Metadata) -> None:
        update_autonas_metadata(model, config, metadata)


@NAS_REGISTRY.register_mode
class ExportModeDescriptor(ModeDescriptor):
    """The ``"export_nas"`` mode: closes ``"autonas"`` by exporting the active subnet."""

    @property
    def name(self) -> str:
        return "export_nas"

    @property
    def config_class(self) -> type[BaseModel]:
        from autonas_config import ExportConfig

        return ExportConfig

    @property
    def is_export_mode(self) -> bool:
        return True

    def convert(self, model: nn.Module, config: BaseModel, **mode_kwargs: Any) -> ConvertReturn:
        return export_searchspace(model, cast("ExportConfig", config))

    def restore(self, model: nn.Module, config: BaseModel, metadata: Metadata) -> nn.Module:
        return restore_export(model, cast("ExportConfig", config), metadata)
