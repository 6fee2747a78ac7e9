"""Block strings: the notation of the TensorFlow MnasNet code and timm, decoded and encoded.

A network is a list of stages; a stage is one short token group such as
`ir_r3_k5_s2_e3_c40_se0.25`: block type (`ir` inverted bottleneck, `ds` depthwise separable,
`cn` regular conv), then `r` repeats, `k` kernel, `s` stride of the first layer, `e` expansion
(`ir` only), `c` output channels, `se` squeeze-excite ratio, and the skip: none written for the
default identity residual, `_noskip` for none, `_pool` for MnasNet's pooling skip. A whole
architecture is its stages joined by single spaces. Reading the string is reading the network.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from edgenas.errors import UserError

BLOCK_TYPES = ("cn", "ds", "ir")
_OPTION = re.compile(r"^(r|k|s|e|c|se)(\d+(?:\.\d+)?)$")


@dataclass(frozen=True)
class BlockArgs:
    """One stage of a mobile network; every layer repeats it, the first alone strides and widens."""

    block_type: str
    repeats: int
    kernel: int
    stride: int
    out_channels: int
    expansion: float = 1.0
    se_ratio: float = 0.0
    skip: str = "identity"

    def encode(self) -> str:
        parts = [self.block_type, f"r{self.repeats}", f"k{self.kernel}", f"s{self.stride}"]
        if self.block_type == "ir":
            parts.append(f"e{_number(self.expansion)}")
        parts.append(f"c{self.out_channels}")
        if self.se_ratio > 0:
            parts.append(f"se{_number(self.se_ratio)}")
        if self.skip == "none":
            parts.append("noskip")
        elif self.skip == "pool":
            parts.append("pool")
        return "_".join(parts)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def decode_block(text: str, position: int = 1) -> BlockArgs:
    """Parse one token group; errors name the stage (1-based `position`) and the field."""
    where = f"stage {position} ('{text}')"
    tokens = text.split("_")
    block_type = tokens[0]
    if block_type not in BLOCK_TYPES:
        raise UserError(
            f"{where}: unknown block type '{block_type}'; use one of {', '.join(BLOCK_TYPES)} "
            "(e.g. ir_r2_k3_s2_e6_c24)"
        )
    values: dict[str, float] = {}
    skip = "identity"
    for token in tokens[1:]:
        if token in ("noskip", "pool"):
            skip = "none" if token == "noskip" else "pool"
            continue
        match = _OPTION.match(token)
        if not match:
            raise UserError(
                f"{where}: cannot read field '{token}'; fields are r<repeats> k<kernel> s<stride> "
                "e<expansion> c<channels> se<ratio>, noskip, pool"
            )
        key, number = match.group(1), float(match.group(2))
        if key in values:
            raise UserError(f"{where}: field '{key}' is given twice")
        values[key] = number
    for required in ("r", "k", "s", "c"):
        if required not in values:
            raise UserError(f"{where}: missing field '{required}' (e.g. ir_r2_k3_s2_e6_c24)")
    for key in ("r", "k", "s", "c"):
        if not values[key].is_integer() or values[key] < 1:
            raise UserError(f"{where}: field '{key}' must be a positive integer")
    if int(values["k"]) % 2 == 0:
        raise UserError(f"{where}: kernel k{int(values['k'])} must be odd")
    expansion = values.get("e", 1.0)
    if block_type == "ir":
        if "e" not in values:
            raise UserError(f"{where}: an 'ir' block needs its expansion, e.g. e6")
        if expansion <= 0:
            raise UserError(f"{where}: expansion must be positive")
    elif expansion != 1.0:
        raise UserError(f"{where}: only 'ir' blocks take an expansion other than e1")
    se_ratio = values.get("se", 0.0)
    if not 0 <= se_ratio <= 1:
        raise UserError(f"{where}: se ratio must be in [0, 1]")
    return BlockArgs(
        block_type=block_type,
        repeats=int(values["r"]),
        kernel=int(values["k"]),
        stride=int(values["s"]),
        out_channels=int(values["c"]),
        expansion=expansion,
        se_ratio=se_ratio,
        skip=skip,
    )


def decode_arch(text: str) -> list[BlockArgs]:
    """Parse an architecture string (stages separated by whitespace)."""
    stages = text.split()
    if not stages:
        raise UserError("empty architecture string; give stages such as 'ds_r1_k3_s1_c16 ir_r2_k3_s2_e6_c24'")
    return [decode_block(stage, i + 1) for i, stage in enumerate(stages)]


def encode_arch(blocks: list[BlockArgs]) -> str:
    return " ".join(block.encode() for block in blocks)
