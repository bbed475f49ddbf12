"""The search space of a model: tracing, rules and dynamic layers wired together.

:func:`generate_search_space` traces a model (:mod:`autonas_dynamic.trace`), converts its
searchable layers in place into dynamic layers, restricts each layer's choices by its rule, merges
the hparams of coupled layers into one shared object per group (the group's choices are the
intersection of its members'; the widths of attention heads come from the ``heads`` section
instead), pins groups the analysis could not prove searchable, and converts
back the layers that ended up with nothing to search. :class:`SearchSpace` is a cheap view over a
converted model: names, configs, sampling, selection, size, export, sorting and a summary.
"""

from __future__ import annotations

import fnmatch
import functools
import math
import random
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import torch
import torch.nn as nn
from torch.utils._pytree import tree_map_only

from autonas_config import (
    HEADS_KEY,
    OUTPUTS_KEY,
    get_layer_type,
    is_unmatched,
    output_may_change,
    resolve_rule,
    validate_outputs,
)

from .attention import QueryGroupsHparam, follow_heads, follow_split, settle_heads
from .calling import split_args
from .checks import check_convertible
from .dynamic import DynamicModule, distinct_hparams, export_model
from .hparam import ConcatHparam, DepthHparam, HeadCountHparam, Hparam
from .layers.module_list import RULE_KEY as MODULE_LIST_KEY
from .layers.module_list import DynamicModuleListBase
from .layers.rules import head_counts
from .meta import MetaStandIns, meta_like, meta_run, model_on_meta
from .registry import DYNAMIC_REGISTRY
from .sorting import sort_parameters
from .trace import Analysis, Group, analyze
from .trace.examples import example_input_for

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
def generate_search_space(
    model: nn.Module, rules: Mapping[Any, Any] | None = None, example_input: Any = None
) -> SearchSpace:
    """Convert ``model`` in place into a search space and return a :class:`SearchSpace` over it.

    Args:
        model: A plain (not yet converted, not wrapped) torch model. Its ``forward`` is traced
            with every non-tensor argument at its default value.
        rules: Per layer type (``"nn.Conv2d"`` or ``nn.Conv2d``) a rule, ``None`` or a dict of
            glob patterns over module names (the shape of ``AutoNASConfig().model_dump()``; see
            :func:`autonas_config.resolve_rule`). A layer type absent from ``rules`` is frozen.
            The ``"heads"`` section's patterns match attention modules: their head counts set the
            widths of the query/key/value projections (and the output projection's input), in
            place of those layers' own rules. The ``"outputs"`` section (glob patterns over the
            paths of the model's outputs to ``True`` / ``False``, see :mod:`autonas_config.outputs`)
            says which outputs may change width; without it every output keeps its size. ``None``
            (the default) converts every layer with its full choices (any whole number of heads),
            every output keeping its size.
        example_input: An input of ``model`` (the ``dummy_input`` convention of the cost model),
            whose sizes answer shape-dependent Python in the forward while tracing. By default one
            is made where autonas knows how (Hugging Face models, from their config); without one,
            a module whose forward needs sizes is kept as one unit.

    Raises:
        UnsupportedModelError: the model is a TorchScript module, a DataParallel / DDP wrapper, or
            holds parameters in channels_last memory format (a ``ValueError``).
        AlreadyConvertedError: the model is already a search space (a ``ValueError``).
    """
    check_convertible(model)
    if example_input is None:
        example_input = example_input_for(model)
    outputs = validate_outputs((rules or {}).get(OUTPUTS_KEY))
    analysis = analyze(model, example_input, functools.partial(output_may_change, outputs))
    _warn_about(analysis)
    converted = _convert(model, analysis)
    _apply_rules(model, converted, rules)
    for module in analysis.frozen:
        converted[module].freeze()
    holders = {m: DYNAMIC_REGISTRY.convert_holder(m, held) for m, held in analysis.holders.items()}
    repeaters = _convert_repeaters(model, analysis, rules, set(converted) | set(holders))
    _install_groups(analysis, _head_widths(model, analysis, rules))
    _link_grouped_queries(analysis)
    _link_head_counts(analysis)
    _pin_unfollowed_splits(analysis)
    heads = _follow_heads(analysis)
    splits = _follow_splits(analysis)
    for seq, flags in analysis.skippable.items():
        depth = converted[seq].get_hparam("depth")
        if isinstance(depth, DepthHparam):
            depth.restrict_to_trailing(flags)
    names = {module: name for name, module in model.named_modules()}
    iterated = [b for b in analysis.skippable if isinstance(converted[b], DynamicModuleListBase)]
    checks = [_list_depth(names[b], converted[b]) for b in iterated]
    checks += [_Smallest(f"the layer count of {names[m]!r}", m.get_hparam("depth")) for m in repeaters.values()]
    checks += [_Smallest(f"the heads of {names[attention]!r}", width) for attention, width in heads]
    checks += [_Smallest(f"the split of {names[module]!r} by its {name!r}", whole) for module, name, whole in splits]
    _confirm_smallest(model, checks, example_input)
    followed = [*heads, *((module, whole) for module, _, whole in splits)]
    for module in dict.fromkeys(module for module, _ in followed):
        fixed = all(len(width.choices) == 1 for other, width in followed if other is module)
        settle_heads(module, keep_following=not fixed)  # the checks above left the smallest values set
    _unconvert_unsearchable({**converted, **holders, **repeaters})
    return SearchSpace(model, untraced=analysis.failed)


def _convert_repeaters(
    model: nn.Module, analysis: Analysis, rules: Mapping | None, dynamic: set[nn.Module]
) -> dict[nn.Module, DynamicModule]:
    """Give each module that calls a block a lowerable number of times its ``depth`` (see
    :mod:`autonas_dynamic.repeated`), restricted by the ``"nn.ModuleList"`` rule at the module's name.

    A module that is already dynamic (a layer, a tensor holder) keeps its count.
    """
    normalized = {_rule_key(key): value for key, value in (rules or {}).items()}
    repeaters: dict[nn.Module, DynamicModule] = {}
    for name, module in model.named_modules():
        repeat = analysis.repeats.get(module)
        if repeat is None or module in dynamic or module in repeaters:
            continue
        repeater = repeaters[module] = DYNAMIC_REGISTRY.convert_repeater(module, repeat)
        if rules is None:
            continue
        rule = resolve_rule(normalized, MODULE_LIST_KEY, name)
        if rule is None:
            repeater.freeze()
        else:
            repeater.modify(**rule)
    return repeaters


def _confirm_smallest(model: nn.Module, checks: Sequence[_Smallest], example_input: Any) -> None:
    """Keep an hparam searchable only where the forward runs with it at its smallest value.

    A ModuleList's loop sees only its active blocks, but a forward may also index the list by
    position (``self.layer[-1]``) or by a fixed layer count (``for i in range(12): self.layers[i]``);
    an attention module's heads may be reshaped by a count that does not follow them. A forward on
    meta tensors with every checked hparam at its smallest value shows it (then one per hparam, to
    find the culprits): an error, or a call of a dropped block, fixes that hparam, with a warning.
    """
    hparams = [hparam for _, hparam in distinct_hparams(model, configurable=True)]
    checks = [check._replace(hparam=driver) for check in checks if (driver := _driver(check.hparam, hparams))]
    if not checks:
        return
    stand_ins = MetaStandIns()
    if example_input is not None and _run_at_smallest(model, checks, example_input, stand_ins) is None:
        return
    for check in checks:
        reason = (
            "no example input to run the forward with (give one as example_input)" if example_input is None else None
        )
        if reason is None:
            reason = _run_at_smallest(model, [check], example_input, stand_ins)
        if reason is not None:
            check.hparam.choices = [check.hparam.original]
            warnings.warn(f"{check.what} stays {check.hparam.original}: {reason}", stacklevel=3)


def _driver(hparam: Hparam, hparams: Sequence[Hparam]) -> Hparam | None:
    """The searched hparam that sets ``hparam``: itself, or a concatenation it is an input of (a fused
    ``qkv`` holding the heads' width three times); None when nothing moves it."""
    if hparam.is_configurable:
        return hparam
    concats = (h for h in hparams if isinstance(h, ConcatHparam) and h.is_configurable)
    return next((concat for concat in concats if any(part is hparam for part in concat.inputs)), None)


class _Smallest(NamedTuple):
    """An hparam to try at its smallest value: what it sizes, and the blocks it then drops."""

    what: str
    hparam: Hparam
    dropped: Sequence[nn.Module] = ()


def _list_depth(name: str, blocks: DynamicModule) -> _Smallest:
    depth = blocks.get_hparam("depth")
    dropped = [block for block in list(blocks._modules.values())[depth.min :] if block is not None]
    return _Smallest(f"the depth of {name!r}", depth, dropped)


def _run_at_smallest(
    model: nn.Module, checks: Sequence[_Smallest], example_input: Any, stand_ins: MetaStandIns
) -> str | None:
    """Why the forward cannot run with these hparams at their smallest values (None: it can)."""
    called: list[nn.Module] = []
    dropped = [block for check in checks for block in check.dropped]
    hooks = [block.register_forward_pre_hook(lambda module, args: called.append(module)) for block in dropped]
    args, kwargs = tree_map_only(torch.Tensor, meta_like, split_args(example_input))
    actives = [check.hparam.active for check in checks]
    try:
        for check in checks:
            check.hparam.active = check.hparam.min
        with model_on_meta(model, stand_ins), meta_run():
            model(*args, **kwargs)
    except Exception as error:  # the forward needs a block that is not there, or more heads
        return f"at its smallest the forward fails ({type(error).__name__}: {error})"
    finally:
        for check, active in zip(checks, actives, strict=True):
            check.hparam.active = active
        for hook in hooks:
            hook.remove()
    return "the forward calls blocks beyond the depth" if called else None


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
    layers = {slot.module for slot in analysis.group_of} | set(analysis.skippable) | set(analysis.sealed)
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


def _head_widths(model: nn.Module, analysis: Analysis, rules: Mapping | None) -> dict[int, set[int]]:
    """The widths the ``heads`` section gives each group split into heads (by the group's id).

    A module's rule counts its heads; in grouped-query attention it counts the key/value heads,
    and the queries get as many whole groups. Nothing when ``rules`` is None (full choices).
    """
    if rules is None:
        return {}
    normalized = {_rule_key(key): value for key, value in rules.items()}
    names = {module: name for name, module in model.named_modules()}
    queries_of = {id(key_values): (queries, groups) for queries, key_values, groups in analysis.grouped_heads}
    grouped_queries = {id(queries) for queries, _, _ in analysis.grouped_heads}
    widths: dict[int, set[int]] = {}
    for attention, entries in analysis.heads.items():
        rule = resolve_rule(normalized, HEADS_KEY, names[attention])
        for group, head_dim in entries:
            if id(group) in grouped_queries:
                continue  # follows its key/value heads
            original = _dynamic(group.slots[0].module).get_hparam(group.slots[0].name).original
            counts = head_counts(original // head_dim, rule)
            widths[id(group)] = {count * head_dim for count in counts}
            if id(group) in queries_of:
                queries, groups = queries_of[id(group)]
                widths[id(queries)] = {count * groups * head_dim for count in counts}
    for group in analysis.groups:  # the concatenated parts of a fused projection (GPT-2's c_attn)
        parts = {id(part) for part in group.concat_inputs}
        if len(parts) == 1 and next(iter(parts)) in widths:
            widths[id(group)] = {len(group.concat_inputs) * width for width in widths[next(iter(parts))]}
        elif len(parts) == 1 and id(group) in widths:  # a stream split into heads and chunked (EdgeNeXt)
            count = len(group.concat_inputs)
            widths[next(iter(parts))] = {width // count for width in widths[id(group)] if width % count == 0}
    return widths


def _pin_unfollowed_splits(analysis: Analysis) -> None:
    """A tensor split by a head-width attribute keeps its size unless its parts are split into heads.

    Only then does the attribute follow the parts (see :mod:`autonas_dynamic.attention`).
    """
    for module, whole in analysis.attribute_splits:
        head_groups = {id(group) for group, _ in analysis.heads.get(module, [])}
        if not any(id(part) in head_groups for part in whole.concat_inputs):
            _dynamic(whole.slots[0].module).get_hparam(whole.slots[0].name).pin()


def _follow_heads(analysis: Analysis) -> list[tuple[nn.Module, Hparam]]:
    """Let the head attributes of each attention module follow its head widths; those with choices."""
    followed = []
    for attention, entries in analysis.heads.items():
        for group, head_dim in entries:
            width = _dynamic(group.slots[0].module).get_hparam(group.slots[0].name)
            if len(width.choices) > 1:
                follow_heads(attention, width, head_dim)
                followed.append((attention, width))
    return followed


def _follow_splits(analysis: Analysis) -> list[tuple[nn.Module, str, Hparam]]:
    """Let each split-size attribute follow its parts' width; the module, attribute and whole's hparam, with choices."""
    followed = []
    for module, name, whole, part in analysis.split_attributes:
        whole_hparam = _dynamic(whole.slots[0].module).get_hparam(whole.slots[0].name)
        if len(whole_hparam.choices) > 1:
            follow_split(module, name, _dynamic(part.slots[0].module).get_hparam(part.slots[0].name))
            followed.append((module, name, whole_hparam))
    return followed


def _install_groups(analysis: Analysis, head_widths: Mapping[int, set[int]]) -> None:
    """Merge each group's hparams into one shared object; pin fixed groups.

    A group split into heads takes its widths from ``head_widths`` (see :func:`_head_widths`)
    rather than from its layers' rules, unless one of its layers is frozen by the analysis.
    """
    built: dict[int, Hparam] = {}
    plain = [g for g in analysis.groups if not g.concat_inputs]
    concats = [g for g in analysis.groups if g.concat_inputs]
    for group in plain + concats:
        widths = head_widths.get(id(group))
        if widths is not None and not any(slot.module in analysis.frozen for slot in group.slots):
            for slot in group.slots:
                hparam = _dynamic(slot.module).get_hparam(slot.name)
                hparam._set_choices(widths | {hparam.original})
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
    if group.step > 1:  # channels split into attention heads: whole heads only, sorted as wholes
        shared.choices = [choice for choice in shared.choices if choice % group.step == 0]
        shared.block = group.step
    if not group.sortable:
        shared.make_unsortable()
    for slot in group.slots:
        _dynamic(slot.module).set_hparam(slot.name, shared)
    return shared


def _link_grouped_queries(analysis: Analysis) -> None:
    """Grouped-query attention: the key/value width follows the query width (whole groups of heads);
    likewise the narrower side of a grouped layer with unequal widths follows the wider one. Links
    chain: where the narrower side already led a link, its follower follows the new one's.

    Where that leaves a single choice, or one side is fixed, both keep their sizes.
    """
    for queries, key_values, groups in [*analysis.grouped_heads, *analysis.scaled_groups]:
        query_hp, kv_hp = (_dynamic(g.slots[0].module).get_hparam(g.slots[0].name) for g in (queries, key_values))
        if query_hp is kv_hp or isinstance(query_hp, QueryGroupsHparam):
            continue
        linked = None
        # a fused projection's heads are whole groups of its parts (GPT-NeoX): ``groups`` times their step
        if (
            query_hp.is_configurable
            and kv_hp.is_configurable
            and queries.step in (key_values.step, groups * key_values.step)
        ):
            linked = QueryGroupsHparam(query_hp, kv_hp, groups, key_values.step)
        if linked is None or not linked.is_configurable:
            query_hp.pin()
            kv_hp.pin()
            continue
        for slot in queries.slots:
            _dynamic(slot.module).set_hparam(slot.name, linked)
        for slot in key_values.slots:
            _dynamic(slot.module).set_hparam(slot.name, linked.key_values)
        if isinstance(kv_hp, QueryGroupsHparam):
            # the narrower side led a link of its own: what followed it now follows its new value
            kv_hp.key_values.follow(linked.key_values)


def _link_head_counts(analysis: Analysis) -> None:
    """Tensor dims with one entry per head follow the head count of their heads' width.

    Their own rules do not restrict them (the ``heads`` section decides); where the analysis or a
    frozen layer keeps them, the heads keep their width too. Heads whose width is a concatenation
    are not sorted: sorting reorders each part on its own, which per-head entries cannot follow.
    """
    for heads, per_head, head_dim in analysis.head_counts:
        width = _dynamic(heads.slots[0].module).get_hparam(heads.slots[0].name)
        if per_head.fixed or any(slot.module in analysis.frozen for slot in per_head.slots):
            width.pin()
            continue
        count = HeadCountHparam(width, head_dim, name=per_head.slots[0].name)
        width.block = math.lcm(width.block, head_dim)  # sorting moves whole heads, with their entries
        if isinstance(width, ConcatHparam):
            width.make_unsortable()
        for slot in per_head.slots:
            _dynamic(slot.module).set_hparam(slot.name, count)


def _dynamic(module: nn.Module) -> DynamicModule:
    if not isinstance(module, DynamicModule):
        raise TypeError(f"{type(module).__name__} was not converted")
    return module


def _unconvert_unsearchable(converted: Mapping[nn.Module, DynamicModule]) -> None:
    """Export modules whose every hparam has a single choice: they stay plain (and fast) layers."""
    for module in converted.values():
        if all(len(hparam.choices) == 1 for _, hparam in module.named_hparams()):
            module.export()
