"""The contract every search space keeps.

A space is an ordered list of decisions, each a name and its choices. Strategies (RL controller,
evolution, random) see only those indices; the space turns indices into a readable architecture
string and builds the string into an `nn.Module`. The string is what the store keeps, what the
CLI prints, and what a user pastes back.
"""

from __future__ import annotations

import math
import random
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn

from edgenas.errors import UserError


@dataclass(frozen=True)
class Decision:
    """One choice the space offers: its name and its options, in a fixed order."""

    name: str
    choices: tuple[Any, ...]


class SearchSpace(ABC):
    """Ordered decisions, a codec between choice indices and architecture strings, and a builder."""

    name: str = "space"

    @property
    @abstractmethod
    def decisions(self) -> tuple[Decision, ...]:
        """The decisions in the order a controller samples them."""

    @abstractmethod
    def arch_from_indices(self, indices: Sequence[int]) -> str:
        """The architecture string for one index per decision."""

    @abstractmethod
    def indices_from_arch(self, arch: str) -> tuple[int, ...]:
        """The inverse of `arch_from_indices`; raises UserError naming what the space cannot express."""

    @abstractmethod
    def build(self, arch: str) -> nn.Module:
        """The network for an architecture string, ready to train."""

    def size(self) -> int:
        return math.prod(len(d.choices) for d in self.decisions)

    def sample_indices(self, rng: random.Random) -> tuple[int, ...]:
        return tuple(rng.randrange(len(d.choices)) for d in self.decisions)

    def sample(self, rng: random.Random) -> str:
        return self.arch_from_indices(self.sample_indices(rng))

    def decode(self, arch: str) -> Any:
        """`arch` in the form `build` takes: spaces that decode a string into something richer
        return that (and `build` accepts it), so a trial decodes its string once. No check that
        it lies in the space (`indices_from_arch` checks that); the string itself by default."""
        return arch

    def canonical(self, arch: str) -> str:
        """The space's own spelling of an architecture (so equal networks compare equal)."""
        return self.arch_from_indices(self.indices_from_arch(arch))

    def check_indices(self, indices: Sequence[int]) -> None:
        if len(indices) != len(self.decisions):
            raise UserError(
                f"{self.name}: expected {len(self.decisions)} decisions, got {len(indices)}"
            )
        for decision, index in zip(self.decisions, indices):
            if not 0 <= index < len(decision.choices):
                raise UserError(
                    f"{self.name}: decision '{decision.name}' has {len(decision.choices)} choices, "
                    f"index {index} is out of range"
                )

    def describe(self) -> dict[str, Any]:
        """A JSON-ready summary: the decisions, their choices and the space size."""
        return {
            "space": self.name,
            "size": self.size(),
            "decisions": [
                {"name": d.name, "choices": [str(c) for c in d.choices]} for d in self.decisions
            ],
        }
