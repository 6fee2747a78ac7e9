"""Local search: climb from the best of a few random architectures, one decision at a time.

Why it is here: on NAS benchmarks this simple hill climber is one of the strongest black-box
baselines (White, Nolen, Zela & Hutter, 2021, "Local search is state of the art for neural
architecture search benchmarks"), so it is the yardstick a controller has to be measured against,
not only random search. It needs no tuning beyond the size of its starting sample (`initial`,
chosen like every other default by the held-out protocol of `benchmarks/nb201_strategies.py`;
docs/bench/nb201.md).

The procedure: draw `initial` architectures at random and take the best; evaluate every neighbour
of the current architecture (each decision changed to each other choice, in random order); move to
the best neighbour if it beats the current one and sweep again; at a local optimum, start over
from a fresh random sample. Neighbours already evaluated cost nothing (the search loop answers
repeats from the store), so later sweeps mostly pay for the new ones.
"""

from __future__ import annotations

from typing import Any

from edgenas.errors import UserError
from edgenas.evaluators.base import TrialResult
from edgenas.spaces.base import SearchSpace
from edgenas.strategies.base import Candidate, Strategy

WORST = float("-inf")  # the reward of a failed architecture: any result beats it


class LocalSearch(Strategy):
    name = "local"

    def __init__(self, space: SearchSpace, seed: int = 0, initial: int = 5) -> None:
        super().__init__(space, seed)
        if initial < 1:
            raise UserError(f"local search needs initial >= 1 random architectures to start from, got {initial}")
        self.initial = initial
        self.current: tuple[int, ...] | None = None  # None while a (re)start's random sample is out
        self.current_reward = WORST
        self.to_draw = initial  # random architectures of the (re)start still to propose
        self.queue: list[tuple[int, ...]] = []  # neighbours of `current` not yet proposed; popped from the end
        self.waiting: dict[str, int] = {}  # proposals of this phase not yet told (arch -> count)
        self.phase_best: tuple[tuple[int, ...], float] | None = None  # best told in this phase
        self.moves = 0
        self.restarts = 0

    def ask(self) -> Candidate:
        if self.current is None and self.to_draw > 0:
            self.to_draw -= 1
            return self._propose(self.space.sample_indices(self.rng))
        if self.queue:
            return self._propose(self.queue.pop())
        # The phase is proposed but not all told (several evaluations in flight): explore meanwhile.
        return self.candidate(self.space.sample_indices(self.rng))

    def _propose(self, indices: tuple[int, ...]) -> Candidate:
        candidate = self.candidate(indices)
        self.waiting[candidate.arch] = self.waiting.get(candidate.arch, 0) + 1
        return candidate

    def tell(self, arch: str, reward: float | None, result: TrialResult | None = None) -> None:
        if arch not in self.waiting:
            return  # an exploring proposal made while the phase was in flight
        self.waiting[arch] -= 1
        if not self.waiting[arch]:
            del self.waiting[arch]
        value = WORST if reward is None else float(reward)
        if self.phase_best is None or value > self.phase_best[1]:
            self.phase_best = (self.space.indices_from_arch(arch), value)
        proposed_all = self.to_draw == 0 if self.current is None else not self.queue
        if proposed_all and not self.waiting:
            self._end_phase()

    def _end_phase(self) -> None:
        """Move to the phase's best if it improves (the start sample's best always does, unless
        every one failed); otherwise the current architecture is a local optimum: restart."""
        best, self.phase_best = self.phase_best, None
        if best is not None and best[1] > self.current_reward:
            if self.current is not None:
                self.moves += 1
            self.current, self.current_reward = best
            self.queue = self.neighbours(self.current)
            self.rng.shuffle(self.queue)
            if self.queue:
                return
        # A local optimum (or a space where nothing is one decision away): start over.
        self.restarts += 1
        self.current, self.current_reward, self.to_draw = None, WORST, self.initial

    def neighbours(self, indices: tuple[int, ...]) -> list[tuple[int, ...]]:
        """Every architecture that differs from `indices` in exactly one decision."""
        return [indices[:d] + (c,) + indices[d + 1:]
                for d, n in enumerate(self.num_choices) for c in range(n) if c != indices[d]]

    def diagnostics(self) -> dict[str, Any]:
        return {"moves": self.moves, "restarts": self.restarts}

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state.update(
            current=None if self.current is None else list(self.current),
            current_reward=self.current_reward, to_draw=self.to_draw,
            queue=[list(q) for q in self.queue], waiting=dict(self.waiting),
            phase_best=None if self.phase_best is None else [list(self.phase_best[0]), self.phase_best[1]],
            moves=self.moves, restarts=self.restarts,
        )
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.current = None if state["current"] is None else tuple(int(i) for i in state["current"])
        self.current_reward = float(state["current_reward"])
        self.to_draw = int(state["to_draw"])
        self.queue = [tuple(int(i) for i in q) for q in state["queue"]]
        self.waiting = {str(a): int(n) for a, n in state["waiting"].items()}
        best = state["phase_best"]
        self.phase_best = None if best is None else (tuple(int(i) for i in best[0]), float(best[1]))
        self.moves, self.restarts = int(state["moves"]), int(state["restarts"])

    def options(self) -> dict[str, Any]:
        return {"initial": self.initial}
