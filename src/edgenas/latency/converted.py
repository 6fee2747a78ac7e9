"""Converted model files kept between runs, so that a model is converted once per converter.

Why: converting is the slow half of measuring on some runtimes. litert-torch takes a second or
more per LUT layer and tens of seconds per whole network at 224 px, while timing the file takes a
fraction of that; a LiteRT LUT of the whole space converts thousands of layers (docs/bench/latency.md).
Timings go stale (the machine drifts, `lut validate` says so, the user rebuilds on another
morning or another phone), but the file a converter writes for a given model does not: a rebuild
with the files kept only times. Opt-in (`--keep-converted DIR`), because the files of a
whole-space LUT take hundreds of megabytes.

A file is found by what the model is (a key its caller gives: the layer or the architecture and
the network configuration), its input shape, the backend's file format and the converter's
versions; anything else (a new litert-torch, another torch) misses and converts afresh. Files are
written whole under a temporary name and renamed (`edgenas.util.atomic`), so a run killed while
converting leaves no half-written file for the next run to time. The weights inside are whatever
the first conversion drew: a dense runtime's latency does not depend on their values.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
from collections.abc import Sequence
from pathlib import Path

import torch

from edgenas import __version__
from edgenas.errors import UserError
from edgenas.latency.backends.base import Backend

# Distributions whose versions decide what a conversion writes (torch decides the traced graph).
# edgenas's own version too: its blocks decide what a key's model is.
CONVERTERS = ("litert-torch", "onnx", "onnxscript")


def converter_versions() -> str:
    """The versions of everything that writes model files here, in a fixed order."""
    parts = [f"edgenas {__version__}", f"torch {torch.__version__}"]
    for name in CONVERTERS:
        try:
            parts.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            parts.append(f"{name} -")
    return ", ".join(parts)


class ConvertedFiles:
    """One folder of converted files for one backend's format: `path(key, shape)` says where the
    file of that model is (there already, or to be written there)."""

    def __init__(self, folder: str | Path, backend: Backend) -> None:
        self.folder = Path(folder).expanduser()
        if self.folder.exists() and not self.folder.is_dir():
            raise UserError(f"--keep-converted {self.folder} is a file, not a folder; name a folder (it is made if missing)")
        self.backend = backend
        self._converter = f"{backend.name} {backend.suffix}; {converter_versions()}"

    def path(self, key: str, input_shape: Sequence[int]) -> Path:
        shape = "x".join(str(int(d)) for d in input_shape)
        digest = hashlib.sha256(f"{self._converter}\n{key}\n{shape}".encode()).hexdigest()[:40]
        return self.folder / self.backend.name / f"{digest}{self.backend.suffix}"
