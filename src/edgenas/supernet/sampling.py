"""Which paths of the supernet a training step trains.

- `uniform` (single-path one-shot): one path per step, every decision drawn uniformly, so every
  choice of every position is trained about equally often.
- `sandwich` (BigNAS): the largest path, the smallest path and `random_paths` uniform ones each
  step; the largest learns from the labels and the others are distilled from its predictions
  (in-place distillation), which keeps the small paths' ranking from being drowned by the large.

"Largest" and "smallest" are in size: the most (fewest) layers, the widest (narrowest) width, the
largest (smallest) kernel and squeeze-excite ratio, and the ConvOp with the most (fewest)
parameters at the block's first position. The skip is not a size, so both draw it at random.

The sampler draws from its own seeded `random.Random` and saves its state with the training
checkpoint (`state_dict`), so a resumed training draws the paths an uninterrupted one draws.
"""

from __future__ import annotations

import random
from typing import Any

import torch

from edgenas.spaces.blockstrings import BlockArgs
from edgenas.spaces.mnas import MnasSpace, op_to_block
from edgenas.spaces.mobilenet import make_layer

SAMPLINGS = ("uniform", "sandwich")
_FIELDS = MnasSpace.FIELDS  # op, kernel, se, skip, width, layers


class PathSampler:
    """Draws each training step's paths (as choice indices of the space)."""

    def __init__(self, space: MnasSpace, sampling: str = "uniform", random_paths: int = 2, seed: int = 0) -> None:
        from edgenas.errors import UserError

        if sampling not in SAMPLINGS:
            raise UserError(f"unknown sampling '{sampling}'; choose one of {', '.join(SAMPLINGS)}")
        if random_paths < 0:
            raise UserError(f"random_paths cannot be negative, got {random_paths}")
        self.space = space
        self.sampling = sampling
        self.random_paths = random_paths
        self.rng = random.Random(seed)
        self._op_order = [_ops_by_size(space, block) for block in range(len(space.config.base_stages))]

    def paths(self) -> list[tuple[int, ...]]:
        """This step's paths; in sandwich sampling the first is the teacher (the largest)."""
        if self.sampling == "uniform":
            return [self.space.sample_indices(self.rng)]
        paths = [self._extreme(largest=True), self._extreme(largest=False)]
        paths += [self.space.sample_indices(self.rng) for _ in range(self.random_paths)]
        return paths

    def largest(self) -> tuple[int, ...]:
        return self._extreme(largest=True, skip=0)

    def smallest(self) -> tuple[int, ...]:
        return self._extreme(largest=False, skip=0)

    def _extreme(self, largest: bool, skip: int | None = None) -> tuple[int, ...]:
        indices: list[int] = []
        for block in range(len(self.space.config.base_stages)):
            for name, decision in zip(_FIELDS, self.space.block_decisions(block)):
                count = len(decision.choices)
                if name == "skip":
                    indices.append(self.rng.randrange(count) if skip is None else skip)
                elif name == "op":
                    order = self._op_order[block]
                    indices.append(order[-1] if largest else order[0])
                else:  # kernel, se, width, layers: choices are numbers, pick by value
                    values = list(decision.choices)
                    indices.append(values.index(max(values) if largest else min(values)))
        return tuple(indices)

    def state_dict(self) -> dict[str, Any]:
        version, internal, gauss = self.rng.getstate()
        return {"rng": [version, list(internal), gauss]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        version, internal, gauss = state["rng"]
        self.rng.setstate((version, tuple(internal), gauss))


def _ops_by_size(space: MnasSpace, block: int) -> list[int]:
    """The block's op choices (indices), fewest parameters first, at its widest first layer."""
    config = space.config
    base = config.base_stages[block]
    width = max(space.width(base, w) for w in config.width_multipliers)
    ops = space.block_decisions(block)[0].choices
    sizes = []
    for index, op in enumerate(ops):
        block_type, expansion = op_to_block(op)
        args = BlockArgs(block_type, 1, max(config.kernels), base.stride, width, expansion=expansion)
        with torch.device("meta"):
            layer = make_layer(args, width, base.stride, config.network)
        sizes.append((sum(p.numel() for p in layer.parameters()), index))
    return [index for _, index in sorted(sizes)]
