"""DARTS genotypes: the discrete cells a search derives, as values and as strings.

A genotype lists, for each intermediate node of a cell, its two inputs as (op, input node) pairs;
nodes 0 and 1 are the cell's two inputs and the cell's output concatenates every intermediate
node. The string form is what the CLI prints each epoch and what a user pastes back, so it is
shell-safe without quotes when the two cells are passed as two words:

    normal=sep_conv_3x3~0,sep_conv_3x3~1/sep_conv_3x3~0,sep_conv_3x3~1/... reduce=max_pool_3x3~0,...

(`/` separates nodes, `,` the two inputs of a node, `op~j` reads "op applied to node j"). The
original code's `Genotype(normal=[('sep_conv_3x3', 0), ...], ...)` repr is accepted as input too.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from edgenas.darts.ops import PRIMITIVES, check_op
from edgenas.errors import UserError

Pair = tuple[str, int]

_FORMAT_HINT = "write e.g. 'normal=sep_conv_3x3~0,sep_conv_3x3~1/... reduce=max_pool_3x3~0,...'"
_PAIR = re.compile(r"^([a-z0-9_]+)~(\d+)$")
_REPR_CELL = re.compile(r"(normal|reduce)\s*=\s*\[([^\]]*)\]")
_REPR_PAIR = re.compile(r"\(\s*['\"]([a-z0-9_]+)['\"]\s*,\s*(\d+)\s*\)")


@dataclass(frozen=True)
class Genotype:
    """Two cells (normal, reduce), each 2 x steps (op, input node) pairs, node by node."""

    normal: tuple[Pair, ...]
    reduce: tuple[Pair, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "normal", tuple((str(o), int(j)) for o, j in self.normal))
        object.__setattr__(self, "reduce", tuple((str(o), int(j)) for o, j in self.reduce))
        for name, cell in (("normal", self.normal), ("reduce", self.reduce)):
            if not cell or len(cell) % 2:
                raise UserError(
                    f"the {name} cell needs two inputs per node, got {len(cell)} pairs; {_FORMAT_HINT}"
                )
            for index, (op, node) in enumerate(cell):
                check_op(op)
                step = index // 2
                if not 0 <= node < step + 2:
                    raise UserError(
                        f"{name} cell, node {step + 2}: input {node} does not exist yet "
                        f"(node {step + 2} may read nodes 0..{step + 1})"
                    )
        if len(self.normal) != len(self.reduce):
            raise UserError(
                f"normal and reduce cells must have the same number of nodes, got "
                f"{len(self.normal) // 2} and {len(self.reduce) // 2}"
            )

    @property
    def steps(self) -> int:
        """Intermediate nodes per cell."""
        return len(self.normal) // 2

    @property
    def concat(self) -> tuple[int, ...]:
        """The nodes the cell output concatenates: every intermediate node."""
        return tuple(range(2, 2 + self.steps))

    def cell(self, reduction: bool) -> tuple[Pair, ...]:
        return self.reduce if reduction else self.normal

    def __str__(self) -> str:
        return f"normal={_encode_cell(self.normal)} reduce={_encode_cell(self.reduce)}"

    def to_dict(self) -> dict:
        """JSON-ready: per cell, its nodes, each a list of {op, input}."""
        return {
            name: [
                [{"op": op, "input": node} for op, node in cell[i : i + 2]]
                for i in range(0, len(cell), 2)
            ]
            for name, cell in (("normal", self.normal), ("reduce", self.reduce))
        } | {"concat": list(self.concat)}

    @classmethod
    def parse(cls, text: str) -> Genotype:
        """A genotype from its string (or the original DARTS repr, or a preset name)."""
        text = text.strip()
        if text in PRESETS:
            return PRESETS[text]
        if text.startswith("Genotype("):
            return _parse_repr(text)
        cells: dict[str, tuple[Pair, ...]] = {}
        for word in text.split():
            name, sep, body = word.partition("=")
            if not sep or name not in ("normal", "reduce"):
                raise UserError(f"malformed genotype part '{word[:40]}'; {_FORMAT_HINT}")
            if name in cells:
                raise UserError(f"the genotype gives the {name} cell twice; {_FORMAT_HINT}")
            cells[name] = _decode_cell(name, body)
        missing = [n for n in ("normal", "reduce") if n not in cells]
        if missing:
            raise UserError(
                f"the genotype lacks the {' and '.join(missing)} cell (or is not a preset: "
                f"{', '.join(PRESETS)}); {_FORMAT_HINT}"
            )
        return cls(cells["normal"], cells["reduce"])


def _encode_cell(cell: Sequence[Pair]) -> str:
    nodes = [",".join(f"{op}~{j}" for op, j in cell[i : i + 2]) for i in range(0, len(cell), 2)]
    return "/".join(nodes)


def _decode_cell(name: str, body: str) -> tuple[Pair, ...]:
    pairs: list[Pair] = []
    for n, node in enumerate(body.split("/")):
        items = node.split(",")
        if len(items) != 2:
            raise UserError(
                f"{name} cell, node {n + 2}: expected two 'op~input' pairs, got '{node}'; {_FORMAT_HINT}"
            )
        for item in items:
            match = _PAIR.match(item)
            if not match:
                raise UserError(f"{name} cell: malformed pair '{item}', expected 'op~input' (e.g. sep_conv_3x3~0)")
            pairs.append((check_op(match.group(1)), int(match.group(2))))
    return tuple(pairs)


def _parse_repr(text: str) -> Genotype:
    cells = {name: tuple((op, int(j)) for op, j in _REPR_PAIR.findall(body))
             for name, body in _REPR_CELL.findall(text)}
    if set(cells) != {"normal", "reduce"}:
        raise UserError(f"malformed Genotype(...) repr: it needs normal=[...] and reduce=[...]; {_FORMAT_HINT}")
    return Genotype(cells["normal"], cells["reduce"])


# The second-order cell of the DARTS paper (Liu et al., ICLR 2019, figures 4 and 5).
DARTS_V2 = Genotype(
    normal=(
        ("sep_conv_3x3", 0), ("sep_conv_3x3", 1),
        ("sep_conv_3x3", 0), ("sep_conv_3x3", 1),
        ("sep_conv_3x3", 1), ("skip_connect", 0),
        ("skip_connect", 0), ("dil_conv_3x3", 2),
    ),
    reduce=(
        ("max_pool_3x3", 0), ("max_pool_3x3", 1),
        ("skip_connect", 2), ("max_pool_3x3", 1),
        ("max_pool_3x3", 0), ("skip_connect", 2),
        ("skip_connect", 2), ("max_pool_3x3", 1),
    ),
)
PRESETS: dict[str, Genotype] = {"DARTS_V2": DARTS_V2, "DARTS": DARTS_V2}


def derive_cell(weights: torch.Tensor, steps: int, primitives: Sequence[str] = PRIMITIVES) -> tuple[Pair, ...]:
    """The discrete cell of one alpha matrix (rows = edges, node by node; softmax per row).

    For each node keep the two incoming edges whose strongest non-`none` op is strongest, each
    with that op (DARTS' rule; `none` is excluded because it would always win on weak edges).
    Ties go to the lower input node / the earlier op, so the result is deterministic.
    """
    probs = torch.softmax(weights.detach().double().cpu(), dim=-1)
    expected = sum(2 + i for i in range(steps))
    if probs.shape != (expected, len(primitives)):
        raise UserError(
            f"alpha has shape {tuple(probs.shape)}; {steps} nodes and {len(primitives)} ops "
            f"need ({expected}, {len(primitives)})"
        )
    allowed = [k for k, name in enumerate(primitives) if name != "none"]
    pairs: list[Pair] = []
    start = 0
    for i in range(steps):
        rows = probs[start : start + i + 2, allowed]
        best_op = rows.argmax(dim=1)  # argmax returns the first of equal maxima
        best_value = rows.gather(1, best_op[:, None]).squeeze(1)
        # Stable sort on the negated strength: equal strengths keep the lower input first.
        order = sorted(range(i + 2), key=lambda j: -float(best_value[j]))[:2]
        for j in order:
            pairs.append((primitives[allowed[int(best_op[j])]], j))
        start += i + 2
    return tuple(pairs)


def derive_genotype(
    alphas_normal: torch.Tensor, alphas_reduce: torch.Tensor, steps: int = 4,
    primitives: Sequence[str] = PRIMITIVES,
) -> Genotype:
    """The genotype a supernet's architecture weights stand for."""
    return Genotype(derive_cell(alphas_normal, steps, primitives), derive_cell(alphas_reduce, steps, primitives))
