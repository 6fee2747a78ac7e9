"""The NAS-Bench-201 cell as a DARTS search space: the benchmark's network with mixed-op edges.

Why its own supernet: NB201's skeleton is not DARTS' (one cell input, not two; no cell
reductions, residual reduction blocks between stages instead), so `SearchNetwork` does not fit.
What is shared is everything else: each edge is DARTS' `MixedOp` (its fast path included) over
NB201's five ops, the stem, reduction blocks, head and classifier are the very modules of
`edgenas.spaces.nb201`, and module names follow `NB201Network`'s, so a supernet whose mixing
weights are one-hot computes what the stand-alone network of that cell computes with the same
weights (tests/test_darts_nb201.py checks it).

One alpha matrix (6 edges x 5 ops) is shared by every cell, as in NB201's own DARTS baseline.
Search-time BN in the cells' convolutions has no affine parameters by default (DARTS: a learnable
scale would let an op rescale its output and confound alpha); `affine=True` builds the cells from
`edgenas.spaces.nb201.make_op` itself, the stand-alone network's affine ops.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from edgenas.blocks import ConvBnAct
from edgenas.blocks.core import CELL_NORM
from edgenas.darts.ops import SEARCH_NORM
from edgenas.darts.regularizers import Relaxation
from edgenas.darts.search_model import AlphaSupernet, MixedOp
from edgenas.errors import UserError
from edgenas.spaces import nb201


@dataclass(frozen=True)
class NB201SupernetConfig:
    """The NB201 supernet's shape. Defaults: the benchmark's network (5 cells per stage, 16 channels)."""

    channels: int = 16
    cells_per_stage: int = 5
    num_classes: int = 10
    in_channels: int = 3
    affine: bool = False

    def __post_init__(self) -> None:
        if self.channels < 1 or self.cells_per_stage < 1:
            raise UserError(
                f"the NB201 supernet needs --channels >= 1 and --cells-per-stage >= 1, got "
                f"{self.channels} and {self.cells_per_stage} (the benchmark uses 16 and 5)"
            )
        if self.num_classes < 2 or self.in_channels < 1:
            raise UserError(f"need classes >= 2 and input channels >= 1, got {self.num_classes}, {self.in_channels}")

    @property
    def edges(self) -> int:
        return len(nb201.EDGES)

    def to_dict(self) -> dict:
        return {"space": "nb201", **asdict(self)}


def make_search_op(op: str, channels: int, affine: bool) -> nn.Module:
    """One NB201 op for the supernet: `spaces.nb201.make_op`'s op, with search-time BN (no affine)
    in the two convolutions unless `affine` (none, skip and the pool have no BN to choose)."""
    return nb201.make_op(op, channels, CELL_NORM if affine else SEARCH_NORM)


class NB201SearchCell(nn.Module):
    """Node i sums a mixed op on every earlier node; the last node is the cell's output."""

    def __init__(self, channels: int, affine: bool) -> None:
        super().__init__()
        self.edges = nn.ModuleList(
            MixedOp(channels, 1, nb201.OPS, make=lambda op: make_search_op(op, channels, affine))
            for _ in nb201.EDGES
        )

    def forward(self, x: torch.Tensor, weights: torch.Tensor, fast: bool = True) -> torch.Tensor:
        rows = weights.unbind(0)
        nodes = [x]
        edge = 0
        for target in range(1, nb201.NODES):
            total = None
            for source in range(target):
                y = self.edges[edge](nodes[source], rows[edge], fast)
                total = y if total is None else total + y
                edge += 1
            nodes.append(total)
        return nodes[-1]


class NB201SearchNetwork(AlphaSupernet):
    """Stem, three stages of search cells joined by NB201's reduction blocks, BN-ReLU, pool,
    classifier; `alphas_cell` (6 x 5) weighs the ops of every cell. Same interface as
    `SearchNetwork`: `loss`, `arch_parameters`, `weight_parameters`, `relaxation`."""

    def __init__(
        self, config: NB201SupernetConfig | None = None, fast: bool = True,
        channels_last: bool = False, relaxation: Relaxation | None = None,
    ) -> None:
        super().__init__()
        self.config = config = config or NB201SupernetConfig()
        self.fast = fast
        self.channels_last = channels_last
        self.relaxation = relaxation or Relaxation()
        self.sample_mixing = True  # False: the relaxation's deterministic weights even in training
        c = config.channels
        self.stem = ConvBnAct(config.in_channels, c, 3, act=None, norm=CELL_NORM)
        layers: list[nn.Module] = []
        width = c
        for stage in range(3):
            if stage > 0:
                layers.append(nb201.ReductionBlock(width, width * 2))
                width *= 2
            layers += [NB201SearchCell(width, config.affine) for _ in range(config.cells_per_stage)]
        self.cells = nn.ModuleList(layers)
        self.head = nn.Sequential(CELL_NORM.make(width), nn.ReLU(inplace=False))
        self.classifier = nn.Linear(width, config.num_classes)
        # 1e-3 x N(0, 1): near-uniform mixtures at the start, as in DARTS.
        self.alphas_cell = nn.Parameter(1e-3 * torch.randn(config.edges, len(nb201.OPS)))
        if channels_last:
            self.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        weights = self.relaxation.mixing(self.alphas_cell, self.training and self.sample_mixing)
        x = self.stem(x)
        for layer in self.cells:
            x = layer(x, weights, self.fast) if isinstance(layer, NB201SearchCell) else layer(x)
        return self.classifier(self.head(x).mean((2, 3)))

    def arch_parameters(self) -> list[nn.Parameter]:
        return [self.alphas_cell]

    def strengths(self) -> torch.Tensor:
        """Each edge's op weights as the relaxation defines them deterministically (6 x 5)."""
        return self.relaxation.strengths(self.alphas_cell.detach().double())

    def genotype(self) -> str:
        """The derived cell as a NAS-Bench-201 string (strongest op per edge, `none` allowed)."""
        from edgenas.darts.nb201 import derive_nb201

        return derive_nb201(self.strengths())
