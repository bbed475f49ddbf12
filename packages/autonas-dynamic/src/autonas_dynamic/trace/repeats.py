"""Which shared blocks a forward calls a counted number of times, and what count may be lowered.

A forward that runs one block several times (ALBERT's shared layer group,
``for i in range(self.config.num_hidden_layers): h = self.group(h, mask)``) has a layer count
that no container holds: the count is an int attribute of the calling module (or of an object it
keeps, such as its config). Such a count may be lowered when:

* the block's calls are all made directly by one call of one module, and each of them is residual
  (as a skippable block of a ``ModuleList``: see :func:`.depth.is_skippable`) and read only by the
  next one, so dropping trailing calls leaves the shapes the rest of the model sees;
* the forward, traced again with the attribute lowered while the caller runs, calls the block that
  many times and traces like the full model (nothing else breaks, nothing stale is read).

The attribute is found among the caller's int attributes (and those of the plain objects it holds)
that equal the number of calls; only one whose lowering changes the number of calls qualifies.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..repeated import count_set
from .depth import (
    ModuleCall,
    ModuleCalls,
    collect_calls,
    forwards_replaced,
    is_skippable,
    node_position,
    retraces_alike,
)
from .layers import is_layer
from .tracer import TraceResult

__all__ = ["RepeatedBlock", "count_attribute_set", "repeated_blocks"]


@dataclass(frozen=True)
class RepeatedBlock:
    """A block a module's forward calls ``len(skippable)`` times, as an attribute of the module says.

    Attributes:
        block: The path of the block, from the calling module.
        count: The path of the int attribute that says how often (``("config", "num_hidden_layers")``).
        skippable: One flag per call: whether it may be left out (True only on a trailing run, never
            on the first call).
    """

    block: str
    count: tuple[str, ...]
    skippable: tuple[bool, ...]


def repeated_blocks(model: nn.Module, trace: TraceResult, example_input: Any) -> dict[nn.Module, RepeatedBlock]:
    """Per calling module, the block it calls a lowerable number of times (see the module docstring)."""
    calls = collect_calls(trace)
    names = {module: name for name, module in model.named_modules()}
    found: dict[nn.Module, RepeatedBlock] = {}
    for block, keys in calls.of_module.items():
        ordered = _chained_calls(calls, keys)
        if ordered is None:
            continue
        caller = _caller(calls, keys[0])
        if caller is None or caller in found or caller not in names or block not in names:
            continue
        prefix = f"{names[caller]}." if names[caller] else ""
        if caller is block or not names[block].startswith(prefix):
            continue
        flags = _trailing_skippable(ordered)
        if not any(flags):
            continue
        for count in _count_attributes(caller, len(ordered)):
            repeat = RepeatedBlock(names[block][len(prefix) :], count, tuple(flags))
            confirmed = _confirmed_by_tracing(model, trace, caller, block, repeat, example_input)
            if confirmed is not None:
                found[caller] = confirmed
                break
    return found


def _chained_calls(calls: ModuleCalls, keys: list[tuple[int, str]]) -> list[ModuleCall] | None:
    """The calls ``keys`` of one block in order, when there are several and one call of one module made them all."""
    if len(keys) < 2 or len({graph for graph, _ in keys}) != 1:
        return None
    ordered = [calls.by_key[key] for key in keys]
    if len({call.parent for call in ordered}) != 1 or ordered[0].parent is None or is_layer(ordered[0].module):
        return None
    if not all(call.nodes for call in ordered):
        return None
    return sorted(ordered, key=lambda call: node_position(call.nodes[0]))


def _caller(calls: ModuleCalls, key: tuple[int, str]) -> nn.Module | None:
    """The module whose call made the call ``key`` (None for a container: its depth is searched as such)."""
    parent = calls.by_key[key].parent
    caller = calls.by_key.get((key[0], parent)) if parent is not None else None
    if caller is None or isinstance(caller.module, (nn.Sequential, nn.ModuleList)):
        return None
    return caller.module


def _trailing_skippable(ordered: list[ModuleCall]) -> list[bool]:
    """Per call, whether it belongs to the trailing run of calls that may be left out (never the first)."""
    flags = [False] * len(ordered)
    following: ModuleCall | None = None
    for index in reversed(range(1, len(ordered))):
        call = ordered[index]
        if not is_skippable(call, following, last=index == len(ordered) - 1, context=True):
            break
        flags[index] = True
        following = call
    return flags


def _count_attributes(caller: nn.Module, count: int) -> Iterator[tuple[str, ...]]:
    """The paths of the int attributes equal to ``count`` of ``caller`` and of the plain objects it holds."""
    for name, value in vars(caller).items():
        if name.startswith("_"):
            continue
        if _is_int(value):
            if value == count:
                yield (name,)
        elif not isinstance(value, (nn.Module, torch.Tensor, type)) and hasattr(value, "__dict__"):
            for inner, held in vars(value).items():
                if not inner.startswith("_") and _is_int(held) and held == count:
                    yield (name, inner)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _confirmed_by_tracing(
    model: nn.Module,
    full: TraceResult,
    caller: nn.Module,
    block: nn.Module,
    repeat: RepeatedBlock,
    example_input: Any,
) -> RepeatedBlock | None:
    """``repeat`` with the counts that trace like the full model (None when lowering the attribute
    does not lower the number of calls, or no lower count traces alike).

    The smallest count is tried first; otherwise the counts from the top, one by one.
    """
    original = len(repeat.skippable)
    smallest = repeat.skippable.index(True)
    if _traces_with(model, full, caller, block, repeat.count, smallest, example_input):
        return repeat
    count = original
    while count > smallest and _traces_with(model, full, caller, block, repeat.count, count - 1, example_input):
        count -= 1
    if count == original:
        return None
    return RepeatedBlock(repeat.block, repeat.count, tuple(index >= count for index in range(original)))


def _traces_with(
    model: nn.Module,
    full: TraceResult,
    caller: nn.Module,
    block: nn.Module,
    count: tuple[str, ...],
    value: int,
    example_input: Any,
) -> bool:
    """Whether the model traces like ``full``, calling ``block`` ``value`` times, with the count at ``value``."""
    with count_attribute_set(caller, count, value):
        short = retraces_alike(model, full, example_input)
    return short is not None and len(collect_calls(short).of_module.get(block, [])) == value


def count_attribute_set(caller: nn.Module, path: tuple[str, ...], value: int) -> AbstractContextManager[None]:
    """While the body runs, ``caller``'s forward sees the count at ``path`` set to ``value`` (as the
    dynamic caller does; only while it runs, so other readers of a shared config see it unchanged)."""
    previous = caller.__dict__.get("forward")
    forward = previous if previous is not None else functools.partial(type(caller).forward, caller)

    @functools.wraps(forward)  # the same parameters, for the tracer's entry point
    def lowered(*args: Any, **kwargs: Any) -> Any:
        with count_set(caller, path, value):
            return forward(*args, **kwargs)

    return forwards_replaced({caller: lowered})
