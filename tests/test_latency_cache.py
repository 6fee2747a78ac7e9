"""The latency cache: nothing measured twice, keys keep settings apart, the path is overridable."""

from __future__ import annotations

import time

import pytest

from edgenas.latency.cache import LatencyCache, Where, default_cache_path
from edgenas.latency.errors import LatencyError
from edgenas.latency.estimator import make_latency_estimator
from edgenas.latency.measurement import Measurement
from edgenas.latency.settings import LatencySettings
from latency_helpers import FAST, tiny_space

WHERE = Where("onnxruntime", "local:test", "onnxruntime 1", "threads=1")


def sample_measurement(ms: float) -> Measurement:
    return Measurement(median_ms=ms, p10_ms=ms * 0.9, p90_ms=ms * 1.1, runs=7, backend="onnxruntime",
                       device="local:test", reference="r", reference_ratio=2.0, calibrated_ms=2 * ms)


def test_cache_round_trip_and_key_separation(tmp_path):
    cache = LatencyCache(tmp_path / "lat.sqlite")
    cache.put("ds_r1_k3_s1_c16", 32, WHERE, sample_measurement(1.5))
    again = LatencyCache(tmp_path / "lat.sqlite")  # another process would see the same row
    got = again.get("ds_r1_k3_s1_c16", 32, WHERE)
    assert got is not None and got.median_ms == 1.5 and got.latency_ms == 3.0
    assert again.get("ds_r1_k3_s1_c16", 64, WHERE) is None
    assert again.get("ds_r1_k3_s1_c16", 32, Where("torch", *WHERE.values()[1:])) is None
    assert again.get("ds_r1_k3_s1_c16", 32, Where("onnxruntime", "local:test", "onnxruntime 2", "threads=1")) is None
    cache.put_layer("ir|in16", "1x16x8x8", WHERE, 0.25, {})
    assert again.get_layers(WHERE) == {("ir|in16", "1x16x8x8"): 0.25}


def test_cache_directory_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGENAS_CACHE_DIR", str(tmp_path / "elsewhere"))
    assert default_cache_path() == tmp_path / "elsewhere" / "latency.sqlite"
    monkeypatch.delenv("EDGENAS_CACHE_DIR")
    assert default_cache_path().parts[-3:] == (".cache", "edgenas", "latency.sqlite")


def test_unwritable_cache_is_a_one_line_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(LatencyError, match="cannot open the latency cache"):
        LatencyCache(blocker / "sub" / "lat.sqlite")


def test_estimator_measures_once_then_reads_the_cache(tmp_path):
    space = tiny_space()
    estimator = make_latency_estimator(space, LatencySettings(cache=str(tmp_path / "lat.sqlite"), protocol=FAST))
    try:
        arch = space.sample(__import__("random").Random(3))
        first = estimator.latency(arch)
        start = time.perf_counter()
        second = estimator.latency(arch)
        elapsed = time.perf_counter() - start
        assert estimator.cache.count() == 1
    finally:
        estimator.close()
    assert first.source == "measured" and second.source == "cache"
    assert second.latency_ms == first.latency_ms and elapsed < 0.5  # no export, no subprocess


def test_estimator_failures_are_latency_errors(tmp_path):
    estimator = make_latency_estimator(tiny_space(), LatencySettings(cache=str(tmp_path / "lat.sqlite"), protocol=FAST))
    try:
        with pytest.raises(LatencyError, match="not a choice of this space|blocks"):
            estimator.latency("ir_r9_k3_s1_e6_c16")
        with pytest.raises(LatencyError, match="unknown latency mode"):
            LatencySettings(mode="guess")
    finally:
        estimator.close()
