"""From an NB201 supernet's alphas to the benchmark's answer: cell string, table row, accuracy.

Why here and not in `spaces.nb201`: derivation is DARTS' rule (the strongest op on each edge,
`none` allowed, as NB201's own DARTS baseline derives), and the answer is looked up in the tables
that `edgenas.evaluators.nb201` reads, so a derived cell's 200-epoch test accuracy and Pixel 3
latency are known the moment it is derived.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from edgenas.errors import UserError
from edgenas.evaluators.nb201 import NB201Tables
from edgenas.spaces.nb201 import EDGES, OPS, NB201Space

_SPACE = NB201Space()


def derive_nb201(strengths: torch.Tensor) -> str:
    """The NB201 string of a (6 x 5) matrix of op strengths: argmax per edge (ties: earlier op)."""
    if tuple(strengths.shape) != (len(EDGES), len(OPS)):
        raise UserError(
            f"NB201 alphas must be ({len(EDGES)}, {len(OPS)}): 6 edges x the ops {', '.join(OPS)}; "
            f"got {tuple(strengths.shape)}"
        )
    return _SPACE.arch_from_indices([int(i) for i in strengths.argmax(dim=1)])


def cell_ops(arch: str) -> tuple[str, ...]:
    """The six ops of an NB201 string; UserError (naming the problem) if it is not an NB201 cell."""
    return _SPACE.ops(arch)


def skip_share(ops: Sequence[str]) -> float:
    """The fraction of edges that are skip connections (what collapse drives to 1)."""
    return sum(op == "skip_connect" for op in ops) / len(ops)


def look_up(tables: NB201Tables, arch: str, dataset: str = "cifar10", device: str = "pixel3") -> dict:
    """The table row of a cell: index, 200-epoch test accuracy (percent), 12-epoch validation
    accuracy (percent) and latency (ms) on `device`."""
    tables.check_dataset(dataset)
    tables.check_device(device)
    i = tables.index(_SPACE.canonical(arch))
    return {
        "index": i,
        "test_accuracy": float(tables.test_acc[dataset][i]),
        "val12_accuracy": float(tables.val_acc[dataset][i]),
        "latency_ms": float(tables.latency_ms[device][i]),
    }
