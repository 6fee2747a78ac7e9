"""The per-layer LUT: layer keys and shapes, timing each distinct layer once, the correction."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from edgenas.latency.cache import LatencyCache
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


class TimedLayers:
    """Wraps a Measurer's `measure_many` (results untouched) to record what each call times, in order."""

    def __init__(self, measurer):
        self.calls: list[dict] = []
        real = measurer.measure_many

        def measure_many(entries, *args, **kwargs):
            self.calls.append({"in_passes": kwargs.get("in_passes", False),
                               "layers": [(what, "x".join(map(str, shape))) for _, shape, what in entries]})
            yield from real(entries, *args, **kwargs)

        measurer.measure_many = measure_many

    def take(self) -> list[dict]:
        calls, self.calls = self.calls, []
        return calls

    @staticmethod
    def first_passes(calls: list[dict]) -> list[tuple[str, str]]:
        """The layers timed in passes, in the order of their first pass (the later passes of a chunk
        run it reversed, as `LatencyLUT.fill` does)."""
        passes = [call["layers"] for call in calls if call["in_passes"]]
        for index in range(1, len(passes), DEFAULT_LAYER_PASSES):
            assert passes[index] == passes[index - 1][::-1]
        return [layer for chunk in passes[::DEFAULT_LAYER_PASSES] for layer in chunk]


VALIDATED = 8


def lut_space():
    """The tiny space at 48 px (stride-1 stem), 2.25x the work of 32 px. At 32 px (networks of
    0.1-0.3 ms) the share within +-10 % swung from 12 % to 75 % between runs on this shared 2-core
    machine (mean error up to 18 %); at 48 px it stayed at 62-100 %, for a few seconds more."""
    from edgenas.spaces import get_space
    from edgenas.spaces.mnas import BaseStage

    return get_space(
        "mnas", resolution=48, num_classes=10,
        base_stages=(BaseStage(16, 1, 1), BaseStage(24, 1, 2), BaseStage(32, 1, 2)),
        ops=("dsconv", "mbconv3"), kernels=(3, 5), se_ratios=(0.0, 0.25), skips=("none", "identity"),
        width_multipliers=(1.0,), layer_deltas=(0, 1),
    )


@pytest.fixture(scope="module")
def validated(tmp_path_factory):
    """A real LUT on the tiny space at 48 px: calibrated on 4 networks, then validated on 8 others, with a
    record of the order the layers were timed in. Its layers are converted by two processes at once,
    as a LiteRT build's are (ONNX Runtime alone would convert them in this process)."""
    path = tmp_path_factory.mktemp("lut") / "lat.sqlite"
    estimator = make_latency_estimator(lut_space(), LatencySettings(mode="lut", cache=str(path), protocol=FAST,
                                                                    calibration_archs=4, prepare_workers=2))
    timed = TimedLayers(estimator.measurer)
    try:
        lut = estimator.lut  # calibrates: 4 networks measured end to end, their layers timed
        calibration_calls = timed.take()
        archs = estimator.validation_sample(VALIDATED)
        missing = lut.missing(spec for arch in archs for spec in lut.layers(arch))  # network by network
        report = estimator.validate(VALIDATED)
        yield SimpleNamespace(estimator=estimator, lut=lut, report=report, archs=archs, missing=missing,
                              calibration_calls=calibration_calls, validation_calls=timed.take(), path=path)
    finally:
        estimator.close()


def stored_correction(path, lut) -> dict:
    """The correction as the cache file holds it (read back, not the object in memory)."""
    cache = LatencyCache(path)
    try:
        return cache.get_correction(lut.name, lut.where)
    finally:
        cache.close()


def keys(specs) -> list[tuple[str, str]]:
    return [(spec.key, spec.shape_key) for spec in specs]


def test_lut_times_layers_once_calibrates_and_predicts(validated):
    estimator, lut = validated.estimator, validated.lut
    assert lut.correction["n"] == 4 and lut.correction["a"] > 0 and len(lut) >= 5
    arch = tiny_archs(1, seed=11)[0]
    prediction = estimator.latency(arch)
    assert prediction.source == "lut" and prediction.runs == 0 and prediction.latency_ms > 0
    entries = len(lut)
    assert lut.missing(lut.layers(arch)) == []  # its layers were timed ...
    estimator.latency(arch)
    assert len(lut) == entries  # ... and never again
    assert estimator.cache.count("lut") == entries
    assert estimator.measurer.prepared_in_workers == entries  # every layer's file came from a worker
    # Layers were timed in passes (as a network runs them), and the LUT's key says so.
    assert lut.where.setting.endswith("timing=passes")
    stored = estimator.cache._db.execute("SELECT latency_ms, data FROM lut").fetchall()
    assert all("in passes" in json.loads(data)["where"] for _, data in stored)
    # Each layer was timed in DEFAULT_LAYER_PASSES passes (separate processes) and stored as the mean.
    for latency, data in stored:
        passes = json.loads(data)["passes_ms"]
        assert len(passes) == DEFAULT_LAYER_PASSES and latency == pytest.approx(sum(passes) / len(passes))


def test_validation_meets_floors_on_networks_the_correction_never_saw(validated):
    """On 8 networks, none of those stored with the correction, the LUT ranks and predicts.

    Observed on this shared 2-core machine (load 2-3, FAST protocol, 48 px, 8 runs): Kendall's tau
    0.79-1.0, within +-10 % 0.62-1.0, mean error 3.6-11.4 %. Broken predictors on the same pairs:
    the raw layer sum without the correction 0 % within +-10 % (mean error 49-72 %, same tau); a
    constant has no tau (NaN fails the floor); so do rankings no better than chance.
    """
    report = validated.report
    stored = stored_correction(validated.path, validated.lut)
    assert len(stored["archs"]) == stored["n"] == 4 == report["calibration_archs"]
    pairs = {p["arch"] for p in report["pairs"]}
    assert len(pairs) == VALIDATED == report["n"] and not pairs & set(stored["archs"])
    assert all(p["predicted_ms"] > 0 and p["measured_ms"] > 0 for p in report["pairs"])
    assert report["kendall_tau"] >= 0.5, report
    assert report["within_10pct"] >= 0.375 and report["mean_abs_pct"] <= 20, report


def test_validation_times_missing_layers_dealt_like_other_networks(validated):
    """The validation networks' missing layers are timed in one dealt order over all of them
    (one of each input size in turn, largest first), not in passes cut network by network."""
    from edgenas.latency.lut import network_like_order

    missing = validated.missing
    timed = TimedLayers.first_passes(validated.validation_calls)
    dealt = keys(network_like_order(missing))
    assert len(missing) >= 6 and timed == dealt
    assert keys(missing) != dealt  # network by network would have been another order
    sizes = [int(shape.split("x")[-1]) for _, shape in timed]
    distinct = sorted(set(sizes), reverse=True)
    assert len(distinct) >= 2 and sizes[: len(distinct)] == distinct
    # Nothing else was timed in passes while validating; the networks were measured whole.
    ends = [call for call in validated.validation_calls if not call["in_passes"]]
    assert len(ends) == VALIDATED and all(len(call["layers"]) == 1 for call in ends)
    # The correction's own networks were dealt the same way (the LUT was empty before).
    lut = validated.lut
    first_seen = {(s.key, s.shape_key): s for arch in lut.correction["archs"] for s in lut.layers(arch)}
    assert TimedLayers.first_passes(validated.calibration_calls) == keys(network_like_order(list(first_seen.values())))


def test_validation_excludes_the_stored_calibration_networks_not_a_recount(tmp_path):
    """Calibrated on 4 networks, validated with `calibration_archs=1`: none of the 4 is validated.

    A space of 8 architectures, so that a validation sample meets the calibration networks unless
    it excludes them: asked for every other architecture, it must return exactly those.
    """
    from edgenas.spaces import get_space
    from edgenas.spaces.mnas import BaseStage

    def space():
        return get_space("mnas", resolution=32, num_classes=10,
                         base_stages=(BaseStage(16, 1, 1), BaseStage(24, 1, 2), BaseStage(32, 1, 2)),
                         ops=("dsconv",), kernels=(3, 5), se_ratios=(0.0,), skips=("none",),
                         width_multipliers=(1.0,), layer_deltas=(0,))

    every = {f"ds_r1_k{a}_s1_c16_noskip ds_r1_k{b}_s2_c24_noskip ds_r1_k{c}_s2_c32_noskip"
             for a in (3, 5) for b in (3, 5) for c in (3, 5)}
    cache = str(tmp_path / "lat.sqlite")
    first = make_latency_estimator(space(), LatencySettings(mode="lut", cache=cache, protocol=FAST,
                                                            calibration_archs=4))
    try:
        lut = first.lut  # calibrates and stores the correction
    finally:
        first.close()
    stored = stored_correction(cache, lut)
    fitted = set(stored["archs"])
    assert stored["n"] == 4 and fitted < every and len(fitted) >= 2

    later = make_latency_estimator(space(), LatencySettings(mode="lut", cache=cache, protocol=FAST,
                                                            calibration_archs=1))
    try:
        assert fitted - set(later.calibration_sample(1))  # a recount would let these through
        rest = every - fitted
        assert set(later.validation_sample(len(rest))) == rest
        report = later.validate(2)
        assert report["calibration_archs"] == 4 and not {p["arch"] for p in report["pairs"]} & fitted
    finally:
        later.close()


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


def test_the_correction_fits_as_many_terms_as_the_networks_support_on_relative_errors():
    """`a * sum + d * act + b` from 20 networks; below that `a * sum + b`, the least squares of
    relative errors (numpy's weighted polyfit is the reference); the layer term stays 0."""
    rng = np.random.default_rng(0)
    features = np.column_stack([rng.uniform(5, 25, 30), rng.integers(15, 40, 30), rng.uniform(2, 9, 30)])
    measured = 0.9 * features[:, 0] - 0.5 * features[:, 2] + 0.3

    full = fit_correction(features[:FULL_CORRECTION_ARCHS], measured[:FULL_CORRECTION_ARCHS])
    assert [full[k] for k in ("a", "c_per_layer", "d_per_mvalue", "b")] == pytest.approx([0.9, 0.0, -0.5, 0.3])
    assert full["rmse_ms"] < 1e-9 and full["n"] == FULL_CORRECTION_ARCHS

    few = fit_correction(features[:FULL_CORRECTION_ARCHS - 1], measured[:FULL_CORRECTION_ARCHS - 1])
    assert few["c_per_layer"] == few["d_per_mvalue"] == 0.0 and few["rmse_ms"] > 0.01
    x, y = features[:FULL_CORRECTION_ARCHS - 1, 0], measured[:FULL_CORRECTION_ARCHS - 1]
    slope, intercept = np.polyfit(x, y, 1, w=1 / y)  # residuals weighted by 1 / measured: relative errors
    assert (few["a"], few["b"]) == pytest.approx((slope, intercept))
    unweighted = np.polyfit(x, y, 1)
    assert abs(few["a"] - unweighted[0]) > 1e-3  # the two fits differ on these networks, so the check above bites

    two = fit_correction(features[:2], measured[:2])
    assert two["b"] == two["c_per_layer"] == two["d_per_mvalue"] == 0.0 and two["a"] > 0
