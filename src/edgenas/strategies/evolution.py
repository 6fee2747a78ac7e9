"""Regularized (aging) evolution, Real et al. 2019.

Why aging: the population is a queue. Each new child joins at the back and the *oldest* member
leaves, however good it is; a lucky early evaluation cannot anchor the search forever, and
architectures must be re-discovered to stay, which favours those that are good by nature. A
parent is the best of `sample_size` members drawn at random (a tournament); its child changes
one decision to a different choice.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from edgenas.errors import UserError
from edgenas.evaluators.base import TrialResult
from edgenas.spaces.base import SearchSpace
from edgenas.strategies.base import Candidate, Strategy


class RegularizedEvolution(Strategy):
    name = "evolution"

    def __init__(
        self,
        space: SearchSpace,
        seed: int = 0,
        population_size: int = 20,
        sample_size: int = 5,
        mutations: int = 1,
    ) -> None:
        super().__init__(space, seed)
        if population_size < 1 or not 1 <= sample_size <= population_size:
            raise UserError(
                f"evolution needs population >= 1 and 1 <= sample size <= population, got "
                f"population {population_size}, sample size {sample_size}"
            )
        if not 1 <= mutations <= len(self.num_choices):
            raise UserError(f"mutations must be between 1 and {len(self.num_choices)}, got {mutations}")
        self.population_size = population_size
        self.sample_size = sample_size
        self.mutations = mutations
        # (indices, reward), oldest first; `maxlen` is what makes the oldest die.
        self.population: deque[tuple[tuple[int, ...], float]] = deque(maxlen=population_size)
        self.random_asks = 0

    def ask(self) -> Candidate:
        # The first generation is random; so is any ask before a single member has a reward
        # (possible when several evaluations are in flight, or all early ones failed).
        if self.random_asks < self.population_size or not self.population:
            self.random_asks += 1
            return self.candidate(self.space.sample_indices(self.rng))
        k = min(self.sample_size, len(self.population))
        contestants = self.rng.sample(list(self.population), k)
        parent = max(contestants, key=lambda member: member[1])[0]
        return self.candidate(self.mutate(parent))

    def mutate(self, parent: tuple[int, ...]) -> tuple[int, ...]:
        """Change `mutations` distinct decisions (of those with a choice) to a different choice."""
        child = list(parent)
        open_decisions = [d for d, n in enumerate(self.num_choices) if n > 1]
        for d in self.rng.sample(open_decisions, min(self.mutations, len(open_decisions))):
            other = self.rng.randrange(self.num_choices[d] - 1)
            child[d] = other if other < child[d] else other + 1
        return tuple(child)

    def tell(self, arch: str, reward: float | None, result: TrialResult | None = None) -> None:
        if reward is None:
            return  # a failed architecture has no fitness; it simply never joins
        self.population.append((self.space.indices_from_arch(arch), float(reward)))

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["population"] = [[list(ind), reward] for ind, reward in self.population]
        state["random_asks"] = self.random_asks
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.population.clear()
        for indices, reward in state["population"]:
            self.population.append((tuple(int(i) for i in indices), float(reward)))
        self.random_asks = int(state["random_asks"])

    def options(self) -> dict[str, Any]:
        return {
            "population_size": self.population_size,
            "sample_size": self.sample_size,
            "mutations": self.mutations,
        }
