"""DARTS' eight candidate operations, built from the shared blocks.

Why a table of factories: the supernet builds every op on every edge, the evaluation network one
op per edge, and both must build the same thing from the same name. The blocks themselves live
in `edgenas.blocks` (no second depthwise conv here): a separable conv is two pre-activation
`DepthwiseSeparable` halves, a dilated conv is one with dilation 2, pools are `PoolBN`, the
skip is an identity (or a `FactorizedReduce` when the cell halves the resolution), and `none`
is `Zero`.

`forward_after_relu` is what makes the supernet cheaper without changing its math: every conv
op of an edge starts with ReLU of the *same* input, so the mixed op
computes ReLU(x) once and feeds it to the four conv ops past their own first ReLU.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
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


def starts_with_relu(op: nn.Module) -> bool:
    """Whether the op's first step is ReLU(x), so that it can take a shared ReLU(x)."""
    if isinstance(op, SepConv):
        return True
    return isinstance(op, DepthwiseSeparable) and op.preact is not None and op.se is None


def scaled_batch_norm(bn: nn.BatchNorm2d, z: torch.Tensor, scale: torch.Tensor | None) -> torch.Tensor:
    """`bn(z) * scale` for a BN without affine, computed as one BN whose weight is `scale`.

    The same numbers, but cheaper: a separate product would keep BN's output alive until the
    backward pass (to give `scale` its gradient) and cost a pass over the tensor each way; as BN's
    weight, `scale` gets its gradient from the statistics BN keeps anyway. Running statistics are
    updated exactly as `bn(z)` updates them (they do not depend on the weight).
    """
    if scale is None:
        return bn(z)
    if bn.affine:
        return bn(z) * scale
    factor = 0.0 if bn.momentum is None else bn.momentum
    if bn.training and bn.track_running_stats:
        bn.num_batches_tracked.add_(1)
        if bn.momentum is None:
            factor = 1.0 / float(bn.num_batches_tracked)
    use_batch = bn.training or bn.running_mean is None
    # A materialised weight: torch 2.13's CPU channels-last BN backward misreads a stride-0
    # (expanded) weight and returns wrong input gradients.
    weight = scale.reshape(1).repeat(z.shape[1])
    return nn.functional.batch_norm(
        z, bn.running_mean, bn.running_var, weight, None, use_batch, factor, bn.eps
    )


def _separable_after_relu(
    block: DepthwiseSeparable, r: torch.Tensor, scale: torch.Tensor | None = None
) -> torch.Tensor:
    conv, bn = block.pointwise[0], block.pointwise[1]
    return scaled_batch_norm(bn, conv(block.depthwise(r)), scale)


def forward_after_relu(op: nn.Module, r: torch.Tensor, scale: torch.Tensor | None = None) -> torch.Tensor:
    """`op(x) * scale` (or `op(x)` without a scale) given `r = ReLU(x)`, for ops where
    `starts_with_relu(op)`: the same arithmetic, without the op's own first ReLU.

    Inside a separable conv the ReLU between the two halves runs in place on the first half's BN
    output: a training-mode BN does not keep its output for backward, so the in-place ReLU saves
    one activation-sized tensor per op (autograd would refuse if it were needed).
    """
    if isinstance(op, SepConv):
        first, second = op[0], op[1]
        hidden = _separable_after_relu(first, r)
        return _separable_after_relu(second, torch.relu_(hidden), scale)
    if isinstance(op, DepthwiseSeparable):
        return _separable_after_relu(op, r, scale)
    raise TypeError(f"{type(op).__name__} does not start with ReLU")


def pool_forward(op: PoolBN, x: torch.Tensor, scale: torch.Tensor | None = None) -> torch.Tensor:
    """`op(x) * scale` for a pooling op (its search-time BN carries the scale)."""
    pooled = op.pool(x)
    if op.bn is None:
        return pooled if scale is None else pooled * scale
    return scaled_batch_norm(op.bn, pooled, scale)


# --- Dilated convs as plain convs on pixel phases ---------------------------------------------
# A k x k depthwise conv with dilation d (padding d(k-1)/2, stride 1) only ever mixes pixels whose
# row and column agree modulo d. Splitting the input into its d*d phases (every d-th row and
# column, stacked along the batch) turns it into the same k x k conv *without* dilation on each
# phase: the very same products and sums. On CPU this matters: oneDNN has fast depthwise kernels
# for undilated convs only, and runs dilated ones (above all their backward) on a slow generic
# path. The pointwise conv and BN that follow see the same pixels (BN's per-channel statistics
# are over all of them, in any order), so the whole op runs on phases and is merged back once.
# With stride d (reduction cells) only the phase (0, 0) is ever read, so no merge is needed.


def dilation_of(block: nn.Module) -> int:
    """The dilation of a pre-activation depthwise-separable op (1 for anything else)."""
    if not isinstance(block, DepthwiseSeparable) or block.preact is None or block.se is not None:
        return 1
    conv = block.depthwise[0]
    d, k = conv.dilation[0], conv.kernel_size[0]
    if conv.dilation != (d, d) or conv.padding != (d * (k - 1) // 2,) * 2:
        return 1
    return d


def phase_split(x: torch.Tensor, d: int) -> torch.Tensor:
    """[N, C, H, W] -> [d*d*N, C, H/d, W/d]: phase (a, b) holds rows a::d and columns b::d.

    Built through the NHWC view so a channels-last input gives a channels-last result.
    """
    n, c, h, w = x.shape
    nhwc = x.permute(0, 2, 3, 1).reshape(n, h // d, d, w // d, d, c)
    phases = nhwc.permute(2, 4, 0, 1, 3, 5).reshape(d * d * n, h // d, w // d, c)
    return phases.permute(0, 3, 1, 2)


def phase_merge(y: torch.Tensor, d: int) -> torch.Tensor:
    """The inverse of `phase_split`."""
    dn, c, h, w = y.shape
    n = dn // (d * d)
    nhwc = y.permute(0, 2, 3, 1).reshape(d, d, n, h, w, c)
    return nhwc.permute(2, 3, 0, 4, 1, 5).reshape(n, h * d, w * d, c).permute(0, 3, 1, 2)


def phases_apply(x: torch.Tensor, d: int) -> bool:
    """Whether a stride-1 dilated conv on `x` can run on phases (the sides divide by d)."""
    return x.shape[2] % d == 0 and x.shape[3] % d == 0


def dilated_on_phases(
    block: DepthwiseSeparable, phases: torch.Tensor, scale: torch.Tensor | None = None
) -> torch.Tensor:
    """The dilated op (times `scale`) past its ReLU, on `phase_split(ReLU(x))` (stride 1; the
    result is in phase layout) or on `ReLU(x)[:, :, ::d, ::d]` (stride d; the op's output)."""
    conv = block.depthwise[0]
    k = conv.kernel_size[0]
    hidden = nn.functional.conv2d(phases, conv.weight, conv.bias, 1, (k - 1) // 2, 1, conv.groups)
    return scaled_batch_norm(block.pointwise[1], block.pointwise[0](hidden), scale)
