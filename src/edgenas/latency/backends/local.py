"""The three runtimes on this machine: ONNX Runtime (default), PyTorch eager, LiteRT (TFLite)."""

from __future__ import annotations

import importlib.metadata
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from edgenas.export import LITERT_INSTALL, export_onnx, export_tflite
from edgenas.latency.backends.base import BackendStatus, LocalBackend
from edgenas.util.atomic import torch_save_atomic


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


class OnnxRuntimeBackend(LocalBackend):
    """torch's ONNX exporter, then ONNX Runtime on one core: the default, fast to start and steady."""

    name = "onnxruntime"
    suffix = ".onnx"
    runner = "onnxruntime"
    description = "ONNX Runtime CPU, 1 intra-op + 1 inter-op thread, sequential, all graph optimisations"

    def status(self) -> BackendStatus:
        version = _version("onnxruntime")
        if version is None:
            return BackendStatus(self.name, False, "onnxruntime is not installed",
                                 "run pip install onnxruntime", description=self.description)
        return self._local_status(f"onnxruntime {version}")

    def prepare(self, model: nn.Module, input_shape: Sequence[int], path: Path) -> Path:
        return export_onnx(model, input_shape, path)


class TorchBackend(LocalBackend):
    """PyTorch eager, one thread: what training code runs, not what phones run."""

    name = "torch"
    suffix = ".pt"
    runner = "torch"
    description = "PyTorch eager CPU, 1 thread, glibc malloc thresholds raised"

    def status(self) -> BackendStatus:
        return self._local_status(f"torch {torch.__version__}")

    def prepare(self, model: nn.Module, input_shape: Sequence[int], path: Path) -> Path:
        model.eval()
        return torch_save_atomic(model, path)


class LiteRTBackend(LocalBackend):
    """litert-torch conversion, then the LiteRT interpreter (XNNPACK) on one core: TFLite as phones run it."""

    name = "litert"
    suffix = ".tflite"
    runner = "litert"
    slow_to_prepare = True
    description = "LiteRT (TFLite) interpreter with XNNPACK, 1 thread; converted by litert-torch"

    def status(self) -> BackendStatus:
        missing = [d for d in ("ai-edge-litert", "litert-torch") if _version(d) is None]
        if missing:
            return BackendStatus(self.name, False, f"{' and '.join(missing)} not installed",
                                 f"run {LITERT_INSTALL} (about 1.2 GB)", description=self.description)
        return self._local_status(
            f"ai-edge-litert {_version('ai-edge-litert')}, litert-torch {_version('litert-torch')}"
        )

    def prepare(self, model: nn.Module, input_shape: Sequence[int], path: Path) -> Path:
        return export_tflite(model, input_shape, path)
