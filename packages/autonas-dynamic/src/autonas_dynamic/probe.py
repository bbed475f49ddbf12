"""Checking, on probe inputs, that a layer's own forward computes correctly on dynamic attributes.

A layer converts with a forward autonas did not write when it subclasses a registered layer and
overrides ``forward`` (timm's ``BatchNormAct2d``), or when it was declared without a dynamic
implementation. That forward reads the active widths and tensor slices through the layer's
attributes, which is right only if it reads nothing else that depends on the size. So before
such a layer is converted, a copy of it (sharing its parameters, never changing the layer) is
converted and run next to another plain copy, in eval and in train mode:

* at its full size the converted layer must compute exactly what the original computes;
* at smaller widths its output must have the expected shape (the output width, everything else
  as at full size);
* exported at those widths, it must compute what the dynamic layer computed.

The probe input is random, shaped as the layout's axis and the class name say (``N, C, H, W``
for a ``...2d`` layer with the elastic axis at ``"channels"``), with spatial sizes that fit the
kernel; an embedding's is indices into its table, or else an attention mask of ones. Results are cached per kind of layer (:func:`probe_signature`).
"""

from __future__ import annotations

import contextlib
import copy
import warnings
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import nn

from .dynamic import DynamicModule
from .layout import LayerLayout, spatial_ndim

__all__ = ["probe_signature", "verify_forward"]

_BATCH = 2
_SIMPLE = (bool, int, float, str, type(None))


def probe_signature(module: nn.Module, layout: LayerLayout) -> tuple[Any, ...]:
    """What decides a probe's outcome: the class, the settings other than the widths, the tensors present, the children.

    Layers that agree on these behave alike whatever their widths, so one probe answers for all.
    """
    settings = []
    for name, value in module.__dict__.items():
        if name.startswith("_") or name == "training" or name in layout.widths:
            continue
        if name == layout.groups:
            value = _group_kind(module, layout)
        if isinstance(value, _SIMPLE) or (isinstance(value, tuple) and all(isinstance(v, _SIMPLE) for v in value)):
            settings.append((name, value))
    tensors = tuple(
        (name, None if tensor is None else tensor.dim())
        for name, tensor in (*module._parameters.items(), *module._buffers.items())
    )
    children = tuple((name, type(child)) for name, child in module._modules.items())
    return type(module), tuple(settings), tensors, children


def _group_kind(module: nn.Module, layout: LayerLayout) -> str:
    groups = getattr(module, layout.groups or "", 1)
    sizes = {getattr(module, name, None) for name in layout.widths}
    if groups == 1:
        return "ungrouped"
    return "depthwise" if sizes == {groups} else "equal widths" if len(sizes) == 1 else "unequal widths"


def verify_forward(
    module: nn.Module, dynamic_cls: type[DynamicModule], candidates: Sequence[LayerLayout]
) -> tuple[LayerLayout | None, str | None]:
    """Probe ``module`` converted to ``dynamic_cls`` (see the module doc).

    Args:
        module: The plain layer; it is not changed.
        dynamic_cls: Its generated dynamic class.
        candidates: Layouts to try, in order; they differ only in the axis. The first whose probe
            input the original layer accepts decides.

    Returns:
        ``(layout, None)`` with the layout that passed, or ``(None, reason)``.
    """
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            dynamic = dynamic_cls._convert(_probe_copy(module))
        except Exception as error:
            return None, f"converting it fails ({_describe(error)})"
        original = _probe_copy(module)
        original.eval()
        dynamic.eval()
        layout = candidates[0]
        channels = dynamic.get_hparam(layout.incoming).original
        failure = "no probe input"
        for layout in candidates:
            for x in _probe_inputs(module, layout, channels):
                try:
                    reference = original(x)
                except Exception as error:
                    failure = f"on an input of shape {tuple(x.shape)}: {_describe(error)}"
                    continue
                reason = _compare(original, dynamic, layout, x, reference)
                return (layout, None) if reason is None else (None, reason)
        return None, f"its forward fails on every probe input ({failure})"


def _compare(
    original: nn.Module, dynamic: DynamicModule, layout: LayerLayout, x: torch.Tensor, reference: Any
) -> str | None:
    """Why ``dynamic`` does not compute like ``original`` (see the module doc); None when it does."""
    if not isinstance(reference, torch.Tensor):
        return f"its forward returns a {type(reference).__name__}, not a tensor"
    channels_first = layout.axis == "channels"
    widths = _smaller_widths(dynamic, layout)
    smaller = ", ".join(f"{name}={value}" for name, value in widths.items())
    small_input = x.narrow(
        1 if channels_first else -1, 0, widths.get(layout.incoming, x.shape[1 if channels_first else -1])
    )
    expected = list(reference.shape)
    if reference.dim() > 1:
        out_axis = 1 if channels_first else -1
        expected[out_axis] = widths.get(layout.outgoing or layout.incoming, expected[out_axis])
    for training in (False, True):
        original.train(training)
        dynamic.train(training)
        mode = "in train mode " if training else ""
        try:
            with _seeded(x):
                want = original(x) if training else reference
        except Exception:  # the layer itself cannot train on this input: nothing to compare
            continue
        _select(dynamic, {name: dynamic.get_hparam(name).original for name in widths})
        try:
            with _seeded(x):
                got = dynamic(x)
        except Exception as error:
            return f"at its full size {mode}it fails ({_describe(error)})"
        if not _equal(got, want):
            return f"at its full size {mode}it computes other values than the original layer{_difference(got, want)}"
        if not widths:
            continue
        _select(dynamic, widths)
        try:
            got = dynamic(small_input)
        except Exception as error:
            return f"at {smaller} {mode}it fails ({_describe(error)})"
        if not isinstance(got, torch.Tensor) or list(got.shape) != expected:
            shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
            return f"at {smaller} {mode}its output has shape {shape}, expected {tuple(expected)}"
    original.eval()
    dynamic.eval()
    if widths:
        got = dynamic(small_input)
        try:
            exported = dynamic.export()(small_input)
        except Exception as error:
            return f"exported at {smaller} it fails ({_describe(error)})"
        if not _close(exported, got):
            return f"exported at {smaller} it computes other values than the dynamic layer{_difference(exported, got)}"
    return None


def _smaller_widths(dynamic: DynamicModule, layout: LayerLayout) -> dict[str, int]:
    """A smaller value for each width that has one (equal widths of a grouped layer move together).

    An embedding's table keeps its size (its input holds indices into it).
    """
    kept = layout.incoming if isinstance(dynamic, nn.Embedding) else None
    hparams = {name: dynamic.get_hparam(name) for name in layout.widths if name != kept}
    if dynamic._original_groups() > 1:
        first = hparams[layout.incoming]
        if len(set(hp.original for hp in hparams.values())) > 1 or len(first.choices) < 2:
            return {}
        value = first.choices[(len(first.choices) - 1) // 2]
        return dict.fromkeys(hparams, value)
    return {name: hp.choices[(len(hp.choices) - 1) // 2] for name, hp in hparams.items() if len(hp.choices) > 1}


def _select(dynamic: DynamicModule, widths: dict[str, int]) -> None:
    for name, value in widths.items():
        dynamic.get_hparam(name).active = value


def _probe_copy(module: nn.Module) -> nn.Module:
    """A copy that shares ``module``'s parameters, with its own buffers, children and no hooks."""
    clone = copy.copy(module)
    state = clone.__dict__
    state.pop("forward", None)  # a monkey-patched forward belongs to the original instance
    state["_parameters"] = dict(module._parameters)
    state["_buffers"] = {name: None if t is None else t.clone() for name, t in module._buffers.items()}
    state["_modules"] = {name: copy.deepcopy(child) for name, child in module._modules.items()}
    for name, value in list(state.items()):
        if "hooks" in name and isinstance(value, dict):
            state[name] = OrderedDict()
    return clone


def _probe_inputs(module: nn.Module, layout: LayerLayout, channels: int) -> Iterator[torch.Tensor]:
    """Random inputs shaped for ``layout``: the spatial rank the class name states, else several ranks."""
    ndim = spatial_ndim(type(module))
    sizes = _spatial_sizes(module, channels)
    like = next((t for t in (*module.parameters(), *module.buffers()) if t.is_floating_point()), None)
    dtype = like.dtype if like is not None else torch.float32
    device = like.device if like is not None else torch.device("cpu")
    ranks = [ndim] if ndim is not None else ([2, 1, 0] if layout.axis == "channels" else [1, 0])
    generator = torch.Generator().manual_seed(0)
    if isinstance(module, nn.Embedding):  # indices into its table (Bart's scaled word embedding)
        yield torch.randint(0, channels, (_BATCH, sizes[0]), generator=generator).to(device)
        yield torch.ones(_BATCH, sizes[0], dtype=torch.long, device=device)  # a mask (OPT's positions count it)
        return
    for rank in ranks:
        spatial = sizes[:rank]
        shape = (_BATCH, channels, *spatial) if layout.axis == "channels" else (_BATCH, *spatial, channels)
        yield torch.randn(shape, generator=generator).to(device=device, dtype=dtype)


def _spatial_sizes(module: nn.Module, channels: int) -> list[int]:
    """Three spatial sizes, each larger than the layer's kernel reach and none equal to ``channels``."""
    kernel = getattr(module, "kernel_size", ())
    dilation = getattr(module, "dilation", ())
    kernel = kernel if isinstance(kernel, tuple) else (kernel,) * 3
    dilation = dilation if isinstance(dilation, tuple) else (dilation,) * 3
    sizes = []
    for dim in range(3):
        k = kernel[dim] if dim < len(kernel) and isinstance(kernel[dim], int) else 1
        d = dilation[dim] if dim < len(dilation) and isinstance(dilation[dim], int) else 1
        size = max(6 + dim, (k - 1) * d + 3)
        sizes.append(size + 1 if size == channels else size)
    return sizes


@contextlib.contextmanager
def _seeded(x: torch.Tensor) -> Iterator[None]:
    """The same random numbers for each run (dropout and friends in train mode)."""
    devices = [x.device.index or 0] if x.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(0)
        yield


def _equal(a: Any, b: Any) -> bool:
    if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)) or a.shape != b.shape:
        return False
    return a.is_meta or torch.equal(a, b) or bool(torch.isclose(a, b, rtol=0, atol=0, equal_nan=True).all())


def _close(a: Any, b: Any) -> bool:
    if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)) or a.shape != b.shape:
        return False
    if a.is_meta or not a.numel():
        return True
    scale = float(b.abs().max().clamp(min=1e-6))
    return bool(torch.allclose(a, b, rtol=1e-5, atol=1e-6 * scale, equal_nan=True))


def _difference(a: Any, b: Any) -> str:
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape and not a.is_meta:
        return f" (largest difference {float((a - b).abs().max()):.3g})"
    return ""


def _describe(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"[:200]
