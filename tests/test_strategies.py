"""Strategies: controller sampling and log-probabilities, the PPO clipped objective, PPO and
REINFORCE on a toy problem with a known optimum, what only PPO does (the clip over several epochs,
ratios kept near the clip range at its defaults, the approximate-KL early stop), the diagnostics
the search loop stores per trial, evolution's aging, state round trips."""

from __future__ import annotations

import io
import math
import random
from collections.abc import Sequence

import pytest
import torch
from torch import nn

from edgenas.errors import UserError
from edgenas.evaluators.base import TrialResult
from edgenas.search.loop import run_search
from edgenas.search.objectives import make_objective
from edgenas.search.store import Store
from edgenas.spaces.base import Decision, SearchSpace
from edgenas.strategies import PPO, RegularizedEvolution, Reinforce, make_strategy
from edgenas.strategies.controller import ControllerPolicy
from edgenas.strategies.policy_gradient import approx_kl, ppo_clipped_loss


class GridSpace(SearchSpace):
    """A small real space for fast tests: decisions d0..dk with n choices each, arch 'a-b-c'."""

    name = "grid"

    def __init__(self, choices: Sequence[int] = (4, 3, 5)) -> None:
        self._decisions = tuple(Decision(f"d{i}", tuple(range(n))) for i, n in enumerate(choices))

    @property
    def decisions(self) -> tuple[Decision, ...]:
        return self._decisions

    def arch_from_indices(self, indices: Sequence[int]) -> str:
        self.check_indices(indices)
        return "-".join(str(i) for i in indices)

    def indices_from_arch(self, arch: str) -> tuple[int, ...]:
        return tuple(int(x) for x in arch.split("-"))

    def build(self, arch: str) -> nn.Module:
        return nn.Identity()


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny trainings on one thread

# "Near the clip range": the ratios p_new / p_old of a batch after an update at PPO's defaults
# (benchmarks/nb201_strategies.py tunes under the same bounds), for 95 % of the updates; none
# outside the outer bounds; the approximate KL of an update at most KL_BOUND (the defaults'
# target_kl, 0.03, times the 1.5 at which the epochs stop, rounded up).
RATIO_BOUNDS = (0.5, 2.0)
OUTER_BOUNDS = (0.2, 5.0)
KL_BOUND = 0.05


# ---- the controller ------------------------------------------------------------------------------
def test_controller_log_prob_matches_its_own_distributions():
    torch.manual_seed(0)
    policy = ControllerPolicy((4, 3, 5), hidden_size=16)
    generator = torch.Generator().manual_seed(1)
    for _ in range(5):
        indices, log_prob = policy.sample(generator)
        probs = policy.probabilities(indices)
        assert [len(p) for p in probs] == [4, 3, 5]
        assert all(float(p.sum()) == pytest.approx(1.0, abs=1e-6) for p in probs)
        by_hand = sum(math.log(float(p[i])) for p, i in zip(probs, indices))
        assert log_prob == pytest.approx(by_hand, abs=1e-5)
        batched, entropy = policy.evaluate(torch.tensor([indices, indices]))
        assert batched.detach().tolist() == pytest.approx([log_prob, log_prob], abs=1e-5)
        by_hand_entropy = -sum(float((p * p.log()).sum()) for p in probs)
        assert float(entropy[0].detach()) == pytest.approx(by_hand_entropy, abs=1e-5)


def test_controller_is_autoregressive_and_samples_its_distribution():
    torch.manual_seed(0)
    policy = ControllerPolicy((3, 3), hidden_size=16)
    with torch.no_grad():
        policy.heads[0].bias.copy_(torch.tensor([2.0, 0.0, -2.0]))
    # The second decision's distribution depends on the first choice (embedding fed back).
    after_0 = policy.probabilities((0, 0))[1]
    after_2 = policy.probabilities((2, 0))[1]
    assert not torch.allclose(after_0, after_2)
    generator = torch.Generator().manual_seed(3)
    counts = [0, 0, 0]
    n = 600
    for _ in range(n):
        counts[policy.sample(generator)[0][0]] += 1
    expected = policy.probabilities((0, 0))[0]
    for k in range(3):
        assert counts[k] / n == pytest.approx(float(expected[k]), abs=0.05)


def test_controller_temperature_and_tanh_flatten_the_policy():
    torch.manual_seed(0)
    sharp = ControllerPolicy((5,), hidden_size=8)
    with torch.no_grad():
        sharp.heads[0].bias.copy_(torch.tensor([10.0, 0, 0, 0, 0]))
    bounded = ControllerPolicy((5,), hidden_size=8, tanh_constant=1.0)
    bounded.load_state_dict(sharp.state_dict())
    assert float(sharp.probabilities((0,))[0][0]) > 0.99
    # c * tanh bounds logits to [-1, 1]: at most e / (e + 4 e^-1) = 0.6488
    assert float(bounded.probabilities((0,))[0][0]) < 0.65


# ---- PPO ---------------------------------------------------------------------------------------
def test_ppo_clipped_loss_by_hand():
    log_old = torch.zeros(4)
    ratios = torch.tensor([1.5, 0.5, 0.5, 1.1])
    advantage = torch.tensor([1.0, 1.0, -1.0, 2.0])
    log_new = ratios.log().requires_grad_(True)
    loss = ppo_clipped_loss(log_new, log_old, advantage, clip=0.2)
    # min(r A, clip(r) A): 1.5 -> min(1.5, 1.2) = 1.2; 0.5,A=1 -> min(0.5, 0.8) = 0.5;
    # 0.5,A=-1 -> min(-0.5, -0.8) = -0.8; 1.1,A=2 -> min(2.2, 2.2) = 2.2. Mean 3.1/4, negated.
    assert float(loss.detach()) == pytest.approx(-(1.2 + 0.5 - 0.8 + 2.2) / 4, abs=1e-6)
    loss.backward()
    grad = log_new.grad
    # Clipped terms pass no gradient; unclipped ones pass -r A / 4 (d r / d log r = r).
    assert grad[0] == 0 and grad[2] == 0
    assert float(grad[1]) == pytest.approx(-0.5 * 1.0 / 4, abs=1e-6)
    assert float(grad[3]) == pytest.approx(-1.1 * 2.0 / 4, abs=1e-6)


def _optimum_reward(indices: tuple[int, ...], optimum: tuple[int, ...]) -> float:
    # A smooth landscape whose unique maximum is `optimum`: each matching decision adds 0.2.
    return 0.2 + 0.2 * sum(a == b for a, b in zip(indices, optimum))


@pytest.mark.parametrize("cls", [PPO, Reinforce])
def test_policy_gradient_finds_the_known_optimum(cls):
    space = GridSpace((4, 3, 5))
    optimum = (2, 0, 3)
    strategy = cls(space, seed=0, batch_size=8, lr=0.05, entropy_weight=1e-3, hidden_size=16)
    start = strategy.policy.evaluate(torch.tensor([optimum]))[0].exp().item()
    for _ in range(400):
        candidate = strategy.ask()
        strategy.tell(candidate.arch, _optimum_reward(candidate.indices, optimum))
    learned = strategy.policy.evaluate(torch.tensor([optimum]))[0].exp().item()
    assert start < 0.05  # uniform start: 1/60
    assert learned > 0.8, f"{cls.name}: p(optimum) = {learned:.3f} after 400 samples"


def test_ppo_update_favours_the_rewarded_architecture():
    space = GridSpace((5, 5))
    strategy = PPO(space, seed=1, batch_size=4, epochs=3, lr=0.01, hidden_size=8, normalize_advantages=False,
                   elites=0)
    before = [strategy.policy.evaluate(torch.tensor([[i, 0]]))[0].item() for i in range(5)]
    arms = ["0-0", "1-0", "2-0", "3-0"]
    for arch in arms:
        strategy.pending[arch] = [strategy.policy.evaluate(torch.tensor([space.indices_from_arch(arch)]))[0].item()]
    for arch, reward in zip(arms, (1.0, 0.0, 0.0, 0.0)):
        strategy.tell(arch, reward)
    assert strategy.updates == 1 and strategy.batch == []
    after = [strategy.policy.evaluate(torch.tensor([[i, 0]]))[0].item() for i in range(5)]
    assert after[0] > before[0]  # the rewarded architecture became more likely
    assert all(after[i] < before[i] for i in (1, 2, 3))


# ---- what only PPO does --------------------------------------------------------------------------
def _parameters(strategy) -> list[torch.Tensor]:
    return [p.detach().clone() for p in strategy.policy.parameters()]


def _log_prob(strategy, indices) -> float:
    with torch.no_grad():
        return float(strategy.policy.evaluate(torch.tensor([list(indices)]))[0][0])


def _tell_off_policy(strategy, told: list[tuple[str, float, float]]) -> None:
    """One batch whose samples were drawn by a policy other than the current one: for each
    (arch, reward, ratio) the behaviour log-probability is set so that p_now / p_then = ratio."""
    for arch, _, ratio in told:
        now = _log_prob(strategy, strategy.space.indices_from_arch(arch))
        strategy.pending[arch] = [now - math.log(ratio)]
    for arch, reward, _ in told:
        strategy.tell(arch, reward)


@pytest.mark.parametrize("cls", [PPO, Reinforce])
def test_clipped_multi_epoch_update_leaves_samples_past_the_clip_alone(cls):
    # The rewarded sample is already twice as likely as when it was drawn (ratio 2 > 1 + clip), the
    # punished one half as likely (0.5 < 1 - clip): the clipped surrogate has nothing left to gain
    # from either, so ten epochs of PPO leave every weight exactly where it was. A REINFORCE step
    # has no clip: it pushes the rewarded architecture further up regardless.
    space = GridSpace((5, 5))
    extra = {"epochs": 10, "target_kl": None, "elites": 0} if cls is PPO else {}  # no replay: the batch alone
    strategy = cls(space, seed=1, batch_size=2, lr=0.05, hidden_size=8, entropy_weight=0.0,
                   normalize_advantages=False, **extra)
    before, p_good = _parameters(strategy), _log_prob(strategy, (1, 2))
    _tell_off_policy(strategy, [("1-2", 1.0, 2.0), ("3-0", 0.0, 0.5)])
    assert strategy.updates == 1
    unchanged = all(torch.equal(a, b) for a, b in zip(before, _parameters(strategy)))
    if cls is PPO:
        assert unchanged and strategy.diagnostics()["epochs"] == 10
        assert strategy.diagnostics()["ratio_max"] == pytest.approx(2.0, rel=1e-4)
    else:  # what a REINFORCE step does instead: the test above fails for it
        assert not unchanged and _log_prob(strategy, (1, 2)) > p_good + 0.01


def test_clipped_update_moves_only_samples_inside_the_clip():
    # Same batch, but the rewarded sample is inside the range (ratio 1.05): now PPO moves, and
    # it is that sample (the only one with a gradient) that becomes more likely.
    space = GridSpace((5, 5))
    strategy = PPO(space, seed=1, batch_size=2, lr=0.01, hidden_size=8, entropy_weight=0.0,
                   normalize_advantages=False, epochs=3, target_kl=None, elites=0)
    p_good = _log_prob(strategy, (1, 2))
    _tell_off_policy(strategy, [("1-2", 1.0, 1.05), ("3-0", 0.0, 0.5)])
    assert _log_prob(strategy, (1, 2)) > p_good
    assert strategy.diagnostics()["ratio_max"] > 1.05


ENTROPY_HOLDING, DECAY, HELD_SHARE, DECAYED_SHARE = 3.0, 0.9, 0.9, 0.4


def _toy_search(strategy, asks: int, optimum=(2, 0, 3, 1, 4, 0), seed: int = 0) -> list[dict]:
    """Ask/tell on a noisy six-decision toy (NAS-Bench-201's shape); the diagnostics of every update."""
    rng = random.Random(seed)
    seen, updates = {}, []
    for _ in range(asks):
        c = strategy.ask()
        reward = seen.setdefault(c.arch, _optimum_reward(c.indices, optimum) + rng.gauss(0, 0.05))
        before = strategy.updates
        strategy.tell(c.arch, reward)
        if strategy.updates > before:
            updates.append(strategy.diagnostics())
    return updates


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_ppo_ratios_stay_near_the_clip_range_at_the_defaults(seed):
    space = GridSpace((5,) * 6)
    updates = _toy_search(PPO(space, seed=seed), 400)
    assert len(updates) == 80
    inside = [RATIO_BOUNDS[0] <= u["ratio_min"] and u["ratio_max"] <= RATIO_BOUNDS[1] for u in updates]
    assert sum(inside) >= 0.95 * len(updates)
    assert all(OUTER_BOUNDS[0] <= u["ratio_min"] and u["ratio_max"] <= OUTER_BOUNDS[1] for u in updates)
    assert max(u["approx_kl"] for u in updates) <= KL_BOUND
    # The old defaults (lr 0.03, four epochs, no KL stop) were no trust region: on the same toy
    # their ratios leave even the outer bounds by far.
    old = _toy_search(PPO(space, seed=seed, lr=0.03, epochs=4, target_kl=None, entropy_weight=0.1), 400)
    assert (max(u["ratio_max"] for u in old) > 5 * OUTER_BOUNDS[1]
            or min(u["ratio_min"] for u in old) < OUTER_BOUNDS[0] / 5)


@pytest.mark.parametrize("cls", [PPO, Reinforce])
def test_a_decaying_entropy_bonus_lets_the_policy_concentrate_where_a_constant_one_holds_it(cls):
    """`entropy_decay`: an entropy bonus strong enough to hold the policy near uniform for a whole
    toy search stops holding it once it has decayed, and the policy concentrates on the optimum."""
    space = GridSpace((5,) * 6)

    def final(decay: float) -> dict:
        strategy = cls(space, seed=0, entropy_weight=ENTROPY_HOLDING, entropy_decay=decay)
        return _toy_search(strategy, 300)[-1]

    held, decayed = final(1.0), final(DECAY)
    assert held["entropy_share"] > HELD_SHARE, held
    assert decayed["entropy_share"] < DECAYED_SHARE, decayed
    assert decayed["entropy_weight"] == pytest.approx(ENTROPY_HOLDING * DECAY ** 59)  # 60 updates of 5


def test_kl_early_stop_ends_the_epochs_where_the_kl_passed_its_target():
    space = GridSpace((5,) * 6)
    target = 0.005
    updates = _toy_search(PPO(space, seed=3, epochs=10, lr=0.01, target_kl=target, backtrack=False), 200)
    assert any(u["kl_stop"] for u in updates) and not any(u["halvings"] for u in updates)
    for u in updates:
        if u["kl_stop"]:
            # The step that crossed the limit is kept (no backtracking): the KL left is past it.
            assert u["approx_kl"] > 1.5 * target
        else:  # all ten epochs ran and the KL never passed the limit
            assert u["epochs"] == 10 and u["approx_kl"] <= 1.5 * target
    # A vanishing target stops every update after its first step, and no target never stops.
    assert all(u["epochs"] == 1 and u["kl_stop"] for u in _toy_search(PPO(space, seed=3, target_kl=1e-12), 50))
    assert all(u["epochs"] == 4 and not u["kl_stop"]
               for u in _toy_search(PPO(space, seed=3, epochs=4, target_kl=None), 50))
    with pytest.raises(UserError, match="target_kl"):
        PPO(space, target_kl=0.0)
    with pytest.raises(UserError, match="adapt_lr"):
        PPO(space, target_kl=None, adapt_lr=True)


def test_ppo_learning_rate_follows_the_kl_by_default():
    """`adapt_lr`, on by default wherever there is a `target_kl`: updates that stay under half the
    target raise the rate x1.5 each, up to 3 lr; an update that ends past twice the target lowers
    it. Off, or with no target to follow, the rate stays."""
    space = GridSpace((5,) * 6)
    gentle = _toy_search(PPO(space, seed=0, lr=1e-4), 50)
    assert [u["lr"] for u in gentle[:4]] == pytest.approx([1.5e-4, 2.25e-4, 3e-4, 3e-4])
    assert all(u["lr"] == pytest.approx(3e-4) for u in gentle[2:])
    assert all(u["lr"] == 1e-4 for u in _toy_search(PPO(space, seed=0, lr=1e-4, adapt_lr=False), 50))
    assert not PPO(space, target_kl=None).adapt_lr and PPO(space).adapt_lr
    steep = _toy_search(PPO(space, seed=0, lr=1.0, backtrack=False), 5)  # one update, far past the limit
    assert steep[0]["approx_kl"] > 2 * 0.025 and steep[0]["lr"] == pytest.approx(1 / 1.5)


def test_backtracking_keeps_every_update_under_the_kl_limit_at_any_learning_rate():
    # At lr 0.1 one Adam step moves the policy far past the limit; the KL stop alone keeps that
    # step, the backtracking line search shrinks it until the batch's KL is back under the limit.
    space = GridSpace((5,) * 6)
    target = 0.01
    plain = _toy_search(PPO(space, seed=2, lr=0.1, target_kl=target, backtrack=False), 200)
    assert max(u["approx_kl"] for u in plain) > 5 * 1.5 * target
    backtracked = _toy_search(PPO(space, seed=2, lr=0.1, target_kl=target, backtrack=True), 200)
    assert all(u["approx_kl"] <= 1.5 * target + 1e-6 for u in backtracked)
    assert all(u["kl_stop"] and u["halvings"] >= 1 for u in backtracked)
    # It still learns: the optimum's probability rose from the initial policy's.
    strategy = PPO(space, seed=2, lr=0.1, target_kl=target, backtrack=True)
    optimum = (2, 0, 3, 1, 4, 0)
    before = _log_prob(strategy, optimum)
    _toy_search(strategy, 200, optimum)
    assert _log_prob(strategy, optimum) > before + 1.0


def test_approx_kl_estimator():
    # On policy it is zero. Its mean over samples of p is KL(p || q) exactly (E_p[r] = 1); with p
    # uniform over two outcomes, the two outcomes once each are such a sample: p = (1/2, 1/2),
    # q = (0.8, 0.2), KL = 1/2 ln(0.5 / 0.8) + 1/2 ln(0.5 / 0.2).
    assert approx_kl(torch.zeros(5)) == 0.0
    log_ratio = torch.tensor([math.log(0.8 / 0.5), math.log(0.2 / 0.5)])
    assert approx_kl(log_ratio) == pytest.approx(0.5 * math.log(0.5 / 0.8) + 0.5 * math.log(0.5 / 0.2), rel=1e-6)
    assert approx_kl(log_ratio) == pytest.approx(0.2231, abs=1e-4)


# ---- the batch as its own baseline; redrawing known architectures ------------------------------
@pytest.mark.parametrize("batch_baseline", [True, False])
def test_batch_baseline_ignores_the_history_of_rewards(batch_baseline):
    # A moving baseline far above the batch (0.9 against 0.5 / 0.6: the history had better
    # rewards) makes both advantages negative, so both samples become less likely. With the batch
    # as its own baseline and scale only the ranking inside the batch counts: the better sample
    # becomes more likely, and the update is the one a strategy with no history at all makes.
    space = GridSpace((5, 5))

    def told(history: bool) -> PPO:
        strategy = PPO(space, seed=1, batch_size=2, lr=0.01, hidden_size=8, entropy_weight=0.0,
                       advantages="batch" if batch_baseline else "spread")
        if history:
            strategy.baseline = 0.9
            strategy.reward_count, strategy.reward_mean, strategy.reward_m2 = 50, 0.5, 49 * 0.3 ** 2
        _tell_off_policy(strategy, [("1-2", 0.6, 1.0), ("3-0", 0.5, 1.0)])
        return strategy

    fresh, with_history = told(False), told(True)
    p_better = _log_prob(PPO(space, seed=1, hidden_size=8), (1, 2))
    same = all(torch.equal(a, b) for a, b in zip(_parameters(fresh), _parameters(with_history)))
    if batch_baseline:
        assert same and _log_prob(with_history, (1, 2)) > p_better
    else:
        assert not same and _log_prob(with_history, (1, 2)) < p_better


@pytest.mark.parametrize("cls", [PPO, Reinforce])
def test_self_imitation_replays_the_best_architecture_so_far(cls):
    # The first batch finds a good architecture (1-2, reward 1.0); the second holds two middling
    # ones (0.5 = the baseline, 0.4). With elites, the second update replays 1-2, the only elite
    # above the baseline, and raises its probability far more than the second batch alone does
    # (which lifts it a little by pushing 0-3 down). Deleting the replay makes the two the same.
    def gain(elites: int) -> tuple[float, PPO | Reinforce]:
        strategy = cls(GridSpace((5, 5)), seed=1, batch_size=2, lr=0.01, hidden_size=8, entropy_weight=0.0,
                       elites=elites)
        _tell_off_policy(strategy, [("1-2", 1.0, 1.0), ("3-0", 0.0, 1.0)])
        before = _log_prob(strategy, (1, 2))
        _tell_off_policy(strategy, [("4-4", 0.5, 1.0), ("0-3", 0.4, 1.0)])
        return _log_prob(strategy, (1, 2)) - before, strategy

    without, _ = gain(0)
    with_elites, strategy = gain(3)
    assert with_elites > without + 0.05
    assert strategy.best == [(1.0, (1, 2)), (0.5, (4, 4)), (0.4, (0, 3))]  # the best three, best first
    assert strategy.diagnostics()["replayed"] == 1  # only the one above the baseline
    strategy.failure_reward = 2.0  # even a failure scored above every reward is no model to imitate
    strategy.tell("2-2", None)
    assert [arch for _, arch in strategy.best] == [(1, 2), (4, 4), (0, 3)]
    with pytest.raises(UserError, match=r"elites=-1 \(needs >= 0\)"):
        cls(GridSpace((5, 5)), elites=-1)


def _advantages_told(advantages: str, batches: list[list[float]]) -> list[list[float]]:
    """The advantages a strategy (batch 2, baseline decay 0.5) computes for each batch told."""
    strategy = PPO(GridSpace((5, 5)), seed=0, batch_size=2, baseline_decay=0.5, hidden_size=8, advantages=advantages)
    out = []
    for rewards in batches:
        baseline = sum(rewards) / len(rewards) if strategy.baseline is None else strategy.baseline
        out.append([float(a) for a in strategy._advantage(rewards, baseline)])
        strategy.baseline = 0.5 * baseline + 0.5 * sum(rewards) / len(rewards)
    return out


def test_rank_advantages_are_mid_ranks_among_the_latest_rewards():
    # Batch 2 and decay 0.5: the window is the latest 2 / (1 - 0.5) = 4 rewards, the batch included.
    # Third batch: the window is [3, 0.5, 2, 2] (the first batch, 1 and 2, has left it): each 2 has
    # one reward below it and two equal (itself counted), F = (1 + 2 / 2) / 4; had the first batch's
    # 1 stayed, it would count below. Advantage = sqrt(12) * (F - 1/2).
    root12 = math.sqrt(12)
    got = _advantages_told("rank", [[1.0, 2.0], [3.0, 0.5], [2.0, 2.0]])
    assert got[0] == pytest.approx([root12 * (0 / 2 + 0.25 - 0.5), root12 * (1 / 2 + 0.25 - 0.5)])
    assert got[1] == pytest.approx([root12 * (3.5 / 4 - 0.5), root12 * (0.5 / 4 - 0.5)])
    assert got[2] == pytest.approx([root12 * (2 / 4 - 0.5)] * 2)


def test_moving_advantages_follow_the_spread_of_the_latest_rewards():
    # First batch [0, 1]: baseline 0.5, advantages -0.5 / 0.5, their mean square 0.25 starts the
    # moving one: spread 0.5, advantages -1 / 1. Second batch [0.5, 0.6] against baseline 0.5:
    # advantages 0 / 0.1, mean square 0.005, moving 0.5 * 0.25 + 0.5 * 0.005 = 0.1275. The
    # all-time spread (sample sd of 0, 1, 0.5, 0.6 = sqrt(0.5075 / 3)) gives 0.1 / 0.41130.
    moving = _advantages_told("moving", [[0.0, 1.0], [0.5, 0.6]])
    assert moving == [pytest.approx([-1.0, 1.0]), pytest.approx([0.0, 0.1 / math.sqrt(0.1275)])]
    spread = _advantages_told("spread", [[0.0, 1.0], [0.5, 0.6]])
    assert spread[1] == pytest.approx([0.0, 0.1 / math.sqrt(0.5075 / 3)], rel=1e-5)


def test_rank_advantages_ignore_a_monotone_change_of_the_reward():
    # The same batches told with rewards r and with a hard-constraint-like cliff of them (r below
    # 0.5 divided by ten): with rank advantages the updates are the same to the bit, with the
    # default (all-time spread) they are not.
    space = GridSpace((5, 5))
    told = [[("1-2", 0.9, 1.0), ("3-0", 0.4, 1.0)], [("2-2", 0.45, 1.0), ("0-4", 0.6, 1.0)]]

    def cliff(r: float) -> float:
        return r if r >= 0.5 else r / 10

    for advantages, equal in (("rank", True), ("spread", False)):
        params = []
        for f in (lambda r: r, cliff):
            strategy = PPO(space, seed=1, batch_size=2, hidden_size=8, advantages=advantages)
            for batch in told:
                _tell_off_policy(strategy, [(a, f(r), q) for a, r, q in batch])
            params.append(_parameters(strategy))
        assert all(torch.equal(a, b) for a, b in zip(*params)) == equal, advantages


def test_redrawing_proposes_unknown_architectures_and_keeps_the_policys_log_prob():
    # A policy that puts about a third of its mass on 0-0: once 0-0 is known, a plain sample
    # repeats it every third ask; with up to 10 draws, a repeat needs ten 0-0 draws in a row.
    space = GridSpace((3, 3))
    counts = {}
    for draws in (1, 10):
        strategy = PPO(space, seed=3, hidden_size=8, draws=draws)
        with torch.no_grad():
            for head in strategy.policy.heads:
                head.bias.copy_(torch.tensor([0.6, 0.0, 0.0]))
        strategy.tell("0-0", 0.5)
        counts[draws] = 0
        for _ in range(200):
            c = strategy.ask()
            counts[draws] += c.arch == "0-0"
            # the log-probability kept is the unrestricted policy's; nothing else becomes known
            assert strategy.pending.pop(c.arch)[0] == pytest.approx(_log_prob(strategy, c.indices), abs=1e-5)
    assert counts[1] > 40 and counts[10] <= 1, counts


# ---- diagnostics stored by the search loop -------------------------------------------------------
class ToyEvaluator:
    """Scores a GridSpace architecture by how many decisions match an optimum; 1 ms latency."""

    def __init__(self, optimum: tuple[int, ...]) -> None:
        self.optimum = optimum

    def evaluate(self, arch: str) -> TrialResult:
        indices = tuple(int(x) for x in arch.split("-"))
        return TrialResult(accuracy=_optimum_reward(indices, self.optimum), latency_ms=1.0, metrics={"own": 1})


@pytest.mark.parametrize("name", ["ppo", "random"])
def test_the_loop_stores_diagnostics_and_repeat_rate_with_each_trial(name, tmp_path):
    space = GridSpace((3, 3, 3))
    evaluator, objective = ToyEvaluator((2, 0, 1)), make_objective("accuracy")
    options = {"hidden_size": 8} if name == "ppo" else {}
    counts = []
    for budget in (6, 12):  # the second run resumes the first: the counts go on, not from zero
        with Store.create_or_resume(tmp_path, {"budget": budget}, mutable=("budget",)) as store:
            outcome = run_search(space, make_strategy(name, space, seed=4, **options), evaluator, objective,
                                 budget, store=store)
            counts.append((outcome.asks, outcome.repeats))
    trials = outcome.trials
    assert len(trials) == 12 and all(t.metrics["own"] == 1 for t in trials)
    search = [t.metrics["search"] for t in trials]
    assert [s["asks"] for s in search] == sorted(s["asks"] for s in search)
    assert search[-1]["asks"] == sum(a for a, _ in counts) and search[-1]["repeats"] == sum(r for _, r in counts)
    for s in search:
        assert s["repeat_rate"] == pytest.approx(s["repeats"] / s["asks"])
    assert search[-1]["repeats"] > 0  # 12 of 27 architectures: some proposals were repeats
    if name == "random":
        assert all("strategy" not in t.metrics for t in trials)
        return
    diagnostics = [t.metrics["strategy"] for t in trials]
    # One ask, one tell (one evaluation at a time): after a trial, the updates made are the
    # proposals so far in whole batches of 5, counted on across the resume.
    assert [d["updates"] for d in diagnostics] == [s["asks"] // 5 for s in search]
    last = diagnostics[-1]
    assert {"entropy", "entropy_share", "ratio_min", "ratio_max", "approx_kl", "epochs", "kl_stop"} <= set(last)
    assert last["entropy_share"] == pytest.approx(last["entropy"] / math.log(27))


# ---- evolution ---------------------------------------------------------------------------------
def test_evolution_ages_out_the_oldest_even_when_it_is_best():
    space = GridSpace((4, 4, 4))
    evo = RegularizedEvolution(space, seed=0, population_size=3, sample_size=3)
    first = [evo.ask() for _ in range(3)]  # the random first generation
    for candidate, reward in zip(first, (0.9, 0.1, 0.2)):
        evo.tell(candidate.arch, reward)
    assert [m[1] for m in evo.population] == [0.9, 0.1, 0.2]
    # With the whole population in the tournament, the parent is the best: a child is one
    # mutation away from it.
    child = evo.ask()
    assert sum(a != b for a, b in zip(child.indices, first[0].indices)) == 1
    evo.tell(child.arch, 0.5)
    # The best (and oldest) member is gone: aging, not fitness, decides who leaves.
    assert [m[1] for m in evo.population] == [0.1, 0.2, 0.5]
    assert first[0].indices not in [m[0] for m in evo.population]
    evo.tell(evo.ask().arch, None)  # a failed child never joins
    assert len(evo.population) == 3 and [m[1] for m in evo.population] == [0.1, 0.2, 0.5]


def test_evolution_mutates_the_requested_number_of_decisions():
    space = GridSpace((4, 4, 4, 4))
    evo = RegularizedEvolution(space, seed=5, population_size=4, sample_size=2, mutations=2)
    for _ in range(50):
        parent = space.sample_indices(random.Random(0))
        child = evo.mutate(parent)
        assert sum(a != b for a, b in zip(parent, child)) == 2


def test_bad_strategy_settings():
    space = GridSpace()
    with pytest.raises(UserError, match="unknown strategy"):
        make_strategy("bayes", space)
    with pytest.raises(UserError, match="sample size"):
        make_strategy("evolution", space, population_size=3, sample_size=5)
    with pytest.raises(UserError, match="initial >= 1"):
        make_strategy("local", space, initial=0)
    with pytest.raises(UserError, match="strategy 'random'"):
        make_strategy("random", space, lr=0.1)
    with pytest.raises(UserError, match="unknown advantages 'median': choose one of spread, batch, moving, rank"):
        make_strategy("ppo", space, advantages="median")


# ---- local search -------------------------------------------------------------------------------
def _hamming(a: Sequence[int], b: Sequence[int]) -> int:
    return sum(x != y for x, y in zip(a, b))


def test_local_search_sweeps_the_neighbours_of_its_best_start_then_moves_to_the_best_neighbour():
    space = GridSpace((4, 3, 5))
    ls = make_strategy("local", space, seed=3, initial=4)
    start = [ls.ask() for _ in range(4)]
    rewards = [0.2, 0.7, 0.1, 0.4]
    for c, r in zip(start, rewards):
        ls.tell(c.arch, r)
    best = start[1].indices
    # Every architecture one decision away from the start's best, each once: (4-1)+(3-1)+(5-1) = 9.
    sweep = [ls.ask() for _ in range(9)]
    assert sorted(c.indices for c in sweep) == sorted(
        best[:d] + (k,) + best[d + 1:] for d, n in enumerate((4, 3, 5)) for k in range(n) if k != best[d])
    winner = sweep[5]
    for k, c in enumerate(sweep):
        ls.tell(c.arch, 0.9 if k == 5 else (None if k == 0 else 0.5))  # one neighbour failed
    # The next sweep is around the best neighbour: every proposal is one decision from it.
    nxt = [ls.ask() for _ in range(9)]
    assert {_hamming(c.indices, winner.indices) for c in nxt} == {1}
    assert len({c.indices for c in nxt}) == 9 and winner.indices not in {c.indices for c in nxt}
    assert ls.diagnostics() == {"moves": 1, "restarts": 0}


def test_local_search_restarts_from_a_random_sample_at_a_local_optimum():
    space = GridSpace((4, 4, 4, 4))
    ls = make_strategy("local", space, seed=0, initial=2)
    a, b = ls.ask(), ls.ask()
    ls.tell(a.arch, 0.5)
    ls.tell(b.arch, 0.3)
    neighbours = [ls.ask() for _ in range(12)]
    assert all(_hamming(c.indices, a.indices) == 1 for c in neighbours)
    for c in neighbours:
        ls.tell(c.arch, 0.5)  # none beats the current one (a tie is no move): a local optimum
    assert ls.diagnostics() == {"moves": 0, "restarts": 1}
    fresh = [ls.ask() for _ in range(2)]  # a new random start, not more neighbours of `a`
    assert any(_hamming(c.indices, a.indices) > 1 for c in fresh)
    for c, r in zip(fresh, (0.1, 0.2)):
        ls.tell(c.arch, r)
    # The restart climbs from its own best even though `a` was better: a new basin.
    assert all(_hamming(c.indices, fresh[1].indices) == 1 for c in (ls.ask() for _ in range(12)))


def test_local_search_climbs_to_the_optimum_of_a_separable_reward_through_the_loop():
    space = GridSpace((4, 3, 5, 4))
    optimum = (3, 0, 2, 1)
    outcome = run_search(space, make_strategy("local", space, seed=1, initial=3), ToyEvaluator(optimum),
                         make_objective("accuracy"), 40)
    best = max(outcome.trials, key=lambda t: t.reward)
    assert space.indices_from_arch(best.arch) == optimum
    # On this separable reward each move fixes a decision (best improvement); neighbours already
    # evaluated are free, so 40 of the 240 architectures suffice from this seed's start.
    assert outcome.trials[-1].metrics["strategy"]["moves"] >= 1


# ---- state round trips -------------------------------------------------------------------------
def _round_trip(state):
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return torch.load(io.BytesIO(buffer.getvalue()), weights_only=True)


@pytest.mark.parametrize("name", ["ppo", "reinforce", "random", "evolution", "local", "ppo:rank", "ppo:moving", "ppo:elites"])
def test_state_dict_round_trip_continues_identically(name):
    # "ppo:rank": PPO with that form of advantages, whose window / moving spread the state carries;
    # "ppo:elites": PPO replaying its best architectures so far, which the state carries.
    name, _, variant = name.partition(":")
    space = GridSpace((4, 3, 5))
    options = {"batch_size": 3, "hidden_size": 8} if name in ("ppo", "reinforce") else {}
    if variant == "elites":
        options["elites"] = 3
    elif variant:
        options["advantages"] = variant
    if name == "evolution":
        options = {"population_size": 4, "sample_size": 2}
    if name == "local":
        options = {"initial": 3}
    original = make_strategy(name, space, seed=7, **options)
    for k in range(10):
        c = original.ask()
        original.tell(c.arch, 0.1 * (k % 4))
    pending = original.ask()  # one proposal in flight at the checkpoint
    copy = make_strategy(name, space, seed=99, **options)
    copy.load_state_dict(_round_trip(original.state_dict()))
    for k in range(20):
        original.tell(pending.arch, 0.1 * (k % 3))
        copy.tell(pending.arch, 0.1 * (k % 3))
        a, b = original.ask(), copy.ask()
        assert a == b, f"{name} diverged after restore at step {k}"
        pending = a
    if name in ("ppo", "reinforce"):  # the same proposals, and the same controller to the bit
        assert all(torch.equal(x, y) for x, y in zip(_parameters(original), _parameters(copy)))
