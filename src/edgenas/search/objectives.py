"""What a search maximises, and how its results are read: rewards, Pareto fronts, hypervolume.

MnasNet's reward folds latency into one number, `ACC * (LAT / T) ** w` with `w = alpha` when the
model meets the target `T` and `w = beta` when it does not. The soft form (alpha = beta = -0.07)
trades about 5 % relative accuracy for each doubling of latency, so the controller sees a smooth
slope; the hard form (alpha = 0, beta = -1) ignores latency under `T` and punishes it steeply
above. TuNAS's absolute reward, `ACC + beta * |LAT / T - 1|` (beta < 0), punishes a network for
being slower *or faster* than `T` alike, which pulls a search onto the target instead of merely
under it (TuNAS reports that with the MnasNet reward it typically needed about seven searches to
land on a target). The search itself sees one scalar; the Pareto front (accuracy up, latency down) and its
2-D hypervolume are how a person, or a benchmark, judges the whole set of trials.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from edgenas.errors import UserError
from edgenas.evaluators.base import TrialResult
from edgenas.util.registry import lookup

SOFT_EXPONENTS = (-0.07, -0.07)
HARD_EXPONENTS = (0.0, -1.0)


class Objective(Protocol):
    """Turns an evaluation into the scalar a strategy maximises; None for a failed trial."""

    name: str

    def reward(self, result: TrialResult) -> float | None: ...

    def config(self) -> dict[str, Any]: ...


def mnas_reward(accuracy: float, latency_ms: float, target_ms: float, alpha: float, beta: float) -> float:
    """`accuracy * (latency / target) ** w`, `w = alpha` if latency <= target else `beta`."""
    if target_ms <= 0:
        raise UserError(f"the latency target must be positive, got {target_ms} ms")
    if latency_ms <= 0:
        # A measured latency of zero would make the ratio 0 and the power infinite.
        raise ValueError(f"latency must be positive, got {latency_ms} ms")
    exponent = alpha if latency_ms <= target_ms else beta
    return accuracy * (latency_ms / target_ms) ** exponent


@dataclass(frozen=True)
class AccuracyObjective:
    """Plain accuracy: the reward is the evaluator's accuracy (a fraction)."""

    name: str = "accuracy"

    def reward(self, result: TrialResult) -> float | None:
        if not result.ok or result.accuracy is None:
            return None
        return float(result.accuracy)

    def config(self) -> dict[str, Any]:
        return {"objective": self.name}


@dataclass(frozen=True)
class MnasObjective:
    """MnasNet's latency-aware reward with a user-set target and exponents."""

    target_ms: float
    alpha: float
    beta: float
    name: str = "mnas"

    def __post_init__(self) -> None:
        if not self.target_ms > 0:
            raise UserError(f"--target-ms must be positive, got {self.target_ms}")

    def reward(self, result: TrialResult) -> float | None:
        if not result.ok or result.accuracy is None or result.latency_ms is None:
            return None
        # Tables hold a few architectures whose measured latency rounds to zero; clamp so the
        # reward stays finite (they are the disconnected cells, with chance accuracy anyway).
        latency = max(float(result.latency_ms), 1e-6)
        return mnas_reward(float(result.accuracy), latency, self.target_ms, self.alpha, self.beta)

    def config(self) -> dict[str, Any]:
        return {"objective": self.name, "target_ms": self.target_ms, "alpha": self.alpha, "beta": self.beta}


ABS_BETA = -0.07  # ours: the soft reward's slope near T (a 2x slower network pays 0.07 accuracy)


@dataclass(frozen=True)
class AbsoluteLatencyObjective:
    """TuNAS's absolute reward: `ACC + beta * |LAT / T - 1|`, beta < 0."""

    target_ms: float
    beta: float = ABS_BETA
    name: str = "mnas-abs"

    def __post_init__(self) -> None:
        if not self.target_ms > 0:
            raise UserError(f"--target-ms must be positive, got {self.target_ms}")
        if not self.beta < 0:
            raise UserError(f"mnas-abs needs a negative --beta (a penalty for missing T), got {self.beta}")

    def reward(self, result: TrialResult) -> float | None:
        if not result.ok or result.accuracy is None or result.latency_ms is None:
            return None
        return float(result.accuracy) + self.beta * abs(float(result.latency_ms) / self.target_ms - 1.0)

    def config(self) -> dict[str, Any]:
        return {"objective": self.name, "target_ms": self.target_ms, "beta": self.beta}


def _absolute(target_ms: float | None, alpha: float | None, beta: float | None) -> Objective:
    if target_ms is None:
        raise UserError("objective 'mnas-abs' needs a latency target: add --target-ms T (milliseconds)")
    if alpha is not None:
        raise UserError("mnas-abs has no --alpha (one penalty, --beta, on either side of T)")
    return AbsoluteLatencyObjective(float(target_ms), ABS_BETA if beta is None else float(beta))


def _accuracy(target_ms: float | None, alpha: float | None, beta: float | None) -> Objective:
    return AccuracyObjective()


def _mnas(name: str, exponents: tuple[float, float]) -> Callable[[float | None, float | None, float | None], Objective]:
    def make(target_ms: float | None, alpha: float | None, beta: float | None) -> Objective:
        if target_ms is None:
            raise UserError(f"objective '{name}' needs a latency target: add --target-ms T (milliseconds)")
        return MnasObjective(target_ms=float(target_ms), alpha=exponents[0] if alpha is None else float(alpha),
                             beta=exponents[1] if beta is None else float(beta), name=name)
    return make


# name -> factory(target_ms, alpha, beta); `alpha`/`beta` override the soft or hard defaults.
OBJECTIVES: dict[str, Callable[[float | None, float | None, float | None], Objective]] = {
    "accuracy": _accuracy,
    "mnas-soft": _mnas("mnas-soft", SOFT_EXPONENTS),
    "mnas-hard": _mnas("mnas-hard", HARD_EXPONENTS),
    "mnas-abs": _absolute,
}


def make_objective(
    name: str, target_ms: float | None = None, alpha: float | None = None, beta: float | None = None
) -> Objective:
    """An objective by CLI name."""
    return lookup(OBJECTIVES, name, "objective")(target_ms, alpha, beta)


T = TypeVar("T")


def pareto_front(
    items: Iterable[T], accuracy: Callable[[T], float], latency: Callable[[T], float]
) -> list[T]:
    """The items no other item beats on both counts (higher accuracy, lower latency), fastest first.

    Of several items with equal accuracy and latency, the first one given is kept.
    """
    ordered = sorted(enumerate(items), key=lambda p: (latency(p[1]), -accuracy(p[1]), p[0]))
    front: list[T] = []
    best = float("-inf")
    for _, item in ordered:
        if accuracy(item) > best:
            front.append(item)
            best = accuracy(item)
    return front


def hypervolume_2d(
    points: Sequence[tuple[float, float]], ref_latency: float, ref_accuracy: float
) -> float:
    """Area of the (latency, accuracy) region that the points dominate, bounded by the reference.

    The reference is a worst case: a latency at least as slow and an accuracy at least as low as
    any point worth counting; points outside it add nothing.
    """
    inside = [(lat, acc) for lat, acc in points if lat < ref_latency and acc > ref_accuracy]
    front = pareto_front(inside, accuracy=lambda p: p[1], latency=lambda p: p[0])
    area = 0.0
    for k, (lat, acc) in enumerate(front):
        next_latency = front[k + 1][0] if k + 1 < len(front) else ref_latency
        area += (next_latency - lat) * (acc - ref_accuracy)
    return area
