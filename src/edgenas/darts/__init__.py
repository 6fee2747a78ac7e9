"""DARTS: differentiable cell search (Liu, Simonyan, Yang, ICLR 2019).

One job per module, as in the original code: `ops` (the op table, from the shared blocks),
`fused` (the supernet's fast way of running those ops, the same math), `genotypes` (discrete
cells, their strings, derivation from alphas), `search_model` (the supernet), `architect`
(alpha's first/second-order step), `step` (one search step), `search` (epochs, checkpoint,
resume), `eval_model` (the network a genotype defines), `train` (its training on the project's
loop) and `draw` (a picture of both cells). NAS-Bench-201 as a DARTS space: `nb201_model` (its
supernet), `nb201` (derived cell -> string -> table row); `hessian` (the dominant eigenvalue of
alpha's Hessian, the collapse indicator) and `regularizers` (plain DARTS, beta-DARTS, DrNAS).

    from edgenas.darts import DARTS_V2, Genotype, SearchNetwork, EvalNetwork
"""

from edgenas.darts.architect import Architect
from edgenas.darts.eval_model import EvalNetwork, count_params
from edgenas.darts.genotypes import DARTS_V2, PRESETS, Genotype, derive_genotype
from edgenas.darts.nb201_model import NB201SearchNetwork, NB201SupernetConfig
from edgenas.darts.ops import PRIMITIVES
from edgenas.darts.regularizers import RELAXATIONS, make_relaxation
from edgenas.darts.search_model import MixedOp, SearchNetwork, SupernetConfig
from edgenas.darts.step import SearchHyper, make_optimizers, search_step

__all__ = [
    "DARTS_V2",
    "PRESETS",
    "PRIMITIVES",
    "Architect",
    "EvalNetwork",
    "Genotype",
    "MixedOp",
    "NB201SearchNetwork",
    "NB201SupernetConfig",
    "RELAXATIONS",
    "SearchHyper",
    "SearchNetwork",
    "SupernetConfig",
    "count_params",
    "derive_genotype",
    "make_optimizers",
    "make_relaxation",
    "search_step",
]
