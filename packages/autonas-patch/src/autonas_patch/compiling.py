"""Running the patch hooks of a model under ``torch.compile``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

__all__ = ["run_outside_graph"]


@torch.compiler.disable
def run_outside_graph(hook: Callable[..., None], *args: Any) -> None:
    """``hook(*args)``, run eagerly while torch.compile traces the caller.

    Sampling a subnet, counting forwards and caching inputs are host-side Python (random draws, a
    deque, CPU copies): the compiled graph breaks here, runs them as written, and resumes with
    the model's own forward.
    """
    hook(*args)
