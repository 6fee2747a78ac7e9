"""Architecture parameters of the MnasNet space: one categorical per decision, relaxed.

Why one logit vector per decision of the space (per block: op, kernel, SE, skip, width, layers)
and not per layer position: the space chooses once per block and every layer of the block repeats
the choice, so the most probable choice of each decision is an architecture string of the space,
and the expected latency over independent decisions is exact (`expected_latency`). Depth is the
block's `layers` decision: a position past the sampled depth is skipped.

Sampling is hard Gumbel-softmax at temperature tau (FBNet's relaxation, annealed), binarised to
one path per step (ProxylessNAS / GDAS): only the sampled path runs, so memory stays at one
network's. Its gradient reaches the logits through a gate of value exactly 1 per block, the
product over the block's decisions of `1 + y_c - stopgrad(y_c)` with `y = softmax(logits / tau +
gumbel)` and `c` the sampled choice (`argmax y`): the straight-through estimator of the chosen
path. Why the Gumbel noise is added after dividing by tau: the hard draw is then a sample of
`softmax(logits / tau)`, so the temperature sets how far the search explores (near uniform when
hot, near the most probable path when cold); with the noise inside the division the argmax would
not depend on tau at all.
"""

from __future__ import annotations

import torch
from torch import nn

from edgenas.spaces.mnas import MnasSpace

_PER_BLOCK = len(MnasSpace.FIELDS)


class ArchitectureDistribution(nn.Module):
    """The logits (`nn.Parameter`s, zero = uniform) of every decision of an MnasNet space."""

    def __init__(self, space: MnasSpace) -> None:
        super().__init__()
        self.space = space
        self.logits = nn.ParameterList([nn.Parameter(torch.zeros(len(d.choices))) for d in space.decisions])

    def probabilities(self, tau: float = 1.0) -> list[torch.Tensor]:
        """softmax(logits / tau) of every decision, in the space's decision order."""
        return [torch.softmax(logits / tau, dim=0) for logits in self.logits]

    def sample(self, tau: float) -> tuple[tuple[int, ...], list[torch.Tensor]]:
        """A hard Gumbel-softmax draw: (the path's choice indices, one gate per block, value 1,
        straight-through gradient to the drawn choices' logits). Draws from torch's global RNG,
        which the per-epoch checkpoint saves."""
        indices: list[int] = []
        gates: list[torch.Tensor] = []
        for number, logits in enumerate(self.logits):
            gumbel = -torch.empty_like(logits).exponential_().log()
            soft = torch.softmax(logits / tau + gumbel, dim=0)
            chosen = int(soft.argmax())
            indices.append(chosen)
            gate = (soft[chosen] - soft[chosen].detach()) + 1.0  # exactly 1: (s - s) is 0 in floats
            if number % _PER_BLOCK == 0:
                gates.append(gate)
            else:
                gates[-1] = gates[-1] * gate
        return tuple(indices), gates

    def derive_indices(self) -> tuple[int, ...]:
        """The most probable choice of every decision (the first on a tie)."""
        return tuple(int(logits.detach().argmax()) for logits in self.logits)

    def derive(self) -> str:
        """The most probable architecture, as a string of the space."""
        return self.space.arch_from_indices(self.derive_indices())

    def table(self, tau: float = 1.0) -> dict[str, list[float]]:
        """{decision name: probabilities at tau} (what the history records)."""
        return {d.name: [float(p) for p in probs.detach()]
                for d, probs in zip(self.space.decisions, self.probabilities(tau))}
