"""Converted files kept between runs (`--keep-converted`): a rebuild times the files the first
build converted instead of converting again; a file is found only by its own model and converter."""

from __future__ import annotations

import pytest
import torch

from edgenas.errors import UserError
from edgenas.export import ExportError
from edgenas.latency.backends import get_backend
from edgenas.latency.converted import ConvertedFiles
from edgenas.latency.estimator import make_latency_estimator
from edgenas.latency.protocol import Measurer
from edgenas.latency.settings import LatencySettings
from latency_helpers import FAST, TINY_SHAPE, Unexportable, tiny_space


def _files(folder):
    return {p.name: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


def _build(cache, kept):
    """What `lut build` does, small: calibrate on 3 networks (their layers timed), judge 3 others;
    networks are converted ahead by two processes, as a LiteRT build's are."""
    estimator = make_latency_estimator(tiny_space(), LatencySettings(
        mode="lut", cache=str(cache), protocol=FAST, calibration_archs=3, prepare_workers=2, keep_converted=str(kept)))
    try:
        report = estimator.validate(3)
        lut = estimator.lut
        return {"layers": len(lut), "reused": estimator.measurer.converted_reused,
                "in_workers": estimator.measurer.prepared_in_workers, "within": report["within_10pct"]}
    finally:
        estimator.close()


def test_a_rebuild_from_an_empty_cache_times_the_kept_files_and_converts_nothing(tmp_path):
    kept = tmp_path / "converted"
    first = _build(tmp_path / "first.sqlite", kept)
    files = _files(kept)
    # every layer, the 6 networks and the reference: one kept file each, converted once
    assert len(files) == first["layers"] + 6 + 1
    # converted by the two processes; the 6 networks ahead of their measurement, which finds them kept
    assert first["in_workers"] == first["layers"] + 6 and first["reused"] == 6
    second = _build(tmp_path / "second.sqlite", kept)  # a new latency cache: everything timed again
    assert _files(kept) == files  # not one file written again
    assert second["in_workers"] == 0
    assert second["reused"] == len(files)
    assert second["layers"] == first["layers"]


def test_a_kept_file_is_found_only_by_its_model_shape_format_and_converter(tmp_path, monkeypatch):
    onnx = ConvertedFiles(tmp_path, get_backend("onnxruntime"))
    litert = ConvertedFiles(tmp_path, get_backend("litert"))
    path = onnx.path("network a", TINY_SHAPE)
    assert path == ConvertedFiles(tmp_path, get_backend("onnxruntime")).path("network a", TINY_SHAPE)
    others = {onnx.path("network b", TINY_SHAPE), onnx.path("network a", (1, 3, 64, 64)),
              litert.path("network a", TINY_SHAPE)}
    monkeypatch.setattr(torch, "__version__", "0.0.0-another-torch")
    others.add(ConvertedFiles(tmp_path, get_backend("onnxruntime")).path("network a", TINY_SHAPE))
    assert path not in others and len(others) == 4
    assert litert.path("network a", TINY_SHAPE).suffix == ".tflite"


def test_a_rejected_model_leaves_no_kept_file_and_a_file_is_no_folder(tmp_path):
    kept = ConvertedFiles(tmp_path / "kept", get_backend("onnxruntime"))
    measurer = Measurer(get_backend("onnxruntime"), FAST, converted=kept)
    try:
        with pytest.raises(ExportError):
            measurer.prepare(Unexportable(), (1, 3, 4, 4), "unexportable")
        assert not kept.path("unexportable", (1, 3, 4, 4)).exists()
        assert not [p for p in (tmp_path / "kept").rglob("*") if p.is_file()]  # no partial file either
    finally:
        measurer.close()
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="is a file, not a folder"):
        ConvertedFiles(tmp_path / "file", get_backend("onnxruntime"))
