"""The building blocks, each written once and shared by every search space.

MnasNet's blocks (regular conv, depthwise separable, inverted bottleneck with squeeze-excite), the
skip paths they can carry (identity or pooling), and the parameter-free ops that cell-based
spaces (DARTS, NAS-Bench-201) mix in. Cell spaces use the same convolutions with a pre-activation
order (ReLU -> conv -> BN), so the order is an argument rather than a second implementation.
"""

from edgenas.blocks.core import (
    ConvBnAct,
    DepthwiseSeparable,
    FactorizedReduce,
    InvertedResidual,
    MobileBlock,
    NormSpec,
    PoolBN,
    PoolSkip,
    RegularConv,
    SqueezeExcite,
    Zero,
    make_activation,
    make_divisible,
    make_skip,
)

__all__ = [
    "ConvBnAct",
    "DepthwiseSeparable",
    "FactorizedReduce",
    "InvertedResidual",
    "MobileBlock",
    "NormSpec",
    "PoolBN",
    "PoolSkip",
    "RegularConv",
    "SqueezeExcite",
    "Zero",
    "make_activation",
    "make_divisible",
    "make_skip",
]
