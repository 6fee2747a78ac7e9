"""The layers of a MobileNet-style network, each keyed by its configuration and input shape.

The LUT times every distinct layer once, so it needs, without building the network: the list of
layers an architecture string makes (stem, every layer of every stage, head, pooled classifier),
the shape each one sees, and a key that is equal exactly when two layers compute the same thing.
A layer's key is its own block string (one repeat, its real stride, the skip it really has: an
identity skip that shapes forbid is no skip) plus its input channels, e.g.
`ir_r1_k5_s2_e6_c40_se0.25_noskip|in24`; the input shape is kept beside it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from edgenas.blocks import ConvBnAct
from edgenas.spaces.blockstrings import BlockArgs, decode_arch
from edgenas.spaces.mobilenet import NetworkConfig, make_layer, walk_layers


def conv_size(size: int, stride: int) -> int:
    """Output size of a 'same'-padded odd-kernel conv or pool at `stride`: ceil(size / stride)."""
    return (size - 1) // stride + 1


@dataclass(frozen=True)
class LayerSpec:
    """One layer to time: what it is (`kind`, `args`), its input shape, and its key."""

    kind: str  # "stem", "layer", "head" or "classifier"
    in_channels: int
    out_channels: int
    input_shape: tuple[int, int, int, int]
    args: BlockArgs | None = None

    @property
    def key(self) -> str:
        if self.kind == "layer":
            assert self.args is not None
            return f"{self.args.encode()}|in{self.in_channels}"
        if self.kind == "stem":
            return f"stem_k3_s{self.args.stride if self.args else 1}_c{self.out_channels}|in{self.in_channels}"
        if self.kind == "head":
            return f"head_k1_c{self.out_channels}|in{self.in_channels}"
        return f"pool_fc{self.out_channels}|in{self.in_channels}"

    @property
    def shape_key(self) -> str:
        return "x".join(str(d) for d in self.input_shape)

    def build(self, config: NetworkConfig) -> nn.Module:
        """The module, made by the same calls the network builder makes."""
        if self.kind == "stem":
            stride = self.args.stride if self.args else 1
            return ConvBnAct(self.in_channels, self.out_channels, 3, stride, act=config.act, norm=config.norm)
        if self.kind == "layer":
            assert self.args is not None
            return make_layer(self.args, self.in_channels, self.args.stride, config)
        if self.kind == "head":
            return ConvBnAct(self.in_channels, self.out_channels, 1, act=config.act, norm=config.norm)
        return PooledClassifier(nn.Linear(self.in_channels, self.out_channels))


class PooledClassifier(nn.Module):
    """The network's tail as timed alone: global average pool then the linear classifier."""

    def __init__(self, classifier: nn.Linear) -> None:
        super().__init__()
        self.classifier = classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(x.mean((2, 3)))


def network_layers(arch: str | list[BlockArgs], config: NetworkConfig, resolution: int) -> list[LayerSpec]:
    """Every layer of the network `arch` at `resolution`, in order, with the shape it receives
    (the builder's own walk over the stages, `walk_layers`, plus the sizes it leaves implicit)."""
    blocks = decode_arch(arch) if isinstance(arch, str) else list(arch)
    size = resolution
    stem = BlockArgs("cn", 1, 3, config.stem_stride, config.stem_channels)
    layers = [LayerSpec("stem", config.in_channels, config.stem_channels,
                        (1, config.in_channels, size, size), stem)]
    size = conv_size(size, config.stem_stride)
    channels = config.stem_channels
    for layer in walk_layers(blocks, config):
        channels = layer.in_channels
        layers.append(LayerSpec("layer", channels, layer.args.out_channels, (1, channels, size, size), layer.args))
        size = conv_size(size, layer.args.stride)
        channels = layer.args.out_channels
    layers.append(LayerSpec("head", channels, config.head_channels, (1, channels, size, size)))
    layers.append(LayerSpec("classifier", config.head_channels, config.num_classes,
                            (1, config.head_channels, size, size)))
    return layers
