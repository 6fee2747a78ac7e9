"""The builder that turns decoded block strings into a mobile network (stem, stages, head)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

import torch
from torch import nn

from edgenas.blocks import (
    ConvBnAct,
    DepthwiseSeparable,
    InvertedResidual,
    MobileBlock,
    NormSpec,
    RegularConv,
    make_skip,
)
from edgenas.blocks.core import effective_skip
from edgenas.errors import UserError
from edgenas.spaces.blockstrings import BlockArgs, decode_arch


@dataclass(frozen=True)
class NetworkConfig:
    """What surrounds the searched stages: input, stem, head and classifier."""

    num_classes: int = 1000
    in_channels: int = 3
    stem_channels: int = 32
    stem_stride: int = 2
    head_channels: int = 1280
    dropout: float = 0.2
    act: str = "relu"
    norm: NormSpec = NormSpec()

    def __post_init__(self) -> None:
        if self.num_classes < 1:
            raise UserError(f"number of classes must be at least 1, got {self.num_classes}")
        if self.in_channels < 1:
            raise UserError(f"input channels must be at least 1, got {self.in_channels}")
        if self.stem_stride not in (1, 2):
            raise UserError(f"stem stride must be 1 or 2, got {self.stem_stride}")


@dataclass(frozen=True)
class Layer:
    """One layer of a network as the builder makes it: its own block arguments (one repeat, the
    stride it really has, the skip it really has), the stage it belongs to, its input channels."""

    stage: int
    args: BlockArgs
    in_channels: int


def walk_layers(blocks: Sequence[BlockArgs], config: NetworkConfig) -> Iterator[Layer]:
    """Every layer of the stages, in order: only a stage's first layer strides and widens.

    The one walk over a network's stages: `MobileNet` builds from it and the LUT lists the layers
    it times from it, so the two can never disagree on which layer a string makes.
    """
    channels = config.stem_channels
    for stage, block in enumerate(blocks):
        for index in range(block.repeats):
            stride = block.stride if index == 0 else 1
            skip = effective_skip(block.skip, channels, block.out_channels, stride)
            yield Layer(stage, replace(block, repeats=1, stride=stride, skip=skip), channels)
            channels = block.out_channels


def make_layer(args: BlockArgs, in_channels: int, stride: int, config: NetworkConfig) -> MobileBlock:
    """One layer of a stage: the block's op and its skip path."""
    out = args.out_channels
    common = dict(se_ratio=args.se_ratio, act=config.act, norm=config.norm)
    if args.block_type == "ir":
        body: nn.Module = InvertedResidual(in_channels, out, args.kernel, stride, args.expansion, **common)
    elif args.block_type == "ds":
        body = DepthwiseSeparable(in_channels, out, args.kernel, stride, **common)
    else:
        body = RegularConv(in_channels, out, args.kernel, stride, **common)
    return MobileBlock(body, make_skip(args.skip, in_channels, out, stride, config.norm))


def total_stride(blocks: list[BlockArgs], config: NetworkConfig) -> int:
    stride = config.stem_stride
    for block in blocks:
        stride *= block.stride
    return stride


class MobileNet(nn.Module):
    """Stem conv -> stages of blocks -> 1x1 head conv -> global pool -> dropout -> classifier."""

    def __init__(self, blocks: list[BlockArgs], config: NetworkConfig = NetworkConfig()) -> None:
        super().__init__()
        self.block_args = list(blocks)
        self.config = config
        self.stem = ConvBnAct(
            config.in_channels, config.stem_channels, 3, config.stem_stride, act=config.act, norm=config.norm
        )
        stages: list[list[nn.Module]] = [[] for _ in blocks]
        channels = config.stem_channels
        for layer in walk_layers(blocks, config):
            stages[layer.stage].append(make_layer(layer.args, layer.in_channels, layer.args.stride, config))
            channels = layer.args.out_channels
        self.stages = nn.Sequential(*(nn.Sequential(*layers) for layers in stages))
        self.head = ConvBnAct(channels, config.head_channels, 1, act=config.act, norm=config.norm)
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(config.head_channels, config.num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x).mean((2, 3))
        return self.classifier(self.dropout(x))


def check_resolution(blocks: list[BlockArgs], config: NetworkConfig, resolution: int) -> None:
    """Refuse inputs smaller than the network's total stride (the last stages would see < 1 pixel)."""
    stride = total_stride(blocks, config)
    if resolution < stride:
        raise UserError(
            f"resolution {resolution} is smaller than the network's total stride {stride}; "
            f"use a resolution of at least {stride} or fewer stride-2 stages"
        )


def build_network(
    arch: str | list[BlockArgs], config: NetworkConfig = NetworkConfig(), resolution: int | None = None
) -> MobileNet:
    """Build a network from an architecture string (or decoded stages), checking the resolution."""
    blocks = decode_arch(arch) if isinstance(arch, str) else list(arch)
    if resolution is not None:
        check_resolution(blocks, config, resolution)
    return MobileNet(blocks, config)
