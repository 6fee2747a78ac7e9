"""The module a latency-aware gradient search optimises: the supernet's weights and the
architecture distribution over its paths, with the loss `edgenas.darts.Architect` steps on.

Why one module holding both: the architect needs `arch_parameters()`, `weight_parameters()` and
`loss(x, y)` on one object, and one `state_dict` then holds the weights and the logits for the
per-epoch checkpoint. The weights' step uses `weight_loss` (cross-entropy of one sampled path:
latency does not depend on the weights, and the multiplicative penalty would only rescale their
step); the architect's step uses `loss`, cross-entropy joined with E[LAT] by the chosen penalty.

The sampled path runs through the supernet's own `forward_path` (the project's blocks); each
block's output is multiplied by that block's straight-through gate (value 1, `relaxation`) with a
forward hook on the path's skeleton, so the cross-entropy's gradient reaches the logits of the
choices the step drew, block by block.
"""

from __future__ import annotations

import torch
from torch import nn

from edgenas.supernet.derivation import near_target
from edgenas.supernet.expected_latency import ExpectedLatency
from edgenas.supernet.latency_loss import get_penalty
from edgenas.supernet.network import Supernet
from edgenas.supernet.relaxation import ArchitectureDistribution

DERIVATIONS = ("near-target", "most-probable")


class GradientSearchModel(nn.Module):
    """Supernet weights + architecture logits; `loss` = penalty(CE of a sampled path, E[LAT], T)."""

    def __init__(self, supernet: Supernet, expected: ExpectedLatency, target_ms: float, penalty: str = "abs",
                 latency_weight: float = 1.0, derivation: str = "near-target", tolerance: float = 0.02) -> None:
        super().__init__()
        self.supernet = supernet
        self.distribution = ArchitectureDistribution(supernet.space)
        self.expected = expected
        self.target_ms = target_ms
        self.penalty = get_penalty(penalty)
        self.latency_weight = latency_weight
        if derivation not in DERIVATIONS:
            raise ValueError(f"unknown derivation {derivation!r}; one of {', '.join(DERIVATIONS)}")
        self.derivation = derivation
        self.tolerance = tolerance
        self.tau = 1.0  # the sampling temperature of this step, set by the search loop
        self.last: dict[str, float] = {}  # the last `loss` call's parts, for the epoch's statistics

    # ---- what the architect needs -----------------------------------------------------------
    def arch_parameters(self) -> list[nn.Parameter]:
        return list(self.distribution.parameters())

    def weight_parameters(self) -> list[nn.Parameter]:
        return list(self.supernet.parameters())

    def loss(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The architecture step's objective on a (validation) batch: CE of one path drawn at
        `tau`, with straight-through gates, joined with E[LAT] of the whole distribution."""
        indices, gates = self.distribution.sample(self.tau)
        ce = nn.functional.cross_entropy(self.forward_gated(indices, gates, images), labels)
        expected = self.expected_ms()
        self.last = {"ce": float(ce.detach()), "expected_ms": float(expected.detach())}
        return self.penalty(ce, expected, self.target_ms, self.latency_weight)

    # ---- pieces -----------------------------------------------------------------------------
    def expected_ms(self) -> torch.Tensor:
        """E[LAT] (ms) of the distribution the search draws from, softmax(logits / tau).

        Why at tau and not at 1: the derived network is the most probable one, and at 1 a still
        broad distribution can have its expectation at the target while its most probable network
        lies far from it (docs/bench/gradient_search.md). As tau anneals, this expectation
        approaches the derived network's prediction, so the penalty acts on what is derived."""
        return self.expected(self.distribution.probabilities(self.tau))

    def weight_loss(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The weights' step: CE of one path drawn at `tau` (no gradient to the logits)."""
        with torch.no_grad():
            indices, _ = self.distribution.sample(self.tau)
        return nn.functional.cross_entropy(self.forward_gated(indices, None, images), labels)

    def forward_gated(self, indices: tuple[int, ...], gates: list[torch.Tensor] | None,
                      images: torch.Tensor) -> torch.Tensor:
        """The logits of the path `indices`, each block's output times its gate (None: no gates)."""
        space = self.supernet.space
        blocks = space.blocks_from_indices(indices)
        if gates is None:
            return self.supernet.forward_path(blocks, images)
        stages = self.supernet.skeleton(blocks).stages
        hooks = [stage.register_forward_hook(lambda _m, _i, out, g=gate: out * g.to(out.dtype))
                 for stage, gate in zip(stages, gates)]
        try:
            return self.supernet.forward_path(blocks, images)
        finally:
            for hook in hooks:
                hook.remove()

    def derive(self) -> str:
        """The derived architecture (a string of the space), as `derivation` says.

        `most-probable`: each decision's most probable choice. `near-target` (default): the most
        probable architecture whose LUT prediction lies within `tolerance` of the target
        (`derivation.near_target`, which says why it is the default); the same as `most-probable`
        when that one already lies there."""
        if self.derivation == "most-probable":
            return self.distribution.derive()
        log_probs = [torch.log_softmax(logits.detach(), dim=0) for logits in self.distribution.logits]
        indices = near_target(self.expected, log_probs, self.target_ms, self.tolerance)
        return self.supernet.space.arch_from_indices(indices)

