"""Rewards (checked by hand), Pareto fronts and 2-D hypervolume."""

from __future__ import annotations

import math

import pytest

from edgenas.errors import UserError
from edgenas.evaluators.base import TrialResult
from edgenas.search.objectives import hypervolume_2d, make_objective, mnas_reward, pareto_front


def test_soft_reward_by_hand():
    # 0.75 * (80 / 75) ** -0.07: ln(80/75) = 0.0645385, x -0.07 = -0.0045177, exp = 0.9954925
    assert mnas_reward(0.75, 80.0, 75.0, -0.07, -0.07) == pytest.approx(0.7466194, abs=1e-6)
    # Under the target the soft reward still pays for speed: (60/75)^-0.07 = 1.0157427
    assert mnas_reward(0.75, 60.0, 75.0, -0.07, -0.07) == pytest.approx(0.7618070, abs=1e-6)


def test_soft_reward_doubling_latency_costs_about_five_percent():
    # MnasNet chose -0.07 so that 2x latency is worth ~5 % relative accuracy: 2^-0.07 = 0.95264
    ratio = mnas_reward(0.7, 150.0, 75.0, -0.07, -0.07) / mnas_reward(0.7, 75.0, 75.0, -0.07, -0.07)
    assert ratio == pytest.approx(0.952638, abs=1e-6)


def test_hard_reward_by_hand():
    hard = make_objective("mnas-hard", target_ms=75.0)
    assert hard.reward(TrialResult(accuracy=0.75, latency_ms=60.0)) == 0.75  # w = alpha = 0
    assert hard.reward(TrialResult(accuracy=0.75, latency_ms=75.0)) == 0.75  # at T: still alpha
    assert hard.reward(TrialResult(accuracy=0.75, latency_ms=150.0)) == pytest.approx(0.375)  # w = -1


def test_user_set_exponents_and_target():
    custom = make_objective("mnas-soft", target_ms=10.0, alpha=-0.1, beta=-0.5)
    assert custom.reward(TrialResult(accuracy=0.8, latency_ms=5.0)) == pytest.approx(0.8 * 0.5**-0.1)
    assert custom.reward(TrialResult(accuracy=0.8, latency_ms=40.0)) == pytest.approx(0.8 * 4**-0.5)
    assert custom.config() == {"objective": "mnas-soft", "target_ms": 10.0, "alpha": -0.1, "beta": -0.5}


def test_accuracy_objective_and_failures():
    accuracy = make_objective("accuracy")
    assert accuracy.reward(TrialResult(accuracy=0.9, latency_ms=3.0)) == 0.9
    assert accuracy.reward(TrialResult.failed("nan loss")) is None
    soft = make_objective("mnas-soft", target_ms=5.0)
    assert soft.reward(TrialResult(accuracy=0.9)) is None  # no latency, no latency-aware reward


@pytest.mark.parametrize(
    ("name", "target", "fragment"),
    [("latency", None, "unknown objective"), ("mnas-soft", None, "--target-ms"), ("mnas-hard", 0.0, "positive"),
     ("mnas-soft", -3.0, "positive")],
)
def test_bad_objectives(name, target, fragment):
    with pytest.raises(UserError, match=fragment):
        make_objective(name, target_ms=target)


def test_pareto_front_by_hand():
    points = [(5.0, 0.70), (3.0, 0.60), (4.0, 0.55), (5.0, 0.70), (8.0, 0.72), (6.0, 0.65), (1.0, 0.30)]
    front = pareto_front(points, accuracy=lambda p: p[1], latency=lambda p: p[0])
    assert front == [(1.0, 0.30), (3.0, 0.60), (5.0, 0.70), (8.0, 0.72)]
    assert front[2] is points[0]  # of two equal points the first one given is kept


def test_hypervolume_by_hand():
    # Rectangles from each front point to the reference (latency 4, accuracy 0):
    # [1, 2) x 0.5 + [2, 4) x 0.8 = 0.5 + 1.6
    assert hypervolume_2d([(1.0, 0.5), (2.0, 0.8)], 4.0, 0.0) == pytest.approx(2.1)
    # A dominated point adds nothing; a point beyond the reference adds nothing.
    assert hypervolume_2d([(1.0, 0.5), (2.0, 0.8), (3.0, 0.7), (5.0, 0.9)], 4.0, 0.0) == pytest.approx(2.1)
    # The reference accuracy is the floor: [1, 2) x 0.3 + [2, 4) x 0.6
    assert hypervolume_2d([(1.0, 0.5), (2.0, 0.8)], 4.0, 0.2) == pytest.approx(1.5)
    assert hypervolume_2d([], 4.0, 0.0) == 0.0
    assert math.isfinite(hypervolume_2d([(0.0, 1.0)], 1.0, 0.0))


def test_absolute_reward_by_hand_punishes_both_sides_of_the_target():
    objective = make_objective("mnas-abs", 10.0)
    slow = objective.reward(TrialResult(accuracy=0.8, latency_ms=15.0))
    fast = objective.reward(TrialResult(accuracy=0.8, latency_ms=5.0))
    on_target = objective.reward(TrialResult(accuracy=0.8, latency_ms=10.0))
    assert on_target == pytest.approx(0.8)
    assert slow == pytest.approx(0.8 - 0.07 * 0.5) and fast == pytest.approx(0.8 - 0.07 * 0.5)
    soft = make_objective("mnas-soft", 10.0)  # MnasNet's reward prefers the faster one; TuNAS's does not
    assert soft.reward(TrialResult(accuracy=0.8, latency_ms=5.0)) > 0.8
    assert make_objective("mnas-abs", 10.0, beta=-1.0).reward(TrialResult(accuracy=0.8, latency_ms=20.0)) == \
        pytest.approx(-0.2)
    assert objective.reward(TrialResult.failed("boom")) is None


@pytest.mark.parametrize("alpha, beta, fragment", [(0.1, None, "no --alpha"), (None, 0.5, "negative --beta")])
def test_absolute_reward_refuses_what_it_cannot_mean(alpha, beta, fragment):
    with pytest.raises(UserError, match=fragment):
        make_objective("mnas-abs", 10.0, alpha, beta)
