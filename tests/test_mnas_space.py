"""The MnasNet factorized hierarchical space: codec, sampling, building, and that choices matter."""

from __future__ import annotations

import random

import pytest
import torch

from edgenas.errors import UserError
from edgenas.spaces import get_space
from edgenas.spaces.blockstrings import decode_arch, encode_arch
from edgenas.spaces.mnas import BaseStage, MnasSpace, MnasSpaceConfig, config_for


@pytest.fixture(scope="module")
def cifar_space() -> MnasSpace:
    return get_space("mnas", resolution=32, num_classes=10)


def test_space_exposes_six_ordered_decisions_per_block(cifar_space):
    names = [d.name for d in cifar_space.decisions]
    assert len(names) == 7 * 6
    assert names[:6] == [f"block1.{f}" for f in ("op", "kernel", "se", "skip", "width", "layers")]
    assert cifar_space.decisions[0].choices == ("conv", "dsconv", "mbconv3", "mbconv6")
    # One-layer base blocks cannot drop to zero layers, so they offer only {0, +1}.
    assert cifar_space.decisions[5].choices == (0, 1)
    assert cifar_space.decisions[11].choices == (-1, 0, 1)
    expected = 1
    for d in cifar_space.decisions:
        expected *= len(d.choices)
    assert cifar_space.size() == expected


def test_round_trip_of_1000_sampled_architectures(cifar_space):
    rng = random.Random(1234)
    seen = set()
    for _ in range(1000):
        indices = cifar_space.sample_indices(rng)
        arch = cifar_space.arch_from_indices(indices)
        assert cifar_space.indices_from_arch(arch) == indices
        assert encode_arch(decode_arch(arch)) == arch
        seen.add(arch)
    assert len(seen) > 990  # the space is ~1e18 large: repeats would mean a broken sampler


@pytest.mark.parametrize("resolution", [32, 224])
def test_sampled_architectures_build_and_run(resolution):
    space = get_space("mnas", resolution=resolution, num_classes=7)
    rng = random.Random(resolution)
    for _ in range(3 if resolution == 32 else 2):
        model = space.build(space.sample(rng)).eval()
        with torch.no_grad():
            out = model(torch.randn(2, 3, resolution, resolution))
        assert out.shape == (2, 7)
        assert torch.isfinite(out).all()


def test_every_choice_of_every_decision_changes_the_model(cifar_space):
    # Base: every block at its most layers, so identity skips exist wherever a block repeats.
    base = [0] * len(cifar_space.decisions)
    for i, decision in enumerate(cifar_space.decisions):
        if decision.name.endswith(".layers"):
            base[i] = len(decision.choices) - 1
    for i, decision in enumerate(cifar_space.decisions):
        structures = set()
        for choice in range(len(decision.choices)):
            indices = list(base)
            indices[i] = choice
            structures.add(repr(cifar_space.build(cifar_space.arch_from_indices(indices))))
        assert len(structures) == len(decision.choices), decision.name


def test_first_layer_alone_strides_and_widens(cifar_space):
    arch = "ds_r1_k3_s1_c16 ir_r3_k5_s1_e6_c24 ir_r3_k3_s2_e3_c32_pool ir_r4_k3_s2_e6_c64 " \
           "ir_r3_k3_s1_e6_c96 ir_r3_k3_s2_e6_c160 ir_r1_k3_s1_e6_c320"
    model = cifar_space.build(arch)
    stage = model.stages[2]
    assert stage[0].body.depthwise[0].stride == (2, 2)
    assert all(layer.body.depthwise[0].stride == (1, 1) for layer in stage[1:])
    assert stage[0].body.project[0].out_channels == 32
    assert all(layer.body.expand[0].in_channels == 32 for layer in stage[1:])
    # Pooling skips exist on every layer, including the one that strides and widens.
    assert all(layer.skip is not None for layer in stage)
    # Identity skips only where the shapes allow it.
    assert model.stages[1][0].skip is None and model.stages[1][1].skip is not None


def test_inexpressible_string_names_block_and_field(cifar_space):
    arch = cifar_space.sample(random.Random(0)).split()
    arch[2] = "ir_r3_k7_s2_e6_c32"
    with pytest.raises(UserError, match=r"block 3 .*kernel k7"):
        cifar_space.indices_from_arch(" ".join(arch))
    arch[2] = "ir_r3_k3_s1_e6_c32"
    with pytest.raises(UserError, match=r"block 3 .*stride"):
        cifar_space.indices_from_arch(" ".join(arch))
    arch[2] = "ir_r3_k3_s2_e6_c33"
    with pytest.raises(UserError, match=r"block 3 .*width c33"):
        cifar_space.indices_from_arch(" ".join(arch))
    with pytest.raises(UserError, match="has 7 blocks"):
        cifar_space.indices_from_arch("ds_r1_k3_s1_c16")


def test_space_is_configurable():
    space = MnasSpace(
        config_for(
            resolution=64,
            num_classes=3,
            ops=("mbconv6",),
            kernels=(3,),
            base_stages=(BaseStage(16, 1, 1), BaseStage(24, 2, 2)),
        )
    )
    assert len(space.decisions) == 12
    arch = space.sample(random.Random(0))
    assert all(stage.startswith("ir_") and "_k3_" in stage for stage in arch.split())
    out = space.build(arch)(torch.randn(1, 3, 64, 64))
    assert out.shape == (1, 3)


def test_resolution_the_stem_cannot_reduce_is_refused():
    with pytest.raises(UserError, match="total stride 32"):
        MnasSpace(MnasSpaceConfig(resolution=16))  # ImageNet layout at 16 px
    assert MnasSpace(config_for(resolution=16)).config.network.stem_stride == 1
