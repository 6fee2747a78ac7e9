"""`make_latency_estimator`: what a search calls for the latency of each candidate.

`latency(arch) -> Measurement` measures (mode "measure": cache first, else a fresh pinned
measurement with the interleaved reference, then stored) or predicts from the per-layer LUT
(mode "lut": missing layers are timed on first use, and the correction is calibrated on a few
end-to-end measurements the first time). Every failure is a `LatencyError`, which the evaluator
records as a failed trial.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from edgenas.errors import UserError
from edgenas.latency.backends import get_backend
from edgenas.latency.cache import LatencyCache, Where
from edgenas.latency.errors import LatencyError
from edgenas.latency.lut import PASSES_PER_LAYER, LatencyLUT, accuracy_report
from edgenas.latency.measurement import Measurement
from edgenas.latency.protocol import Measurer, Protocol
from edgenas.spaces import SearchSpace, get_space
from edgenas.spaces.mobilenet import NetworkConfig, build_network

MODES = ("measure", "lut")
# Networks measured end to end to fit the LUT's correction. Why 24, not 12: with 12, which 12 were
# drawn decided the LUT's accuracy. Refitted on 100 random draws of a run's measured networks
# (benchmarks/latency_lut_calibration.py, two runs), the first version (four terms on 12) put
# 95.6 / 94.7 % of the rest within +-10 % on average and 63 / 48 % in the worst draw; the
# correction now, on 24, 97.9 / 97.6 % and 95.5 / 90 %. It costs ~40-80 s more per LUT build.
DEFAULT_CALIBRATION_ARCHS = 24


class LatencyEstimator:
    """Latency of architectures of one space, on one backend, through the cache or the LUT."""

    def __init__(self, space: SearchSpace, measurer: Measurer, cache: LatencyCache, mode: str = "measure",
                 reference: str | None = "network", calibration_archs: int = DEFAULT_CALIBRATION_ARCHS, seed: int = 0,
                 lut_reference: str = "network", layer_passes: int = PASSES_PER_LAYER) -> None:
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
        self.lut_reference = lut_reference
        self.layer_passes = layer_passes
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
        return measurement_where(self.measurer, self.network, self.reference)

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
        return measure_arch(self.space.canonical(arch), self.measurer, self.cache, self.network,
                            self.resolution, self.reference, use_cache)

    @property
    def lut(self) -> LatencyLUT:
        """The LUT for this space and backend, calibrated on first use."""
        if self._lut is None:
            self._lut = self.make_lut()
        if self._lut.correction is None:
            self.calibrate(self.calibration_archs)
        return self._lut

    def make_lut(self) -> LatencyLUT:
        """A LUT object over this estimator's cache, backend and network configuration."""
        return LatencyLUT(self.measurer, self.cache, self.network, self.resolution, self.space.name,
                          reference=self.lut_reference, passes_per_layer=self.layer_passes)

    def calibration_sample(self, n: int) -> list[str]:
        """`n` architectures for the LUT's correction, from a seed stream apart from validation's."""
        rng = random.Random(f"calibration-{self.seed}")
        return [self.space.sample(rng) for _ in range(n)]

    def calibrate(self, n: int) -> dict[str, Any]:
        if self._lut is None:
            self._lut = self.make_lut()
        archs = self.calibration_sample(n)
        measured = [self.measure(arch).latency_ms for arch in archs]
        return self._lut.calibrate(archs, measured)

    def validation_sample(self, n: int, seed: int = 1) -> list[str]:
        """`n` distinct random architectures, none of them used for the LUT's calibration."""
        rng = random.Random(f"validation-{seed}")
        held_out = set(self.calibration_sample(self.calibration_archs))
        archs: list[str] = []
        for _ in range(100 * n):
            if len(archs) == n:
                break
            arch = self.space.sample(rng)
            if arch not in held_out and arch not in archs:
                archs.append(arch)
        return archs

    def validate(self, n: int, seed: int = 1, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
        """Measure `n` random architectures end to end and compare the LUT's predictions with them.

        Returns the shares within +-5 % and +-10 %, RMSE, Kendall's tau, and every pair.
        """
        if n < 2:
            raise LatencyError(f"validation needs at least 2 architectures, got {n}")
        lut = self.lut
        archs = self.validation_sample(n, seed)
        lut.fill(spec for arch in archs for spec in lut.layers(arch))
        measured, predicted = [], []
        for arch in archs:
            measured.append(self.measure(arch).latency_ms)
            predicted.append(lut.predict(arch))
            if progress:
                progress(arch)
        report = accuracy_report(measured, predicted)
        report.update(backend=self.backend, device=self.measurer.status.device, resolution=self.resolution,
                      space=self.space.name, calibration_archs=lut.correction["n"] if lut.correction else 0,
                      lut_entries=len(lut),
                      pairs=[{"arch": a, "measured_ms": m, "predicted_ms": p}
                             for a, m, p in zip(archs, measured, predicted)])
        return report

    def close(self) -> None:
        self.measurer.close()
        self.cache.close()


def measurement_where(measurer: Measurer, network: NetworkConfig, reference: str | None) -> Where:
    """The cache key part of an end-to-end measurement: backend, device, runtime and setting."""
    base = measurer.where
    setting = (f"{base.setting};classes={network.num_classes};in={network.in_channels};"
               f"stem={network.stem_stride};act={network.act};ref={reference or 'none'}")
    return Where(base.backend, base.device, base.runtime, setting)


def measure_arch(arch: str, measurer: Measurer, cache: LatencyCache | None, network: NetworkConfig,
                 resolution: int, reference: str | None = "network", use_cache: bool = True) -> Measurement:
    """Measure the network of an architecture string end to end, through the cache."""
    where = measurement_where(measurer, network, reference)
    if use_cache and cache is not None:
        cached = cache.get(arch, resolution, where)
        if cached is not None:
            cached.source = "cache"
            return cached
    model = build_network(arch, network, resolution)
    shape = (1, network.in_channels, resolution, resolution)
    measurement = measurer.measure(model, shape, arch, reference=reference)
    if cache is not None:
        cache.put(arch, resolution, where, measurement)
    return measurement


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
    calibration_archs: int = DEFAULT_CALIBRATION_ARCHS,
    backend_options: dict[str, Any] | None = None,
    protocol: Protocol | None = None,
    lut_reference: str = "network",
    layer_passes: int = PASSES_PER_LAYER,
    **space_config: Any,
) -> LatencyEstimator:
    """An estimator for `space` (an object, or a name built with `resolution` and `space_config`).

    `backend_options` go to the backend (adb: serial, core_mask; ssh: host, python, remote_dir).
    `lut_reference` is what LUT layers are timed against, once per pass: "network" (MobileNetV2 at
    the network's input, the default) or "layer" (one small MBConv layer: a shorter pass, warmer
    caches; where the device only times one model per call, ~15x cheaper to build).
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
                            calibration_archs=calibration_archs, lut_reference=lut_reference,
                            layer_passes=layer_passes)
