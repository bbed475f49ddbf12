"""Ordering channels by importance, by permuting the stored tensors in place.

Layers that share one hparam object form a group. For every sortable group the importance
estimators of its layers give one score per channel; the channels are then permuted (in every
tensor dimension any layer of the group declares through ``hparam_tensor_dims``) so that the most
important channels come first. Active channel sets are prefixes, so after sorting every subnet
keeps the most important channels, and the maximal subnet computes exactly what it did before.

Channels split into attention heads move as whole heads (ranked by their summed importance), and
tensors with one entry per head (a relative position bias) reorder their entries alike.
Channels feeding a concatenation are permuted within their own segment of the concatenated
dimension, together with the layer that produced them.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
from torch import nn

from .dynamic import DynamicModule
from .hparam import ConcatHparam, HeadCountHparam, Hparam

__all__ = ["sort_parameters"]


@dataclass(eq=False)
class _Group:
    """One hparam object and every tensor dimension it governs across the model."""

    hparam: Hparam
    name: str
    #: (module, tensor name, dim, offset): the hparam's channels sit at ``offset`` along ``dim``.
    dims: list[tuple[nn.Module, str, int, int]] = field(default_factory=list)
    #: Importance scores from the concatenations this hparam feeds, per segment.
    concat_importance: list[torch.Tensor] = field(default_factory=list)
    #: Modules that reorder this hparam's channels themselves (:meth:`DynamicModule.permute`).
    permuters: list[DynamicModule] = field(default_factory=list)
    #: (module, tensor name, dim, head width): dims with one entry per head of this hparam's channels.
    head_dims: list[tuple[nn.Module, str, int, int]] = field(default_factory=list)


def _collect_groups(model: nn.Module) -> dict[int, _Group]:
    groups: dict[int, _Group] = {}
    for module_name, module in model.named_modules():
        if not isinstance(module, DynamicModule):
            continue
        dims = module.hparam_tensor_dims()
        for hp_name, hparam in module.named_hparams():
            full_name = f"{module_name}.{hp_name}" if module_name else hp_name
            group = groups.setdefault(id(hparam), _Group(hparam, full_name))
            group.dims += [(module, tensor, dim, 0) for tensor, dim in dims.get(hp_name, [])]
            if type(module).permute is not DynamicModule.permute:
                group.permuters.append(module)
    for group in list(groups.values()):
        if isinstance(group.hparam, HeadCountHparam) and id(group.hparam.parent) in groups:
            head_dim = group.hparam.head_dim
            groups[id(group.hparam.parent)].head_dims += [(m, t, dim, head_dim) for m, t, dim, _ in group.dims]
        if isinstance(group.hparam, ConcatHparam):
            for source, offset in group.hparam.segments:
                target = groups.setdefault(id(source), _Group(source, f"{group.name}[{offset}:]"))
                target.dims += [(module, tensor, dim, offset) for module, tensor, dim, _ in group.dims]
    return groups


def _collect_concat_importance(groups: dict[int, _Group]) -> None:
    """Hand each concat input the importance its segment of the concatenation gets downstream."""
    for group in groups.values():
        if isinstance(group.hparam, ConcatHparam):
            own = Hparam.importance.fget(group.hparam)  # type: ignore[attr-defined]
            if own is not None:
                for source, offset in group.hparam.segments:
                    groups[id(source)].concat_importance.append(own[offset : offset + source.max])


def _wants_sorting(group: _Group, names: set[str]) -> bool:
    hparam = group.hparam
    return (
        not isinstance(hparam, ConcatHparam)
        and hparam.is_sortable
        and isinstance(hparam.original, int)
        and len(hparam.choices) > 1
        and bool(group.dims or group.permuters)
        and (not names or group.name in names or group.name.rsplit(".", 1)[-1] in names)
    )


def _without_conflicts(groups: list[_Group]) -> list[_Group]:
    """Drop groups that govern a tensor dimension another sorted group also governs."""
    owners: dict[tuple[int, str, int, int], set[int]] = {}
    for group in groups:
        for module, tensor, dim, offset in group.dims + [(m, t, dim, 0) for m, t, dim, _ in group.head_dims]:
            owners.setdefault((id(module), tensor, dim, offset), set()).add(id(group.hparam))
    clashing = {hp_id for ids in owners.values() if len(ids) > 1 for hp_id in ids}
    if clashing:
        skipped = ", ".join(group.name for group in groups if id(group.hparam) in clashing)
        warnings.warn(
            f"not sorting {skipped}: they govern the same tensor dimension without being one hparam "
            "(e.g. a depthwise conv whose in/out channels are not coupled)",
            stacklevel=3,
        )
    return [group for group in groups if id(group.hparam) not in clashing]


def _permute(group: _Group, order: torch.Tensor) -> None:
    for permuter in group.permuters:
        for local, hparam in permuter.named_hparams():
            if hparam is group.hparam:
                permuter.permute(local, order)
    seen: set[tuple[int, int, int]] = set()  # each stored tensor once, even where modules share it (tied)
    heads = [(module, name, dim, 0, order[::head_dim] // head_dim) for module, name, dim, head_dim in group.head_dims]
    for module, name, dim, offset, new_order in [*((*entry, order) for entry in group.dims), *heads]:
        tensor = module._parameters[name] if name in module._parameters else module._buffers[name]
        if tensor is None:
            raise ValueError(f"{type(module).__name__}.hparam_tensor_dims() lists {name!r}, which it does not hold")
        key = (id(tensor), dim % tensor.dim(), offset)
        if key in seen:
            continue
        seen.add(key)
        for stored in (tensor, tensor.grad):
            if stored is not None:
                segment = stored.narrow(dim, offset, new_order.numel())
                segment.copy_(segment.index_select(dim, new_order.to(stored.device)))


def _order(importance: torch.Tensor, block: int) -> torch.Tensor:
    """Channels by descending importance; with ``block > 1``, whole blocks (heads) by their summed importance."""
    if block == 1:
        return torch.argsort(importance, descending=True, stable=True)
    blocks = torch.argsort(importance.reshape(-1, block).sum(1), descending=True, stable=True)
    return (blocks[:, None] * block + torch.arange(block)).reshape(-1)


def sort_parameters(model: nn.Module, hps_to_sort: Iterable[str] | None = None) -> None:
    """Permute the channels of every sortable hparam of ``model`` by descending importance.

    The model computes the same function at the maximal subnet before and after; smaller subnets
    then keep the most important channels. Active values are kept. Optimizer states that refer
    to the permuted parameters are not permuted: sort before creating the optimizer.

    Args:
        model: A model with dynamic modules.
        hps_to_sort: If given, sort only the groups whose name (the first full hparam name in module
            order, e.g. ``"layer1.0.conv1.out_channels"``) or its last component (``"out_channels"``)
            is listed.
    """
    names = set(hps_to_sort or ())
    groups = _collect_groups(model)
    plain = [group.hparam for group in groups.values() if not isinstance(group.hparam, ConcatHparam)]
    with contextlib.ExitStack() as full_size, torch.no_grad():
        for hparam in plain:  # estimators may read the active tensors: make them whole
            full_size.enter_context(hparam.held_at(hparam.max))
        _collect_concat_importance(groups)
        for group in _without_conflicts([group for group in groups.values() if _wants_sorting(group, names)]):
            importance = group.hparam.importance
            for extra in group.concat_importance:
                importance = extra if importance is None else importance + extra
            if importance is None:
                continue
            order = _order(importance, group.hparam.block)
            if not torch.equal(order, torch.arange(order.numel())):
                _permute(group, order)
