"""Tiny models and spaces for the latency tests (a few milliseconds per run, seconds per test)."""

from __future__ import annotations

import functools
import os
import random
from pathlib import Path

import pytest
from torch import nn

from edgenas.latency.protocol import Protocol
from edgenas.spaces import get_space
from edgenas.spaces.mnas import BaseStage

FAST = Protocol(warmup=2, runs=6, retries=0, baseline_repeats=1, max_seconds=5.0, min_seconds=0.0)
TINY_ARCH = "ds_r1_k3_s1_c16 ir_r1_k3_s2_e3_c24"
TINY_SHAPE = (1, 3, 32, 32)


class Unexportable(nn.Module):
    """A model no exporter can trace: 48 values cannot be viewed as 7 rows."""

    def forward(self, x):
        return x.view(7, -1)


def tiny_space():
    """A narrow mnas space at 32 px: three short stages, two ops, small widths."""
    return get_space(
        "mnas", resolution=32, num_classes=10,
        base_stages=(BaseStage(16, 1, 1), BaseStage(24, 1, 2), BaseStage(32, 1, 2)),
        ops=("dsconv", "mbconv3"), kernels=(3, 5), se_ratios=(0.0, 0.25), skips=("none", "identity"),
        width_multipliers=(1.0,), layer_deltas=(0, 1),
    )


def tiny_archs(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    space = tiny_space()
    return [space.sample(rng) for _ in range(n)]


@functools.cache
def _converted(directory: str) -> str:
    import torch

    from edgenas.export import export_tflite
    from edgenas.spaces.mobilenet import NetworkConfig, build_network

    torch.manual_seed(0)
    model = build_network(TINY_ARCH, NetworkConfig(num_classes=10, stem_stride=1), 32).eval()
    torch.save(model.state_dict(), Path(directory) / "tiny.pt")
    return str(export_tflite(model, TINY_SHAPE, Path(directory) / "tiny.tflite"))


def need_litert() -> None:
    """Skip (with the install command) where the optional `litert` extra is absent; CI installs it."""
    import importlib.util

    for module in ("litert_torch", "ai_edge_litert"):
        if importlib.util.find_spec(module) is None:
            pytest.skip("the litert extra is not installed (pip install 'edgenas[litert]')")


def converted_tflite(tmp_path_factory):
    """(model, path): a tiny network converted once per session to .tflite by litert-torch.

    Skips where the `litert` extra is absent. Test modules wrap it in a `tflite_file` fixture.
    """
    need_litert()
    from edgenas.spaces.mobilenet import NetworkConfig, build_network

    directory = os.environ.setdefault("EDGENAS_TEST_TFLITE_DIR", str(tmp_path_factory.mktemp("tflite")))
    path = Path(_converted(directory))
    model = build_network(TINY_ARCH, NetworkConfig(num_classes=10, stem_stride=1), 32).eval()
    model.load_state_dict(__import__("torch").load(Path(directory) / "tiny.pt"))
    return model, path
