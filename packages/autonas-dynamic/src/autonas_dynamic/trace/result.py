"""The outcome of the analysis, in terms of modules and hparam names only (no symbols)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch.nn as nn

from .repeats import RepeatedBlock
from .symbols import Slot


@dataclass(eq=False)
class Group:
    """Layer hparams that must always take the same value.

    ``fixed_reason`` says why the group must keep its original size (None: searchable).
    ``step``: the size changes only in multiples of it, and sorting moves blocks of it (the width of
    one attention head, when the group's tensors are split into heads).
    ``concat_inputs`` (when not empty): the group's size is the sum of these groups' sizes (a ``torch.cat`` along
    channels); their hparams then follow this group's choice.
    """

    slots: list[Slot]
    fixed_reason: str | None
    sortable: bool
    concat_inputs: list[Group] = field(default_factory=list)
    step: int = 1

    @property
    def fixed(self) -> bool:
        return self.fixed_reason is not None


@dataclass
class Analysis:
    """Everything the search space needs from tracing a model.

    Attributes:
        groups: every group of coupled layer hparams, in first-appearance order.
        group_of: the group of each ``Slot(module, hparam_name)``.
        skippable: for each Sequential (or iterated ModuleList) whose depth may shrink, one flag per
            block (True only on a trailing run of skippable blocks).
        repeats: each module whose forward calls one block a number of times that an int attribute
            says and that may be lowered (ALBERT's shared layer group): that block and attribute.
        failed: qualified name -> reason, for every module torch.fx could not trace.
        unvisited: names of layers never called while tracing (their sizes are fixed).
        frozen: layers that must keep every hparam at its original value (weights read directly).
        other_mode_error: why the model could not be traced in the mode it is not in (train / eval);
            None when both modes were analysed.
        refused: per class name, why the called layers of that declared type cannot be converted
            (they keep their sizes).
        holders: modules (not layers) whose forward reads tensors of their own with one entry per
            channel or per head: per tensor name, the dim that follows (its hparam is
            ``<tensor>_size``, see :class:`~autonas_dynamic.generic.TensorHolder`).
        heads: each module whose forward splits groups' channels into attention heads: each such
            group (queries, keys and values share one, unless grouped) and the width of one head.
        head_counts: tensor dims with one entry per head of a width split into heads (a relative
            position bias added to the scores): the group of the heads' width, the group of those
            dims (always ``1 / head_dim`` of it), and the head width.
        grouped_heads: grouped-query attention: the query group, the key/value group, and the
            number of query heads per key/value head (the query width is always that multiple).
        attribute_splits: tensors split into equal parts by an attention module's head-width
            attribute (``split(self.split_size)``): that module and the group of the whole.
        scaled_groups: the two sides of a grouped layer with unequal widths (FastViT's ``groups=48``
            conv from 48 to 96 channels): the wider group, the narrower one, and how many times wider
            (the wider always is, moving by whole groups).
        split_attributes: tensors split into equal parts by another int attribute of a module
            (``split(x, self.width, 1)``): the module, the attribute, the group of the whole and
            that of each part.
        sealed: called modules that are searched in hparams of their own only, their inputs and
            outputs keeping their sizes (``nn.MultiheadAttention``'s head count).
    """

    groups: list[Group]
    group_of: dict[Slot, Group]
    skippable: dict[nn.Module, list[bool]] = field(default_factory=dict)
    repeats: dict[nn.Module, RepeatedBlock] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    unvisited: list[str] = field(default_factory=list)
    frozen: dict[nn.Module, str] = field(default_factory=dict)
    other_mode_error: str | None = None
    refused: dict[str, str] = field(default_factory=dict)
    holders: dict[nn.Module, dict[str, int]] = field(default_factory=dict)
    heads: dict[nn.Module, list[tuple[Group, int]]] = field(default_factory=dict)
    grouped_heads: list[tuple[Group, Group, int]] = field(default_factory=list)
    head_counts: list[tuple[Group, Group, int]] = field(default_factory=list)
    attribute_splits: list[tuple[nn.Module, Group]] = field(default_factory=list)
    split_attributes: list[tuple[nn.Module, str, Group, Group]] = field(default_factory=list)
    scaled_groups: list[tuple[Group, Group, int]] = field(default_factory=list)
    sealed: list[nn.Module] = field(default_factory=list)

    def group(self, module: nn.Module, name: str) -> Group:
        """The group of one hparam of one layer."""
        return self.group_of[Slot(module, name)]
