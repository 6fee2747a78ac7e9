"""What an evaluation returns, and the contract every evaluator keeps.

An evaluator turns an architecture string into accuracy and latency: by proxy training, by final
training, or by looking it up in a tabular benchmark. A failure (NaN loss, out of memory, device
gone, any exception) is a result with `status="failed"` and its reason, never a crashed search.
"""

from __future__ import annotations

import argparse
import gc
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import torch

from edgenas.errors import UserError

if TYPE_CHECKING:
    from edgenas.search.executors import Executor
    from edgenas.spaces.base import SearchSpace


@dataclass
class TrialResult:
    """Accuracy is a fraction in [0, 1]; latency in milliseconds; `metrics` holds the rest."""

    status: str = "ok"
    accuracy: float | None = None
    latency_ms: float | None = None
    error: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @classmethod
    def failed(cls, reason: str, **metrics: Any) -> TrialResult:
        return cls(status="failed", error=reason, metrics=dict(metrics))

    @classmethod
    def from_exception(cls, error: BaseException, **metrics: Any) -> TrialResult:
        """The failed trial for what one candidate raised: a UserError's own line; out of memory
        named as such (and the allocator's cache released, so the next candidate may fit); anything
        else with its type and where it was raised."""
        if isinstance(error, UserError):
            return cls.failed(str(error), **metrics)
        if isinstance(error, (torch.OutOfMemoryError, MemoryError)):
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            return cls.failed(f"out of memory: {first}", **metrics)
        where = traceback.extract_tb(error.__traceback__)[-1]
        return cls.failed(f"{type(error).__name__}: {error} (at {where.filename.rsplit('/', 1)[-1]}:{where.lineno})",
                          **metrics)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Evaluator(Protocol):
    """Anything that scores an architecture. Must not raise for a bad candidate: return failed."""

    def evaluate(self, arch: str) -> TrialResult: ...


class EvaluatorSetup(NamedTuple):
    """What one kind of evaluator makes of a parsed command line, built once per search.

    `space` is the space the strategy samples, the evaluator scores and the latency estimator
    measures (one object for all three); `config` identifies the run (compared on resume);
    `make_evaluator(executor)` builds the evaluator, its latency coming from
    `executor.latency_service` so that parallel trials never share the device.
    `front_estimator`, where the search's latency is predicted (the LUT), makes an estimator that
    measures end to end: the final front is measured with it (`edgenas.search.front`).
    """

    space: SearchSpace
    config: dict[str, Any]
    make_evaluator: Callable[[Executor], Evaluator]
    front_estimator: Callable[[], Any] | None = None


@dataclass(frozen=True)
class EvaluatorKind:
    """How `edgenas search --space NAME` is scored: its own flags, and the set-up from them.

    `add_options(parser)` adds flags that no other kind and no common search flag uses (see
    `edgenas.cli.search`); `setup(args)` checks them (UserError for bad ones) before any write.
    """

    add_options: Callable[[argparse.ArgumentParser], None]
    setup: Callable[[argparse.Namespace], EvaluatorSetup]
