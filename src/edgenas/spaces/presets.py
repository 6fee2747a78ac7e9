"""Published mobile networks written as block strings, to prove the builder right.

Each preset's parameter and multiply-add counts are tested against the published figures.
"""

from __future__ import annotations

from edgenas.errors import UserError

PRESETS: dict[str, str] = {
    # MobileNetV2 1.0 (Sandler et al. 2018): all 3x3, expansion 6 after the first stage.
    "mobilenetv2_100": (
        "ir_r1_k3_s1_e1_c16 ir_r2_k3_s2_e6_c24 ir_r3_k3_s2_e6_c32 ir_r4_k3_s2_e6_c64 "
        "ir_r3_k3_s1_e6_c96 ir_r3_k3_s2_e6_c160 ir_r1_k3_s1_e6_c320"
    ),
    # MnasNet-A1 (Tan et al. 2019, Figure 7): SE in blocks 3, 5 and 6.
    "mnasnet_a1": (
        "ds_r1_k3_s1_c16_noskip ir_r2_k3_s2_e6_c24 ir_r3_k5_s2_e3_c40_se0.25 ir_r4_k3_s2_e6_c80 "
        "ir_r2_k3_s1_e6_c112_se0.25 ir_r3_k5_s2_e6_c160_se0.25 ir_r1_k3_s1_e6_c320"
    ),
    # MnasNet-B1, the layout of torchvision's mnasnet1_0 (no SE).
    "mnasnet_b1": (
        "ds_r1_k3_s1_c16_noskip ir_r3_k3_s2_e3_c24 ir_r3_k5_s2_e3_c40 ir_r3_k5_s2_e6_c80 "
        "ir_r2_k3_s1_e6_c96 ir_r4_k5_s2_e6_c192 ir_r1_k3_s1_e6_c320"
    ),
}


def preset(name: str) -> str:
    """The architecture string of a named preset."""
    try:
        return PRESETS[name]
    except KeyError:
        raise UserError(f"unknown preset '{name}'; choose one of {', '.join(sorted(PRESETS))}") from None
