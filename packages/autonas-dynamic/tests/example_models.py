"""Small hand-written models, one per coupling pattern, with the search space each must give.

Each :class:`Example` lists, for a conversion without rules (full choices), every configurable
channel/feature/depth hparam as ``first name -> every name sharing it``. Kernel sizes are left out
(1x1 convs keep them fixed anyway). Models take a ``1 x 3 x 8 x 8`` input unless said otherwise.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F


def conv(cin: int, cout: int, groups: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1, groups=groups)


class ConvChain(nn.Module):
    """conv -> BN -> ReLU -> conv -> AvgPool -> conv: each producer couples with the next consumer."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn, self.conv2, self.pool, self.conv3 = (
            conv(3, 8),
            nn.BatchNorm2d(8),
            conv(8, 6),
            nn.AvgPool2d(2),
            conv(6, 4),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv3(self.pool(self.conv2(F.relu(self.bn(self.conv1(x))))))


class Residual(nn.Module):
    """A residual without projection: everything added to the stream shares one size."""

    def __init__(self) -> None:
        super().__init__()
        self.stem, self.conv_a, self.conv_b, self.head = conv(3, 8), conv(8, 5), conv(5, 8), conv(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = x + self.conv_b(torch.relu(self.conv_a(x)))
        return self.head(x)


class ResidualProjection(nn.Module):
    """A residual with a projection: the block's output and the projection share one size."""

    def __init__(self) -> None:
        super().__init__()
        self.stem, self.conv_a, self.conv_b = conv(3, 8), conv(8, 6), conv(6, 10)
        self.proj, self.head = conv(8, 10), conv(10, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        return self.head(self.conv_b(self.conv_a(x)) + self.proj(x))


class ResidualOnInput(nn.Module):
    """A residual that adds the model input: the block's output keeps the input's size."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2 = conv(3, 8), conv(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.conv1(x))


class ConcatConvs(nn.Module):
    """cat of two convs along channels: the consumer's size is the sum of the producers'."""

    def __init__(self) -> None:
        super().__init__()
        self.c1, self.c2, self.bn, self.c3 = conv(3, 8), conv(3, 6), nn.BatchNorm2d(14), conv(14, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c3(self.bn(torch.cat([self.c1(x), self.c2(x)], dim=1)))


class NestedConcat(nn.Module):
    """cat(cat(a, b), c) is flattened into one concatenation of a, b and c."""

    def __init__(self) -> None:
        super().__init__()
        self.c1, self.c2, self.c3, self.c4 = conv(3, 4), conv(3, 6), conv(3, 8), conv(18, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inner = torch.cat((self.c1(x), self.c2(x)), 1)
        return self.c4(torch.cat([inner, self.c3(x)], 1))


class ConcatBatchDim(nn.Module):
    """cat along the batch axis: the inputs must keep one channel count, which the consumer reads."""

    def __init__(self) -> None:
        super().__init__()
        self.c1, self.c2, self.c3 = conv(3, 8), conv(3, 8), conv(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c3(torch.cat([self.c1(x), self.c2(x)]))


class ConcatFeatures(nn.Module):
    """cat of Linear outputs along the last axis (input ``2 x 5``)."""

    def __init__(self) -> None:
        super().__init__()
        self.lin1, self.lin2, self.lin3 = nn.Linear(5, 6), nn.Linear(5, 4), nn.Linear(10, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin3(torch.cat([self.lin1(x), self.lin2(x)], dim=-1))


class SharedConcatInput(nn.Module):
    """One tensor feeding two different concatenations: it cannot follow both, so it is fixed."""

    def __init__(self) -> None:
        super().__init__()
        self.c1, self.c2, self.c3 = conv(3, 8), conv(3, 6), conv(3, 4)
        self.head1, self.head2 = conv(14, 4), conv(12, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a = self.c1(x)
        return self.head1(torch.cat([a, self.c2(x)], 1)), self.head2(torch.cat([a, self.c3(x)], 1))


class GroupedChain(nn.Module):
    """A grouped conv with in == out passes its size through, in group-sized steps, unsortable."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.grouped, self.conv3 = conv(3, 16), conv(16, 16, groups=4), conv(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv3(self.grouped(self.conv1(x)))


class DepthwiseChain(nn.Module):
    """A depthwise conv and its BN pass the producer's size through."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.dw, self.bn, self.conv3 = (
            conv(3, 8),
            nn.Conv2d(8, 8, 3, padding=1, groups=8),
            nn.BatchNorm2d(8),
            conv(8, 4),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv3(self.bn(self.dw(self.conv1(x))))


class GroupedInOutDiffer(nn.Module):
    """A grouped conv with in != out (groups of 2 in, 4 out) moves by whole groups: its input follows as half."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.grouped, self.conv3 = conv(3, 8), conv(8, 16, groups=4), conv(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv3(self.grouped(self.conv1(x)))


class FlattenLinear(nn.Module):
    """conv -> flatten -> Linear: flatten mixes channels with space, so both sides are fixed."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2, self.fc = conv(3, 8), conv(8, 6), nn.Linear(6 * 64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.conv2(self.conv1(x)), 1))


class PoolFlattenLinear(nn.Module):
    """conv -> BN -> AdaptiveAvgPool2d(1) -> torch.flatten(x, 1) -> Dropout -> Linear: a global pool
    then a flatten from axis 1 carries the channels, so the Linear follows the conv."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn, self.pool = conv(3, 8), nn.BatchNorm2d(8), nn.AdaptiveAvgPool2d(1)
        self.drop, self.fc1, self.fc2 = nn.Dropout(0.2), nn.Linear(8, 6), nn.Linear(6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.pool(torch.relu(self.bn(self.conv1(x)))), 1)
        return self.fc2(torch.relu(self.fc1(self.drop(x))))


class PoolFlattenModule(nn.Module):
    """F.adaptive_avg_pool2d(x, (1, 1)) -> nn.Flatten() -> Linear: the Linear follows the conv."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2, self.flatten, self.fc = conv(3, 8), conv(8, 6), nn.Flatten(), nn.Linear(6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.flatten(F.adaptive_avg_pool2d(self.conv2(self.conv1(x)), (1, 1))))


class PoolView(nn.Module):
    """F.adaptive_max_pool2d(x, 1) -> x.view(x.size(0), -1) -> Linear: the Linear follows the conv."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.fc = conv(3, 8), nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.adaptive_max_pool2d(self.conv1(x), 1)
        return self.fc(x.view(x.size(0), -1))


class PoolReshape(nn.Module):
    """n = x.shape[0] of the input; AdaptiveMaxPool2d((1, 1)) -> x.reshape(n, -1) -> Linear: follows the conv."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.pool, self.fc = conv(3, 8), nn.AdaptiveMaxPool2d((1, 1)), nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        return self.fc(self.pool(torch.relu(self.conv1(x))).reshape(n, -1))


class PoolToTwoFlatten(nn.Module):
    """AdaptiveAvgPool2d(2) -> flatten -> Linear: 4 spatial positions per channel: a boundary."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2, self.pool, self.fc = conv(3, 8), conv(8, 6), nn.AdaptiveAvgPool2d(2), nn.Linear(24, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.conv2(self.conv1(x))), 1))


class PoolFlattenBatch(nn.Module):
    """Global pool, then flatten from axis 0 / view(1, -1): the batch joins the features: boundaries."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2, self.fc1, self.fc2 = conv(3, 8), conv(3, 6), nn.Linear(8, 2), nn.Linear(6, 2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a = torch.flatten(F.adaptive_avg_pool2d(self.conv1(x), 1))
        b = F.adaptive_avg_pool2d(self.conv2(x), 1).view(1, -1)
        return self.fc1(a), self.fc2(b)


class PoolResizeFlatten(nn.Module):
    """Global pool -> interpolate back to 2x2 -> flatten: the pool's unit size is lost: a boundary."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.fc = conv(3, 8), nn.Linear(32, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(F.adaptive_avg_pool2d(self.conv1(x), 1), size=(2, 2))
        return self.fc(torch.flatten(x, 1))


class MeanLinear(nn.Module):
    """conv -> spatial mean -> Linear: the mean keeps the channel axis, so the Linear follows the conv."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.fc1, self.fc2 = conv(3, 8), nn.Linear(8, 6), nn.Linear(6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(self.conv1(x).mean((2, 3)))))


class PoolBetweenLinears(nn.Module):
    """Linear -> AvgPool2d -> Linear: the pool reduces the Linear's feature axis: a boundary."""

    def __init__(self) -> None:
        super().__init__()
        self.lin1, self.pool, self.lin2, self.lin3 = nn.Linear(8, 8), nn.AvgPool2d(2), nn.Linear(4, 6), nn.Linear(6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin3(self.lin2(self.pool(self.lin1(x))))


class ReusedLayer(nn.Module):
    """A conv applied twice: its input and output size are one hparam, shared with the stem."""

    def __init__(self) -> None:
        super().__init__()
        self.stem, self.body, self.head = conv(3, 8), conv(8, 8), conv(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(torch.relu(self.body(self.stem(x)))))


class DataDependent(nn.Module):
    """Data-dependent control flow: cannot be traced."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = nn.Sequential(conv(8, 6), nn.ReLU(), conv(6, 8))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:
            return self.inner(x)
        return x


class FailingSubmodule(nn.Module):
    """A submodule that fails to trace becomes a leaf; its children are analysed on their own."""

    def __init__(self) -> None:
        super().__init__()
        self.stem, self.block, self.head = conv(3, 8), DataDependent(), conv(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.block(self.stem(x)))


class ResBlock(nn.Module):
    """relu(x + bn(conv(relu(conv(x))))): shape-preserving residual, skippable."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv_a, self.conv_b, self.bn = (
            conv(channels, 2 * channels),
            conv(2 * channels, channels),
            nn.BatchNorm2d(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.bn(self.conv_b(torch.relu(self.conv_a(x)))))


class SkippableDepth(nn.Module):
    """A Sequential ending with two residual blocks: depth may drop them."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = conv(3, 8)
        self.blocks = nn.Sequential(conv(8, 8), ResBlock(8), ResBlock(8))
        self.head = conv(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)))


class NonSkippableDepth(nn.Module):
    """A Sequential ending with a plain conv: no trailing block can be dropped."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = conv(3, 8)
        self.blocks = nn.Sequential(ResBlock(8), ResBlock(8), conv(8, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.stem(x))


class NestedSequentials(nn.Module):
    """Sequential(Sequential(res, res), res): both depths may drop trailing residual blocks."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = conv(3, 8)
        self.blocks = nn.Sequential(nn.Sequential(ResBlock(8), ResBlock(8)), ResBlock(8))
        self.head = conv(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)))


class RecordingBlock(ResBlock):
    """A residual block that also keeps its output aside, in a dict its model reads, under itself."""

    def __init__(self, channels: int, outputs: dict[nn.Module, torch.Tensor]) -> None:
        super().__init__(channels)
        self.outputs = outputs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = super().forward(x)
        self.outputs[self] = out
        return out


class KeptOutputs(nn.Module):
    """Blocks keep their outputs aside and the forward reads those of blocks 0, 1 and 3 afterwards.

    Skipping any trailing block would make a lookup fail: the depth stays fixed.
    """

    def __init__(self) -> None:
        super().__init__()
        self.outputs: dict[nn.Module, torch.Tensor] = {}
        self.stem = conv(3, 8)
        self.blocks = nn.Sequential(*(RecordingBlock(8, self.outputs) for _ in range(4)))
        self.head = conv(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.outputs.clear()
        y = self.blocks(self.stem(x))
        kept = self.outputs[self.blocks[0]] + self.outputs[self.blocks[1]] + self.outputs[self.blocks[3]]
        return self.head(y + kept)


class SharedBlock(nn.Module):
    """One residual block object fills all four positions of a Sequential: depth drops trailing calls."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = conv(3, 8)
        block = ResBlock(8)
        self.blocks = nn.Sequential(*[block] * 4)
        self.head = conv(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)))


class AuxiliaryHead(nn.Module):
    """An auxiliary head that runs only in training reads a searchable tensor."""

    def __init__(self) -> None:
        super().__init__()
        self.stem, self.body, self.head, self.aux = conv(3, 8), conv(8, 6), conv(6, 4), conv(6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        y = self.body(torch.relu(self.stem(x)))
        if self.training:
            return self.head(y), self.aux(y)
        return self.head(y)


class GroupNormModel(nn.Module):
    """GroupNorm(4, 16): channels move in group-sized steps; the group cannot be sorted."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.gn, self.conv2 = conv(3, 16), nn.GroupNorm(4, 16), conv(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.gn(self.conv1(x)))


class DefaultFlag(nn.Module):
    """A Python flag with a default is traced at its default: the other branch's layer is never called."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.extra, self.conv2 = conv(3, 8), conv(8, 8), conv(8, 4)

    def forward(self, x: torch.Tensor, use_extra: bool = False) -> torch.Tensor:
        x = self.conv1(x)
        if use_extra:
            x = self.extra(x)
        return self.conv2(x)


class TwoInputsDictOutput(nn.Module):
    """Two model inputs added after their convs; a dict of outputs."""

    def __init__(self) -> None:
        super().__init__()
        self.conv_a, self.conv_b, self.head, self.aux = conv(3, 8), conv(5, 8), conv(8, 4), conv(8, 2)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> dict[str, torch.Tensor]:
        y = torch.relu(self.conv_a(a) + self.conv_b(b))
        return {"out": self.head(y), "aux": self.aux(y)}


class InPlaceOps(nn.Module):
    """In-place ``add_`` and ``torch.add(..., out=)`` couple like ``+``."""

    def __init__(self) -> None:
        super().__init__()
        self.c1, self.c2, self.c3, self.c4, self.head = conv(3, 8), conv(3, 8), conv(3, 8), conv(3, 8), conv(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.c1(x)
        y.add_(self.c2(x))
        out = self.c3(x)
        torch.add(y, self.c4(x), out=out)
        return self.head(torch.relu_(out))


class ShapeReads(nn.Module):
    """Spatial sizes read from a shape are harmless; a channel count read from it is a boundary."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2, self.conv3, self.conv4 = conv(3, 8), conv(8, 6), conv(3, 5), conv(5, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(self.conv1(x))
        h, w = y.shape[2:]
        z = F.interpolate(self.conv3(x), size=(h, w))
        z = z.view(z.size(0), z.size(1), -1).view(z.shape)
        return self.conv4(z) + y.mean((2, 3), keepdim=True)[:, :4]


class DirectWeightRead(nn.Module):
    """A layer whose weight is used functionally keeps every size (its kernel too)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2, self.conv3 = conv(3, 8), nn.Conv2d(8, 6, 3, padding=1), conv(6, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv1(x)
        y = F.conv2d(y, self.conv2.weight, self.conv2.bias, padding=1)
        return self.conv3(y)


class SqueezeExcite(nn.Module):
    """x * sigmoid(fc2(relu(fc1(pool(x))))): fc2 follows x; fc1 is its own hparam."""

    def __init__(self) -> None:
        super().__init__()
        self.stem, self.fc1, self.fc2, self.head = conv(3, 8), conv(8, 4), conv(4, 8), conv(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        scale = torch.sigmoid(self.fc2(torch.relu(self.fc1(F.adaptive_avg_pool2d(x, 1)))))
        return self.head(x * scale)


class LinearNormChain(nn.Module):
    """Linear -> LayerNorm -> Linear couples; Linear -> BatchNorm1d does not (different axes); input 2 x 4 x 6."""

    def __init__(self) -> None:
        super().__init__()
        self.lin1, self.ln, self.lin2 = nn.Linear(6, 8), nn.LayerNorm(8), nn.Linear(8, 8)
        self.bn, self.lin3 = nn.BatchNorm1d(4), nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin3(self.bn(self.lin2(self.ln(self.lin1(x)))))


class Conv1dStages(nn.Module):
    """Conv1d stem -> a stage of two 5-wide convs -> 1x1 head, 64 channels wide; input 1 x 3 x 16.

    A ``Sequential`` with named children (``stage1.conv1``), as glob rules over stages address them.
    """

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv1d(3, 64, 3, padding=1)
        self.stage1 = nn.Sequential(
            OrderedDict(conv1=nn.Conv1d(64, 64, 5, padding=2), act=nn.ReLU(), conv2=nn.Conv1d(64, 64, 5, padding=2))
        )
        self.head = nn.Conv1d(64, 10, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.stage1(torch.relu(self.stem(x)))))


@dataclass
class Example:
    """A model factory, its inputs and its expected configurable hparam groups (rules=None)."""

    factory: Callable[[], nn.Module]
    groups: dict[str, set[str]]
    inputs: Callable[[], tuple[torch.Tensor, ...]] = lambda: (torch.randn(1, 3, 8, 8),)
    choices: dict[str, list[int]] = field(default_factory=dict)
    fixed: set[str] = field(default_factory=set)
    warns: str | None = None

    @property
    def name(self) -> str:
        return self.factory.__name__


def _range(n: int) -> list[int]:
    return list(range(1, n + 1))


EXAMPLES = [
    Example(
        ConvChain,
        {"conv1.out_channels": {"bn.num_features", "conv2.in_channels"}, "conv2.out_channels": {"conv3.in_channels"}},
        choices={"conv1.out_channels": _range(8)},
        fixed={"conv1.in_channels", "conv3.out_channels"},
    ),
    Example(
        Residual,
        {
            "stem.out_channels": {"conv_a.in_channels", "conv_b.out_channels", "head.in_channels"},
            "conv_a.out_channels": {"conv_b.in_channels"},
        },
    ),
    Example(
        ResidualProjection,
        {
            "stem.out_channels": {"conv_a.in_channels", "proj.in_channels"},
            "conv_a.out_channels": {"conv_b.in_channels"},
            "conv_b.out_channels": {"proj.out_channels", "head.in_channels"},
        },
    ),
    Example(ResidualOnInput, {"conv1.out_channels": {"conv2.in_channels"}}, fixed={"conv2.out_channels"}),
    Example(
        ConcatConvs,
        {"bn.num_features": {"c3.in_channels"}},
        choices={"bn.num_features": list(range(2, 15))},
        fixed={"c3.out_channels"},
    ),
    Example(NestedConcat, {"c4.in_channels": set()}, choices={"c4.in_channels": list(range(3, 19))}),
    Example(ConcatBatchDim, {"c1.out_channels": {"c2.out_channels", "c3.in_channels"}}),
    Example(
        ConcatFeatures,
        {"lin3.in_features": set()},
        inputs=lambda: (torch.randn(2, 5),),
        choices={"lin3.in_features": list(range(2, 11))},
    ),
    Example(
        SharedConcatInput,
        {"head1.in_channels": set(), "head2.in_channels": set()},
        choices={"head1.in_channels": list(range(9, 15)), "head2.in_channels": list(range(9, 13))},
        fixed={"c1.out_channels"},
    ),
    Example(
        GroupedChain,
        {"conv1.out_channels": {"grouped.in_channels", "grouped.out_channels", "conv3.in_channels"}},
        choices={"conv1.out_channels": [4, 8, 12, 16]},
    ),
    Example(
        DepthwiseChain,
        {"conv1.out_channels": {"dw.in_channels", "dw.out_channels", "bn.num_features", "conv3.in_channels"}},
    ),
    Example(GroupedInOutDiffer, {"grouped.out_channels": {"conv3.in_channels"}}),
    Example(
        FlattenLinear,
        {"conv1.out_channels": {"conv2.in_channels"}},
        fixed={"conv2.out_channels", "fc.in_features"},
    ),
    Example(
        MeanLinear,
        {"conv1.out_channels": {"fc1.in_features"}, "fc1.out_features": {"fc2.in_features"}},
    ),
    Example(
        PoolFlattenLinear,
        {"conv1.out_channels": {"bn.num_features", "fc1.in_features"}, "fc1.out_features": {"fc2.in_features"}},
        choices={"conv1.out_channels": _range(8), "fc1.out_features": _range(6)},
        fixed={"conv1.in_channels", "fc2.out_features"},
    ),
    Example(
        PoolFlattenModule,
        {"conv1.out_channels": {"conv2.in_channels"}, "conv2.out_channels": {"fc.in_features"}},
        choices={"conv2.out_channels": _range(6)},
    ),
    Example(PoolView, {"conv1.out_channels": {"fc.in_features"}}, inputs=lambda: (torch.randn(2, 3, 8, 8),)),
    Example(PoolReshape, {"conv1.out_channels": {"fc.in_features"}}, inputs=lambda: (torch.randn(3, 3, 8, 8),)),
    Example(
        PoolToTwoFlatten,
        {"conv1.out_channels": {"conv2.in_channels"}},
        fixed={"conv2.out_channels", "fc.in_features"},
    ),
    Example(
        PoolFlattenBatch, {}, fixed={"conv1.out_channels", "conv2.out_channels", "fc1.in_features", "fc2.in_features"}
    ),
    Example(PoolResizeFlatten, {}, fixed={"conv1.out_channels", "fc.in_features"}),
    Example(
        PoolBetweenLinears,
        {"lin2.out_features": {"lin3.in_features"}},
        inputs=lambda: (torch.randn(1, 2, 8, 8),),
        fixed={"lin1.out_features", "lin2.in_features"},
    ),
    Example(ReusedLayer, {"stem.out_channels": {"body.in_channels", "body.out_channels", "head.in_channels"}}),
    Example(
        FailingSubmodule,
        {"block.inner.0.out_channels": {"block.inner.2.in_channels"}},
        fixed={"stem.out_channels", "block.inner.0.in_channels", "block.inner.2.out_channels", "head.in_channels"},
        warns="block",
    ),
    Example(
        SkippableDepth,
        {
            "stem.out_channels": {"blocks.0.in_channels"},
            "blocks.depth": set(),
            "blocks.0.out_channels": {
                "blocks.1.conv_a.in_channels",
                "blocks.1.conv_b.out_channels",
                "blocks.1.bn.num_features",
                "blocks.2.conv_a.in_channels",
                "blocks.2.conv_b.out_channels",
                "blocks.2.bn.num_features",
                "head.in_channels",
            },
            "blocks.1.conv_a.out_channels": {"blocks.1.conv_b.in_channels"},
            "blocks.2.conv_a.out_channels": {"blocks.2.conv_b.in_channels"},
        },
        choices={"blocks.depth": [1, 2, 3]},
    ),
    Example(
        NonSkippableDepth,
        {
            "stem.out_channels": {
                "blocks.0.conv_a.in_channels",
                "blocks.0.conv_b.out_channels",
                "blocks.0.bn.num_features",
                "blocks.1.conv_a.in_channels",
                "blocks.1.conv_b.out_channels",
                "blocks.1.bn.num_features",
                "blocks.2.in_channels",
            },
            "blocks.0.conv_a.out_channels": {"blocks.0.conv_b.in_channels"},
            "blocks.1.conv_a.out_channels": {"blocks.1.conv_b.in_channels"},
        },
    ),
    Example(
        NestedSequentials,
        {
            "stem.out_channels": {
                f"blocks.{block}.{name}"
                for block in ("0.0", "0.1", "1")
                for name in ("conv_a.in_channels", "conv_b.out_channels", "bn.num_features")
            }
            | {"head.in_channels"},
            "blocks.depth": set(),
            "blocks.0.depth": set(),
            "blocks.0.0.conv_a.out_channels": {"blocks.0.0.conv_b.in_channels"},
            "blocks.0.1.conv_a.out_channels": {"blocks.0.1.conv_b.in_channels"},
            "blocks.1.conv_a.out_channels": {"blocks.1.conv_b.in_channels"},
        },
        choices={"blocks.depth": [0, 1, 2], "blocks.0.depth": [0, 1, 2]},
    ),
    Example(
        KeptOutputs,
        {
            "stem.out_channels": {
                f"blocks.{block}.{name}"
                for block in range(4)
                for name in ("conv_a.in_channels", "conv_b.out_channels", "bn.num_features")
            }
            | {"head.in_channels"},
            **{f"blocks.{block}.conv_a.out_channels": {f"blocks.{block}.conv_b.in_channels"} for block in range(4)},
        },
    ),
    Example(
        SharedBlock,
        {
            "stem.out_channels": {
                "blocks.0.conv_a.in_channels",
                "blocks.0.conv_b.out_channels",
                "blocks.0.bn.num_features",
                "head.in_channels",
            },
            "blocks.depth": set(),
            "blocks.0.conv_a.out_channels": {"blocks.0.conv_b.in_channels"},
        },
        choices={"blocks.depth": [0, 1, 2, 3, 4]},
    ),
    Example(
        AuxiliaryHead,
        {"stem.out_channels": {"body.in_channels"}, "body.out_channels": {"head.in_channels", "aux.in_channels"}},
    ),
    Example(
        GroupNormModel,
        {"conv1.out_channels": {"gn.num_channels", "conv2.in_channels"}},
        choices={"conv1.out_channels": [4, 8, 12, 16]},
    ),
    Example(DefaultFlag, {"conv1.out_channels": {"conv2.in_channels"}}, fixed={"extra.in_channels"}, warns="extra"),
    Example(
        TwoInputsDictOutput,
        {"conv_a.out_channels": {"conv_b.out_channels", "head.in_channels", "aux.in_channels"}},
        inputs=lambda: (torch.randn(1, 3, 8, 8), torch.randn(1, 5, 8, 8)),
        fixed={"head.out_channels", "aux.out_channels"},
    ),
    Example(
        InPlaceOps,
        {"c1.out_channels": {"c2.out_channels", "c3.out_channels", "c4.out_channels", "head.in_channels"}},
    ),
    Example(
        ShapeReads, {"conv1.out_channels": {"conv2.in_channels"}}, fixed={"conv2.out_channels", "conv3.out_channels"}
    ),
    Example(
        DirectWeightRead, {}, fixed={"conv1.out_channels", "conv2.out_channels", "conv2.kernel_size"}, warns="conv2"
    ),
    Example(
        SqueezeExcite,
        {
            "stem.out_channels": {"fc1.in_channels", "fc2.out_channels", "head.in_channels"},
            "fc1.out_channels": {"fc2.in_channels"},
        },
    ),
    Example(
        Conv1dStages,
        {
            "stem.out_channels": {"stage1.conv1.in_channels"},
            "stage1.conv1.out_channels": {"stage1.conv2.in_channels"},
            "stage1.conv2.out_channels": {"head.in_channels"},
        },
        inputs=lambda: (torch.randn(1, 3, 16),),
        fixed={"stem.in_channels", "head.out_channels"},
    ),
    Example(
        LinearNormChain,
        {"lin1.out_features": {"ln.num_features", "lin2.in_features"}},
        inputs=lambda: (torch.randn(2, 4, 6),),
        fixed={"lin2.out_features", "lin3.in_features"},
    ),
]
