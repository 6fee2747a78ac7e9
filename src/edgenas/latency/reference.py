"""The fixed reference models timed in alternation with every candidate.

A network is compared with MobileNetV2 1.0 at the same input shape (a network of the same kind
and cost, so it suffers what the candidate suffers from a busy neighbour); a single LUT layer is
compared with one fixed MBConv layer (timing a 0.1 ms layer against an 8 ms network would spend
98 % of the time on the reference). Names encode the shape, so baselines are kept per shape.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from torch import nn

from edgenas.spaces.blockstrings import BlockArgs, decode_arch
from edgenas.spaces.mobilenet import NetworkConfig, build_network, make_layer, total_stride
from edgenas.spaces.presets import PRESETS

LAYER_REFERENCE_SHAPE = (1, 32, 28, 28)
_LAYER_REFERENCE = BlockArgs("ir", 1, 3, 1, 32, expansion=6.0)


def _shape(input_shape: Sequence[int]) -> str:
    return "x".join(str(d) for d in input_shape[1:])


def network_reference(input_shape: Sequence[int]) -> tuple[str, nn.Module, tuple[int, ...]] | None:
    """MobileNetV2 1.0 for this input (stride-1 stem below 64 px, as the CIFAR layout); None if too small."""
    _, channels, height, width = input_shape
    config = NetworkConfig(in_channels=channels, stem_stride=1 if min(height, width) < 64 else 2)
    blocks = list(_mobilenetv2_blocks())
    if min(height, width) < total_stride(blocks, config):
        return None
    model = build_network(blocks, config).eval()
    return f"mobilenetv2_100@{_shape(input_shape)}", model, tuple(input_shape)


@functools.cache
def _mobilenetv2_blocks() -> tuple[BlockArgs, ...]:
    """MobileNetV2 1.0's stages, decoded once per process (every measurement builds the reference)."""
    return tuple(decode_arch(PRESETS["mobilenetv2_100"]))


def layer_reference() -> tuple[str, nn.Module, tuple[int, ...]]:
    """One MBConv layer (k3, e6, 32 channels at 28x28): the yardstick of the per-layer LUT."""
    model = make_layer(_LAYER_REFERENCE, 32, 1, NetworkConfig()).eval()
    return f"ir_k3_e6_c32@{_shape(LAYER_REFERENCE_SHAPE)}", model, LAYER_REFERENCE_SHAPE
