"""Searching the best subnet of a converted model under FLOPs / params / latency limits.

The model is handed to the searchers of ``autonas_search`` through
:class:`~autonas_modes.modelspace.ModelSearchSpace`; constraints are a
:class:`~autonas_modes.constraints.ModelConstraints` (closed-form FLOPs and params, so a check
costs microseconds); a candidate is scored only if it satisfies them, after its BatchNorm
statistics were recalibrated on the user's data.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch.nn as nn

from autonas_dynamic.calling import run_model

from .apply import unwrap_model
from .constraints import ModelConstraints
from .deployment import Deployment
from .distributed import collectives_refused, distributed_ranks, latency_on_rank_zero
from .errors import NotConvertedError
from .modelspace import ModelSearchSpace, frozen_eval, mark_subnet_changed
from .profiling import profile_constraints
from .state import get_mode

__all__ = ["search"]

#: Search-config keys consumed here; every other key goes to the searcher.
_MODEL_KEYS = (
    "score_func",
    "data_loader",
    "forward_loop",
    "collect_func",
    "max_iter_data_loader",
    "latency_func",
    "deployment",
)
_DEFAULT_MAX_ITER_DATA_LOADER = 50


def _resolve_searcher(searcher: Any, default: Callable[[], type]) -> type:
    import autonas_search

    named = {"evolve": autonas_search.EvolveSearcher, "random": autonas_search.RandomSearcher}
    if searcher is None:
        return default()
    if isinstance(searcher, str):
        if searcher not in named:
            raise ValueError(f"Unknown searcher {searcher!r}; use one of {sorted(named)} or a searcher class.")
        return named[searcher]
    if isinstance(searcher, type) and issubclass(searcher, autonas_search.BaseSearcher):
        return searcher
    raise TypeError(
        f"searcher must be 'evolve', 'random' or a subclass of autonas_search.BaseSearcher, got {searcher!r}."
    )


def _default_collect(batch: Any) -> Any:
    return batch[0] if isinstance(batch, tuple | list) else batch


def _build_forward_loop(
    data_loader: Iterable[Any] | None,
    forward_loop: Callable[[nn.Module], Any] | None,
    collect_func: Callable[[Any], Any] | None,
    max_iter: int | None,
) -> Callable[[nn.Module], Any] | None:
    """The BN-calibration loop: the user's ``forward_loop``, or replaying the first batches of ``data_loader``.

    The loader's first ``max_iter`` batches are read once and kept, so every candidate is
    calibrated on the same data without reloading it.
    """
    if data_loader is not None and forward_loop is not None:
        raise ValueError("Give either data_loader or forward_loop in the search config, not both.")
    if forward_loop is not None:
        return forward_loop
    if data_loader is None:
        return None
    collect = collect_func or _default_collect
    inputs = [collect(batch) for batch in itertools.islice(data_loader, max_iter)]
    if not inputs:
        raise ValueError("The data_loader of the search config yielded no batch.")

    def replay(model: nn.Module) -> None:
        for item in inputs:
            run_model(model, item)

    return replay


def _recalibrate(model: nn.Module, forward_loop: Callable[[nn.Module], Any] | None) -> None:
    from autonas_patch import recalibrate_batchnorm

    if forward_loop is not None:
        recalibrate_batchnorm(model, forward_loop)


def search(
    model: nn.Module,
    constraints: Mapping[str, Any],
    dummy_input: Any,
    config: Mapping[str, Any] | None = None,
    searcher: str | type | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """Search the best subnet of ``model`` within ``constraints``, then export it.

    Args:
        model: A model converted with ``"autonas"``.
        constraints: ``{"flops" | "params" | "flops_min_depth" | "latency": limit}``; a limit is an
            absolute upper bound (FLOPs, parameters, milliseconds), ``"N%"`` of the original
            model (measured in eval mode with patches off), ``None`` or a ``(lower, upper)`` pair.
        dummy_input: Input used to record layer shapes for the cost model and to time latency.
        config: Search config. Model keys: ``score_func(model) -> float`` (required, higher is
            better; runs in eval mode), ``data_loader`` or ``forward_loop`` for BatchNorm
            recalibration of each scored candidate (``collect_func(batch)`` picks the model input,
            default the batch's first element; at most ``max_iter_data_loader`` batches, default
            50), ``deployment`` (the runtime that latency is measured in, e.g.
            ``{"runtime": "onnxruntime", "threads": 2}``; see :class:`ModelConstraints`) or
            ``latency_func(model, dummy_input) -> ms`` to replace the built-in timing. Every
            other key goes to the searcher (``num_iters``, ``seed``, ``checkpoint``, ``verbose``,
            ``population_size``, ...).
        searcher: ``"evolve"``, ``"random"``, or an ``autonas_search`` searcher class; default
            the mode's search algorithm (``EvolveSearcher`` for ``"autonas"``).

    Under torch.distributed (several processes, e.g. ``torchrun``) every rank runs the search on
    its own copy of the model: the candidates of each proposed batch are scored across the ranks
    (``score_on="one_rank"``, the default: every rank must calibrate and score on the same data,
    and ``score_func`` must not call collectives) or on every rank (``score_on="every_rank"``:
    each rank scores on its shard and ``score_func`` all-reduces). Every rank ends with the same
    subnet and state, those of a one-process search with the same seed; latency is measured on
    rank 0; rank 0 writes the checkpoint, which resumes on any number of ranks.

    Returns:
        ``(model, search_state)``: the model exported in place at the best subnet (BatchNorm
        recalibrated for it when calibration data is given) and the searcher's state (``best``,
        ``history``, ``samples``, ...).

    Raises:
        NotConvertedError: The model was not converted (a ``RuntimeError``).
        KeyError: An unsupported constraint key.
        ValueError: No profiled subnet can satisfy the limits (checked before the search), the
            config is malformed or has a key that is neither a model key nor the searcher's (the
            message lists every accepted key), or ``score_func`` returned NaN.
        TypeError: ``score_func`` returned something that is not a number (the message names the
            candidate's config and the value).
        autonas_search.NoSatisfiedCandidateError: The search evaluated no candidate within the
            limits (the message names the closest one); the model keeps its previous subnet and
            train/eval flags, and its BN statistics count as stale.
    """
    from .workflow import export

    model, mode = _converted(model)
    engine = _resolve_searcher(searcher, lambda: mode.search_algorithm)()
    search_config, model_config = _split_config(config, engine)
    ranks = search_config["ranks"]
    forward_loop = _build_forward_loop(
        model_config["data_loader"],
        model_config["forward_loop"],
        model_config["collect_func"],
        model_config["max_iter_data_loader"] or _DEFAULT_MAX_ITER_DATA_LOADER,
    )
    functor = _model_constraints(model, constraints, dummy_input, model_config, ranks)
    split_scoring = ranks is not None and ranks.size > 1 and search_config.get("score_on", "one_rank") == "one_rank"
    score = _score_function(model, model_config["score_func"], forward_loop, split_scoring)
    verbose = bool(search_config.get("verbose")) and (ranks is None or ranks.rank == 0)
    _run_with_rollback(model, engine, functor, {**search_config, "score_func": score}, forward_loop, verbose)
    export(model)
    return model, engine.state_dict()


def _converted(model: nn.Module) -> tuple[nn.Module, Any]:
    """The unwrapped model and its mode; a ``NotConvertedError`` unless it was converted."""
    model = unwrap_model(model, caller="search")
    mode = get_mode(model)
    if mode is None:
        raise NotConvertedError("Model is not converted to a search space. Please convert first (autonas.convert).")
    return model, mode


def _split_config(config: Mapping[str, Any] | None, engine: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(searcher config, model config)`` from the user's search config, every key checked.

    The searcher config gets ``ranks`` (the torch.distributed ranks, unless given); the model
    config has every key of ``_MODEL_KEYS`` (``None`` when not given).
    """
    config = dict(config or {})
    if config.get("executor") is not None:
        raise ValueError(
            "The search config key 'executor' is not supported for model search: candidates share one model, "
            "so they are evaluated one after the other (under torch.distributed, spread over the ranks)."
        )
    accepted = sorted({*_MODEL_KEYS, *engine.default_search_config} - {"executor"})
    unknown = sorted(set(config) - set(accepted))
    if unknown:
        raise ValueError(
            f"unknown search config key(s) {unknown} for searching a model with {type(engine).__name__}; "
            f"accepted keys: {accepted}"
        )
    if "ranks" not in config:
        config["ranks"] = distributed_ranks()
    model_config = {key: config.pop(key, None) for key in _MODEL_KEYS}
    if not callable(model_config["score_func"]):
        raise ValueError(
            "Please provide `score_func` in the search config: score_func(model) -> float, higher is better."
        )
    return config, model_config


def _model_constraints(
    model: nn.Module, constraints: Mapping[str, Any], dummy_input: Any, model_config: Mapping[str, Any], ranks: Any
) -> ModelConstraints:
    """The constraints functor; under torch.distributed, latency is measured on rank 0 and shared."""
    latency_func, deployment = model_config["latency_func"], model_config["deployment"]
    if ranks is not None and ranks.size > 1:
        # measured on rank 0 alone and shared, so that every rank interpolates the same points
        if latency_func is None:
            latency_func, deployment = Deployment.parse(deployment).measure, None
        latency_func = latency_on_rank_zero(latency_func, ranks)
    return ModelConstraints(model, constraints, dummy_input, latency_func=latency_func, deployment=deployment)


def _score_function(
    model: nn.Module,
    score_func: Callable[[nn.Module], Any],
    forward_loop: Callable[[nn.Module], Any] | None,
    split_scoring: bool,
) -> Callable[[Mapping[str, Any]], Any]:
    """The searcher's score of the selected candidate: recalibrate its BatchNorm, then ``score_func(model)``."""

    def score(_: Mapping[str, Any]) -> Any:
        _recalibrate(model, forward_loop)
        with collectives_refused() if split_scoring else contextlib.nullcontext():
            return score_func(model)  # the searcher checks it is a number, naming the candidate

    return score


def _run_with_rollback(
    model: nn.Module,
    engine: Any,
    functor: ModelConstraints,
    config: Mapping[str, Any],
    forward_loop: Callable[[nn.Module], Any] | None,
    verbose: bool,
) -> None:
    """Profile the space, run the search and leave the best subnet active (recalibrated).

    On any error the previous subnet returns, and the patch manager counts its BN statistics as stale.
    """
    space = ModelSearchSpace(model)
    previous = space.config()
    with frozen_eval(model):
        try:
            space.select({name: max(choices) for name, choices in space.hparams().items()})
            _recalibrate(model, forward_loop)
            profile_constraints(functor, strict=True, verbose=verbose, use_centroid=True)
            best = engine.search(space, functor, config)
        except BaseException:
            space.select(previous)
            mark_subnet_changed(model)  # BN statistics were recalibrated for other subnets
            raise
        space.select(best["config"])
        _recalibrate(model, forward_loop)
