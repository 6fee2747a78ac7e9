"""The architecture step of DARTS: alpha follows the validation loss.

First order treats the network weights as constants: dalpha = grad_alpha L_val(w, alpha).
Second order differentiates through one virtual SGD step of the weights,

    w' = w - eta * (momentum * buffer + grad_w L_train(w, alpha) + weight_decay * w)
    dalpha = grad_alpha L_val(w', alpha) - eta * H v,   v = grad_w' L_val(w', alpha),

with the Hessian-vector product H v = grad^2_{alpha,w} L_train(w, alpha) v by central finite
differences: (grad_alpha L_train(w + eps v) - grad_alpha L_train(w - eps v)) / (2 eps),
eps = 0.01 / ||v||. This is the paper's math, step for step.

A mitigation's term R(alpha) (`edgenas.darts.regularizers`: beta-DARTS, DrNAS) is added to the
validation loss, L_val + R; R does not depend on w, so in either order its gradient simply adds,
dalpha += grad_alpha R(alpha). The architect takes it as `penalty` (a function of the alphas,
which the search loop sets each epoch); None adds nothing.

Any module works that has `arch_parameters()`, `weight_parameters()` and `loss(x, y)` (the DARTS
and NB201 supernets, the MnasNet supernet's differentiable search).

How it is computed differs from the original code, to save time and memory: the virtual step
is taken *in place* on the network's own weights (a copy of w, a few MB, restores them exactly)
instead of deep-copying the network, every gradient is asked only for the tensors that need it
(`torch.autograd.grad(loss, alphas)` skips the weight gradients of the two finite-difference
passes), and no graph is retained between passes. In-place (rather than
`torch.func.functional_call`) also keeps the recomputing edges correct: an edge re-run during
backward sees the very weights its forward pass saw.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import torch

from edgenas.errors import UserError

Batch = tuple[torch.Tensor, torch.Tensor]
Penalty = Callable[[list[torch.Tensor]], "torch.Tensor | None"]


class ArchModel(Protocol):
    """What the architect needs of a supernet."""

    def arch_parameters(self) -> list[torch.nn.Parameter]: ...

    def weight_parameters(self) -> list[torch.nn.Parameter]: ...

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor: ...


class Architect:
    """Owns alpha's Adam optimiser and computes alpha's gradient (first or second order)."""

    def __init__(
        self,
        model: ArchModel,
        weight_optimizer: torch.optim.Optimizer,
        *,
        order: int = 1,
        lr: float = 3e-4,
        betas: tuple[float, float] = (0.5, 0.999),
        weight_decay: float = 1e-3,
        fd_scale: float = 0.01,
        penalty: Penalty | None = None,
    ) -> None:
        if order not in (1, 2):
            raise UserError(f"DARTS order must be 1 or 2, got {order}")
        self.model = model
        self.penalty = penalty
        self.order = order
        self.weight_optimizer = weight_optimizer
        self.fd_scale = fd_scale
        self.optimizer = torch.optim.Adam(
            model.arch_parameters(), lr=lr, betas=tuple(betas), weight_decay=weight_decay
        )

    def step(self, train: Batch, val: Batch, eta: float) -> float:
        """One Adam step on alpha; returns the validation loss it was computed from."""
        grads, val_loss = self.hypergradient(train, val, eta)
        for alpha, grad in zip(self.model.arch_parameters(), grads):
            alpha.grad = grad
        self.optimizer.step()
        return val_loss

    def hypergradient(self, train: Batch, val: Batch, eta: float) -> tuple[list[torch.Tensor], float]:
        """d(L_val + R)/dalpha as DARTS defines it for this order, and the validation loss L_val."""
        alphas = self.model.arch_parameters()
        if self.order == 1:
            loss = self.model.loss(*val)
            grads, value = list(torch.autograd.grad(loss, alphas)), float(loss.detach())
        else:
            grads, value = self._second_order(train, val, eta)
        term = self.penalty(alphas) if self.penalty is not None else None
        if term is not None:
            grads = [g + r for g, r in zip(grads, torch.autograd.grad(term, alphas))]
        return grads, value

    # -- second order ------------------------------------------------------------------------

    def _virtual_step(self, weights: Sequence[torch.Tensor], grads: Sequence[torch.Tensor], eta: float) -> None:
        """w <- w - eta * (momentum * buffer + g + weight_decay * w), in place: exactly the step
        SGD (without Nesterov) would take next with gradient g."""
        group = self.weight_optimizer.param_groups[0]
        momentum, decay = group.get("momentum", 0.0), group.get("weight_decay", 0.0)
        with torch.no_grad():
            for w, g in zip(weights, grads):
                update = g + decay * w if decay else g.clone()
                buffer = self.weight_optimizer.state.get(w, {}).get("momentum_buffer")
                if momentum and buffer is not None:
                    update.add_(buffer, alpha=momentum)
                w.sub_(update, alpha=eta)

    def _second_order(self, train: Batch, val: Batch, eta: float) -> tuple[list[torch.Tensor], float]:
        model = self.model
        alphas = model.arch_parameters()
        weights = model.weight_parameters()
        saved = [w.detach().clone() for w in weights]
        try:
            grads = torch.autograd.grad(model.loss(*train), weights)
            self._virtual_step(weights, grads, eta)
            del grads
            val_loss = model.loss(*val)  # at w'
            both = torch.autograd.grad(val_loss, alphas + weights)
            dalpha, vector = list(both[: len(alphas)]), both[len(alphas) :]
            del both
            norm = torch.sqrt(sum(v.pow(2).sum() for v in vector))
            if float(norm) == 0.0:
                return dalpha, float(val_loss.detach())
            eps = self.fd_scale / norm
            pm = []
            for sign in (1.0, -1.0):
                with torch.no_grad():
                    for w, w0, v in zip(weights, saved, vector):
                        w.copy_(w0).add_(v * eps, alpha=sign)
                pm.append(torch.autograd.grad(model.loss(*train), alphas))
            for k, (gp, gm) in enumerate(zip(*pm)):
                dalpha[k] = dalpha[k] - eta * (gp - gm) / (2 * eps)
            return dalpha, float(val_loss.detach())
        finally:
            with torch.no_grad():
                for w, w0 in zip(weights, saved):
                    w.copy_(w0)
