"""How a differentiable search joins cross-entropy with the expected latency E[LAT] and a target T.

- `abs` (TuNAS): `CE + weight * |E[LAT] / T - 1|`. Its minimum in latency is at T from both
  sides, and the penalty is relative to T, so one weight serves every target: at E = 2T or E =
  T/2 the pull has the same strength whatever T is. The default.
- `mult` (FBNet / MnasNet's multiplicative form): `CE * (E[LAT] / T) ** weight`. It always
  rewards a faster network (a gradient toward lower latency below T too), so it has no minimum
  at T. Worse, T cannot steer it: `(E/T) ** w = T ** -w * E ** w` scales the whole loss by a
  constant, which the architecture's Adam step ignores, so every T gives the same search
  (measured: docs/bench/gradient_search.md). Kept to compare against.

Both take E[LAT] and T in the same unit (ms); `weight` is the one coefficient.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from edgenas.util.registry import lookup

Penalty = Callable[[torch.Tensor, torch.Tensor, float, float], torch.Tensor]


def absolute(ce: torch.Tensor, expected_ms: torch.Tensor, target_ms: float, weight: float) -> torch.Tensor:
    return ce + weight * (expected_ms / target_ms - 1.0).abs().to(ce.dtype)


def multiplicative(ce: torch.Tensor, expected_ms: torch.Tensor, target_ms: float, weight: float) -> torch.Tensor:
    return ce * (expected_ms / target_ms).pow(weight).to(ce.dtype)


PENALTIES: dict[str, Penalty] = {"abs": absolute, "mult": multiplicative}


def get_penalty(name: str) -> Penalty:
    return lookup(PENALTIES, name, "latency loss")
