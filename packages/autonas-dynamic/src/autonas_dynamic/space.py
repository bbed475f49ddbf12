"""The search space of a model: tracing, rules and dynamic layers wired together.

:func:`generate_search_space` traces a model (:mod:`autonas_dynamic.trace`), converts its
searchable layers in place into dynamic layers, restricts each layer's choices by its rule, merges
the hparams of coupled layers into one shared object per group (the group's choices are the
intersection of its members'), pins groups the analysis could not prove searchable, and converts
back the layers that ended up with nothing to search. :class:`SearchSpace` is a cheap view over a
converted model: names, configs, sampling, selection, size, export, sorting and a summary.
"""

from __future__ import annotations

import fnmatch
import math
import random
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch
import torch.nn as nn

from autonas_config import get_layer_type, is_unmatched, resolve_rule

from .checks import check_convertible
from .dynamic import DynamicModule, distinct_hparams, export_model
from .hparam import ConcatHparam, DepthHparam, Hparam
from .registry import DYNAMIC_REGISTRY
from .sorting import sort_parameters
from .trace import Analysis, Group, analyze

__all__ = ["SearchSpace", "generate_search_space"]

SampleFunc = Callable[[Sequence[Any]], Any]


class SearchSpace:
    """A view over a converted model's hparams (cheap: no tracing, nothing stored but the model).

    Hparam names are ``"<module name>.<hparam name>"`` (e.g. ``"layer1.0.conv1.out_channels"``);
    an hparam shared by coupled layers is reported, where names must be unique, under the first
    module (in ``named_modules`` order) that holds it.

    Searchers do not drive this view: ``autonas_modes`` adapts a converted model to the
    ``autonas_search.SearchSpace`` protocol (configurable hparams only, plus ``original()``).

    Attributes:
        model: The converted model.
        untraced: The modules torch.fx could not trace when :func:`generate_search_space` made this
            space, as qualified name (``""``: the root) -> the tracer's error; their inputs and
            outputs keep their sizes. Empty for a view made over an already converted model.
    """

    def __init__(self, model: nn.Module, untraced: Mapping[str, str] | None = None) -> None:
        self.model = model
        self.untraced = dict(untraced or {})

    # ----------------------------------------------------------------------------- names
    def named_hparams(self, configurable: bool | None = None) -> Iterator[tuple[str, Hparam]]:
        """Yield ``(full name, hparam)``.

        Args:
            configurable: ``None``: every hparam under every name (a shared hparam appears once per
                module holding it); ``True``: each configurable hparam once, under its first name;
                ``False``: the hparams that are not configurable, under every name.
        """
        if configurable:
            yield from distinct_hparams(self.model, configurable=True)
            return
        for module_name, module in self.model.named_modules():
            if not isinstance(module, DynamicModule):
                continue
            for local, hparam in module.named_hparams():
                if configurable is None or not hparam.is_configurable:
                    yield (f"{module_name}.{local}" if module_name else local), hparam

    def hparams(self) -> dict[str, list[Any]]:
        """The choices of every configurable hparam, each under its first name."""
        return {name: hparam.choices for name, hparam in self.named_hparams(configurable=True)}

    def config(self, configurable: bool | None = None) -> dict[str, Any]:
        """The active value of each hparam, named as in :meth:`named_hparams`."""
        return {name: hparam.active for name, hparam in self.named_hparams(configurable)}

    def size(self) -> int:
        """The number of distinct subnets: the product of the configurable hparams' choice counts."""
        return math.prod(len(hparam.choices) for _, hparam in self.named_hparams(configurable=True))

    def is_configurable(self) -> bool:
        """Whether any hparam has more than one choice."""
        return next(self.named_hparams(configurable=True), None) is not None

    # ----------------------------------------------------------------------------- subnets
    def sample(self, sample_func: SampleFunc | Mapping[str, SampleFunc] = random.choice) -> dict[str, Any]:
        """Activate a subnet picked per hparam by ``sample_func(choices)``; returns the full config.

        ``sample_func`` may map glob patterns over hparam names to functions, e.g.
        ``{"*": min, "*.depth": max}``: the LAST matching pattern wins; hparams that match no
        pattern keep their active value.
        """
        patterns = dict(sample_func) if isinstance(sample_func, Mapping) else {"*": sample_func}
        for name, hparam in self.named_hparams(configurable=True):
            func = None
            for pattern, candidate in patterns.items():
                if fnmatch.fnmatchcase(name, pattern):
                    func = candidate
            if func is not None:
                hparam.active = func(hparam.choices)
        return self.config()

    def select(self, config: Mapping[str, Any], strict: bool = True) -> None:
        """Activate the subnet described by ``config`` (a full or a configurable-only config).

        The configurable hparams named in ``config`` are set first. With ``strict``, a ``ValueError``
        then names the configurable hparams missing from ``config``, the names that match no hparam,
        and the names whose value disagrees with the model (fixed hparams, or another name of a
        shared hparam); a config naming any fixed hparam must name all of them.
        """
        configurable = dict(self.named_hparams(configurable=True))
        for name, hparam in configurable.items():
            if name in config:
                hparam.active = config[name]
        if not strict:
            return
        every = list(self.named_hparams())
        known = {name for name, _ in every}
        fixed = {name for name, hparam in every if not hparam.is_configurable}
        problems = []
        missing = sorted(set(configurable) - set(config))
        if fixed & set(config):
            missing += sorted(fixed - set(config))
        if missing:
            problems.append(f"missing keys {missing}")
        unexpected = sorted(set(config) - known)
        if unexpected:
            problems.append(f"unexpected keys {unexpected}")
        inconsistent = [
            f"{name}={config[name]!r} (active {hparam.active!r})"
            for name, hparam in every
            if name in config and name not in configurable and config[name] != hparam.active
        ]
        if inconsistent:
            problems.append(f"inconsistent keys {inconsistent}")
        if problems:
            raise ValueError("cannot select this config: " + "; ".join(problems))

    # ----------------------------------------------------------------------------- model
    def export(self) -> nn.Module:
        """Turn the model, in place, into plain torch modules at the active subnet; returns it."""
        return export_model(self.model)

    def sort_parameters(self, hps_to_sort: Sequence[str] | None = None) -> None:
        """Reorder channels by importance, in place (see :func:`autonas_dynamic.sorting.sort_parameters`)."""
        sort_parameters(self.model, hps_to_sort)

    def summary(self, skipped: Sequence[str] = ("kernel_size",)) -> str:
        """A table of every hparam name with its choices; ``*`` marks where a searched hparam is first named."""
        lines = ["Search Space Summary", "-" * 80]
        first: set[int] = set()
        for name, hparam in self.named_hparams():
            if any(name.endswith(suffix) for suffix in skipped):
                continue
            mark = " "
            if hparam.is_configurable and id(hparam) not in first:
                first.add(id(hparam))
                mark = "*"
            choices = hparam.choices
            shown = choices if len(choices) <= 8 else [*choices[:4], "...", *choices[-4:]]
            lines.append(f"{mark} {name:<60} {shown}")
        lines += ["-" * 80, f"configurable hparams: {len(first)}, search space size: {self.size():.3g}"]
        return "\n".join(lines)

    def print_summary(self, skipped: Sequence[str] = ("kernel_size",)) -> None:
        """Print :meth:`summary` (on rank 0 only when torch.distributed is initialised)."""
        if torch.distributed.is_available() and torch.distributed.is_initialized() and torch.distributed.get_rank():
            return
        print(self.summary(skipped))


# --------------------------------------------------------------------------------- generation
def generate_search_space(model: nn.Module, rules: Mapping[Any, Any] | None = None) -> SearchSpace:
    """Convert ``model`` in place into a search space and return a :class:`SearchSpace` over it.

    Args:
        model: A plain (not yet converted, not wrapped) torch model. Its ``forward`` is traced
            with every non-tensor argument at its default value.
        rules: Per layer type (``"nn.Conv2d"`` or ``nn.Conv2d``) a rule, ``None`` or a dict of
            glob patterns over module names (the shape of ``AutoNASConfig().model_dump()``; see
            :func:`autonas_config.resolve_rule`). A layer type absent from ``rules`` is frozen.
            ``None`` (the default) converts every layer with its full choices.

    Raises:
        UnsupportedModelError: the model is a TorchScript module, a DataParallel / DDP wrapper, or
            holds parameters in channels_last memory format (a ``ValueError``).
        AlreadyConvertedError: the model is already a search space (a ``ValueError``).
    """
    check_convertible(model)
    analysis = analyze(model)
    _warn_about(analysis)
    converted = _convert(model, analysis)
    _apply_rules(model, converted, rules)
    for module in analysis.frozen:
        converted[module].freeze()
    holders = {m: DYNAMIC_REGISTRY.convert_holder(m, held) for m, held in analysis.holders.items()}
    _install_groups(analysis)
    for seq, flags in analysis.skippable.items():
        depth = converted[seq].get_hparam("depth")
        if isinstance(depth, DepthHparam):
            depth.restrict_to_trailing(flags)
    _unconvert_unsearchable({**converted, **holders})
    return SearchSpace(model, untraced=analysis.failed)


def _warn_about(analysis: Analysis) -> None:
    for name, reason in analysis.failed.items():
        warnings.warn(
            f"module {name or '<root>'!r} could not be traced ({reason}); it is kept as one unit: its inputs and "
            "outputs keep their sizes, and its children are analysed on their own",
            stacklevel=3,
        )
    if analysis.other_mode_error is not None:
        warnings.warn(
            "the model could not be traced in its other mode (train / eval): "
            f"{analysis.other_mode_error}; only its current mode was analysed, so layers that run only in the "
            "other mode may not match the sizes of their inputs there",
            stacklevel=3,
        )
    for name, reason in analysis.refused.items():
        warnings.warn(
            f"{name} layers keep their sizes: {reason}. Declare the class with autonas_dynamic.register_layer "
            "(a LayerLayout, or a dynamic implementation) to make it searchable",
            stacklevel=3,
        )
    if analysis.unvisited:
        warnings.warn(
            f"layers never called while tracing keep their sizes: {', '.join(analysis.unvisited)}", stacklevel=3
        )


def _convert(model: nn.Module, analysis: Analysis) -> dict[nn.Module, DynamicModule]:
    """Convert every analysed layer and every Sequential with skippable blocks (tensor holders are converted apart)."""
    layers = {slot.module for slot in analysis.group_of} | set(analysis.skippable)
    converted = {}
    for module in model.modules():
        if (
            module in layers
            and module not in converted
            and module not in analysis.holders
            and module in DYNAMIC_REGISTRY
        ):
            converted[module] = DYNAMIC_REGISTRY.convert(module)
    return converted


def _apply_rules(model: nn.Module, converted: Mapping[nn.Module, DynamicModule], rules: Mapping | None) -> None:
    """``modify(**rule)`` each converted module, or ``freeze()`` it when its rule is None.

    Warns once about rule values some layers cannot take (dropped there), and once about layers
    the default rule would search that glob patterns froze by matching none of them.
    """
    if rules is None:
        return
    normalized = {_rule_key(key): value for key, value in rules.items()}
    misfits: dict[str, list[str]] = {}
    unmatched: dict[str, list[str]] = {}
    for name, module in model.named_modules():
        if module not in converted:
            continue
        key = _rule_key(module)
        rule = resolve_rule(normalized, key, name)
        if rule is not None:
            module.modify(**rule)
            for note in module.unfit_rule_values(rule):
                misfits.setdefault(note, []).append(name)
            continue
        if is_unmatched(normalized, key, name) and _searched_by(module, get_layer_type(key).base_rule()):
            unmatched.setdefault(key, []).append(name)
        module.freeze()
    if misfits:
        warnings.warn(
            "rule values that do not fit some layers are ignored there: "
            + "; ".join(f"{note}: {_some(names)}" for note, names in misfits.items()),
            stacklevel=3,
        )
    if unmatched:
        count = sum(len(names) for names in unmatched.values())
        sections = "; ".join(f"{key}: {_some(names)}" for key, names in unmatched.items())
        warnings.warn(
            f"{count} layers that the default rule would search match no glob pattern of their rules section and "
            f'are frozen ({sections}). To search them with the default rule, put "*": {{}} before the patterns '
            '(e.g. {"*": {}, "stage*.conv*": {"kernel_size": (3, 5)}}); to freeze them without this warning, put '
            '"*": None before the patterns.',
            stacklevel=3,
        )


def _searched_by(module: DynamicModule, rule: Mapping[str, Any]) -> bool:
    """Whether ``rule`` leaves ``module`` (about to be frozen) more than one choice for some hparam."""
    module.modify(**rule)
    return any(len(hparam.choices) > 1 for _, hparam in module.named_hparams())


def _some(names: Sequence[str], shown: int = 5) -> str:
    """The first ``shown`` names, and how many more there are."""
    listed = ", ".join(names[:shown])
    return f"{listed} and {len(names) - shown} more" if len(names) > shown else listed


def _rule_key(cls_or_module: Any) -> str:
    """The rule key of a layer class or module (``nn.Conv2d`` -> ``"nn.Conv2d"``); strings pass through."""
    if isinstance(cls_or_module, str):
        return cls_or_module
    key = DYNAMIC_REGISTRY.get_key(cls_or_module)
    if key is None:
        raise KeyError(f"{cls_or_module!r} is not a searchable layer type; known: {', '.join(DYNAMIC_REGISTRY.keys)}")
    return key


def _install_groups(analysis: Analysis) -> None:
    """Merge each group's hparams into one shared object; pin fixed groups."""
    built: dict[int, Hparam] = {}
    plain = [g for g in analysis.groups if not g.concat_inputs]
    concats = [g for g in analysis.groups if g.concat_inputs]
    for group in plain + concats:
        built[id(group)] = _build_group(group, built)


def _build_group(group: Group, built: Mapping[int, Hparam]) -> Hparam:
    members = [_dynamic(slot.module).get_hparam(slot.name) for slot in group.slots]
    originals = {hparam.original for hparam in members}
    shared: Hparam = members[0]
    fixed = group.fixed or len(originals) > 1  # differing sizes can only broadcast: keep them all
    if group.concat_inputs and not group.fixed:
        inputs = [built[id(inp)] for inp in group.concat_inputs]
        if fixed or originals != {sum(hp.original for hp in inputs)}:
            fixed = True
            for hparam in inputs:
                hparam.pin()
        else:
            shared = ConcatHparam(inputs, name=members[0].name)
    if fixed:
        for hparam in members:
            hparam.pin()
        return shared
    for hparam in members:
        shared &= hparam
    if not group.sortable:
        shared.make_unsortable()
    for slot in group.slots:
        _dynamic(slot.module).set_hparam(slot.name, shared)
    return shared


def _dynamic(module: nn.Module) -> DynamicModule:
    if not isinstance(module, DynamicModule):
        raise TypeError(f"{type(module).__name__} was not converted")
    return module


def _unconvert_unsearchable(converted: Mapping[nn.Module, DynamicModule]) -> None:
    """Export modules whose every hparam has a single choice: they stay plain (and fast) layers."""
    for module in converted.values():
        if all(len(hparam.choices) == 1 for _, hparam in module.named_hparams()):
            module.export()
