"""The per-layer LUT: layer keys and shapes, timing each distinct layer once, the correction."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from edgenas.latency.estimator import make_latency_estimator
from edgenas.latency.layers import network_layers
from edgenas.latency.lut import (
    FULL_CORRECTION_ARCHS,
    accuracy_report,
    fit_correction,
    space_layers,
)
from edgenas.latency.settings import DEFAULT_LAYER_PASSES, LatencySettings
from edgenas.util.modelinfo import count_params
from latency_helpers import FAST, tiny_archs, tiny_space


def test_layers_rebuild_the_network_exactly():
    space = tiny_space()
    for arch in tiny_archs(2):
        specs = network_layers(arch, space.config.network, 32)
        network = space.build(arch).eval()
        assert sum(count_params(spec.build(space.config.network)) for spec in specs) == count_params(network)
        x = torch.randn(specs[0].input_shape)
        with torch.no_grad():
            expected = network(x)
            for spec in specs:
                assert tuple(x.shape) == spec.input_shape
                x = spec.build(space.config.network).eval()(x)
        assert x.shape == expected.shape


def test_layer_keys_name_configuration_channels_and_stride():
    space = tiny_space()
    specs = network_layers("ds_r1_k3_s1_c16 ir_r2_k5_s2_e3_c24_se0.25 ds_r1_k3_s2_c32_noskip",
                           space.config.network, 32)
    keys = [spec.key for spec in specs]
    assert keys[0] == "stem_k3_s1_c32|in3" and keys[-2:] == ["head_k1_c1280|in32", "pool_fc10|in1280"]
    # A stride-2 or widening first layer cannot keep an identity skip: keyed as no skip.
    assert keys[2] == "ir_r1_k5_s2_e3_c24_se0.25_noskip|in16"
    assert keys[3] == "ir_r1_k5_s1_e3_c24_se0.25|in24" and specs[3].shape_key == "1x24x16x16"


def test_space_enumeration_covers_every_sampled_layer():
    import random

    from edgenas.spaces import get_space

    for space in (tiny_space(), get_space("mnas", resolution=64)):
        every = {(s.key, s.shape_key) for s in space_layers(space)}
        rng = random.Random(5)
        for _ in range(30):
            arch = space.sample(rng)
            layers = network_layers(arch, space.config.network, space.config.resolution)
            assert {(s.key, s.shape_key) for s in layers} <= every


def test_accuracy_report_on_known_numbers():
    report = accuracy_report([10.0, 20.0, 30.0, 40.0], [10.4, 21.5, 29.0, 48.0])
    assert report["within_5pct"] == 0.5 and report["within_10pct"] == 0.75
    assert report["kendall_tau"] == pytest.approx(1.0) and report["n"] == 4
    assert report["rmse_ms"] == pytest.approx(((0.16 + 2.25 + 1 + 64) / 4) ** 0.5)


def test_lut_times_layers_once_calibrates_and_predicts(tmp_path):
    space = tiny_space()
    estimator = make_latency_estimator(space, LatencySettings(mode="lut", cache=str(tmp_path / "lat.sqlite"),
                                                              protocol=FAST, calibration_archs=2))
    try:
        lut = estimator.lut  # calibrates: 2 networks measured end to end, their layers timed
        assert lut.correction["n"] == 2 and lut.correction["a"] > 0 and len(lut) >= 5
        arch = tiny_archs(1, seed=11)[0]
        prediction = estimator.latency(arch)
        assert prediction.source == "lut" and prediction.runs == 0 and prediction.latency_ms > 0
        entries = len(lut)
        assert lut.missing(lut.layers(arch)) == []  # its layers were timed ...
        estimator.latency(arch)
        assert len(lut) == entries  # ... and never again
        assert estimator.cache.count("lut") == entries
        # Layers were timed in passes (as a network runs them), and the LUT's key says so.
        assert lut.where.setting.endswith("timing=passes")
        stored = estimator.cache._db.execute("SELECT latency_ms, data FROM lut").fetchall()
        assert all("in passes" in json.loads(data)["where"] for _, data in stored)
        # Each layer was timed in DEFAULT_LAYER_PASSES passes (separate processes) and stored as the mean.
        for latency, data in stored:
            passes = json.loads(data)["passes_ms"]
            assert len(passes) == DEFAULT_LAYER_PASSES and latency == pytest.approx(sum(passes) / len(passes))
        report = estimator.validate(2, seed=2)
        assert report["n"] == 2 and 0.0 <= report["within_10pct"] <= 1.0 and len(report["pairs"]) == 2
        held_out = set(estimator.calibration_sample(2))
        assert not held_out & {p["arch"] for p in report["pairs"]}
        assert all(p["predicted_ms"] > 0 and p["measured_ms"] > 0 for p in report["pairs"])
    finally:
        estimator.close()


def test_layers_are_dealt_into_network_like_passes():
    from edgenas.latency.lut import network_like_order

    space = tiny_space()
    specs = space_layers(space)  # the full build's list comes dealt already
    shuffled = specs[::-1]
    ordered = network_like_order(shuffled)
    assert sorted(ordered, key=id) == sorted(specs, key=id)  # every layer, once
    for listing in (ordered, specs):
        sizes = [s.input_shape[-1] for s in listing]
        distinct = sorted(set(sizes), reverse=True)
        # The first round takes one layer of each input size, largest first.
        assert sizes[: len(distinct)] == distinct


def test_the_correction_fits_as_many_terms_as_the_networks_support():
    """`a * sum + d * act + b` from 12 networks; below that `a * sum + b`; the layer term stays 0."""
    rng = np.random.default_rng(0)
    features = np.column_stack([rng.uniform(5, 25, 30), rng.integers(15, 40, 30), rng.uniform(2, 9, 30)])
    measured = 0.9 * features[:, 0] - 0.5 * features[:, 2] + 0.3

    full = fit_correction(features[:FULL_CORRECTION_ARCHS], measured[:FULL_CORRECTION_ARCHS])
    assert [full[k] for k in ("a", "c_per_layer", "d_per_mvalue", "b")] == pytest.approx([0.9, 0.0, -0.5, 0.3])
    assert full["rmse_ms"] < 1e-9 and full["n"] == FULL_CORRECTION_ARCHS

    few = fit_correction(features[:FULL_CORRECTION_ARCHS - 1], measured[:FULL_CORRECTION_ARCHS - 1])
    assert few["c_per_layer"] == few["d_per_mvalue"] == 0.0 and few["rmse_ms"] > 0.01
    slope, intercept = np.polyfit(features[:FULL_CORRECTION_ARCHS - 1, 0], measured[:FULL_CORRECTION_ARCHS - 1], 1)
    assert (few["a"], few["b"]) == pytest.approx((slope, intercept))

    two = fit_correction(features[:2], measured[:2])
    assert two["b"] == two["c_per_layer"] == two["d_per_mvalue"] == 0.0 and two["a"] > 0
