"""The DARTS cell space as a `SearchSpace`: the discrete genotypes DARTS derives.

Why a space as well as the DARTS engine: a strategy that samples (random search, evolution, the
RL controller) can then search the same cells DARTS finds, and the store keeps the same strings.
For each of the two cells (normal, reduce) and each intermediate node, four decisions: its first
input node and op, its second input node and op (inputs range over the nodes before it; ops are
DARTS' seven ops other than `none`, which a derived cell never uses). The architecture string is
the genotype string (`edgenas.darts.genotypes`); `build()` gives the evaluation network.
"""

from __future__ import annotations

from collections.abc import Sequence

from edgenas.darts.eval_model import EvalNetwork
from edgenas.darts.genotypes import Genotype
from edgenas.darts.ops import PRIMITIVES
from edgenas.errors import UserError
from edgenas.spaces.base import Decision, SearchSpace

OPS: tuple[str, ...] = tuple(p for p in PRIMITIVES if p != "none")
CELLS = ("normal", "reduce")


class DartsSpace(SearchSpace):
    """Decisions per cell, node and input: (input node, op) twice per node."""

    name = "darts"

    def __init__(
        self, steps: int = 4, num_classes: int = 10, channels: int = 36, layers: int = 20,
        auxiliary: bool = False, drop_path: float = 0.0, in_channels: int = 3,
        resolution: int | None = None,
    ) -> None:
        if steps < 1:
            raise UserError(f"a DARTS cell needs at least one node, got {steps}")
        self.steps = steps
        self.network = {"channels": channels, "layers": layers, "num_classes": num_classes,
                        "auxiliary": auxiliary, "drop_path": drop_path, "in_channels": in_channels}
        decisions = []
        for cell in CELLS:
            for i in range(steps):
                inputs = tuple(range(i + 2))
                for k in (1, 2):
                    decisions.append(Decision(f"{cell}.node{i + 2}.input{k}", inputs))
                    decisions.append(Decision(f"{cell}.node{i + 2}.op{k}", OPS))
        self._decisions = tuple(decisions)

    @property
    def decisions(self) -> tuple[Decision, ...]:
        return self._decisions

    def genotype(self, indices: Sequence[int]) -> Genotype:
        self.check_indices(indices)
        values = [d.choices[i] for d, i in zip(self._decisions, indices)]
        half = len(values) // 2
        cells = []
        for part in (values[:half], values[half:]):
            cells.append(tuple((part[k + 1], part[k]) for k in range(0, len(part), 2)))
        return Genotype(cells[0], cells[1])

    def arch_from_indices(self, indices: Sequence[int]) -> str:
        return str(self.genotype(indices))

    def indices_from_arch(self, arch: str) -> tuple[int, ...]:
        genotype = Genotype.parse(arch)
        if genotype.steps != self.steps:
            raise UserError(f"the darts space has {self.steps} nodes per cell, the genotype {genotype.steps}")
        indices: list[int] = []
        for cell in CELLS:
            for index, (op, node) in enumerate(genotype.cell(cell == "reduce")):
                if op not in OPS:
                    raise UserError(f"{cell} cell, node {index // 2 + 2}: op '{op}' is not a choice of the darts space")
                indices += [node, OPS.index(op)]
        return tuple(indices)

    def build(self, arch: str) -> EvalNetwork:
        return EvalNetwork(Genotype.parse(arch), **self.network)

    def describe(self) -> dict:
        summary = super().describe()
        summary.update(steps=self.steps, network=dict(self.network))
        return summary

