"""The dominant eigenvalue of the Hessian of the validation loss with respect to alpha.

Why: R-DARTS (Zela et al., ICLR 2020) showed that this eigenvalue grows as a DARTS search
degenerates (sharp minima in alpha, where discretising the mixture loses most), so it is the
indicator recorded every epoch beside the derived cell.

How: power iteration on Hessian-vector products. With g = grad_alpha L_val(w, alpha) built with
`create_graph=True`, H v = grad_alpha (g . v) (double backward through the network, on the alphas
only; the weights are constants). Iterating v <- H v / ||H v|| converges to the eigenvector of the
eigenvalue of largest magnitude; the estimate is the Rayleigh quotient v . H v (shifted by that
eigenvalue when it is negative, to reach the largest one). The network's
forward runs once (the graph is kept for every product); BatchNorm uses batch statistics as in
the architecture step, and its running statistics are restored afterwards, so measuring leaves
the search exactly where it was. Stochastic relaxations (DrNAS) use their mean weights here: the
Hessian of a sampled loss would be a different, noisy quantity each call.
"""

from __future__ import annotations

import torch
from torch import nn

from edgenas.darts.search_model import _RunningStatsKept


def hessian_vector_product(grads: list[torch.Tensor], alphas: list[torch.Tensor],
                           vector: list[torch.Tensor]) -> list[torch.Tensor]:
    """H v for the Hessian whose gradient `grads` (w.r.t. `alphas`) was built with create_graph."""
    dot = sum((g * v).sum() for g, v in zip(grads, vector))
    return list(torch.autograd.grad(dot, alphas, retain_graph=True))


def dominant_eigenvalue(
    model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor], iterations: int = 20,
    tolerance: float = 1e-3, seed: int = 0,
) -> float:
    """The largest eigenvalue of d^2 L(batch) / d alpha^2 (all of `arch_parameters()` as one
    vector): power iteration finds the eigenvalue of largest magnitude; when that one is negative
    (an indefinite Hessian near the start of a search), a second run on H - lambda_1 I finds the
    largest, which is the one R-DARTS tracks. At most `iterations` power steps per run, stopping
    when the estimate changes by less than `tolerance` (relative). The start vector comes from its
    own generator (`seed`), so the search's random streams are untouched."""
    alphas = list(model.arch_parameters())
    was_training = model.training
    # Deterministic mixing weights; no edge recomputed in backward (every product reuses the graph).
    saved = {name: getattr(model, name) for name in ("sample_mixing", "recompute_cells") if hasattr(model, name)}
    model.train()
    for name in saved:
        setattr(model, name, False if name == "sample_mixing" else 0)
    try:
        with _RunningStatsKept(model):  # restored once every product is done (backward reads them)
            return _power_iteration(model, alphas, batch, iterations, tolerance, seed)
    finally:
        model.train(was_training)
        for name, value in saved.items():
            setattr(model, name, value)


def _power_iteration(model: nn.Module, alphas: list[torch.Tensor], batch: tuple[torch.Tensor, torch.Tensor],
                     iterations: int, tolerance: float, seed: int) -> float:
    loss = model.loss(*batch)
    grads = list(torch.autograd.grad(loss, alphas, create_graph=True))
    first = _power(grads, alphas, iterations, tolerance, seed, shift=0.0)
    if first >= 0:
        return first
    return first + _power(grads, alphas, iterations, tolerance, seed, shift=first)


def _power(grads: list[torch.Tensor], alphas: list[torch.Tensor], iterations: int, tolerance: float,
           seed: int, shift: float) -> float:
    """The largest-magnitude eigenvalue of H - shift * I."""
    generator = torch.Generator().manual_seed(seed)
    vector = [torch.randn(a.shape, generator=generator, dtype=a.dtype).to(a.device) for a in alphas]
    estimate = 0.0
    for _ in range(max(1, iterations)):
        norm = torch.sqrt(sum((v * v).sum() for v in vector))
        vector = [v / norm for v in vector]
        product = hessian_vector_product(grads, alphas, vector)
        if shift:
            product = [h - shift * v for h, v in zip(product, vector)]
        new = float(sum((v * h).sum() for v, h in zip(vector, product)))
        vector = [h.detach() for h in product]
        if estimate and abs(new - estimate) <= tolerance * abs(estimate):
            return new
        estimate = new
        if not any(bool(h.any()) for h in vector):  # H v = 0: the eigenvalue is 0
            return 0.0
    return estimate
