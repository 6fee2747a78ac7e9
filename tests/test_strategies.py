"""Strategies: controller sampling and log-probabilities, the PPO clipped objective, PPO and
REINFORCE on a toy problem with a known optimum, evolution's aging, state round trips."""

from __future__ import annotations

import io
import math
import random
from collections.abc import Sequence

import pytest
import torch
from torch import nn

from edgenas.errors import UserError
from edgenas.spaces.base import Decision, SearchSpace
from edgenas.strategies import PPO, RegularizedEvolution, Reinforce, make_strategy
from edgenas.strategies.controller import ControllerPolicy
from edgenas.strategies.policy_gradient import ppo_clipped_loss


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
    strategy = PPO(space, seed=1, batch_size=4, epochs=3, lr=0.01, hidden_size=8, normalize_advantages=False)
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
    with pytest.raises(UserError, match="strategy 'random'"):
        make_strategy("random", space, lr=0.1)


# ---- state round trips -------------------------------------------------------------------------
def _round_trip(state):
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return torch.load(io.BytesIO(buffer.getvalue()), weights_only=True)


@pytest.mark.parametrize("name", ["ppo", "reinforce", "random", "evolution"])
def test_state_dict_round_trip_continues_identically(name):
    space = GridSpace((4, 3, 5))
    options = {"batch_size": 3, "hidden_size": 8} if name in ("ppo", "reinforce") else {}
    if name == "evolution":
        options = {"population_size": 4, "sample_size": 2}
    original = make_strategy(name, space, seed=7, **options)
    for k in range(10):
        c = original.ask()
        original.tell(c.arch, 0.1 * (k % 4))
    pending = original.ask()  # one proposal in flight at the checkpoint
    copy = make_strategy(name, space, seed=99, **options)
    copy.load_state_dict(_round_trip(original.state_dict()))
    for k in range(8):
        original.tell(pending.arch, 0.3)
        copy.tell(pending.arch, 0.3)
        a, b = original.ask(), copy.ask()
        assert a == b, f"{name} diverged after restore at step {k}"
        pending = a
