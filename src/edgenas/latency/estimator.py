"""`make_latency_estimator`: what a search calls for the latency of each candidate.

`latency(arch) -> Measurement` measures (mode "measure": cache first, else a fresh pinned
measurement with the interleaved reference, then stored) or predicts from the per-layer LUT
(mode "lut": missing layers are timed on first use, and the correction is calibrated on a few
end-to-end measurements the first time). Every failure is a `LatencyError`, which the evaluator
records as a failed trial.
"""

from __future__ import annotations

import random
from typing import Any

from edgenas.errors import UserError
from edgenas.latency.backends import get_backend
from edgenas.latency.cache import LatencyCache, Where
from edgenas.latency.errors import LatencyError
from edgenas.latency.lut import LatencyLUT
from edgenas.latency.measurement import Measurement
from edgenas.latency.protocol import Measurer, Protocol
from edgenas.spaces import SearchSpace, get_space

MODES = ("measure", "lut")


class LatencyEstimator:
    """Latency of architectures of one space, on one backend, through the cache or the LUT."""

    def __init__(self, space: SearchSpace, measurer: Measurer, cache: LatencyCache, mode: str = "measure",
                 reference: str | None = "network", calibration_archs: int = 8, seed: int = 0) -> None:
        if mode not in MODES:
            raise LatencyError(f"unknown latency mode '{mode}'; use one of {', '.join(MODES)}")
        config = getattr(space, "config", None)
        if config is None or not hasattr(config, "network"):
            raise LatencyError(f"latency needs a space of mobile networks (mnas); '{space.name}' is not one")
        self.space = space
        self.measurer = measurer
        self.cache = cache
        self.mode = mode
        self.reference = reference
        self.calibration_archs = calibration_archs
        self.seed = seed
        self.resolution = int(config.resolution)
        self.network = config.network
        self.input_shape = (1, self.network.in_channels, self.resolution, self.resolution)
        self._lut: LatencyLUT | None = None

    @property
    def backend(self) -> str:
        return self.measurer.backend.name

    @property
    def where(self) -> Where:
        """Cache key part of end-to-end measurements (see LatencyCache)."""
        base = self.measurer.where
        setting = (f"{base.setting};classes={self.network.num_classes};in={self.network.in_channels};"
                   f"act={self.network.act};ref={self.reference or 'none'}")
        return Where(base.backend, base.device, base.runtime, setting)

    def latency(self, arch: str) -> Measurement:
        """The latency of `arch` (a Measurement; `latency_ms` is the figure to rank by)."""
        try:
            if self.mode == "lut":
                return self.lut.prediction(self.space.canonical(arch))
            return self.measure(arch)
        except LatencyError:
            raise
        except UserError as error:
            raise LatencyError(str(error)) from None
        except Exception as error:  # noqa: BLE001 - a search records it, it must not crash
            raise LatencyError(f"latency of '{arch}' failed: {type(error).__name__}: {error}") from error

    def measure(self, arch: str, use_cache: bool = True) -> Measurement:
        """End to end: from the cache if this exact setting was measured before, else measured now."""
        arch = self.space.canonical(arch)
        where = self.where
        if use_cache:
            cached = self.cache.get(arch, self.resolution, where)
            if cached is not None:
                cached.source = "cache"
                return cached
        model = self.space.build(arch)
        measurement = self.measurer.measure(model, self.input_shape, arch, reference=self.reference)
        self.cache.put(arch, self.resolution, where, measurement)
        return measurement

    @property
    def lut(self) -> LatencyLUT:
        """The LUT for this space and backend, calibrated on first use."""
        if self._lut is None:
            self._lut = LatencyLUT(self.measurer, self.cache, self.network, self.resolution, self.space.name)
        if self._lut.correction is None:
            self.calibrate(self.calibration_archs)
        return self._lut

    def calibration_sample(self, n: int) -> list[str]:
        """`n` architectures for the LUT's correction, from a seed stream apart from validation's."""
        rng = random.Random(f"calibration-{self.seed}")
        return [self.space.sample(rng) for _ in range(n)]

    def calibrate(self, n: int) -> dict[str, Any]:
        if self._lut is None:
            self._lut = LatencyLUT(self.measurer, self.cache, self.network, self.resolution, self.space.name)
        archs = self.calibration_sample(n)
        measured = [self.measure(arch).latency_ms for arch in archs]
        return self._lut.calibrate(archs, measured)

    def close(self) -> None:
        self.measurer.close()
        self.cache.close()


def make_latency_estimator(
    space: SearchSpace | str,
    backend: str = "onnxruntime",
    mode: str = "measure",
    cache_path: str | None = None,
    resolution: int | None = None,
    runs: int = 50,
    warmup: int = 10,
    threads: int = 1,
    reference: str | None = "network",
    calibration_archs: int = 8,
    backend_options: dict[str, Any] | None = None,
    protocol: Protocol | None = None,
    **space_config: Any,
) -> LatencyEstimator:
    """An estimator for `space` (an object, or a name built with `resolution` and `space_config`).

    `backend_options` go to the backend (adb: serial, core_mask; ssh: host, python, remote_dir).
    The cache is `cache_path`, else $EDGENAS_CACHE_DIR/latency.sqlite, else
    ~/.cache/edgenas/latency.sqlite.
    """
    if isinstance(space, str):
        if resolution is not None:
            space_config["resolution"] = resolution
        space = get_space(space, **space_config)
    elif resolution is not None and getattr(space.config, "resolution", resolution) != resolution:
        raise LatencyError(f"resolution {resolution} differs from the space's {space.config.resolution}; "
                           "build the space at that resolution")
    chosen = get_backend(backend, **(backend_options or {}))
    protocol = protocol or Protocol(warmup=warmup, runs=runs, threads=threads)
    measurer = Measurer(chosen, protocol, cache := LatencyCache(cache_path))
    return LatencyEstimator(space, measurer, cache, mode=mode, reference=reference,
                            calibration_archs=calibration_archs)
