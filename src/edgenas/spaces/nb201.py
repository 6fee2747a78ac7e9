"""The NAS-Bench-201 cell space: 6 edges x 5 ops, 15,625 architectures.

Why it is here: NAS-Bench-201 publishes the trained accuracy of every architecture, so a search
strategy can be judged against known answers. The space must therefore spell architectures
exactly as the benchmark's tables do, `|op~0|+|op~0|op~1|+|op~0|op~1|op~2|`: one group per
target node 1..3, each listing the ops on its edges from nodes 0..i-1. The decisions follow that
string order, so decision k is the k-th op in the string.

`build()` makes the benchmark's CIFAR network: a 3x3 stem of 16 channels, three stages of five
cells at 16/32/64 channels with a residual reduction block between stages, BN-ReLU, global
pooling and a classifier. Convolutions in cells are ReLU-conv-BN (`ConvBnAct(preact=True)`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch
from torch import nn

from edgenas.blocks import ConvBnAct, PoolBN, Zero
from edgenas.blocks.core import CELL_NORM, NormSpec
from edgenas.errors import UserError
from edgenas.spaces.base import Decision, SearchSpace

OPS: tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
NODES = 4
# (target, source) for each edge, in the order the benchmark's string lists them.
EDGES: tuple[tuple[int, int], ...] = tuple((i, j) for i in range(1, NODES) for j in range(i))
_GROUP = re.compile(r"^([a-z0-9_]+)~(\d+)$")


def make_op(op: str, channels: int, norm: NormSpec = CELL_NORM) -> nn.Module:
    """One cell edge. Convolutions keep the width and resolution (cells never reduce here); `norm`
    is their BatchNorm (DARTS searches with a non-affine one)."""
    if op == "none":
        return Zero()
    if op == "skip_connect":
        return nn.Identity()
    if op == "nor_conv_1x1":
        return ConvBnAct(channels, channels, 1, norm=norm, preact=True)
    if op == "nor_conv_3x3":
        return ConvBnAct(channels, channels, 3, norm=norm, preact=True)
    if op == "avg_pool_3x3":
        return PoolBN("avg", channels, stride=1)
    raise UserError(f"unknown NAS-Bench-201 op '{op}'; choose one of {', '.join(OPS)}")


class Cell(nn.Module):
    """Node i is the sum of every edge op applied to an earlier node; the last node is the output."""

    def __init__(self, ops: Sequence[str], channels: int) -> None:
        super().__init__()
        self.edges = nn.ModuleList(make_op(op, channels) for op in ops)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        edge = 0
        for target in range(1, NODES):
            total = 0
            for source in range(target):
                total = total + self.edges[edge](nodes[source])
                edge += 1
            nodes.append(total)
        return nodes[-1]


class ReductionBlock(nn.Module):
    """The residual block between stages: two ReLU-conv-BN 3x3 (the first strided) plus a shortcut
    of 2x2 average pooling and a 1x1 convolution, as in the benchmark's network."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv_a = ConvBnAct(in_channels, out_channels, 3, stride=2, norm=CELL_NORM, preact=True)
        self.conv_b = ConvBnAct(out_channels, out_channels, 3, norm=CELL_NORM, preact=True)
        self.shortcut = nn.Sequential(
            nn.AvgPool2d(2, stride=2), nn.Conv2d(in_channels, out_channels, 1, bias=False)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_b(self.conv_a(x)) + self.shortcut(x)


class NB201Network(nn.Module):
    """Stem, stages of identical cells joined by reduction blocks, BN-ReLU, pool, classifier."""

    def __init__(
        self, ops: Sequence[str], channels: int = 16, cells_per_stage: int = 5, num_classes: int = 10
    ) -> None:
        super().__init__()
        self.stem = ConvBnAct(3, channels, 3, act=None, norm=CELL_NORM)
        layers: list[nn.Module] = []
        width = channels
        for stage in range(3):
            if stage > 0:
                layers.append(ReductionBlock(width, width * 2))
                width *= 2
            layers += [Cell(ops, width) for _ in range(cells_per_stage)]
        self.cells = nn.Sequential(*layers)
        self.head = nn.Sequential(CELL_NORM.make(width), nn.ReLU(inplace=False))
        self.classifier = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.cells(self.stem(x)))
        return self.classifier(x.mean((2, 3)))


class NB201Space(SearchSpace):
    """Six decisions, one per edge, each choosing one of the five ops."""

    name = "nb201"

    def __init__(self, num_classes: int = 10, channels: int = 16, cells_per_stage: int = 5) -> None:
        if num_classes < 1 or channels < 2 or channels % 2 or cells_per_stage < 1:
            raise UserError(
                "nb201: num_classes and cells_per_stage must be >= 1 and channels an even number >= 2"
            )
        self.num_classes = num_classes
        self.channels = channels
        self.cells_per_stage = cells_per_stage
        self._decisions = tuple(Decision(f"node{i}<-{j}", OPS) for i, j in EDGES)

    @property
    def decisions(self) -> tuple[Decision, ...]:
        return self._decisions

    def arch_from_indices(self, indices: Sequence[int]) -> str:
        self.check_indices(indices)
        groups, k = [], 0
        for target in range(1, NODES):
            groups.append("|".join(f"{OPS[indices[k + j]]}~{j}" for j in range(target)))
            k += target
        return "|" + "|+|".join(groups) + "|"

    def indices_from_arch(self, arch: str) -> tuple[int, ...]:
        hint = "expected '|op~0|+|op~0|op~1|+|op~0|op~1|op~2|'"
        text = arch.strip()
        if not (text.startswith("|") and text.endswith("|")):
            raise UserError(f"nb201: '{arch}' is not a NAS-Bench-201 string; {hint}")
        groups = text[1:-1].split("|+|")
        if len(groups) != NODES - 1:
            raise UserError(f"nb201: '{arch}' has {len(groups)} node groups, not 3; {hint}")
        indices: list[int] = []
        for target, group in enumerate(groups, start=1):
            items = group.split("|")
            if len(items) != target:
                raise UserError(f"nb201: node {target} of '{arch}' needs {target} inputs; {hint}")
            for source, item in enumerate(items):
                match = _GROUP.match(item)
                if not match or int(match.group(2)) != source:
                    raise UserError(f"nb201: '{item}' in '{arch}' should read 'op~{source}'; {hint}")
                if match.group(1) not in OPS:
                    raise UserError(
                        f"nb201: unknown op '{match.group(1)}' in '{arch}'; choose from {', '.join(OPS)}"
                    )
                indices.append(OPS.index(match.group(1)))
        return tuple(indices)

    def ops(self, arch: str) -> tuple[str, ...]:
        return tuple(OPS[i] for i in self.indices_from_arch(arch))

    def build(self, arch: str) -> NB201Network:
        return NB201Network(self.ops(arch), self.channels, self.cells_per_stage, self.num_classes)

    def describe(self) -> dict:
        summary = super().describe()
        summary.update(channels=self.channels, cells_per_stage=self.cells_per_stage)
        return summary
