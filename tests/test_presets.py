"""Presets reproduce the published parameter and multiply-add counts (within 3 %)."""

from __future__ import annotations

import pytest

from edgenas.spaces.mobilenet import build_network
from edgenas.spaces.presets import PRESETS
from edgenas.util.modelinfo import count_macs, count_params

# (params, MACs) at 224x224, 1000 classes: MobileNetV2 and MnasNet papers; torchvision's mnasnet1_0
# has 4,383,312 parameters.
PUBLISHED = {
    "mobilenetv2_100": (3.50e6, 300e6),
    "mnasnet_a1": (3.9e6, 312e6),
    "mnasnet_b1": (4.38e6, 315e6),
}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_preset_matches_published_counts(name):
    model = build_network(PRESETS[name], resolution=224)
    params, macs = count_params(model), count_macs(model, (1, 3, 224, 224))
    published_params, published_macs = PUBLISHED[name]
    assert abs(params / published_params - 1) < 0.03, params
    assert abs(macs / published_macs - 1) < 0.03, macs


def test_mnasnet_b1_is_torchvisions_mnasnet1_0_exactly():
    assert count_params(build_network(PRESETS["mnasnet_b1"])) == 4_383_312


def test_mnasnet_a1_squeeze_excite_uses_block_input_width():
    model = build_network(PRESETS["mnasnet_a1"])
    first_se_layer = model.stages[2][0]  # 24 -> 40 channels, expansion 3, SE 0.25
    assert first_se_layer.body.se.reduce.out_channels == int(24 * 0.25)
    assert first_se_layer.body.se.reduce.in_channels == 24 * 3
