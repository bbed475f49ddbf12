"""Export of a model's active subnet to ONNX, for ONNX Runtime or any other ONNX runtime.

The export uses ``torch.onnx.export`` with the ``torch.export``-based (dynamo) exporter that torch
recommends since 2.9; it needs the optional packages ``onnx`` and ``onnxscript``
(``pip install 'autonas[onnx]'``).
"""

from __future__ import annotations

import inspect
import logging
import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch
import torch.nn as nn

from autonas_dynamic.calling import model_device, move_to, split_args, tensor_leaves

from .optional import import_optional
from .workflow import plain_subnet

if TYPE_CHECKING:
    from torch.onnx import ONNXProgram

__all__ = ["export_onnx", "onnx_feeds", "onnx_program", "onnxruntime_session"]

#: Name of the symbolic first dimension of every tensor input when the batch size is dynamic.
BATCH_DIM = "batch"

# loggers whose warnings during an export are about the exporter itself, not the model (operators of
# packages that are not installed, constant folding that was skipped)
_EXPORTER_LOGGERS = ("torch.onnx", "onnxscript")


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike[str],
    dummy_input: Any,
    dynamic_batch: bool = True,
    opset_version: int | None = None,
    optimize: bool = True,
) -> Path:
    """Export the active subnet of ``model`` to the ONNX file ``path`` and return its path.

    A converted model is exported as :func:`autonas_modes.export` would export it, on a copy: the
    model keeps its search space. A plain or already exported model is exported as it is (in eval
    mode; its train/eval flags are restored).

    Args:
        model: A converted, exported or plain model.
        path: The ``.onnx`` file to write (parent folders are created). Weights beyond 2 GB go to
            an external data file beside it.
        dummy_input: An example input (see :func:`autonas_dynamic.calling.split_args` for tuples and
            keyword arguments). The ONNX inputs are the tensors in it, named after the forward's
            arguments; non-tensor arguments are fixed to their example values.
        dynamic_batch: The first dimension of every tensor input (and so of the outputs) is the
            symbolic ``"batch"``: the file runs on any batch size. ``False`` fixes every shape to
            the example's.
        opset_version: The ONNX opset; ``None`` takes the exporter's default.
        optimize: Let the exporter fold constants and simplify the graph.

    Raises:
        ModuleNotFoundError: ``onnx`` or ``onnxscript`` is not installed (the message names the
            ``pip install`` extra).
    """
    program = onnx_program(
        model, dummy_input, dynamic_batch=dynamic_batch, opset_version=opset_version, optimize=optimize
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    program.save(path)
    return path


def onnx_program(
    model: nn.Module,
    dummy_input: Any,
    dynamic_batch: bool = True,
    opset_version: int | None = None,
    optimize: bool = True,
) -> ONNXProgram:
    """The ``torch.onnx.ONNXProgram`` of the active subnet of ``model``; arguments as in :func:`export_onnx`."""
    import_optional("onnx", "ONNX export")
    import_optional("onnxscript", "ONNX export")
    with plain_subnet(model) as plain:
        args, kwargs = split_args(move_to(dummy_input, model_device(plain)))
        dynamic_shapes = _batch_shapes(plain, args, kwargs) if dynamic_batch else None
        with _quiet_exporter(), torch.no_grad():
            program = torch.onnx.export(
                plain,
                args,
                kwargs=kwargs,
                dynamo=True,
                dynamic_shapes=dynamic_shapes,
                opset_version=opset_version,
                optimize=optimize,
                verbose=False,
            )
    return cast("ONNXProgram", program)  # the dynamo exporter returns the program when no file is given


def onnxruntime_session(
    model: nn.Module,
    dummy_input: Any,
    threads: int | None = None,
    provider: str = "CPUExecutionProvider",
    dynamic_batch: bool = False,
) -> Any:
    """An ONNX Runtime ``InferenceSession`` of the active subnet of ``model``, exported to a temporary file.

    Args:
        model: A converted, exported or plain model (see :func:`export_onnx`).
        dummy_input: The example input of the export; feed the session with :func:`onnx_feeds`.
        threads: ONNX Runtime's intra-op threads (``None``: its default, one per physical core).
        provider: The execution provider.
        dynamic_batch: Export with a dynamic batch size (default: every shape fixed to the example's,
            which is what latency measurements time).

    Raises:
        ModuleNotFoundError: ``onnxruntime``, ``onnx`` or ``onnxscript`` is not installed (the
            message names the ``pip install`` extra).
    """
    ort = import_optional("onnxruntime", "ONNX Runtime")
    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
    with tempfile.TemporaryDirectory(prefix="autonas-onnx-") as folder:
        path = export_onnx(model, Path(folder) / "model.onnx", dummy_input, dynamic_batch=dynamic_batch)
        return ort.InferenceSession(str(path), options, providers=[provider])


def onnx_feeds(session: Any, dummy_input: Any) -> dict[str, Any]:
    """The inputs of an ONNX Runtime ``session`` from ``dummy_input``: its tensors as numpy arrays, in order.

    The exporter makes one ONNX input per tensor of the forward's arguments, in their order.
    """
    args, kwargs = split_args(dummy_input)
    tensors = tensor_leaves((args, kwargs))
    inputs = session.get_inputs()
    if len(inputs) != len(tensors):
        raise ValueError(
            f"The ONNX model has {len(inputs)} inputs ({[i.name for i in inputs]}), the dummy input {len(tensors)} tensors."
        )
    return {spec.name: tensor.detach().cpu().numpy() for spec, tensor in zip(inputs, tensors, strict=True)}


def _batch_shapes(model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """``dynamic_shapes`` for ``torch.export``: dimension 0 of every tensor argument is the one batch dimension."""
    batch = torch.export.Dim(BATCH_DIM)
    bound = inspect.signature(model.forward).bind(*args, **kwargs)
    return {name: _batch_spec(value, batch) for name, value in bound.arguments.items()}


def _batch_spec(value: Any, batch: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return {0: batch} if value.dim() else None
    if isinstance(value, tuple | list):
        return type(value)(_batch_spec(item, batch) for item in value)
    if isinstance(value, Mapping):
        return {key: _batch_spec(item, batch) for key, item in value.items()}
    return None


@contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Inside the block the exporter's own loggers report errors only."""
    loggers = [logging.getLogger(name) for name in _EXPORTER_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
