"""Training the controller by policy gradient: REINFORCE and PPO (MnasNet's choice).

Both collect a batch of sampled architectures with their rewards, compare each reward with a
moving-average baseline (the advantage: was this better than usual?), and push up the
log-probability of better-than-usual architectures, with an entropy bonus to keep exploring.
REINFORCE takes one gradient step per batch. PPO re-uses each batch for several epochs, which is
what makes it sample-efficient when evaluations are expensive, and keeps that safe by clipping the
probability ratio `r = p / p_old` between the current policy and the one that sampled.

The clip alone is no trust region: it stops the gradient of a sample once its ratio has left
`1 +- clip`, but every optimiser step still moves all the weights, so the ratios of the batch can
land far outside the range after a single step (with Adam each weight moves by about `lr` per step
whatever the gradient's size). What keeps PPO's steps small in practice is an early stop: after
each epoch's step the approximate KL divergence between the policy the update started from and
the current one is measured on the batch, and the epochs stop once it passes `1.5 * target_kl`
(as Spinning Up and Stable-Baselines3 do); with `backtrack` the step that crossed the limit is
also shrunk until the KL is back under it (TRPO's line search), so the limit holds after every
update whatever the learning rate. Every update records what it did (`diagnostics()`): ratio
range and KL after the update, epochs run, halvings, the policy's entropy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
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


def approx_kl(log_ratio: torch.Tensor) -> float:
    """KL(p_old || p) estimated from samples of p_old: mean((r - 1) - log r), r = p / p_old.

    The low-variance, never-negative estimator that CleanRL and Stable-Baselines3 log and stop on.
    """
    log_ratio = log_ratio.detach()
    return float((torch.expm1(log_ratio) - log_ratio).mean())


ADVANTAGES = ("spread", "batch", "moving", "rank")  # the forms of `PolicyGradientStrategy._advantage`


class PolicyGradientStrategy(Strategy):
    """The controller, its optimizer, the batch being collected and the moving-average baseline.

    Defaults were chosen by the held-out protocol of `benchmarks/nb201_strategies.py` (tuned on
    the Pixel 3 soft reward, seeds 0-19; judged on other rewards and seeds, docs/bench/nb201.md).
    An entropy bonus and NASNet's tanh bound on the logits limit how far the policy concentrates;
    how the defaults' entropy and repeat rate evolve over a search is measured there too.

    `elites` > 0 adds self-imitation (Oh et al., 2018: replay the past decisions that did better
    than expected): the `elites` best architectures told so far join every update whose baseline
    they beat, with their advantages in the batch's units. A policy-gradient controller otherwise
    learns from its latest batch only and forgets the best architecture it has seen, which is
    what evolution keeps mutating; the replay pulls the policy toward those, within PPO's clip.
    """

    name = "policy-gradient"

    def __init__(
        self,
        space: SearchSpace,
        seed: int = 0,
        batch_size: int = 5,
        lr: float = 0.01,
        entropy_weight: float = 0.01,
        baseline_decay: float = 0.9,
        hidden_size: int = 100,
        temperature: float = 1.0,
        tanh_constant: float | None = 2.5,
        failure_reward: float = 0.0,
        normalize_advantages: bool = True,
        grad_clip: float = 5.0,
        draws: int = 1,
        advantages: str = "spread",
        elites: int = 0,
        entropy_decay: float = 1.0,
    ) -> None:
        super().__init__(space, seed)
        broken = [f"{name}={value} (needs {bound})" for name, value, ok, bound in (
            ("batch_size", batch_size, batch_size >= 1, ">= 1"), ("lr", lr, lr > 0, "> 0"),
            ("baseline_decay", baseline_decay, 0 <= baseline_decay < 1, "in [0, 1)"),
            ("temperature", temperature, temperature > 0, "> 0"), ("draws", draws, draws >= 1, ">= 1"),
            ("elites", elites, elites >= 0, ">= 0"),
            ("entropy_decay", entropy_decay, 0 < entropy_decay <= 1, "in (0, 1]")) if not ok]
        if broken:
            raise UserError(f"controller option {', '.join(broken)}; fix it in --strategy-option")
        if advantages not in ADVANTAGES:
            raise UserError(f"unknown advantages {advantages!r}: choose one of {', '.join(ADVANTAGES)}")
        self.batch_size = batch_size
        self.lr = lr
        self.entropy_weight = entropy_weight
        self.entropy_decay = entropy_decay
        self.baseline_decay = baseline_decay
        self.hidden_size = hidden_size
        self.temperature = temperature
        self.tanh_constant = tanh_constant
        self.failure_reward = failure_reward
        self.normalize_advantages = normalize_advantages
        self.grad_clip = grad_clip
        self.draws = draws
        self.advantages = advantages
        self.elites = elites
        self.best: list[tuple[float, tuple[int, ...]]] = []  # the `elites` best told so far, best first
        # The rank advantages' window: as many rewards as the moving baseline remembers.
        self.rank_window = max(batch_size, round(batch_size / (1 - baseline_decay)))
        self.recent: list[float] = []  # the latest `rank_window` rewards, oldest first
        self.moving_square: float | None = None  # moving mean of (reward - baseline)^2
        self.known: set[str] = set()  # architectures told about (their rewards are known)
        # The entropy of the uniform policy: the most the controller can have (nats).
        self.max_entropy = sum(math.log(n) for n in self.num_choices)
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
        self.last_update: dict[str, Any] = {}  # what the latest update did (diagnostics())

    def ask(self) -> Candidate:
        """A sample of the policy; with `draws` > 1, redrawn (up to `draws` samples in all) while it
        is an architecture already told about or in flight. A known architecture's reward buys no
        information, yet each repeat the loop tells back is one more sample in a batch, and a
        concentrated policy's batches become mostly repeats of the architectures it already
        favours. Redrawing samples the policy restricted to the unknown architectures (exactly,
        when the bound is not reached), so every batch is of new evaluations. The log-probability
        kept for the update is the unrestricted policy's, the one the update changes."""
        for _ in range(self.draws):
            indices, log_prob = self.policy.sample(self.generator)
            candidate = self.candidate(indices)
            if candidate.arch not in self.known and candidate.arch not in self.pending:
                break
        self.pending.setdefault(candidate.arch, []).append(log_prob)
        return candidate

    def tell(self, arch: str, reward: float | None, result: TrialResult | None = None) -> None:
        indices = self.space.indices_from_arch(arch)
        self.known.add(arch)
        waiting = self.pending.get(arch)
        if waiting:
            old_log_prob = waiting.pop(0)
            if not waiting:
                del self.pending[arch]
        else:  # told about an architecture it did not ask for: score it under the current policy
            with torch.no_grad():
                old_log_prob = float(self.policy.evaluate(torch.tensor([indices]))[0][0])
        failed = reward is None or not math.isfinite(reward)
        value = self.failure_reward if failed else float(reward)
        if self.elites and not failed and all(known != indices for _, known in self.best):  # a failure is no model
            self.best = sorted([*self.best, (value, indices)], key=lambda pair: -pair[0])[: self.elites]
        self.batch.append((indices, value, old_log_prob))
        if len(self.batch) >= self.batch_size:
            self._learn()

    @property
    def entropy_bonus_weight(self) -> float:
        """The entropy bonus's weight in the coming update: `entropy_weight`, times `entropy_decay`
        per update made. Why a decay: advantages are in units of the spread of every reward seen,
        which the poor early architectures set, so late in a search the differences worth following
        shrink (5-10x on the hard rewards, docs/bench/nb201.md) while a constant bonus does not."""
        return self.entropy_weight * self.entropy_decay ** self.updates

    def _learn(self) -> None:
        indices = torch.tensor([b[0] for b in self.batch])
        values = [b[1] for b in self.batch]
        old_log_prob = torch.tensor([b[2] for b in self.batch], dtype=torch.float32)
        mean = float(torch.tensor(values, dtype=torch.float32).mean())  # float32, as the searches so far
        baseline = mean if self.baseline is None else self.baseline
        advantage = self._advantage(values, baseline, [reward for reward, _ in self.best])
        bonus_weight = self.entropy_bonus_weight  # what this update weighs the entropy with
        with torch.no_grad():  # the entropy of the policy that sampled the batch (chain rule estimate)
            entropy = float(self.policy.evaluate(indices)[1].mean())
        # Self-imitation: the elites better than the baseline join the update, their "old"
        # log-probabilities the current policy's, so the clip bounds how far one update raises them.
        drawn = len(values)
        rows, row_advantage, row_old_log_prob = indices, advantage[:drawn], old_log_prob
        better = advantage[drawn:] > 0
        if bool(better.any()):
            replayed = torch.tensor([arch for _, arch in self.best])[better]
            with torch.no_grad():
                current = self.policy.evaluate(replayed)[0]
            rows = torch.cat([indices, replayed])
            row_advantage = torch.cat([row_advantage, advantage[drawn:][better]])
            row_old_log_prob = torch.cat([old_log_prob, current])
        stats = self.update(rows, row_advantage, row_old_log_prob, drawn=drawn)
        if self.elites:
            stats["replayed"] = int(better.sum())
        with torch.no_grad():  # where the update left the batch's ratios
            log_ratio = self.policy.evaluate(indices)[0] - old_log_prob
        ratio = log_ratio.exp()
        self.baseline = self.baseline_decay * baseline + (1 - self.baseline_decay) * mean
        self.batch = []
        self.updates += 1
        self.last_update = {
            "entropy": entropy,
            "entropy_share": entropy / self.max_entropy if self.max_entropy > 0 else 0.0,
            "ratio_min": float(ratio.min()),
            "ratio_max": float(ratio.max()),
            "approx_kl": approx_kl(log_ratio),
            **({"entropy_weight": bonus_weight} if self.entropy_decay != 1.0 else {}),
            **stats,
        }
        self.after_update(self.last_update)

    def _advantage(self, values: list[float], baseline: float, replayed: Sequence[float] = ()) -> torch.Tensor:
        """How much better than usual each reward of the batch is, in the form `advantages` names;
        the `replayed` rewards (the elites') follow, scored alike but not counted in the statistics.

        - `spread` (default): against the moving-average baseline, in units of the spread of every
          reward seen so far, so one learning rate fits any reward scale. Not the batch's spread:
          a converging policy draws batches of nearly one architecture, and dividing by their
          vanishing spread would make each step larger exactly when it should settle. Its weak
          side: the spread is set by the poor architectures of the first batches and grows ever
          larger than the spread among the candidates a concentrating policy draws.
        - `batch`: the batch is its own baseline and scale (as SB3 normalises per minibatch).
        - `moving`: against the moving baseline, in units of the moving root mean square of
          (reward - baseline), with the baseline's decay: the scale follows the candidates the
          policy draws now; the trust region bounds the steps when that scale shrinks.
        - `rank`: sqrt(12) * (F(r) - 1/2), F the mid-rank of r among the latest rewards (as many
          as the baseline remembers, the batch included): the advantage depends on the ordering
          of the rewards only, so a hard reward's cliff at T or a reward's scale cannot change the
          update; sqrt(12) gives uniform ranks a spread of one, as the other forms have
          (`normalize_advantages` does not apply: ranks have no scale to remove).
        """
        rewards = torch.tensor([*values, *replayed], dtype=torch.float32)
        batch_rewards = rewards[: len(values)]
        for value in values:  # Welford's running variance of every reward seen
            self.reward_count += 1
            delta = value - self.reward_mean
            self.reward_mean += delta / self.reward_count
            self.reward_m2 += delta * (value - self.reward_mean)
        self.recent = (self.recent + values)[-self.rank_window:]
        advantage = rewards - baseline
        if self.advantages == "rank":
            window = torch.tensor(self.recent, dtype=torch.float32)
            below = (window[None, :] < rewards[:, None]).sum(1) + 0.5 * (window[None, :] == rewards[:, None]).sum(1)
            return math.sqrt(12.0) * (below / len(self.recent) - 0.5)
        if self.advantages == "batch":
            advantage = rewards - float(batch_rewards.mean())
            spread = float(batch_rewards.std(unbiased=False))
        elif self.advantages == "moving":
            square = float((advantage[: len(values)] ** 2).mean())
            previous = square if self.moving_square is None else self.moving_square
            self.moving_square = self.baseline_decay * previous + (1 - self.baseline_decay) * square
            spread = self.moving_square ** 0.5
        elif self.normalize_advantages and self.reward_count > 1:
            return advantage / ((self.reward_m2 / (self.reward_count - 1)) ** 0.5 + 1e-8)
        else:
            return advantage
        if not self.normalize_advantages:
            return advantage
        return advantage / spread if spread > 0 else torch.zeros_like(advantage)

    def after_update(self, stats: dict[str, Any]) -> None:
        """A hook for what follows an update (PPO adapts its learning rate to the KL here)."""

    def _step(self, loss: torch.Tensor) -> None:
        self.optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.policy.parameters(), self.grad_clip)
        self.optimizer.step()

    def update(
        self, indices: torch.Tensor, advantage: torch.Tensor, old_log_prob: torch.Tensor, drawn: int
    ) -> dict[str, Any]:
        """One update from a batch; returns what it did (at least `epochs`, the steps taken). The
        first `drawn` rows are the batch the policy sampled; any after them are replayed elites."""
        raise NotImplementedError

    def diagnostics(self) -> dict[str, Any]:
        """The number of updates so far and what the latest one did: the entropy (nats, and as a
        share of the uniform policy's) of the policy that sampled its batch; the probability
        ratios p_new / p_old of that batch after the update (min, max) and the approximate KL;
        the epochs it ran (PPO: fewer than `epochs` when the KL stop fired)."""
        return {"updates": self.updates, **self.last_update}

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state.update(
            policy=self.policy.state_dict(),
            optimizer=self.optimizer.state_dict(),
            generator=self.generator.get_state(),
            baseline=self.baseline,
            reward_stats=[self.reward_count, self.reward_mean, self.reward_m2],
            recent=list(self.recent),
            moving_square=self.moving_square,
            batch=[[list(ind), reward, logp] for ind, reward, logp in self.batch],
            pending={arch: list(logps) for arch, logps in self.pending.items()},
            known=sorted(self.known),
            best=[[reward, list(ind)] for reward, ind in self.best],
            updates=self.updates,
            last_update=dict(self.last_update),
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
        self.recent = [float(x) for x in state.get("recent", [])]  # checkpoints before `advantages` had none
        self.moving_square = state.get("moving_square")
        self.batch = [(tuple(int(i) for i in ind), float(r), float(lp)) for ind, r, lp in state["batch"]]
        self.pending = {arch: [float(x) for x in logps] for arch, logps in state["pending"].items()}
        self.known = set(state.get("known", []))  # checkpoints before `draws` had none
        self.best = [(float(r), tuple(int(i) for i in ind)) for r, ind in state.get("best", [])]  # nor `elites`
        self.updates = int(state["updates"])
        self.last_update = dict(state.get("last_update", {}))  # checkpoints before diagnostics had none

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
            # Options added after runs were stored appear only when set: a run's config must stay
            # the same for the search to resume (the store refuses a differing one).
            **({"draws": self.draws} if self.draws != 1 else {}),
            **({"advantages": self.advantages} if self.advantages != "spread" else {}),
            **({"entropy_decay": self.entropy_decay} if self.entropy_decay != 1.0 else {}),
            **({"elites": self.elites} if self.elites else {}),
        }


class Reinforce(PolicyGradientStrategy):
    """One gradient step per batch on -(R - b) * log p(arch) - entropy bonus."""

    name = "reinforce"

    def __init__(self, space: SearchSpace, seed: int = 0, elites: int = 10, **options: Any) -> None:
        """Defaults: the held-out protocol's choice (docs/bench/nb201.md, fifth round)."""
        super().__init__(space, seed, elites=elites, **options)

    def update(
        self, indices: torch.Tensor, advantage: torch.Tensor, old_log_prob: torch.Tensor, drawn: int
    ) -> dict[str, Any]:
        log_prob, entropy = self.policy.evaluate(indices)
        loss = -(advantage * log_prob).mean() - self.entropy_bonus_weight * entropy[:drawn].mean()
        self._step(loss)
        return {"epochs": 1}


class PPO(PolicyGradientStrategy):
    """Up to `epochs` passes of the clipped surrogate over each batch, as MnasNet trains its
    controller, stopped early once the approximate KL from the policy the update started from
    passes `1.5 * target_kl` (None: never stopped, nor backtracked); with `backtrack`, the step
    that passed it is shrunk back under the limit; with `adapt_lr` (None, the default: on wherever
    there is a `target_kl`) the learning rate follows the KL (`after_update`). Defaults: the
    held-out protocol's choice (docs/bench/nb201.md)."""

    name = "ppo"

    def __init__(
        self,
        space: SearchSpace,
        seed: int = 0,
        epochs: int = 10,
        clip: float = 0.2,
        target_kl: float | None = 0.025,
        adapt_lr: bool | None = None,
        backtrack: bool = True,
        entropy_weight: float = 0.03,
        elites: int = 5,
        **options: Any,
    ) -> None:
        super().__init__(space, seed, entropy_weight=entropy_weight, elites=elites, **options)
        if epochs < 1 or not 0 < clip < 1:
            raise UserError(f"PPO needs epochs >= 1 and 0 < clip < 1, got {epochs} and {clip}")
        if target_kl is not None and not target_kl > 0:
            raise UserError(f"PPO's target_kl must be positive (or None for no early stop), got {target_kl}")
        if adapt_lr and target_kl is None:
            raise UserError("PPO's adapt_lr needs a target_kl to adapt to")
        self.epochs = epochs
        self.clip = clip
        self.target_kl = target_kl
        self.adapt_lr = target_kl is not None if adapt_lr is None else adapt_lr  # None: where there is a KL to follow
        self.backtrack = backtrack

    def after_update(self, stats: dict[str, Any]) -> None:
        """With `adapt_lr`, the learning rate follows the KL that updates end at (as rsl_rl's
        adaptive schedule does): divided by 1.5 after an update that ended above twice the target,
        multiplied by 1.5 after one that stayed under half of it, within [lr / 30, 3 lr]. With
        `backtrack` no update ends above 1.5 times the target, so the rate only rises: a warm-up
        from `lr` that the first updates' KL paces, to 3 lr once the policy moves slowly. Lowering
        it on the KL a step reached before it was shrunk was measured too, and did worse
        (docs/bench/nb201.md, "Eleventh round"). The rate lives in the optimizer's state, so a
        resumed search goes on with it."""
        group = self.optimizer.param_groups[0]
        if self.adapt_lr and self.target_kl is not None:
            kl = stats["approx_kl"]
            if kl > 2 * self.target_kl:
                group["lr"] = max(self.lr / 30, group["lr"] / 1.5)
            elif kl < self.target_kl / 2:
                group["lr"] = min(3 * self.lr, group["lr"] * 1.5)
        stats["lr"] = float(group["lr"])

    def update(
        self, indices: torch.Tensor, advantage: torch.Tensor, old_log_prob: torch.Tensor, drawn: int
    ) -> dict[str, Any]:
        """Epochs of the clipped surrogate. After each step the approximate KL from the policy the
        update started with is measured on the sampled batch (the first `drawn` rows: replayed
        elites are no sample of that policy); past `1.5 * target_kl` the epochs stop, and
        with `backtrack` the step that crossed it is first shrunk (halved up to `MAX_BACKTRACKS`
        times, then undone) until the KL is back under the limit, as TRPO's line search does: the
        limit then holds after every update, the first steps of a search (Adam's largest) too."""
        sampled = indices[:drawn]
        with torch.no_grad():
            start = self.policy.evaluate(sampled)[0]
        epochs, kl_stop, halvings = 0, False, 0
        log_prob, entropy = self.policy.evaluate(indices)
        for _ in range(self.epochs):
            loss = ppo_clipped_loss(log_prob, old_log_prob, advantage, self.clip)
            before = [p.detach().clone() for p in self.policy.parameters()] if self.backtrack else None
            self._step(loss - self.entropy_bonus_weight * entropy[:drawn].mean())
            epochs += 1
            log_prob, entropy = self.policy.evaluate(indices)
            if self.target_kl is None or approx_kl(log_prob[:drawn] - start) <= 1.5 * self.target_kl:
                continue
            kl_stop = True
            if before is not None:
                halvings = self._backtrack(before, sampled, start, 1.5 * self.target_kl)
            break
        return {"epochs": epochs, "kl_stop": kl_stop, "halvings": halvings}

    MAX_BACKTRACKS = 10

    def _backtrack(self, before: list[torch.Tensor], indices: torch.Tensor, start: torch.Tensor, limit: float) -> int:
        """Shrink the last step (weights `before` -> now) until the batch's KL from `start` is at
        most `limit`; undo it if ten halvings do not get there. Returns the halvings made (11:
        undone)."""
        params = list(self.policy.parameters())
        after = [p.detach().clone() for p in params]
        scale = 1.0
        with torch.no_grad():
            for halving in range(1, self.MAX_BACKTRACKS + 1):
                scale /= 2
                for p, b, a in zip(params, before, after):
                    p.copy_(b + scale * (a - b))
                if approx_kl(self.policy.evaluate(indices)[0] - start) <= limit:
                    return halving
            for p, b in zip(params, before):
                p.copy_(b)
        return self.MAX_BACKTRACKS + 1

    def options(self) -> dict[str, Any]:
        return {**super().options(), "epochs": self.epochs, "clip": self.clip, "target_kl": self.target_kl,
                "adapt_lr": self.adapt_lr, "backtrack": self.backtrack}
