"""One DARTS search step: the alpha step on a validation batch, then the weight step.

Kept apart from the epoch loop so that the benchmark times exactly what a search runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from edgenas.darts.architect import Architect, ArchModel, Batch


@dataclass(frozen=True)
class SearchHyper:
    """The paper's search settings (weights: SGD; alpha: Adam)."""

    lr: float = 0.025
    lr_min: float = 0.001
    momentum: float = 0.9
    weight_decay: float = 3e-4
    grad_clip: float = 5.0
    arch_lr: float = 3e-4
    arch_betas: tuple[float, float] = (0.5, 0.999)
    arch_weight_decay: float = 1e-3
    order: int = 1


def make_optimizers(model: ArchModel, hyper: SearchHyper) -> tuple[torch.optim.SGD, Architect]:
    weights = torch.optim.SGD(
        model.weight_parameters(), lr=hyper.lr, momentum=hyper.momentum,
        weight_decay=hyper.weight_decay,
    )
    architect = Architect(
        model, weights, order=hyper.order, lr=hyper.arch_lr, betas=hyper.arch_betas,
        weight_decay=hyper.arch_weight_decay,
    )
    return weights, architect


def search_step(
    model: nn.Module, optimizer: torch.optim.SGD, architect: Architect,
    train: Batch, val: Batch, lr: float, grad_clip: float | None,
) -> tuple[float, float, torch.Tensor]:
    """Alpha step (validation batch), then weight step (training batch) at learning rate `lr`.

    Returns (validation loss, training loss, training logits detached).
    """
    for group in optimizer.param_groups:
        group["lr"] = lr
    val_loss = architect.step(train, val, lr)
    weights = model.weight_parameters()
    optimizer.zero_grad(set_to_none=True)
    logits = model(train[0])
    loss = nn.functional.cross_entropy(logits, train[1])
    loss.backward(inputs=weights)  # alpha's gradient belongs to the architect
    if grad_clip:
        nn.utils.clip_grad_norm_(weights, grad_clip)
    optimizer.step()
    return val_loss, float(loss.detach()), logits.detach()
