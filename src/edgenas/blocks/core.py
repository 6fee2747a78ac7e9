"""Convolutional building blocks.

Why one module: MnasNet, MobileNetV2, DARTS and NAS-Bench-201 all use the same few pieces
(conv + BN + activation, depthwise separable conv, inverted bottleneck, squeeze-excite, skips).
Each is written here once; spaces compose them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from edgenas.errors import UserError

_ACTIVATIONS = {
    "relu": lambda: nn.ReLU(inplace=False),
    "relu6": lambda: nn.ReLU6(inplace=False),
    "swish": nn.SiLU,
    "hswish": nn.Hardswish,
}


def make_activation(name: str) -> nn.Module:
    """An activation module by name (relu, relu6, swish, hswish)."""
    try:
        return _ACTIVATIONS[name]()
    except KeyError:
        raise UserError(
            f"unknown activation '{name}'; choose one of {', '.join(sorted(_ACTIVATIONS))}"
        ) from None


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round channels to a multiple of `divisor`, never dropping below 90 % of `value`.

    Mobile runtimes vectorise over channel groups of 8; the 90 % floor is the MobileNet rule.
    """
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


@dataclass(frozen=True)
class NormSpec:
    """BatchNorm settings. Defaults follow MnasNet: TF momentum 0.99 (PyTorch 0.01), eps 1e-3."""

    momentum: float = 0.01
    eps: float = 1e-3
    affine: bool = True

    def make(self, channels: int) -> nn.BatchNorm2d:
        return nn.BatchNorm2d(channels, eps=self.eps, momentum=self.momentum, affine=self.affine)


MOBILE_NORM = NormSpec()
CELL_NORM = NormSpec(momentum=0.1, eps=1e-5, affine=True)


class ConvBnAct(nn.Sequential):
    """A convolution with its BatchNorm and activation.

    `preact=True` gives the cell-space order (activation -> conv -> BN) used by DARTS and
    NAS-Bench-201; the default is the mobile order (conv -> BN -> activation). `act=None` leaves
    the activation out (linear bottlenecks), `norm=None` leaves BN out.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 1,
        stride: int = 1,
        groups: int = 1,
        dilation: int = 1,
        act: str | None = "relu",
        norm: NormSpec | None = MOBILE_NORM,
        preact: bool = False,
        bias: bool | None = None,
    ) -> None:
        padding = dilation * (kernel_size - 1) // 2
        conv = nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=padding,
            dilation=dilation,
            groups=groups,
            bias=(norm is None) if bias is None else bias,  # default: a bias only where no BN follows
        )
        layers: list[nn.Module] = [conv]
        if norm is not None:
            layers.append(norm.make(out_channels))
        if act is not None:
            if preact:
                layers.insert(0, make_activation(act))
            else:
                layers.append(make_activation(act))
        super().__init__(*layers)
        self.out_channels = out_channels


class SqueezeExcite(nn.Module):
    """Channel attention: global pool, squeeze to `reduced` channels, excite with a sigmoid gate."""

    def __init__(self, channels: int, reduced: int, act: str = "relu") -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, reduced, 1)
        self.act = make_activation(act)
        self.expand = nn.Conv2d(reduced, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = x.mean((2, 3), keepdim=True)
        scale = self.expand(self.act(self.reduce(scale)))
        return x * torch.sigmoid(scale)


def _se_or_none(channels: int, block_in: int, se_ratio: float, act: str) -> nn.Module | None:
    """SE squeezes to max(1, int(block input channels x ratio)), as in MnasNet and EfficientNet."""
    if se_ratio <= 0:
        return None
    return SqueezeExcite(channels, max(1, int(block_in * se_ratio)), act)


class RegularConv(nn.Module):
    """MnasNet's 'regular conv' op: one k x k convolution, BN, activation, optional SE."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        se_ratio: float = 0.0,
        act: str = "relu",
        norm: NormSpec = MOBILE_NORM,
    ) -> None:
        super().__init__()
        self.conv = ConvBnAct(in_channels, out_channels, kernel_size, stride, act=act, norm=norm)
        self.se = _se_or_none(out_channels, in_channels, se_ratio, act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        return self.se(x) if self.se is not None else x


class DepthwiseSeparable(nn.Module):
    """Depthwise k x k conv then pointwise 1x1 conv.

    Mobile order: dw -> BN -> act -> [SE] -> pw -> BN (no activation after the projection).
    Cell order (`preact=True`, DARTS' sep/dil conv half): act -> dw -> pw -> BN.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        dilation: int = 1,
        se_ratio: float = 0.0,
        act: str = "relu",
        norm: NormSpec = MOBILE_NORM,
        preact: bool = False,
    ) -> None:
        super().__init__()
        self.preact = make_activation(act) if preact else None
        self.depthwise = ConvBnAct(
            in_channels,
            in_channels,
            kernel_size,
            stride,
            groups=in_channels,
            dilation=dilation,
            act=None if preact else act,
            norm=None if preact else norm,
            # Pre-activation order has no BN after the depthwise conv, but no bias either: the
            # linear pointwise conv that follows absorbs any per-channel constant (DARTS has none).
            bias=False if preact else None,
        )
        self.se = _se_or_none(in_channels, in_channels, se_ratio, act)
        self.pointwise = ConvBnAct(in_channels, out_channels, 1, act=None, norm=norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.preact is not None:
            x = self.preact(x)
        x = self.depthwise(x)
        if self.se is not None:
            x = self.se(x)
        return self.pointwise(x)


class InvertedResidual(nn.Module):
    """MBConv: 1x1 expand (skipped at expansion 1), depthwise k x k, optional SE, 1x1 linear project."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        expansion: float = 6,
        se_ratio: float = 0.0,
        act: str = "relu",
        norm: NormSpec = MOBILE_NORM,
    ) -> None:
        super().__init__()
        mid = int(round(in_channels * expansion))
        self.expand = ConvBnAct(in_channels, mid, 1, act=act, norm=norm) if mid != in_channels else None
        self.depthwise = ConvBnAct(mid, mid, kernel_size, stride, groups=mid, act=act, norm=norm)
        self.se = _se_or_none(mid, in_channels, se_ratio, act)
        self.project = ConvBnAct(mid, out_channels, 1, act=None, norm=norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.expand is not None:
            x = self.expand(x)
        x = self.depthwise(x)
        if self.se is not None:
            x = self.se(x)
        return self.project(x)


class PoolSkip(nn.Module):
    """MnasNet's pooling skip: 3x3 average pool at the layer's stride, 1x1 projection if widths differ."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, norm: NormSpec = MOBILE_NORM):
        super().__init__()
        self.pool = nn.AvgPool2d(3, stride, padding=1, count_include_pad=False)
        self.project = (
            ConvBnAct(in_channels, out_channels, 1, act=None, norm=norm)
            if in_channels != out_channels
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(x)
        return self.project(x) if self.project is not None else x


SKIP_KINDS = ("none", "identity", "pool")


def effective_skip(kind: str, in_channels: int, out_channels: int, stride: int) -> str:
    """The skip a layer really has: an identity skip that the shapes forbid (a stride, a change of
    width) is no skip, as in MobileNetV2. The one home of that rule (builder and LUT keys use it)."""
    if kind == "identity" and (stride != 1 or in_channels != out_channels):
        return "none"
    return kind


def make_skip(
    kind: str, in_channels: int, out_channels: int, stride: int, norm: NormSpec = MOBILE_NORM
) -> nn.Module | None:
    """The residual path of a layer, or None.

    'identity' exists only where the shapes allow it (stride 1, same width), as in MobileNetV2;
    'pool' always exists, reshaping the input by pooling and projection.
    """
    kind = effective_skip(kind, in_channels, out_channels, stride)
    if kind == "none":
        return None
    if kind == "identity":
        return nn.Identity()
    if kind == "pool":
        return PoolSkip(in_channels, out_channels, stride, norm)
    raise UserError(f"unknown skip '{kind}'; choose one of {', '.join(SKIP_KINDS)}")


class MobileBlock(nn.Module):
    """One layer of a mobile network: a body op plus its (optional) skip path, summed."""

    def __init__(self, body: nn.Module, skip: nn.Module | None) -> None:
        super().__init__()
        self.body = body
        self.skip = skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        return out + self.skip(x) if self.skip is not None else out


class Zero(nn.Module):
    """The 'none' op of cell spaces: zeros of the output shape (strided when the cell reduces)."""

    def __init__(self, stride: int = 1) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            return x.mul(0.0)
        return x[:, :, :: self.stride, :: self.stride].mul(0.0)


class PoolBN(nn.Module):
    """3x3 max or average pooling, optionally followed by BN (DARTS adds BN during search)."""

    def __init__(self, kind: str, channels: int, stride: int = 1, norm: NormSpec | None = None):
        super().__init__()
        if kind == "max":
            self.pool: nn.Module = nn.MaxPool2d(3, stride, padding=1)
        elif kind == "avg":
            self.pool = nn.AvgPool2d(3, stride, padding=1, count_include_pad=False)
        else:
            raise UserError(f"unknown pooling '{kind}'; choose max or avg")
        self.bn = norm.make(channels) if norm is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(x)
        return self.bn(x) if self.bn is not None else x


class FactorizedReduce(nn.Module):
    """Halve resolution without losing pixels: two offset stride-2 1x1 convs, concatenated, BN."""

    def __init__(self, in_channels: int, out_channels: int, norm: NormSpec = CELL_NORM) -> None:
        super().__init__()
        if out_channels % 2:
            raise UserError(f"factorized reduce needs an even width, got {out_channels}")
        self.act = nn.ReLU(inplace=False)
        self.conv_a = nn.Conv2d(in_channels, out_channels // 2, 1, stride=2, bias=False)
        self.conv_b = nn.Conv2d(in_channels, out_channels // 2, 1, stride=2, bias=False)
        self.bn = norm.make(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(x)
        shifted = nn.functional.pad(x[:, :, 1:, 1:], (0, 1, 0, 1))
        return self.bn(torch.cat([self.conv_a(x), self.conv_b(shifted)], dim=1))
