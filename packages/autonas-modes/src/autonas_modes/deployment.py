"""Where latency is measured: the runtime that will serve the model, given as a ``deployment`` dict.

``{"runtime": "torch"}`` (the default) times eager PyTorch, ``{"runtime": "onnxruntime"}`` the
subnet exported to ONNX in an ONNX Runtime ``InferenceSession``, ``{"runtime": "torch.compile"}``
the subnet compiled by ``torch.compile``. Each measurement exports the active subnet first (a
copy: the search space is untouched), so it costs seconds; searches measure only a few subnets
and interpolate the rest (see :class:`autonas_modes.LatencyInterpolator`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, fields
from typing import Any, cast

import torch
import torch.nn as nn

from .latency import measure_latency, median_time_ms
from .onnx_export import onnx_feeds, onnxruntime_session
from .optional import import_optional
from .workflow import plain_subnet

__all__ = ["RUNTIMES", "Deployment", "LatencyFunc"]

LatencyFunc = Callable[[nn.Module, Any], float]

#: runtime -> the deployment keys it reads (besides ``runtime``)
RUNTIMES: dict[str, tuple[str, ...]] = {
    "torch": ("threads", "warmup", "repeats"),
    "onnxruntime": ("threads", "provider", "warmup", "repeats"),
    "torch.compile": ("threads", "backend", "mode", "warmup", "repeats"),
}

_COMPILE_MODES = (None, "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


@dataclass(frozen=True)
class Deployment:
    """A validated ``deployment`` dict; build it with :meth:`parse`.

    Attributes:
        runtime: ``"torch"`` (eager PyTorch), ``"onnxruntime"`` or ``"torch.compile"``.
        threads: CPU threads of the runtime while timing (``torch.set_num_threads``, ONNX Runtime's
            intra-op threads); ``None`` leaves the runtime's default.
        provider: ONNX Runtime execution provider (one of ``onnxruntime.get_available_providers()``).
        backend: ``torch.compile`` backend.
        mode: ``torch.compile`` mode.
        warmup: untimed runs before timing (at least one for ``torch.compile``, which compiles then).
        repeats: timed runs; the latency is their median, in milliseconds.
    """

    runtime: str = "torch"
    threads: int | None = None
    provider: str = "CPUExecutionProvider"
    backend: str = "inductor"
    mode: str | None = None
    warmup: int = 3
    repeats: int = 10

    @classmethod
    def parse(cls, deployment: Mapping[str, Any] | Deployment | None) -> Deployment:
        """Validate a ``deployment`` dict (``None``: eager torch with the defaults).

        Raises:
            TypeError: ``deployment`` is not a dict, or a value has the wrong type.
            KeyError: A key is unknown, or does not apply to the runtime (the message lists the keys that do).
            ValueError: An unknown runtime, provider, backend or mode, or a count out of range.
            ModuleNotFoundError: ``onnxruntime`` is asked for but not installed (the message names the pip extra).
        """
        if deployment is None:
            return cls()
        if isinstance(deployment, Deployment):
            return deployment
        if not isinstance(deployment, Mapping):
            raise TypeError(f"deployment must be a dict such as {{'runtime': 'onnxruntime'}}, got {deployment!r}.")
        runtime = deployment.get("runtime", "torch")
        if runtime not in RUNTIMES:
            raise ValueError(
                f"deployment runtime {runtime!r} is not supported; supported runtimes are {list(RUNTIMES)}."
            )
        allowed = RUNTIMES[runtime]
        known = {field.name for field in fields(cls)}
        for key in deployment:
            if key == "runtime":
                continue
            if key not in known:
                raise KeyError(f"Unknown deployment key {key!r}; the keys of runtime {runtime!r} are {list(allowed)}.")
            if key not in allowed:
                raise KeyError(
                    f"deployment key {key!r} does not apply to runtime {runtime!r}; its keys are {list(allowed)}."
                )
        parsed = cls(**dict(deployment))
        parsed._check()
        return parsed

    def _check(self) -> None:
        if self.threads is not None:
            _check_count("threads", self.threads, minimum=1)
        _check_count("warmup", self.warmup, minimum=1 if self.runtime == "torch.compile" else 0)
        _check_count("repeats", self.repeats, minimum=1)
        if self.runtime == "onnxruntime":
            ort = import_optional("onnxruntime", "Latency in ONNX Runtime")
            available = ort.get_available_providers()
            if self.provider not in available:
                raise ValueError(
                    f"deployment provider {self.provider!r} is not available in this onnxruntime; available: {available}."
                )
        if self.runtime == "torch.compile":
            backends = torch.compiler.list_backends(exclude_tags=())
            if self.backend not in backends:
                raise ValueError(
                    f"deployment backend {self.backend!r} is not a torch.compile backend; known: {backends}."
                )
            if self.mode not in _COMPILE_MODES:
                raise ValueError(
                    f"deployment mode {self.mode!r} is not a torch.compile mode; known: {list(_COMPILE_MODES)}."
                )

    def describe(self) -> str:
        """A short label such as ``"onnxruntime (CPUExecutionProvider, 2 threads)"``."""
        details = {"onnxruntime": [self.provider], "torch.compile": [self.backend, *([self.mode] if self.mode else [])]}
        threads = [f"{self.threads} thread{'s' if self.threads > 1 else ''}"] if self.threads else []
        parts = [*details.get(self.runtime, []), *threads]
        return f"{self.runtime} ({', '.join(parts)})" if parts else self.runtime

    def measure(self, model: nn.Module, dummy_input: Any) -> float:
        """The latency in milliseconds of the active subnet of ``model`` on ``dummy_input`` in this runtime.

        The model is timed in eval mode; a converted model is exported on a copy first (for
        ``"torch"`` too, so that every runtime times the model that will be deployed).
        """
        with plain_subnet(model) as plain, _torch_threads(self.threads):
            if self.runtime == "torch":
                return measure_latency(plain, dummy_input, warmup=self.warmup, repeats=self.repeats)
            if self.runtime == "onnxruntime":
                return self._measure_onnxruntime(plain, dummy_input)
            return self._measure_compiled(plain, dummy_input)

    def _measure_onnxruntime(self, model: nn.Module, dummy_input: Any) -> float:
        session = onnxruntime_session(model, dummy_input, threads=self.threads, provider=self.provider)
        feeds = onnx_feeds(session, dummy_input)
        return median_time_ms(lambda: session.run(None, feeds), self.warmup, self.repeats)

    def _measure_compiled(self, model: nn.Module, dummy_input: Any) -> float:
        # every measured subnet is a new module with new shapes: without a reset, torch.compile would
        # reach its recompile limit after a few subnets and silently run the rest eagerly
        torch.compiler.reset()
        compiled = cast(nn.Module, torch.compile(model, backend=self.backend, mode=self.mode))
        return measure_latency(compiled, dummy_input, warmup=self.warmup, repeats=self.repeats)


def _check_count(key: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"deployment {key} must be an integer, got {value!r}.")
    if value < minimum:
        raise ValueError(f"deployment {key} must be >= {minimum}, got {value}.")


@contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    """Inside the block torch runs on ``threads`` CPU threads (``None``: unchanged)."""
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
