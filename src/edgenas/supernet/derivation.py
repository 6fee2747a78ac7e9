"""Deriving the network a latency-aware gradient search hands the user: the most probable
architecture whose LUT prediction lies near the target.

Why not just each decision's most probable choice: the penalty drives E[LAT] of the distribution
to T, but while the distribution is not one-hot its mode can lie well off T
(docs/bench/gradient_search.md), and a user who asked for T wants a network at T.

How, exactly: the decisions are independent, so the architectures can be listed in descending
order of probability (best-first over each decision's choices sorted by probability, every
combination reached from one parent only); the first whose prediction lies in the band is the most
probable one there. The list is cut after `limit` architectures (a broad distribution over a large
space can put the band far down it); then the answer comes from the probability / latency trade-off
(`ExpectedLatency.trade_off`, exact per weight, bisected on the weight): the most probable
architecture on that hull inside the band, or the hull's nearest to T when the hull jumps over it.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Sequence

import torch

from edgenas.supernet.expected_latency import ExpectedLatency

Indices = tuple[int, ...]


def near_target(expected: ExpectedLatency, log_probs: Sequence[torch.Tensor], target_ms: float, tolerance: float,
                limit: int = 20_000) -> Indices:
    """The most probable architecture (choice indices) with a LUT prediction within `tolerance`
    (relative) of `target_ms`; the most probable of all when it is already there."""
    log_probs = [p.detach().to(torch.float64) for p in log_probs]
    low, high = target_ms * (1.0 - tolerance), target_ms * (1.0 + tolerance)
    predict = expected.fast_prediction()
    for count, indices in enumerate(by_probability(log_probs)):
        if low <= predict(indices) <= high:
            return indices
        if count + 1 >= limit:
            break
    return _along_the_hull(expected, log_probs, predict, target_ms, low, high)


def by_probability(log_probs: Sequence[torch.Tensor]):
    """Every architecture, most probable first (ties in a fixed order).

    A state is each decision's rank among its own choices (0 = most probable); a state's children
    raise one rank at or after its last raised decision, so every state has exactly one parent
    and is pushed once, and no child is more probable than its parent."""
    order = [sorted(range(len(p)), key=lambda c, p=p: (-float(p[c]), c)) for p in log_probs]
    values = [[float(p[c]) for c in ranks] for p, ranks in zip(log_probs, order)]
    start = (0,) * len(order)
    heap = [(-sum(v[0] for v in values), start, 0)]
    while heap:
        negative, ranks, last = heapq.heappop(heap)
        yield tuple(order[d][r] for d, r in enumerate(ranks))
        for d in range(last, len(ranks)):
            if ranks[d] + 1 < len(order[d]):
                child = ranks[:d] + (ranks[d] + 1,) + ranks[d + 1:]
                heapq.heappush(heap, (negative + values[d][ranks[d]] - values[d][ranks[d] + 1], child, d))


def _along_the_hull(expected: ExpectedLatency, log_probs: Sequence[torch.Tensor], predict: Callable[[Indices], float],
                    target_ms: float, low: float, high: float, steps: int = 60) -> Indices:
    """The trade-off hull's most probable architecture inside [low, high], else its nearest to T.
    The hull's latency falls as the weight on latency rises: double, then bisect the weight."""
    mode = tuple(int(p.argmax()) for p in log_probs)
    seen = {mode: predict(mode)}
    sign = 1.0 if seen[mode] > high else -1.0  # > 0 buys speed, < 0 buys capacity

    def beyond(magnitude: float) -> bool:  # still on the mode's side of the band
        indices = expected.trade_off(log_probs, sign * magnitude)
        ms = seen.setdefault(indices, predict(indices))
        return ms > high if sign > 0 else ms < low

    below, above = 0.0, 1.0 / target_ms
    for _ in range(steps):
        if not beyond(above):
            break
        below, above = above, 2.0 * above
    for _ in range(steps):
        middle = 0.5 * (below + above)
        if beyond(middle):
            below = middle
        else:
            above = middle
    inside = [ix for ix, ms in seen.items() if low <= ms <= high]
    if inside:
        return max(inside, key=lambda ix: (log_probability(log_probs, ix), ix))
    return min(seen, key=lambda ix: (abs(seen[ix] / target_ms - 1.0), ix))


def log_probability(log_probs: Sequence[torch.Tensor], indices: Sequence[int]) -> float:
    """log P(architecture) under independent decisions."""
    return float(sum(float(p[i]) for p, i in zip(log_probs, indices)))
