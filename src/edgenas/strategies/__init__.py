"""Search strategies behind one ask/tell interface, by name.

`make_strategy("ppo", space, seed=0, lr=0.01)` builds one; options not given take the defaults
tuned on NAS-Bench-201 (see docs/bench/nb201.md).
"""

from __future__ import annotations

from typing import Any

from edgenas.errors import UserError
from edgenas.spaces.base import SearchSpace
from edgenas.strategies.base import Candidate, Strategy
from edgenas.strategies.evolution import RegularizedEvolution
from edgenas.strategies.local_search import LocalSearch
from edgenas.strategies.policy_gradient import PPO, PolicyGradientStrategy, Reinforce
from edgenas.strategies.random_search import RandomSearch
from edgenas.util.registry import lookup

STRATEGIES: dict[str, type[Strategy]] = {
    "ppo": PPO,
    "reinforce": Reinforce,
    "random": RandomSearch,
    "evolution": RegularizedEvolution,
    "local": LocalSearch,
}


def make_strategy(name: str, space: SearchSpace, seed: int = 0, **options: Any) -> Strategy:
    cls = lookup(STRATEGIES, name, "strategy")
    try:
        return cls(space, seed, **options)
    except TypeError as error:
        raise UserError(f"strategy '{name}': {error}") from None


__all__ = [
    "PPO",
    "STRATEGIES",
    "Candidate",
    "LocalSearch",
    "PolicyGradientStrategy",
    "RandomSearch",
    "RegularizedEvolution",
    "Reinforce",
    "Strategy",
    "make_strategy",
]
