"""Parameters and multiply-adds of a network, counted by torch's own FLOP counter."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def count_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply-adds of one forward pass (torch counts a multiply-add as 2 FLOPs)."""
    return _counted_flops(model, torch.zeros(input_shape)) // 2


def _counted_flops(model: nn.Module, x: torch.Tensor) -> int:
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())


@dataclass(frozen=True)
class StageInfo:
    """One row of a model summary."""

    name: str
    out_shape: tuple[int, ...]
    params: int
    macs: int


def summarize(model: nn.Module, input_shape: tuple[int, ...]) -> list[StageInfo]:
    """Per-part rows for a network with `stem`, `stages`, `head` and `classifier` (a MobileNet).

    Each part is run on the activation it really receives, so its MACs are at its true shape.
    """
    rows: list[StageInfo] = []
    was_training = model.training
    model.eval()
    try:
        x = torch.zeros(input_shape)
        parts: list[tuple[str, nn.Module]] = [("stem", model.stem)]
        parts += [(f"stage{i + 1}", stage) for i, stage in enumerate(model.stages)]
        parts.append(("head", model.head))
        for name, part in parts:
            macs = _counted_flops(part, x) // 2
            with torch.no_grad():
                x = part(x)
            rows.append(StageInfo(name, tuple(x.shape), count_params(part), macs))
        pooled = x.mean((2, 3))
        macs = _counted_flops(model.classifier, pooled) // 2
        rows.append(StageInfo("classifier", (pooled.shape[0], model.classifier.out_features),
                              count_params(model.classifier), macs))
    finally:
        model.train(was_training)
    return rows
