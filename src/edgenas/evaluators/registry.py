"""Evaluator kinds by space name: what `edgenas search --space NAME` scores candidates with."""

from __future__ import annotations

from edgenas.evaluators import mnas, nb201
from edgenas.evaluators.base import EvaluatorKind
from edgenas.util.registry import lookup

EVALUATORS: dict[str, EvaluatorKind] = {
    "nb201": EvaluatorKind(nb201.add_options, nb201.setup),
    "mnas": EvaluatorKind(mnas.add_options, mnas.setup),
}


def get_evaluator_kind(space: str) -> EvaluatorKind:
    return lookup(EVALUATORS, space, "search space (with an evaluator)")
