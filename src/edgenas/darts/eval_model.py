"""The evaluation network: the derived cell stacked deeper and wider, trained from scratch.

As in the paper's CIFAR network: a 3x3 stem to 3C channels, `layers` cells (reductions at 1/3
and 2/3 of the depth), an auxiliary classifier after the cell at 2/3 of the depth (its loss,
weighted 0.4, helps the lower cells train; it is used only in training), and drop path: in
training each non-identity op of a cell is zeroed per sample with probability p (the survivors
scaled by 1/(1-p)), p growing linearly over training to `drop_path`.
"""

from __future__ import annotations

import torch
from torch import nn

from edgenas.blocks import ConvBnAct, FactorizedReduce
from edgenas.darts.genotypes import Genotype
from edgenas.darts.ops import EVAL_NORM, make_op
from edgenas.errors import UserError


def drop_path(x: torch.Tensor, p: float) -> torch.Tensor:
    """Zero whole samples with probability p, scaling the kept ones by 1/(1-p)."""
    if p <= 0.0:
        return x
    keep = 1.0 - p
    mask = torch.empty((x.shape[0], 1, 1, 1), device=x.device, dtype=x.dtype).bernoulli_(keep)
    return x * mask / keep


class EvalCell(nn.Module):
    """One cell of a genotype: each node sums two ops on earlier nodes; output concatenates."""

    def __init__(
        self, genotype: Genotype, c_prev_prev: int, c_prev: int, channels: int,
        reduction: bool, reduction_prev: bool,
    ) -> None:
        super().__init__()
        self.reduction = reduction
        self.preprocess0 = (
            FactorizedReduce(c_prev_prev, channels, EVAL_NORM)
            if reduction_prev
            else ConvBnAct(c_prev_prev, channels, 1, preact=True, norm=EVAL_NORM)
        )
        self.preprocess1 = ConvBnAct(c_prev, channels, 1, preact=True, norm=EVAL_NORM)
        pairs = genotype.cell(reduction)
        self.inputs = tuple(node for _, node in pairs)
        self.ops = nn.ModuleList(
            make_op(op, channels, 2 if reduction and node < 2 else 1, search=False) for op, node in pairs
        )
        self.concat = genotype.concat
        self.multiplier = len(self.concat)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, drop_prob: float = 0.0) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for i in range(0, len(self.ops), 2):
            node = None
            for op, j in ((self.ops[i], self.inputs[i]), (self.ops[i + 1], self.inputs[i + 1])):
                h = op(states[j])
                if self.training and drop_prob > 0 and not isinstance(op, nn.Identity):
                    h = drop_path(h, drop_prob)
                node = h if node is None else node + h
            states.append(node)
        return torch.cat([states[i] for i in self.concat], dim=1)


class AuxiliaryHead(nn.Module):
    """The auxiliary classifier of the CIFAR network: ReLU, 5x5 average pool stride 3 (8x8 ->
    2x2), 1x1 conv to 128, 2x2 conv to 768, linear. Maps smaller than 8x8 (inputs under 32 px,
    e.g. 28 px digits) are average-pooled to 2x2 instead, so the head works at any size."""

    def __init__(self, channels: int, num_classes: int) -> None:
        super().__init__()
        self.pool = nn.AvgPool2d(5, stride=3, padding=0, count_include_pad=False)
        self.features = nn.Sequential(
            ConvBnAct(channels, 128, 1, norm=EVAL_NORM),
            ConvBnAct(128, 768, 2, norm=EVAL_NORM),
        )
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(x)
        x = self.pool(x) if min(x.shape[-2:]) >= 8 else nn.functional.adaptive_avg_pool2d(x, 2)
        return self.classifier(self.features(x).flatten(1))


class EvalNetwork(nn.Module):
    """The network a genotype defines. In training with the auxiliary head it returns
    (logits, auxiliary logits); otherwise logits."""

    def __init__(
        self, genotype: Genotype, channels: int = 36, layers: int = 20, num_classes: int = 10,
        auxiliary: bool = True, drop_path: float = 0.2, in_channels: int = 3, stem_multiplier: int = 3,
    ) -> None:
        super().__init__()
        if layers < 3:
            raise UserError(f"the evaluation network needs at least 3 cells, got {layers}")
        if channels < 1 or num_classes < 2:
            raise UserError(f"need channels >= 1 and classes >= 2, got {channels} and {num_classes}")
        if not 0.0 <= drop_path < 1.0:
            raise UserError(f"drop path probability must lie in [0, 1), got {drop_path}")
        self.genotype = genotype
        self.drop_path = drop_path
        self.drop_path_prob = 0.0  # set per epoch by the training loop
        c_curr = stem_multiplier * channels
        self.stem = ConvBnAct(in_channels, c_curr, 3, act=None, norm=EVAL_NORM)
        c_prev_prev, c_prev, c_curr = c_curr, c_curr, channels
        cells = []
        reduction_prev = False
        self.aux_index = 2 * layers // 3
        aux_channels = None
        for i in range(layers):
            reduction = i in (layers // 3, 2 * layers // 3)
            if reduction:
                c_curr *= 2
            cell = EvalCell(genotype, c_prev_prev, c_prev, c_curr, reduction, reduction_prev)
            cells.append(cell)
            reduction_prev = reduction
            c_prev_prev, c_prev = c_prev, cell.multiplier * c_curr
            if i == self.aux_index:
                aux_channels = c_prev
        self.cells = nn.ModuleList(cells)
        self.auxiliary = AuxiliaryHead(aux_channels, num_classes) if auxiliary else None
        self.classifier = nn.Linear(c_prev, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        aux = None
        s0 = s1 = self.stem(x)
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, self.drop_path_prob)
            if i == self.aux_index and self.auxiliary is not None and self.training:
                aux = self.auxiliary(s1)
        logits = self.classifier(s1.mean((2, 3)))
        return (logits, aux) if aux is not None else logits


def count_params(model: nn.Module, auxiliary: bool = False) -> int:
    """Parameters, without the auxiliary head unless asked (the paper's figure excludes it)."""
    total = sum(p.numel() for p in model.parameters())
    head = getattr(model, "auxiliary", None)
    if head is not None and not auxiliary:
        total -= sum(p.numel() for p in head.parameters())
    return total
