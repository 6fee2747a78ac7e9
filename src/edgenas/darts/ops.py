"""DARTS' eight candidate operations, built from the shared blocks.

Why a table of factories: the supernet builds every op on every edge, the evaluation network one
op per edge, and both must build the same thing from the same name. The blocks themselves live
in `edgenas.blocks` (no second depthwise conv here): a separable conv is two pre-activation
`DepthwiseSeparable` halves, a dilated conv is one with dilation 2, pools are `PoolBN`, the
skip is an identity (or a `FactorizedReduce` when the cell halves the resolution), and `none`
is `Zero`.

The supernet's fast way of running these ops (ReLU once per edge, dilated convs on pixel phases,
the mixture weight folded into BN) lives in `edgenas.darts.fused`; this module is only the table.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from edgenas.blocks import DepthwiseSeparable, FactorizedReduce, NormSpec, PoolBN, Zero
from edgenas.blocks.core import CELL_NORM
from edgenas.errors import UserError

# The order of the original DARTS code; alpha's columns follow it.
PRIMITIVES: tuple[str, ...] = (
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
)

# Search-time BN: no affine parameters (DARTS: a learnable scale would let the network rescale an
# op's output and confound alpha, which is what weighs the ops); PyTorch's default momentum/eps.
SEARCH_NORM = NormSpec(momentum=0.1, eps=1e-5, affine=False)
# Evaluation-network BN: affine, same momentum/eps.
EVAL_NORM = CELL_NORM


class SepConv(nn.Sequential):
    """DARTS' separable conv: (ReLU, depthwise k x k, pointwise, BN) twice; only the first strides."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, norm: NormSpec) -> None:
        super().__init__(
            DepthwiseSeparable(c_in, c_in, kernel, stride, preact=True, norm=norm),
            DepthwiseSeparable(c_in, c_out, kernel, 1, preact=True, norm=norm),
        )


def _dil_conv(kernel: int) -> Callable[[int, int, NormSpec], nn.Module]:
    return lambda c, stride, norm: DepthwiseSeparable(
        c, c, kernel, stride, dilation=2, preact=True, norm=norm
    )


def _skip(c: int, stride: int, norm: NormSpec) -> nn.Module:
    return nn.Identity() if stride == 1 else FactorizedReduce(c, c, norm)


def _pool(kind: str, search_bn: bool) -> Callable[[int, int, NormSpec], nn.Module]:
    # During search DARTS follows each pool by a (non-affine) BN so that its scale is comparable
    # with the conv ops' outputs; the evaluation network uses the bare pool.
    return lambda c, stride, norm: PoolBN(kind, c, stride, norm if search_bn else None)


OpFactory = Callable[[int, int, NormSpec], nn.Module]


def _table(search: bool) -> dict[str, OpFactory]:
    return {
        "none": lambda c, stride, norm: Zero(stride),
        "max_pool_3x3": _pool("max", search),
        "avg_pool_3x3": _pool("avg", search),
        "skip_connect": _skip,
        "sep_conv_3x3": lambda c, stride, norm: SepConv(c, c, 3, stride, norm),
        "sep_conv_5x5": lambda c, stride, norm: SepConv(c, c, 5, stride, norm),
        "dil_conv_3x3": _dil_conv(3),
        "dil_conv_5x5": _dil_conv(5),
    }


_SEARCH_OPS = _table(search=True)
_EVAL_OPS = _table(search=False)


def check_op(name: str) -> str:
    """`name` if it is a DARTS op, else a UserError listing the ops."""
    if name not in _SEARCH_OPS:
        raise UserError(f"unknown DARTS op '{name}'; choose one of {', '.join(PRIMITIVES)}")
    return name


def make_op(name: str, channels: int, stride: int, *, search: bool) -> nn.Module:
    """The op `name` on `channels` channels; `search` picks the supernet's variant (BN not affine,
    pools with BN) over the evaluation network's (affine BN, bare pools)."""
    check_op(name)
    if search:
        return _SEARCH_OPS[name](channels, stride, SEARCH_NORM)
    return _EVAL_OPS[name](channels, stride, EVAL_NORM)
