"""The DARTS supernet: cells whose every edge is a softmax-weighted mixture of all ops.

Layout (as in the paper): a 3x3 stem to 3C channels, `layers` cells with reductions (stride 2,
doubled width) at 1/3 and 2/3 of the depth, global pooling and a linear classifier. A cell takes
the two previous cells' outputs as its input nodes 0 and 1, has `steps` intermediate nodes (each
sums one mixed op per earlier node: 14 edges for 4 nodes) and concatenates them as its output.
Two alpha matrices (one shared by all normal cells, one by all reduction cells) weigh the ops.

Two ways to compute a mixed op give the same numbers (`fast=False` keeps the original code's
op-by-op sum so that tests and the benchmark can compare against it):
- the reference: `sum(w_k * op_k(x))` over all ops, `none` included;
- the fast one (default): `none` is skipped (it is exactly zero; its weight still sits in the
  softmax, so every other weight and every gradient is unchanged), ReLU(x) is computed once and
  shared by the four conv ops, and the sum is accumulated with fused multiply-adds.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from edgenas.blocks import ConvBnAct, FactorizedReduce, PoolBN, Zero
from edgenas.darts.fused import (
    dilated_on_phases,
    dilation_of,
    forward_after_relu,
    phase_merge,
    phase_split,
    phases_apply,
    pool_forward,
    starts_with_relu,
)
from edgenas.darts.genotypes import Genotype, derive_genotype
from edgenas.darts.ops import EVAL_NORM, PRIMITIVES, SEARCH_NORM, check_op, make_op
from edgenas.darts.regularizers import Relaxation
from edgenas.errors import UserError

ALPHA_PREFIX = "alphas_"


@dataclass(frozen=True)
class SupernetConfig:
    """The supernet's shape. Defaults: the paper's search network (8 cells, 16 channels)."""

    channels: int = 16
    layers: int = 8
    num_classes: int = 10
    steps: int = 4
    multiplier: int = 4
    stem_multiplier: int = 3
    in_channels: int = 3
    primitives: tuple[str, ...] = PRIMITIVES

    def __post_init__(self) -> None:
        if self.layers < 3:
            raise UserError(
                f"a DARTS supernet needs at least 3 cells (reductions sit at 1/3 and 2/3 of the "
                f"depth), got --layers {self.layers}; use 3 or more (the paper searches with 8)"
            )
        if self.channels < 1 or self.num_classes < 2 or self.in_channels < 1:
            raise UserError(
                f"need channels >= 1, classes >= 2 and input channels >= 1, got {self.channels}, "
                f"{self.num_classes}, {self.in_channels}"
            )
        if not 1 <= self.steps or not 1 <= self.multiplier <= self.steps:
            raise UserError(f"need steps >= 1 and 1 <= multiplier <= steps, got {self.steps}, {self.multiplier}")
        for name in self.primitives:
            check_op(name)
        object.__setattr__(self, "primitives", tuple(self.primitives))

    @property
    def edges(self) -> int:
        """Edges per cell: node i (0-based) has i + 2 inputs."""
        return sum(2 + i for i in range(self.steps))

    def reduction_layers(self) -> tuple[int, ...]:
        return (self.layers // 3, 2 * self.layers // 3)

    def to_dict(self) -> dict:
        return asdict(self) | {"primitives": list(self.primitives)}


class MixedOp(nn.Module):
    """One edge of the supernet: every candidate op, weighted by one row of softmax(alpha)."""

    def __init__(
        self, channels: int, stride: int, primitives: Sequence[str] = PRIMITIVES,
        make: Callable[[str], nn.Module] | None = None,
    ) -> None:
        """`make(name)` builds one op (default: DARTS' search-time op table); another space's
        supernet (NAS-Bench-201's) passes its own table and keeps this mixed op and its fast path."""
        super().__init__()
        self.stride = stride
        if make is None:
            make = lambda name: make_op(name, channels, stride, search=True)  # noqa: E731
        self.ops = nn.ModuleList(make(p) for p in primitives)
        # How the fast path runs each op (fixed at build time): skipped, on the shared ReLU, on
        # pixel phases of the shared ReLU (dilated convs), or as it is.
        self._kinds = tuple(self._kind(op) for op in self.ops)

    @staticmethod
    def _kind(op: nn.Module) -> str:
        if isinstance(op, Zero):
            return "zero"
        if dilation_of(op) > 1:
            return "dilated"
        if isinstance(op, PoolBN):
            return "pool"
        return "relu" if starts_with_relu(op) else "plain"

    def forward(
        self, x: torch.Tensor, weights: torch.Tensor, fast: bool = True, recompute: bool = False
    ) -> torch.Tensor:
        if not fast:
            return sum(w * op(x) for w, op in zip(weights, self.ops))
        if recompute and torch.is_grad_enabled():
            # Keep only the edge's input for backward and run the edge again there: the same
            # values, a third of the memory of the whole search network for ~1/4 more time.
            return checkpoint(
                self._fast_forward, x, weights, use_reentrant=False, preserve_rng_state=False,
                context_fn=self._recompute_contexts,
            )
        return self._fast_forward(x, weights)

    def _recompute_contexts(self) -> tuple[contextlib.AbstractContextManager, contextlib.AbstractContextManager]:
        return contextlib.nullcontext(), _RunningStatsKept(self)

    def _fast_forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        # Each op returns w * op(x) (w folded into its last BN where it has one); the terms are
        # summed as they come, the dilated ones in phase layout and merged back once.
        out: torch.Tensor | None = None
        phase_out: torch.Tensor | None = None
        relu: torch.Tensor | None = None
        phases: torch.Tensor | None = None
        for kind, op, w in zip(self._kinds, self.ops, weights.unbind(0)):
            if kind == "zero":
                continue  # w * 0 adds nothing; w still normalises the other weights
            if kind == "plain":
                y = op(x) * w
            elif kind == "pool":
                y = pool_forward(op, x, w)
            else:
                relu = torch.relu(x) if relu is None else relu
                d = dilation_of(op) if kind == "dilated" else 1
                if d == 2 and self.stride == 1 and phases_apply(x, d):
                    phases = phase_split(relu, d) if phases is None else phases
                    y = dilated_on_phases(op, phases, w)
                    phase_out = y if phase_out is None else phase_out + y
                    continue
                if d > 1 and self.stride == d:
                    y = dilated_on_phases(op, relu[:, :, ::d, ::d], w)
                else:
                    y = forward_after_relu(op, relu, w)
            out = y if out is None else out + y
        if phase_out is not None:
            merged = phase_merge(phase_out, 2)
            out = merged if out is None else out + merged
        if out is None:  # an edge of nothing but `none`
            return self.ops[0](x)
        return out


class _RunningStatsKept:
    """Restores the BN running statistics of a module on exit, so that re-running an edge's
    forward pass for its backward leaves them exactly as one forward pass left them."""

    def __init__(self, module: nn.Module) -> None:
        self.norms = [m for m in module.modules() if isinstance(m, nn.BatchNorm2d) and m.track_running_stats]

    def __enter__(self) -> None:
        self.saved = [(m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone())
                      for m in self.norms]

    def __exit__(self, *exc: object) -> None:
        with torch.no_grad():
            for m, (mean, var, count) in zip(self.norms, self.saved):
                m.running_mean.copy_(mean)
                m.running_var.copy_(var)
                m.num_batches_tracked.copy_(count)


class SearchCell(nn.Module):
    """Two preprocessed inputs, `steps` nodes each summing a mixed op per earlier node."""

    def __init__(
        self, config: SupernetConfig, c_prev_prev: int, c_prev: int, channels: int,
        reduction: bool, reduction_prev: bool,
    ) -> None:
        super().__init__()
        self.reduction = reduction
        self.steps = config.steps
        self.multiplier = config.multiplier
        # The previous-previous output is twice the resolution when the previous cell reduced.
        self.preprocess0 = (
            FactorizedReduce(c_prev_prev, channels, SEARCH_NORM)
            if reduction_prev
            else ConvBnAct(c_prev_prev, channels, 1, preact=True, norm=SEARCH_NORM)
        )
        self.preprocess1 = ConvBnAct(c_prev, channels, 1, preact=True, norm=SEARCH_NORM)
        self.edges = nn.ModuleList(
            MixedOp(channels, 2 if reduction and j < 2 else 1, config.primitives)
            for i in range(self.steps)
            for j in range(2 + i)
        )

    def forward(
        self, s0: torch.Tensor, s1: torch.Tensor, weights: torch.Tensor, fast: bool = True,
        recompute: bool = False,
    ) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        rows = weights.unbind(0)
        offset = 0
        for _ in range(self.steps):
            node = None
            for j, h in enumerate(states):
                y = self.edges[offset + j](h, rows[offset + j], fast, recompute)
                node = y if node is None else node + y
            offset += len(states)
            states.append(node)
        return torch.cat(states[-self.multiplier :], dim=1)


class AlphaSupernet(nn.Module):
    """What every DARTS-style supernet shares: its alphas (`alphas_*` parameters, listed by the
    subclass in a fixed order) apart from the weights, and the loss the architect steps on."""

    def arch_parameters(self) -> list[nn.Parameter]:  # pragma: no cover - each supernet lists its own
        raise NotImplementedError

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(self(x), y)

    def named_weight_parameters(self) -> Iterator[tuple[str, nn.Parameter]]:
        """Every parameter but the alphas: what the weight optimiser trains."""
        for name, p in self.named_parameters():
            if not name.startswith(ALPHA_PREFIX):
                yield name, p

    def weight_parameters(self) -> list[nn.Parameter]:
        return [p for _, p in self.named_weight_parameters()]


class SearchNetwork(AlphaSupernet):
    """The supernet. `alphas_normal` / `alphas_reduce` are parameters of the module (so they are
    in its state_dict), but optimisers take them apart: see `weight_parameters` and
    `arch_parameters`."""

    def __init__(
        self, config: SupernetConfig | None = None, fast: bool = True,
        channels_last: bool | None = None, recompute: bool | int | None = None,
        relaxation: Relaxation | None = None,
    ) -> None:
        super().__init__()
        self.config = config = config or SupernetConfig()
        self.fast = fast
        # How alpha becomes mixing weights (softmax; DrNAS: Dirichlet samples in training).
        self.relaxation = relaxation or Relaxation()
        self.sample_mixing = True  # False: the relaxation's deterministic weights even in training
        # Recompute edges in backward instead of keeping their intermediates (fast path only):
        # True: every cell; an int k: the first k cells; None: the cells up to and including the
        # first reduction, which hold two thirds of the activation memory (full resolution) and
        # cost less than half of the compute to run twice.
        if recompute is None:
            recompute = config.reduction_layers()[0] + 1
        if recompute is True:
            recompute = config.layers
        self.recompute_cells = int(recompute) if fast else 0
        # Channels-last lets oneDNN run depthwise convs without reordering every input and output
        # (on by default with the fast path; the reference path keeps PyTorch's default layout).
        self.channels_last = fast if channels_last is None else channels_last
        c_curr = config.stem_multiplier * config.channels
        # The stem's BN is affine even during search, as in the original code.
        self.stem = ConvBnAct(config.in_channels, c_curr, 3, act=None, norm=EVAL_NORM)
        c_prev_prev, c_prev, c_curr = c_curr, c_curr, config.channels
        cells = []
        reduction_prev = False
        for i in range(config.layers):
            reduction = i in config.reduction_layers()
            if reduction:
                c_curr *= 2
            cells.append(SearchCell(config, c_prev_prev, c_prev, c_curr, reduction, reduction_prev))
            reduction_prev = reduction
            c_prev_prev, c_prev = c_prev, config.multiplier * c_curr
        self.cells = nn.ModuleList(cells)
        self.classifier = nn.Linear(c_prev, config.num_classes)
        # 1e-3 x N(0, 1): near-uniform mixtures at the start, as in the paper.
        shape = (config.edges, len(config.primitives))
        self.alphas_normal = nn.Parameter(1e-3 * torch.randn(shape))
        self.alphas_reduce = nn.Parameter(1e-3 * torch.randn(shape))
        if self.channels_last:
            self.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        s0 = s1 = self.stem(x)
        sample = self.training and self.sample_mixing
        normal = self.relaxation.mixing(self.alphas_normal, sample)
        reduce = self.relaxation.mixing(self.alphas_reduce, sample)
        for i, cell in enumerate(self.cells):
            weights = reduce if cell.reduction else normal
            s0, s1 = s1, cell(s0, s1, weights, self.fast, i < self.recompute_cells)
        return self.classifier(s1.mean((2, 3)))

    def arch_parameters(self) -> list[nn.Parameter]:
        return [self.alphas_normal, self.alphas_reduce]

    def genotype(self) -> Genotype:
        # derive_genotype softmaxes its input: the log of the relaxation's strengths gives them back.
        normal, reduce = (self.relaxation.strengths(a.detach().double()).log() for a in self.arch_parameters())
        return derive_genotype(normal, reduce, self.config.steps, self.config.primitives)
