"""The ask/tell contract every search strategy keeps.

Why ask/tell: a strategy that only proposes (`ask`) and learns (`tell`) knows nothing about
where or when evaluations run, so the same code drives a sequential loop, K evaluations in
flight, or a cluster; and it knows nothing about storage, so the store can checkpoint it through
`state_dict()` without the strategy caring. Strategies see only the space's ordered decisions and
work with index tuples; architecture strings cross the boundary through the space's codec.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from edgenas.evaluators.base import TrialResult
from edgenas.spaces.base import SearchSpace


@dataclass(frozen=True)
class Candidate:
    """A proposed architecture: its string and its index per decision."""

    arch: str
    indices: tuple[int, ...]


class Strategy(ABC):
    """Proposes architectures and learns from their rewards (higher is better).

    `tell` receives the reward from the objective, or None for a failed evaluation; each strategy
    decides what a failure teaches it. Everything that changes as the strategy learns must be in
    `state_dict()` (as plain Python values and tensors), so that a killed search resumes exactly.
    """

    name: str = "strategy"

    def __init__(self, space: SearchSpace, seed: int = 0) -> None:
        self.space = space
        self.seed = seed
        self.rng = random.Random(seed)
        self.num_choices = tuple(len(d.choices) for d in space.decisions)

    @abstractmethod
    def ask(self) -> Candidate:
        """The next architecture to evaluate."""

    @abstractmethod
    def tell(self, arch: str, reward: float | None, result: TrialResult | None = None) -> None:
        """The outcome of an architecture this strategy proposed."""

    def candidate(self, indices: Sequence[int]) -> Candidate:
        indices = tuple(int(i) for i in indices)
        return Candidate(self.space.arch_from_indices(indices), indices)

    def state_dict(self) -> dict[str, Any]:
        return {"rng": _rng_state(self.rng)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.setstate(_rng_from_state(state["rng"]))

    def options(self) -> dict[str, Any]:
        """The hyperparameters that define this strategy (recorded in the run's config)."""
        return {}

    def diagnostics(self) -> dict[str, Any]:
        """How the strategy is doing now, as plain JSON values (e.g. a controller's entropy and
        the ratio range of its last update); the search loop stores it with every finished trial
        (`metrics["strategy"]`). Optional: strategies with nothing to say keep this empty default."""
        return {}


def _rng_state(rng: random.Random) -> list[Any]:
    version, internal, gauss = rng.getstate()
    return [version, list(internal), gauss]


def _rng_from_state(state: Sequence[Any]) -> tuple[Any, ...]:
    version, internal, gauss = state
    return (int(version), tuple(int(x) for x in internal), gauss)
