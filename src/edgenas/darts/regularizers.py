"""Mitigations of DARTS' collapse: how alpha becomes mixing weights, and what alpha's loss adds.

Why one module: plain DARTS and its published fixes differ only in two places, so each fix is a
`Relaxation` that says (a) how a supernet turns an edge's alpha row into mixing weights and (b)
what term is added to the validation loss of the architecture step. The supernets
(`SearchNetwork`, `NB201SearchNetwork`) call `mixing`; the architect adds `penalty`; derivation
ranks ops by `strengths`. Chosen by name (`--regularizer NAME`) from `RELAXATIONS`.

- `none` (plain DARTS, Liu et al. 2019): w = softmax(alpha) per edge; no extra term.
- `beta` (beta-DARTS, Ye et al., CVPR 2022, "beta-decay regularisation"): w = softmax(alpha); the
  architecture loss adds

      lambda_t * L_beta,   L_beta = (1/|E|) * sum_e log sum_k exp(alpha_{e,k})

  over every edge e of every alpha matrix. Its gradient is softmax(alpha_e) / |E|: it pulls every
  alpha down in proportion to its own weight, which keeps the softmax from saturating on one op
  (the skip, in the collapse). The weight grows linearly over the search,
  lambda_t = weight * t / T at epoch t (0-based) of T (the paper's schedule rises linearly from 0).
- `drnas` (DrNAS, Chen et al., ICLR 2021): the mixing weights of an edge are drawn from a
  Dirichlet distribution whose concentration is learned, beta_e = ELU(alpha_e) + 1 (positive),
  w ~ Dir(beta_e), with reparameterised (pathwise) gradients (`torch.distributions.Dirichlet`
  `.rsample`); evaluation and derivation use its mean beta_e / sum_k beta_{e,k}. The architecture
  loss adds

      scale * (1/|E|) * sum_e KL(Dir(beta_e) || Dir(prior * 1))

  which keeps the concentration from growing without bound (the closed-form KL of two Dirichlets,
  `torch.distributions.kl_divergence`). The stochastic weights make the sharp minima that
  collapse into skip connections costly: the loss is averaged over a neighbourhood of mixtures.

Why these two (DARTS- and its auxiliary skip were the third candidate): both are published on
NAS-Bench-201 at 94.36 % CIFAR-10 test (optimum 94.37), both change only the two places above,
so they run unchanged on the DARTS CIFAR space, and each has a loss term that can be checked by
hand. DARTS- needs a decaying extra branch on every edge, which is a change of the cell itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from edgenas.errors import UserError
from edgenas.util.registry import lookup


@dataclass(frozen=True)
class Relaxation:
    """Plain DARTS: softmax mixing weights, no extra term. The base of the other relaxations."""

    name = "none"

    def mixing(self, alpha: torch.Tensor, sample: bool) -> torch.Tensor:
        """The mixing weights of every edge (rows of `alpha`); `sample`: draw them if stochastic."""
        return torch.softmax(alpha, dim=-1)

    def strengths(self, alpha: torch.Tensor) -> torch.Tensor:
        """Each op's deterministic weight, for derivation and reports (rows sum to 1)."""
        return torch.softmax(alpha, dim=-1)

    def penalty(self, alphas: Sequence[torch.Tensor], progress: float) -> torch.Tensor | None:
        """The term added to alpha's validation loss at `progress` = epoch / epochs (None: none)."""
        return None

    def settings(self) -> dict:
        """JSON-ready: the name and every setting (part of a search's configuration)."""
        return {"name": self.name}


def _edges(alphas: Sequence[torch.Tensor]) -> int:
    return sum(a.shape[0] for a in alphas)


@dataclass(frozen=True)
class BetaDecay(Relaxation):
    """beta-DARTS: softmax mixing; alpha's loss adds weight * t/T * mean_e logsumexp(alpha_e)."""

    weight: float = 25.0  # lambda at the end of the search (the paper's linear ramp from 0)
    name = "beta"

    def penalty(self, alphas: Sequence[torch.Tensor], progress: float) -> torch.Tensor:
        total = sum(torch.logsumexp(a, dim=-1).sum() for a in alphas)
        return self.weight * progress * total / _edges(alphas)

    def settings(self) -> dict:
        return {"name": self.name, "weight": self.weight}


@dataclass(frozen=True)
class Dirichlet(Relaxation):
    """DrNAS: w ~ Dir(ELU(alpha) + 1) per edge; alpha's loss adds scale * mean_e KL(Dir || Dir(prior))."""

    scale: float = 1e-3  # the paper's regularisation scale
    prior: float = 1.0  # the prior's concentration on every op
    name = "drnas"

    @staticmethod
    def concentration(alpha: torch.Tensor) -> torch.Tensor:
        return nn.functional.elu(alpha) + 1.0

    def mixing(self, alpha: torch.Tensor, sample: bool) -> torch.Tensor:
        beta = self.concentration(alpha)
        if not sample:
            return beta / beta.sum(-1, keepdim=True)
        return torch.distributions.Dirichlet(beta).rsample()

    def strengths(self, alpha: torch.Tensor) -> torch.Tensor:
        beta = self.concentration(alpha)
        return beta / beta.sum(-1, keepdim=True)

    def penalty(self, alphas: Sequence[torch.Tensor], progress: float) -> torch.Tensor:
        total = 0.0
        for a in alphas:
            beta = self.concentration(a)
            prior = torch.distributions.Dirichlet(torch.full_like(beta, self.prior))
            total = total + torch.distributions.kl_divergence(torch.distributions.Dirichlet(beta), prior).sum()
        return self.scale * total / _edges(alphas)

    def settings(self) -> dict:
        return {"name": self.name, "scale": self.scale, "prior": self.prior}


RELAXATIONS: dict[str, type[Relaxation]] = {"none": Relaxation, "beta": BetaDecay, "drnas": Dirichlet}


def make_relaxation(name: str, **settings: float) -> Relaxation:
    """The mitigation `name` with its settings (defaults where not given); UserError for an unknown
    name or a setting it does not have."""
    kind = lookup(RELAXATIONS, name, "DARTS regularizer")
    try:
        return kind(**settings)
    except TypeError:
        raise UserError(f"DARTS regularizer '{name}' has no setting among {', '.join(settings)}") from None


def relaxation_from_settings(settings: dict) -> Relaxation:
    """The inverse of `Relaxation.settings()`."""
    values = dict(settings)
    return make_relaxation(str(values.pop("name", "none")), **values)
