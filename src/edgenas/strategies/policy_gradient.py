"""Training the controller by policy gradient: REINFORCE and PPO (MnasNet's choice).

Both collect a batch of sampled architectures with their rewards, compare each reward with a
moving-average baseline (the advantage: was this better than usual?), and push up the
log-probability of better-than-usual architectures, with an entropy bonus to keep exploring.
REINFORCE takes one gradient step per batch. PPO re-uses each batch for several epochs, which is
what makes it sample-efficient when evaluations are expensive, and keeps that safe by clipping the
probability ratio between the current policy and the one that sampled: a sample cannot pull the
policy further than `1 +- clip` in probability per batch.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from edgenas.errors import UserError
from edgenas.evaluators.base import TrialResult
from edgenas.spaces.base import SearchSpace
from edgenas.strategies.base import Candidate, Strategy
from edgenas.strategies.controller import ControllerPolicy


def ppo_clipped_loss(
    log_prob: torch.Tensor, old_log_prob: torch.Tensor, advantage: torch.Tensor, clip: float
) -> torch.Tensor:
    """The negated clipped surrogate: -mean(min(r * A, clip(r, 1 - e, 1 + e) * A)), r = p / p_old."""
    ratio = torch.exp(log_prob - old_log_prob)
    clipped = torch.clamp(ratio, 1.0 - clip, 1.0 + clip)
    return -torch.minimum(ratio * advantage, clipped * advantage).mean()


class PolicyGradientStrategy(Strategy):
    """The controller, its optimizer, the batch being collected and the moving-average baseline.

    Defaults were tuned on NAS-Bench-201 (accuracy objective, seeds 0-19; docs/bench/nb201.md):
    a strong entropy bonus and NASNet's tanh bound on the logits (2.5) keep the policy from
    collapsing onto one architecture within a budget of a few hundred evaluations.
    """

    name = "policy-gradient"

    def __init__(
        self,
        space: SearchSpace,
        seed: int = 0,
        batch_size: int = 10,
        lr: float = 0.03,
        entropy_weight: float = 0.1,
        baseline_decay: float = 0.9,
        hidden_size: int = 100,
        temperature: float = 1.0,
        tanh_constant: float | None = 2.5,
        failure_reward: float = 0.0,
        normalize_advantages: bool = True,
        grad_clip: float = 5.0,
    ) -> None:
        super().__init__(space, seed)
        if batch_size < 1 or lr <= 0 or not 0 <= baseline_decay < 1 or temperature <= 0:
            raise UserError(
                "the controller needs batch size >= 1, lr > 0, 0 <= baseline decay < 1, temperature > 0"
            )
        self.batch_size = batch_size
        self.lr = lr
        self.entropy_weight = entropy_weight
        self.baseline_decay = baseline_decay
        self.hidden_size = hidden_size
        self.temperature = temperature
        self.tanh_constant = tanh_constant
        self.failure_reward = failure_reward
        self.normalize_advantages = normalize_advantages
        self.grad_clip = grad_clip
        # Weights are drawn from their own seeded stream so a strategy never disturbs (nor is
        # disturbed by) torch's global RNG.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.policy = ControllerPolicy(self.num_choices, hidden_size, temperature, tanh_constant)
        self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=lr)
        self.generator = torch.Generator().manual_seed(seed)
        self.baseline: float | None = None
        self.reward_count, self.reward_mean, self.reward_m2 = 0, 0.0, 0.0  # Welford's running variance
        self.batch: list[tuple[tuple[int, ...], float, float]] = []  # (indices, reward, old log-prob)
        self.pending: dict[str, list[float]] = {}  # arch -> log-probs at ask time, oldest first
        self.updates = 0

    def ask(self) -> Candidate:
        indices, log_prob = self.policy.sample(self.generator)
        candidate = self.candidate(indices)
        self.pending.setdefault(candidate.arch, []).append(log_prob)
        return candidate

    def tell(self, arch: str, reward: float | None, result: TrialResult | None = None) -> None:
        indices = self.space.indices_from_arch(arch)
        waiting = self.pending.get(arch)
        if waiting:
            old_log_prob = waiting.pop(0)
            if not waiting:
                del self.pending[arch]
        else:  # told about an architecture it did not ask for: score it under the current policy
            with torch.no_grad():
                old_log_prob = float(self.policy.evaluate(torch.tensor([indices]))[0][0])
        value = self.failure_reward if reward is None or not math.isfinite(reward) else float(reward)
        self.batch.append((indices, value, old_log_prob))
        if len(self.batch) >= self.batch_size:
            self._learn()

    def _learn(self) -> None:
        indices = torch.tensor([b[0] for b in self.batch])
        rewards = torch.tensor([b[1] for b in self.batch], dtype=torch.float32)
        old_log_prob = torch.tensor([b[2] for b in self.batch], dtype=torch.float32)
        mean = float(rewards.mean())
        baseline = mean if self.baseline is None else self.baseline
        advantage = rewards - baseline
        # Advantages are measured in units of the spread of every reward seen so far, so one
        # learning rate fits any reward scale. Not the batch's spread, nor a moving one: a
        # converging policy draws batches of nearly one architecture, and dividing by their
        # vanishing spread would make each step larger exactly when it should settle.
        for r in self.batch:
            self.reward_count += 1
            delta = r[1] - self.reward_mean
            self.reward_mean += delta / self.reward_count
            self.reward_m2 += delta * (r[1] - self.reward_mean)
        if self.normalize_advantages and self.reward_count > 1:
            std = (self.reward_m2 / (self.reward_count - 1)) ** 0.5
            advantage = advantage / (std + 1e-8)
        self.update(indices, advantage, old_log_prob)
        self.baseline = self.baseline_decay * baseline + (1 - self.baseline_decay) * mean
        self.batch = []
        self.updates += 1

    def _step(self, loss: torch.Tensor) -> None:
        self.optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.policy.parameters(), self.grad_clip)
        self.optimizer.step()

    def update(self, indices: torch.Tensor, advantage: torch.Tensor, old_log_prob: torch.Tensor) -> None:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state.update(
            policy=self.policy.state_dict(),
            optimizer=self.optimizer.state_dict(),
            generator=self.generator.get_state(),
            baseline=self.baseline,
            reward_stats=[self.reward_count, self.reward_mean, self.reward_m2],
            batch=[[list(ind), reward, logp] for ind, reward, logp in self.batch],
            pending={arch: list(logps) for arch, logps in self.pending.items()},
            updates=self.updates,
        )
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.policy.load_state_dict(state["policy"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        self.baseline = None if state["baseline"] is None else float(state["baseline"])
        count, mean, m2 = state["reward_stats"]
        self.reward_count, self.reward_mean, self.reward_m2 = int(count), float(mean), float(m2)
        self.batch = [(tuple(int(i) for i in ind), float(r), float(lp)) for ind, r, lp in state["batch"]]
        self.pending = {arch: [float(x) for x in logps] for arch, logps in state["pending"].items()}
        self.updates = int(state["updates"])

    def options(self) -> dict[str, Any]:
        return {
            "batch_size": self.batch_size,
            "lr": self.lr,
            "entropy_weight": self.entropy_weight,
            "baseline_decay": self.baseline_decay,
            "hidden_size": self.hidden_size,
            "temperature": self.temperature,
            "tanh_constant": self.tanh_constant,
            "failure_reward": self.failure_reward,
            "normalize_advantages": self.normalize_advantages,
        }


class Reinforce(PolicyGradientStrategy):
    """One gradient step per batch on -(R - b) * log p(arch) - entropy bonus."""

    name = "reinforce"

    def update(self, indices: torch.Tensor, advantage: torch.Tensor, old_log_prob: torch.Tensor) -> None:
        log_prob, entropy = self.policy.evaluate(indices)
        loss = -(advantage * log_prob).mean() - self.entropy_weight * entropy.mean()
        self._step(loss)


class PPO(PolicyGradientStrategy):
    """Several epochs of the clipped surrogate over each batch, as MnasNet trains its controller."""

    name = "ppo"

    def __init__(
        self, space: SearchSpace, seed: int = 0, epochs: int = 4, clip: float = 0.2, batch_size: int = 5, **options: Any
    ) -> None:
        super().__init__(space, seed, batch_size=batch_size, **options)
        if epochs < 1 or not 0 < clip < 1:
            raise UserError(f"PPO needs epochs >= 1 and 0 < clip < 1, got {epochs} and {clip}")
        self.epochs = epochs
        self.clip = clip

    def update(self, indices: torch.Tensor, advantage: torch.Tensor, old_log_prob: torch.Tensor) -> None:
        for _ in range(self.epochs):
            log_prob, entropy = self.policy.evaluate(indices)
            loss = ppo_clipped_loss(log_prob, old_log_prob, advantage, self.clip)
            self._step(loss - self.entropy_weight * entropy.mean())

    def options(self) -> dict[str, Any]:
        return {**super().options(), "epochs": self.epochs, "clip": self.clip}
