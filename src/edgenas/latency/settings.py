"""How latency is obtained, written once: backends, modes, protocol defaults, validation, flags.

Why one place: a search (`edgenas search --latency-*`), the latency commands (`edgenas latency
measure|lut ...`), the demo, the benchmarks and a Ray latency actor all build an estimator from
the same settings; when each spelled out its own defaults (`runs=50` stood in seven places) a
change of protocol reached some of them and not others. The protocol's numbers live in
`Protocol`; everything else that picks a backend, a mode, a device or a LUT variant lives here,
and `add_latency_options` / `LatencySettings.from_args` are the only translation from flags.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field, replace
from typing import Any

from edgenas.errors import UserError
from edgenas.latency.backends import BACKEND_NAMES, REMOTE_BACKENDS
from edgenas.latency.errors import LatencyError
from edgenas.latency.protocol import MAX_AUTO_PREPARE_WORKERS, Protocol

MODES = ("measure", "lut")
# Networks measured end to end to fit the LUT's correction. Why 24, not 12: with 12, which 12 were
# drawn decided the LUT's accuracy (benchmarks/latency_lut_calibration.py; docs/bench/latency.md).
DEFAULT_CALIBRATION_ARCHS = 24
# Each LUT layer is timed in this many passes (every other one in reverse order, so with other
# neighbours) and stored as the mean. Why 2: re-timing a network's layers in another pass moved
# their sum by a few percent; two passes cut the spread of the LUT's errors against the same
# end-to-end measurements (docs/bench/latency.md). `--layer-passes 1` builds twice as fast.
DEFAULT_LAYER_PASSES = 2
LUT_REFERENCES = ("network", "layer")


@dataclass(frozen=True)
class LatencySettings:
    """Everything that decides a latency figure, plus where it is cached (not part of the figure).

    `device` is the remote device: an adb serial or an ssh `user@host`; `core_mask` (adb) and
    `remote_python` (ssh) are the remote backends' other options. `reference` is the model
    interleaved with end-to-end measurements (None: none); `lut_reference` is what LUT layers are
    timed against ("network": MobileNetV2 at the network's input; "layer": one MBConv layer).
    """

    backend: str = "onnxruntime"
    mode: str = "measure"
    protocol: Protocol = field(default_factory=Protocol)
    device: str | None = None
    core_mask: str | None = None
    remote_python: str | None = None
    cache: str | None = None  # None: $EDGENAS_CACHE_DIR/latency.sqlite or ~/.cache/edgenas/latency.sqlite
    reference: str | None = "network"
    calibration_archs: int = DEFAULT_CALIBRATION_ARCHS
    lut_reference: str = "network"
    layer_passes: int = DEFAULT_LAYER_PASSES
    prepare_workers: int | None = None  # None: `protocol.default_prepare_workers` (not part of any figure)
    keep_converted: str | None = None  # a folder: converted files kept and reused (`latency.converted`); None: none

    def __post_init__(self) -> None:
        if self.backend not in BACKEND_NAMES:
            raise LatencyError(f"unknown latency backend '{self.backend}'; choose one of {', '.join(BACKEND_NAMES)}")
        if self.mode not in MODES:
            raise LatencyError(f"unknown latency mode '{self.mode}'; choose one of {', '.join(MODES)}")
        if self.device is not None and self.backend not in REMOTE_BACKENDS:
            raise UserError(f"--device names a remote device (adb serial, ssh user@host), but the '{self.backend}' "
                            "backend measures this machine; drop --device or use --latency-backend adb|ssh")
        if self.calibration_archs < 1:
            raise UserError(f"--calibration must be at least 1 network, got {self.calibration_archs}")
        if self.layer_passes < 1:
            raise UserError(f"--layer-passes must be at least 1, got {self.layer_passes}")
        if self.prepare_workers is not None and self.prepare_workers < 1:
            raise UserError(f"--prepare-workers must be at least 1, got {self.prepare_workers}")
        if self.lut_reference not in LUT_REFERENCES:
            raise UserError(f"unknown LUT reference '{self.lut_reference}'; choose one of {', '.join(LUT_REFERENCES)}")

    def backend_options(self) -> dict[str, Any]:
        """The chosen backend's constructor options (adb: serial, core_mask; ssh: host, python)."""
        if self.backend == "adb":
            return {"serial": self.device, "core_mask": self.core_mask}
        if self.backend == "ssh":
            return {"host": self.device, "python": self.remote_python}
        return {}

    def config(self) -> dict[str, Any]:
        """What a search run records (and compares on resume): the figure's settings, not the cache."""
        p = self.protocol
        return {"backend": self.backend, "mode": self.mode, "threads": p.threads, "runs": p.runs,
                "warmup": p.warmup, "min_seconds": p.min_seconds, "device": self.device}

    @classmethod
    def from_args(cls, args: argparse.Namespace, prefix: str = "", **overrides: Any) -> LatencySettings:
        """Settings from flags added by `add_latency_options(parser, prefix)`; unset flags keep defaults."""
        protocol: dict[str, Any] = {}
        settings: dict[str, Any] = {}
        for flag, (target, name, *_rest) in FLAGS.items():
            value = getattr(args, (prefix + flag).replace("-", "_"), None)
            if value is not None:
                (protocol if target == "protocol" else settings)[name] = value
        return cls(protocol=replace(Protocol(), **protocol), **{**settings, **overrides})


_DEFAULT = LatencySettings()
_P = _DEFAULT.protocol
# flag -> (Protocol or LatencySettings field, its name, type, choices, help). Defaults come from the
# dataclasses above; every flag defaults to None so that "not given" keeps them.
FLAGS: dict[str, tuple[str, str, type, tuple[str, ...] | None, str]] = {
    "backend": ("settings", "backend", str, None,
                f"one of {', '.join(BACKEND_NAMES)} (default {_DEFAULT.backend}: this machine)"),
    "mode": ("settings", "mode", str, MODES,
             f"measure each network end to end (cached), or predict from the per-layer LUT (default {_DEFAULT.mode})"),
    "runs": ("protocol", "runs", int, None, f"timed runs per measurement, after warm-up (default {_P.runs})"),
    "warmup": ("protocol", "warmup", int, None, f"warm-up runs (default {_P.warmup})"),
    "min-seconds": ("protocol", "min_seconds", float, None,
                    f"time each network for at least this long, adding runs past --runs (default {_P.min_seconds}; "
                    "0: exactly --runs)"),
    "threads": ("protocol", "threads", int, None, f"runtime threads (default {_P.threads})"),
    "clock": ("protocol", "clock", str, ("cpu", "wall"),
              f"cpu: process CPU time per run (steady on a shared machine); wall: elapsed (default {_P.clock})"),
    "cache": ("settings", "cache", str, None,
              "latency cache file (default $EDGENAS_CACHE_DIR/latency.sqlite or ~/.cache/edgenas/latency.sqlite)"),
    "calibration": ("settings", "calibration_archs", int, None,
                    f"networks measured end to end for the LUT's correction (default {DEFAULT_CALIBRATION_ARCHS})"),
    "lut-reference": ("settings", "lut_reference", str, LUT_REFERENCES,
                      "what LUT layers are timed against, once per pass (network: MobileNetV2, default; "
                      "layer: one MBConv layer)"),
    "layer-passes": ("settings", "layer_passes", int, None,
                     f"passes each LUT layer is timed in, stored as the mean (default {DEFAULT_LAYER_PASSES}; "
                     "1 builds twice as fast)"),
    "prepare-workers": ("settings", "prepare_workers", int, None,
                        "processes converting LUT layers to the backend's file format at once, before each pass "
                        f"times them (default: one per core, at most {MAX_AUTO_PREPARE_WORKERS}, where conversion "
                        "is slow (litert, adb); else 1)"),
    "keep-converted": ("settings", "keep_converted", str, None,
                       "folder where converted model files are kept and reused by later runs, so that a rebuild "
                       "only times (a LiteRT LUT converts for far longer than it times; default: none kept)"),
}


def add_latency_options(parser: Any, prefix: str = "", names: tuple[str, ...] | None = None,
                        help_prefix: str = "") -> None:
    """Add latency flags (`--{prefix}runs` ...) to `parser`, each defaulting to None (= the
    setting's default, resolved by `LatencySettings.from_args`); `names` picks a subset of FLAGS."""
    for flag in names or tuple(FLAGS):
        _target, _name, kind, choices, text = FLAGS[flag]
        parser.add_argument(f"--{prefix}{flag}", type=kind, choices=choices, default=None, help=help_prefix + text)
