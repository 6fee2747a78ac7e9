"""What an evaluation returns, and the contract every evaluator keeps.

An evaluator turns an architecture string into accuracy and latency: by proxy training, by final
training, or by looking it up in a tabular benchmark. A failure (NaN loss, out of memory, device
gone, any exception) is a result with `status="failed"` and its reason, never a crashed search.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Protocol


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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Evaluator(Protocol):
    """Anything that scores an architecture. Must not raise for a bad candidate: return failed."""

    def evaluate(self, arch: str) -> TrialResult: ...
