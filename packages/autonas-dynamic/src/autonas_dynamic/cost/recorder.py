"""One recorded inference forward: every costed aten call, with the module it ran in.

A :class:`~torch.utils._python_dispatch.TorchDispatchMode` sees each aten call of the forward
(and a :class:`~torch.overrides.TorchFunctionMode` sees ``F.scaled_dot_product_attention`` as one
call, whichever kernel runs it); forward hooks on every submodule keep the stack of modules whose
``forward`` is running, so each call is keyed by the innermost module's qualified name and its
position among the costed calls made directly in that module. The key is stable across subnets: dropping a block of a dynamic
``Sequential`` removes that block's calls and leaves every other key unchanged.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

from ..calling import model_device, move_to, split_args, training_mode
from .ops import Term, attention_terms, op_label, op_terms

__all__ = ["OpRecord", "record_ops"]


@dataclass(frozen=True)
class OpRecord:
    """One costed aten call of a recorded forward.

    Attributes:
        module: Qualified name of the innermost module whose forward made the call (``""`` = root).
        index: Position of the call among the costed calls made directly in that module.
        op: The aten operator, e.g. ``"aten.convolution.default"``.
        terms: The cost, ``sum(coefficient * prod(dims))`` over the terms (FLOPs).
    """

    module: str
    index: int
    op: str
    terms: tuple[Term, ...]

    @property
    def key(self) -> tuple[str, int]:
        """Identifies the call across forwards of different subnets."""
        return self.module, self.index

    @property
    def flops(self) -> int:
        total = 0
        for coefficient, dims in self.terms:
            product = coefficient
            for size in dims:
                product *= size
            total += product
        return total


@contextmanager
def _counting_context(model: nn.Module) -> Iterator[None]:
    """Every submodule in eval mode, no autograd, no fused attention fast path; all restored after.

    Training flags are set on each submodule directly (no ``eval()`` call that others may hook),
    and the fast path of ``nn.MultiheadAttention``/``nn.TransformerEncoderLayer`` is off so that
    attention runs as its separate products.
    """
    fastpath = torch.backends.mha.get_fastpath_enabled()
    try:
        torch.backends.mha.set_fastpath_enabled(False)
        with training_mode(model, False), torch.no_grad():
            yield
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)


class _ModuleStack:
    """The modules whose forward is running, maintained by forward hooks on every submodule."""

    def __init__(self) -> None:
        self.frames: list[tuple[str, nn.Module]] = []

    @contextmanager
    def attached(self, model: nn.Module) -> Iterator[None]:
        with ExitStack() as handles:
            for name, module in model.named_modules():
                handles.enter_context(module.register_forward_pre_hook(self._pusher(name)))
                handles.enter_context(module.register_forward_hook(self._pop, always_call=True))
            yield

    def _pusher(self, name: str) -> Any:
        def push(module: nn.Module, args: Any) -> None:
            self.frames.append((name, module))

        return push

    def _pop(self, module: nn.Module, args: Any, output: Any) -> None:
        self.frames.pop()

    def current(self) -> tuple[str, nn.Module | None]:
        return self.frames[-1] if self.frames else ("", None)


class _Recorder(TorchDispatchMode):
    """Records the cost terms of every costed aten call, keyed by the running module."""

    def __init__(self, stack: _ModuleStack) -> None:
        super().__init__()
        self.stack = stack
        self.records: list[OpRecord] = []
        self.muted = False
        self._counts: Counter[str] = Counter()

    def add(self, op: str, terms: list[Term]) -> None:
        name, _ = self.stack.current()
        self.records.append(OpRecord(name, self._counts[name], op, tuple(terms)))
        self._counts[name] += 1

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        if not self.muted:
            terms = op_terms(func, args, out, self.stack.current()[1])
            if terms:
                self.add(op_label(func), terms)
        return out


class _AttentionCounter(TorchFunctionMode):
    """Counts ``F.scaled_dot_product_attention`` as one call, whichever kernel torch runs for it."""

    def __init__(self, recorder: _Recorder) -> None:
        super().__init__()
        self.recorder = recorder

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if func is not F.scaled_dot_product_attention or self.recorder.muted:
            return func(*args, **kwargs)
        query, key, value = (
            kwargs[name] if name in kwargs else args[i] for i, name in enumerate(("query", "key", "value"))
        )
        self.recorder.add("F.scaled_dot_product_attention", attention_terms(query, key, value))
        self.recorder.muted = True
        try:
            return func(*args, **kwargs)
        finally:
            self.recorder.muted = False


def record_ops(model: nn.Module, dummy_input: Any) -> list[OpRecord]:
    """Run one inference forward of ``model`` and record every costed aten call.

    Args:
        model: Any module (dynamic modules run at their active subnet).
        dummy_input: The forward's input (see :func:`autonas_dynamic.calling.split_args`); tensors are moved to the
            model's device.
    """
    args, kwargs = split_args(move_to(dummy_input, model_device(model)))
    stack = _ModuleStack()
    recorder = _Recorder(stack)
    with ExitStack() as context:
        context.enter_context(_counting_context(model))
        context.enter_context(stack.attached(model))
        context.enter_context(recorder)
        context.enter_context(_AttentionCounter(recorder))
        model(*args, **kwargs)
    return recorder.records
