"""ONNX and TFLite export: the files compute what PyTorch computes; a rejected model leaves nothing."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch import nn

from edgenas.export import ExportError, check_export, export_onnx
from edgenas.spaces.mobilenet import NetworkConfig, build_network
from latency_helpers import TINY_ARCH, TINY_SHAPE, Unexportable, converted_tflite, need_litert


@pytest.fixture
def tflite_file(tmp_path_factory):
    return converted_tflite(tmp_path_factory)


def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return build_network(TINY_ARCH, NetworkConfig(num_classes=10, stem_stride=1), 32).eval()


def test_onnx_export_matches_pytorch(tmp_path):
    model = tiny_model()
    path = export_onnx(model, TINY_SHAPE, tmp_path / "net.onnx")
    assert path.exists() and path.stat().st_size > 1000
    assert check_export(model, path, TINY_SHAPE) < 1e-4
    assert model.training is False  # export leaves the mode as it found it


def test_rejected_model_raises_one_line_and_leaves_no_file(tmp_path):
    with pytest.raises(ExportError) as error:
        export_onnx(Unexportable(), (1, 3, 4, 4), tmp_path / "bad.onnx")
    assert "\n" not in str(error.value) and "ONNX" in str(error.value)
    assert list(tmp_path.iterdir()) == []


def test_unknown_file_type_is_refused(tmp_path):
    with pytest.raises(ExportError, match="unknown model file type"):
        check_export(tiny_model(), tmp_path / "net.bin", TINY_SHAPE)


def test_tflite_export_matches_pytorch(tflite_file):
    model, path = tflite_file
    assert path.suffix == ".tflite" and path.exists()
    assert check_export(model, path, TINY_SHAPE) < 1e-3


def test_tflite_conversion_prints_nothing(tmp_path):
    """Importing litert-torch prints TensorFlow's start-up lines and each conversion ~25 progress and
    log lines (Python and C++); a LUT build converts every layer, so they would bury its progress
    bar. In a fresh process, as a user runs it, nothing reaches either stream."""
    need_litert()
    path = tmp_path / "conv.tflite"
    script = ("from torch import nn; from edgenas.export import export_tflite; "
              f"export_tflite(nn.Conv2d(3, 4, 3).eval(), (1, 3, 8, 8), {str(path)!r})")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0 and path.exists(), done.stderr
    assert (done.stdout, done.stderr) == ("", "")
