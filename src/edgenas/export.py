"""Export a network to the files that runtimes load: ONNX (torch's exporter) and TFLite (litert-torch).

Why plain functions: latency backends export every candidate they time, and the `edgenas export`
command exports the final network; both want "this module, this input shape, that path" and an
honest check that the file computes what PyTorch computes. A failed export leaves no file behind
(`edgenas.util.atomic.atomic_path`: written under a temporary name that keeps the suffix, which the
exporters look at, and renamed on success).
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edgenas.errors import UserError
from edgenas.util.atomic import atomic_path

ONNX_OPSET = 17
LITERT_INSTALL = "pip install 'edgenas[litert]'"


class ExportError(UserError):
    """A model the exporter or converter rejects (one line: what failed and what to do)."""


def export_onnx(model: nn.Module, input_shape: Sequence[int], path: str | os.PathLike) -> Path:
    """Write `model` (in eval mode, batch of `input_shape`) to an ONNX file at `path`.

    The TorchScript-based exporter (`dynamo=False`) is tried first: for plain CNNs it is ~6x faster
    than the torch.export-based one (0.75 s vs 4.4 s for MobileNetV2 here) and writes one
    self-contained file. If it fails or is gone from a later torch, the dynamo exporter is used.
    """
    path = Path(path)
    was_training = model.training
    model.eval()
    example = (torch.randn(*input_shape),)
    errors = []
    try:
        for dynamo in (False, True):
            try:
                with atomic_path(path) as partial, warnings.catch_warnings(), _converter_output_set_aside():
                    warnings.simplefilter("ignore")
                    if dynamo:
                        torch.onnx.export(model, example, str(partial), dynamo=True,
                                          external_data=False, opset_version=18)
                    else:
                        torch.onnx.export(model, example, str(partial), dynamo=False,
                                          opset_version=ONNX_OPSET, input_names=["input"],
                                          output_names=["output"])
                return path
            except Exception as error:  # noqa: BLE001 - any exporter failure is reported below
                errors.append(f"{'dynamo' if dynamo else 'torchscript'} exporter: {_first_line(error)}")
    finally:
        model.train(was_training)
    raise ExportError(f"cannot export the model to ONNX ({'; '.join(errors)}); "
                      "simplify the model or report the failing layer")


def export_tflite(model: nn.Module, input_shape: Sequence[int], path: str | os.PathLike) -> Path:
    """Convert `model` to a `.tflite` flatbuffer with litert-torch (what Android's TFLite runs).

    litert-torch is a large optional extra; without it this raises ExportError naming the install.
    Importing it prints a few lines of TensorFlow's start-up (once per process): set aside too.
    """
    try:
        with warnings.catch_warnings(), _converter_output_set_aside():
            warnings.simplefilter("ignore")
            import litert_torch
    except ImportError:
        raise ExportError(f"TFLite export needs litert-torch, which is not installed; run {LITERT_INSTALL}") from None
    path = Path(path)
    was_training = model.training
    model.eval()
    try:
        with atomic_path(path) as partial, warnings.catch_warnings(), _converter_output_set_aside():
            warnings.simplefilter("ignore")
            converted = litert_torch.convert(model, (torch.randn(*input_shape),))
            converted.export(str(partial))
        return path
    except Exception as error:  # noqa: BLE001 - the converter raises many kinds
        raise ExportError(f"litert-torch cannot convert the model: {_first_line(error)}") from None
    finally:
        model.train(was_training)


def run_exported(path: str | os.PathLike, x: np.ndarray) -> np.ndarray:
    """Run an exported `.onnx` or `.tflite` file once on `x` (single thread) and return its output."""
    path = Path(path)
    if path.suffix == ".onnx":
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        return session.run(None, {session.get_inputs()[0].name: x})[0]
    if path.suffix == ".tflite":
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            raise ExportError(f"running .tflite files needs ai-edge-litert; run {LITERT_INSTALL}") from None
        interpreter = Interpreter(model_path=str(path), num_threads=1)
        interpreter.allocate_tensors()
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
        interpreter.invoke()
        return interpreter.get_tensor(interpreter.get_output_details()[0]["index"]).copy()
    raise ExportError(f"unknown model file type '{path.suffix}'; expected .onnx or .tflite")


def check_export(model: nn.Module, path: str | os.PathLike, input_shape: Sequence[int], seed: int = 0) -> float:
    """Largest absolute difference between the exported file's output and PyTorch's, on one random input."""
    x = torch.randn(*input_shape, generator=torch.Generator().manual_seed(seed))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            expected = model(x).numpy()
    finally:
        model.train(was_training)
    got = run_exported(path, x.numpy())
    if got.shape != expected.shape:
        raise ExportError(f"exported output shape {got.shape} differs from PyTorch's {expected.shape}")
    return float(np.abs(got - expected).max())


def _first_line(error: BaseException) -> str:
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error)).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"[:300]


@contextlib.contextmanager
def _converter_output_set_aside() -> Iterator[None]:
    """Keep what exporters print (progress lines, from Python or C++) off the user's terminal.

    `edgenas ... --json` promises one JSON object on stdout, and litert-torch prints about 25
    progress and log lines per conversion (to stdout and, from C++, to stderr): a LUT build converts
    every layer of the space, so they would bury the progress bar and any warning under tens of
    thousands of lines. Both file descriptors go to a scratch file for the conversion's duration; a
    failed conversion is reported by its exception (ExportError), which says what went wrong.
    """
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    try:
        saved = (os.dup(1), os.dup(2))
    except OSError:  # no real stdout/stderr (embedded use): nothing to protect
        yield
        return
    try:
        with tempfile.TemporaryFile("w+") as aside:
            os.dup2(aside.fileno(), 1)
            os.dup2(aside.fileno(), 2)
            with contextlib.redirect_stdout(aside), contextlib.redirect_stderr(aside):
                yield
    finally:
        for fd, copy in zip((1, 2), saved):
            os.dup2(copy, fd)
            os.close(copy)
