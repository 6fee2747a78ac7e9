"""MnasNet's factorized hierarchical search space.

The network is a fixed stem, B blocks and a fixed head. Each block chooses on its own (early
blocks see larger feature maps and cost more latency, so they should be free to be cheaper):
ConvOp, kernel, squeeze-excite ratio, SkipOp, width (a multiple of the block's base width) and
number of layers (relative to the block's base). Every layer of a block repeats its choice; only
the first layer strides or widens. Base widths, repeats and strides follow MobileNetV2.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from edgenas.blocks import make_divisible
from edgenas.blocks.core import SKIP_KINDS
from edgenas.errors import UserError
from edgenas.spaces.base import Decision, SearchSpace
from edgenas.spaces.blockstrings import BlockArgs, decode_arch, encode_arch
from edgenas.spaces.mobilenet import MobileNet, NetworkConfig, build_network, check_resolution


@dataclass(frozen=True)
class BaseStage:
    """A block's base: the MobileNetV2 stage it varies around."""

    channels: int
    repeats: int
    stride: int


# MobileNetV2 1.0 stages (out channels, repeats, first stride), as in its paper.
MOBILENETV2_STAGES: tuple[BaseStage, ...] = (
    BaseStage(16, 1, 1),
    BaseStage(24, 2, 2),
    BaseStage(32, 3, 2),
    BaseStage(64, 4, 2),
    BaseStage(96, 3, 1),
    BaseStage(160, 3, 2),
    BaseStage(320, 1, 1),
)

_OP_PATTERN = re.compile(r"^(conv|dsconv|mbconv(\d+(?:\.\d+)?))$")


def op_to_block(op: str) -> tuple[str, float]:
    """('cn'|'ds'|'ir', expansion) for a ConvOp name: conv, dsconv, mbconv<expansion>."""
    match = _OP_PATTERN.match(op)
    if not match:
        raise UserError(f"unknown ConvOp '{op}'; use conv, dsconv or mbconv<expansion> (e.g. mbconv6)")
    if op == "conv":
        return "cn", 1.0
    if op == "dsconv":
        return "ds", 1.0
    return "ir", float(match.group(2))


@dataclass(frozen=True)
class MnasSpaceConfig:
    """Everything a user may narrow or widen: choice lists, base stages, input, classes."""

    ops: tuple[str, ...] = ("conv", "dsconv", "mbconv3", "mbconv6")
    kernels: tuple[int, ...] = (3, 5)
    se_ratios: tuple[float, ...] = (0.0, 0.25)
    skips: tuple[str, ...] = ("none", "identity", "pool")
    width_multipliers: tuple[float, ...] = (0.75, 1.0, 1.25)
    layer_deltas: tuple[int, ...] = (-1, 0, 1)
    base_stages: tuple[BaseStage, ...] = MOBILENETV2_STAGES
    # Widths are rounded to multiples of 4, not the usual 8: with 8, 0.75x of the 16- and
    # 24-channel base blocks rounds back to 1.0x and the choice would change nothing.
    channel_divisor: int = 4
    resolution: int = 224
    network: NetworkConfig = field(default_factory=NetworkConfig)

    def __post_init__(self) -> None:
        for op in self.ops:
            op_to_block(op)
        for skip in self.skips:
            if skip not in SKIP_KINDS:
                raise UserError(f"unknown SkipOp '{skip}'; choose from {', '.join(SKIP_KINDS)}")
        if any(k < 1 or k % 2 == 0 for k in self.kernels):
            raise UserError(f"kernels must be odd and positive, got {self.kernels}")
        if any(w <= 0 for w in self.width_multipliers):
            raise UserError("width multipliers must be positive")
        if not self.base_stages:
            raise UserError("the space needs at least one block")
        if self.resolution < 1:
            raise UserError(f"resolution must be positive, got {self.resolution}")
        for name in ("ops", "kernels", "se_ratios", "skips", "width_multipliers", "layer_deltas"):
            if not getattr(self, name):
                raise UserError(f"the choice list '{name}' is empty")


def cifar_stages(stages: Sequence[BaseStage] = MOBILENETV2_STAGES) -> tuple[BaseStage, ...]:
    """MobileNetV2's CIFAR layout: the second block keeps stride 1 (with a stride-1 stem, total 8)."""
    stages = list(stages)
    if len(stages) > 1:
        stages[1] = replace(stages[1], stride=1)
    return tuple(stages)


def config_for(resolution: int = 224, num_classes: int = 1000, in_channels: int = 3, **choices) -> MnasSpaceConfig:
    """A space for a given input: ImageNet layout at 64 px and above, CIFAR layout below."""
    small = resolution < 64
    network = NetworkConfig(
        num_classes=num_classes, in_channels=in_channels, stem_stride=1 if small else 2
    )
    stages = cifar_stages() if small else MOBILENETV2_STAGES
    choices.setdefault("base_stages", stages)
    return MnasSpaceConfig(resolution=resolution, network=network, **choices)


class MnasSpace(SearchSpace):
    """Six decisions per block (op, kernel, se, skip, width, layers), blocks in order."""

    name = "mnas"
    FIELDS = ("op", "kernel", "se", "skip", "width", "layers")

    def __init__(self, config: MnasSpaceConfig | None = None) -> None:
        self.config = config or config_for()
        check_resolution(self._widest_blocks(), self.config.network, self.config.resolution)
        decisions = []
        for i, base in enumerate(self.config.base_stages, start=1):
            decisions += [
                Decision(f"block{i}.op", self.config.ops),
                Decision(f"block{i}.kernel", self.config.kernels),
                Decision(f"block{i}.se", self.config.se_ratios),
                Decision(f"block{i}.skip", self.config.skips),
                Decision(f"block{i}.width", self.config.width_multipliers),
                Decision(f"block{i}.layers", self._layer_choices(base)),
            ]
        self._decisions = tuple(decisions)
        for i, base in enumerate(self.config.base_stages, start=1):
            widths = [self.width(base, w) for w in self.config.width_multipliers]
            if len(set(widths)) < len(widths):
                raise UserError(
                    f"block {i}: width multipliers {self.config.width_multipliers} of {base.channels} "
                    f"channels round to the same widths {widths}; use a smaller channel_divisor"
                )

    def _layer_choices(self, base: BaseStage) -> tuple[int, ...]:
        """Layer deltas that leave at least one layer (a one-layer block cannot drop to zero)."""
        valid = tuple(sorted({d for d in self.config.layer_deltas if base.repeats + d >= 1}))
        if not valid:
            raise UserError(f"no layer choice leaves a block of {base.repeats} layers non-empty")
        return valid

    def width(self, base: BaseStage, multiplier: float) -> int:
        return make_divisible(base.channels * multiplier, self.config.channel_divisor)

    def _widest_blocks(self) -> list[BlockArgs]:
        return [BlockArgs("ds", 1, 3, b.stride, b.channels) for b in self.config.base_stages]

    @property
    def decisions(self) -> tuple[Decision, ...]:
        return self._decisions

    def block_decisions(self, block: int) -> tuple[Decision, ...]:
        return self._decisions[6 * block : 6 * block + 6]

    def arch_from_indices(self, indices: Sequence[int]) -> str:
        return encode_arch(self.blocks_from_indices(indices))

    def blocks_from_indices(self, indices: Sequence[int]) -> list[BlockArgs]:
        self.check_indices(indices)
        blocks = []
        for i, base in enumerate(self.config.base_stages):
            values = [d.choices[k] for d, k in zip(self.block_decisions(i), indices[6 * i : 6 * i + 6])]
            op, kernel, se, skip, width, delta = values
            block_type, expansion = op_to_block(op)
            blocks.append(
                BlockArgs(
                    block_type=block_type,
                    repeats=base.repeats + delta,
                    kernel=kernel,
                    stride=base.stride,
                    out_channels=self.width(base, width),
                    expansion=expansion,
                    se_ratio=float(se),
                    skip=skip,
                )
            )
        return blocks

    def decode(self, arch: str) -> list[BlockArgs]:
        """The blocks of `arch` (what `build` and the latency estimator take), not checked
        against the space's choices: a trial decodes its string once, here."""
        return decode_arch(arch)

    def parse(self, arch: str) -> list[BlockArgs]:
        """The blocks of `arch`, checked to lie in this space (a UserError names the field that
        does not), in the space's own spelling."""
        return self.blocks_from_indices(self.indices_from_blocks(decode_arch(arch)))

    def indices_from_arch(self, arch: str) -> tuple[int, ...]:
        return self.indices_from_blocks(decode_arch(arch))

    def indices_from_blocks(self, blocks: Sequence[BlockArgs]) -> tuple[int, ...]:
        stages = self.config.base_stages
        if len(blocks) != len(stages):
            raise UserError(f"the mnas space has {len(stages)} blocks, the string has {len(blocks)}")
        indices: list[int] = []
        for i, (block, base) in enumerate(zip(blocks, stages)):
            decisions = self.block_decisions(i)
            where = f"block {i + 1} ('{block.encode()}')"
            if block.stride != base.stride:
                raise UserError(f"{where}: stride s{block.stride} is fixed at s{base.stride} in this space")
            op = next((o for o in self.config.ops if op_to_block(o) == (block.block_type, block.expansion)), None)
            widths = {self.width(base, w): w for w in self.config.width_multipliers}
            wanted = {
                "op": op,
                "kernel": block.kernel,
                "se": block.se_ratio,
                "skip": block.skip,
                "width": widths.get(block.out_channels),
                "layers": block.repeats - base.repeats,
            }
            shown = {
                "op": f"{block.block_type} e{block.expansion:g}",
                "kernel": f"k{block.kernel}",
                "se": f"se{block.se_ratio:g}",
                "skip": block.skip,
                "width": f"c{block.out_channels} (allowed: {', '.join(f'c{c}' for c in widths)})",
                "layers": f"r{block.repeats} (base r{base.repeats})",
            }
            for field_name, decision in zip(self.FIELDS, decisions):
                value = wanted[field_name]
                if value is None or value not in decision.choices:
                    raise UserError(f"{where}: {field_name} {shown[field_name]} is not a choice of this space")
                indices.append(decision.choices.index(value))
        return tuple(indices)

    def build(self, arch: str | Sequence[BlockArgs]) -> MobileNet:
        """The network of an architecture string, or of the blocks `parse` returned for it."""
        return build_network(arch if isinstance(arch, str) else list(arch), self.config.network,
                             self.config.resolution)

    def describe(self) -> dict:
        summary = super().describe()
        summary.update(
            resolution=self.config.resolution,
            blocks=len(self.config.base_stages),
            base_stages=[vars(b) for b in self.config.base_stages],
        )
        return summary


def make_mnas_space(
    resolution: int = 224, num_classes: int = 1000, in_channels: int = 3, **choices
) -> MnasSpace:
    return MnasSpace(config_for(resolution, num_classes, in_channels, **choices))
