"""Block strings in the TF MnasNet / timm notation: decoding, encoding and clear errors."""

from __future__ import annotations

import pytest

from edgenas.errors import UserError
from edgenas.spaces.blockstrings import BlockArgs, decode_arch, decode_block, encode_arch


def test_decodes_timm_notation():
    block = decode_block("ir_r3_k5_s2_e3_c40_se0.25")
    assert block == BlockArgs("ir", repeats=3, kernel=5, stride=2, out_channels=40, expansion=3.0, se_ratio=0.25)
    assert decode_block("ds_r1_k3_s1_c16_noskip").skip == "none"
    assert decode_block("cn_r2_k5_s1_c32_pool").skip == "pool"
    assert decode_block("ds_r1_k3_s1_e1_c16").expansion == 1.0  # timm writes e1 on ds blocks


@pytest.mark.parametrize(
    "text",
    ["ir_r3_k5_s2_e3_c40_se0.25", "ds_r1_k3_s1_c16_noskip", "cn_r2_k5_s1_c32_se0.25_pool", "ir_r1_k3_s1_e2.5_c8"],
)
def test_encode_is_inverse_of_decode(text):
    assert decode_block(text).encode() == text
    assert encode_arch(decode_arch(f"{text} {text}")) == f"{text} {text}"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("xx_r1_k3_s1_c16", r"stage 1 .*unknown block type 'xx'"),
        ("ir_r1_k3_s1_c16", r"needs its expansion"),
        ("ir_r1_k3_s1_e6", r"missing field 'c'"),
        ("ir_r1_k4_s1_e6_c16", r"kernel k4 must be odd"),
        ("ir_r1_k3_s1_e6_c16_zz9", r"cannot read field 'zz9'"),
        ("ir_r0_k3_s1_e6_c16", r"'r' must be a positive integer"),
        ("ds_r1_k3_s1_e6_c16", r"only 'ir' blocks take an expansion"),
        ("ir_r1_k3_s1_e6_c16_se2", r"se ratio must be in"),
        ("ir_r1_r2_k3_s1_e6_c16", r"'r' is given twice"),
    ],
)
def test_malformed_block_names_the_field(text, message):
    with pytest.raises(UserError, match=message):
        decode_block(text)


def test_error_names_the_stage_position():
    with pytest.raises(UserError, match=r"stage 2 "):
        decode_arch("ds_r1_k3_s1_c16 ir_r1_k3_s1_c16")
    with pytest.raises(UserError, match="empty architecture"):
        decode_arch("   ")
