"""The supernet's fused fast path: DARTS' ops run the same math with less work.

Why a module of its own: `ops` is the paper's op table (what each op *is*); this is how the
supernet's mixed op *runs* those ops cheaply, and nothing else needs it. Every helper here
computes exactly what the plain ops of `edgenas.darts.ops` compute, only reorganised (the tests
compare the fast supernet with the op-by-op reference in float64: loss, every gradient, BN
running statistics; `SearchNetwork(fast=False)` keeps the reference path):

- ReLU once per edge: every conv op of an edge starts with ReLU of the *same* input, so the
  mixed op computes ReLU(x) once and feeds it to the conv ops past their own first ReLU
  (`starts_with_relu`, `forward_after_relu`; DARTS' four, NAS-Bench-201's two ReLU-conv-BN);
- the mixture weight folded into each op's last (non-affine) BN as its weight, instead of a
  separate product (`scaled_batch_norm`, `pool_forward`);
- dilated convs as undilated convs on pixel phases (`dilation_of`, `phase_split`, `phase_merge`,
  `phases_apply`, `dilated_on_phases`), because oneDNN's dilated depthwise kernels are slow.
"""

from __future__ import annotations

import torch
from torch import nn

from edgenas.blocks import ConvBnAct, DepthwiseSeparable, PoolBN
from edgenas.darts.ops import SepConv


def _is_relu_conv_bn(op: nn.Module) -> bool:
    """NAS-Bench-201's `nor_conv_kxk`: `ConvBnAct(preact=True)`, i.e. ReLU, conv, BN."""
    return (isinstance(op, ConvBnAct) and len(op) == 3 and isinstance(op[0], nn.ReLU)
            and isinstance(op[1], nn.Conv2d) and isinstance(op[2], nn.BatchNorm2d))


def starts_with_relu(op: nn.Module) -> bool:
    """Whether the op's first step is ReLU(x), so that it can take a shared ReLU(x)."""
    if isinstance(op, SepConv) or _is_relu_conv_bn(op):
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
    if _is_relu_conv_bn(op):
        return scaled_batch_norm(op[2], op[1](r), scale)
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
