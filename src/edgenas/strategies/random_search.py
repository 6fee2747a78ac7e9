"""Random search: every decision uniform and independent. The baseline any strategy must beat."""

from __future__ import annotations

from edgenas.evaluators.base import TrialResult
from edgenas.strategies.base import Candidate, Strategy


class RandomSearch(Strategy):
    name = "random"

    def ask(self) -> Candidate:
        return self.candidate(self.space.sample_indices(self.rng))

    def tell(self, arch: str, reward: float | None, result: TrialResult | None = None) -> None:
        """Random search learns nothing."""
