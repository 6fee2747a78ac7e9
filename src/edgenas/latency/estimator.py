"""`make_latency_estimator(space, settings)`: what a search calls for the latency of each candidate.

`latency(arch) -> Measurement` measures (mode "measure": cache first, else a fresh pinned
measurement with the interleaved reference, then stored) or predicts from the per-layer LUT
(mode "lut": missing layers are timed on first use, and the correction is calibrated on a few
end-to-end measurements the first time). `arch` may be the string or the blocks the space
already decoded from it (`MnasSpace.decode`), so a trial decodes its string once. Every failure is
a `LatencyError`, which the evaluator records as a failed trial.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

from edgenas.errors import UserError
from edgenas.latency.backends import get_backend
from edgenas.latency.cache import LatencyCache, Where
from edgenas.latency.converted import ConvertedFiles
from edgenas.latency.errors import LatencyError
from edgenas.latency.lut import LatencyLUT
from edgenas.latency.lut_check import distinct_sample, drift, judge, repeatability
from edgenas.latency.measurement import Measurement
from edgenas.latency.protocol import Measurer
from edgenas.latency.settings import LatencySettings
from edgenas.spaces import SearchSpace
from edgenas.spaces.blockstrings import BlockArgs, encode_arch
from edgenas.spaces.mobilenet import NetworkConfig, build_network

Arch = str | Sequence[BlockArgs]
MIN_VALIDATION_ARCHS = 2  # errors need at least two networks to compare (a Kendall tau, a spread)


class LatencyEstimator:
    """Latency of architectures of one space, on one backend, through the cache or the LUT."""

    def __init__(self, space: SearchSpace, measurer: Measurer, cache: LatencyCache,
                 settings: LatencySettings | None = None, seed: int = 0) -> None:
        config = getattr(space, "config", None)
        if config is None or not hasattr(config, "network") or not hasattr(space, "parse"):
            raise LatencyError(f"latency needs a space of mobile networks (mnas); '{space.name}' is not one")
        self.space = space
        self.measurer = measurer
        self.cache = cache
        self.settings = settings or LatencySettings()
        self.mode = self.settings.mode
        self.reference = self.settings.reference
        self.calibration_archs = self.settings.calibration_archs
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

    def blocks(self, arch: Arch) -> list[BlockArgs]:
        """The space's blocks of `arch`: decoded and checked if a string, as given if decoded already."""
        return self.space.parse(arch) if isinstance(arch, str) else list(arch)

    def latency(self, arch: Arch) -> Measurement:
        """The latency of `arch` (a Measurement; `latency_ms` is the figure to rank by)."""
        try:
            if self.mode == "lut":
                return self.lut.prediction(self.blocks(arch))
            return self.measure(arch)
        except LatencyError:
            raise
        except UserError as error:
            raise LatencyError(str(error)) from None
        except Exception as error:  # noqa: BLE001 - a search records it, it must not crash
            raise LatencyError(f"latency of '{arch}' failed: {type(error).__name__}: {error}") from error

    def convert_ahead(self, archs: Sequence[str], chunk: int = 8) -> int:
        """Convert the networks of `archs` not yet measured nor kept, several at a time where the
        backend's conversion is slow (`Measurer.prepare_many`), so that measuring them one by one
        afterwards only times. Only with kept files (`--keep-converted`): scratch files would be
        lost to the measurements. Returns how many were converted."""
        converted = self.measurer.converted
        if converted is None:
            return 0
        todo = []
        where = self.where
        for arch in dict.fromkeys(archs):
            key = network_key(arch, self.network, self.resolution)
            if self.cache.get(arch, self.resolution, where) is None and not converted.path(key, self.input_shape).is_file():
                todo.append((arch, key))
        for start in range(0, len(todo), chunk):
            part = todo[start : start + chunk]
            models = [(build_network(self.blocks(arch), self.network, self.resolution), self.input_shape)
                      for arch, _ in part]
            # A network the backend rejects is left to its measurement, which says so.
            self.measurer.prepare_many(models, [key for _, key in part])
        return len(todo)

    def measure(self, arch: Arch, use_cache: bool = True) -> Measurement:
        """End to end: from the cache if this exact setting was measured before, else measured now."""
        return measure_arch(self.blocks(arch), self.measurer, self.cache, self.network,
                            self.resolution, self.reference, use_cache)

    def measure_again(self, arch: Arch) -> Measurement:
        """End to end, afresh, and not stored: a second figure beside the cached one."""
        return measure_arch(self.blocks(arch), self.measurer, None, self.network, self.resolution, self.reference)

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
                          reference=self.settings.lut_reference, passes_per_layer=self.settings.layer_passes)

    def calibration_sample(self, n: int) -> list[str]:
        """`n` architectures for the LUT's correction, from a seed stream apart from validation's."""
        rng = random.Random(f"calibration-{self.seed}")
        return [self.space.sample(rng) for _ in range(n)]

    def calibrate(self, n: int) -> dict[str, Any]:
        if self._lut is None:
            self._lut = self.make_lut()
        archs = self.calibration_sample(n)
        self.convert_ahead(archs)
        measured = [self.measure(arch) for arch in archs]
        reference = next(((m.reference, m.reference_baseline_ms) for m in measured if m.reference), None)
        return self._lut.calibrate(archs, [m.latency_ms for m in measured], reference)

    def validation_sample(self, n: int, seed: int = 1) -> list[str]:
        """`n` distinct random architectures, none of those the stored correction was fitted on.

        The exclusion reads the networks stored with the LUT's correction, not a list recomputed
        from today's calibration count: a LUT calibrated on 24 networks and validated with
        `--calibration 12` must still not be judged on the other 12 it was fitted on.
        """
        rng = random.Random(f"validation-{seed}")
        stored = self.lut.correction or {}
        # A correction stored without its networks (older versions) was fitted on the first
        # `n` of the calibration stream: the stored count, not today's setting.
        held_out = set(stored.get("archs") or self.calibration_sample(int(stored.get("n") or self.calibration_archs)))
        held_out |= set((stored.get("held_out") or {}).get("archs", ()))  # they decided when the build stopped
        return distinct_sample(self.space, rng, n, held_out)

    def validate(self, n: int, seed: int = 1, progress: Callable[[str], None] | None = None,
                 repeat: int = 0) -> dict[str, Any]:
        """Measure `n` random architectures end to end and compare the LUT's predictions with them.

        Returns the shares within +-5 % and +-10 %, RMSE, Kendall's tau, and every pair. With
        `repeat` = K, the first K networks are measured afresh (not read from the cache: both figures
        must come from this hour) and then a second time once all n are done, minutes later, without
        storing the second over the first; `repeatability` says how far the device's own
        measurements repeat: the floor of any LUT judged against them.
        """
        if n < MIN_VALIDATION_ARCHS:
            raise LatencyError(f"validation needs at least {MIN_VALIDATION_ARCHS} architectures, got {n}")
        if not 0 <= repeat <= n:
            raise LatencyError(f"networks measured again must be between 0 and the {n} validated, got {repeat}")
        lut = self.lut
        archs = self.validation_sample(n, seed)
        # Missing layers are timed dealt like any other networks' (as the full build does), not in
        # passes cut from these very networks: that would imitate the network being predicted.
        lut.fill_dealt(archs)
        self.convert_ahead(archs)
        measured, predicted = [], []
        for index, arch in enumerate(archs):
            measured.append(self.measure(arch, use_cache=index >= repeat).latency_ms)
            predicted.append(lut.predict(arch))
            if progress:
                progress(arch)
        report = judge(measured, predicted)
        report["drift"] = drift(report, lut.correction.get("held_out"))
        if repeat:
            again = []
            for arch in archs[:repeat]:
                again.append(self.measure_again(arch).latency_ms)
                if progress:
                    progress(arch)
            report["repeatability"] = repeatability(measured[:repeat], again)
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


def measure_arch(arch: Arch, measurer: Measurer, cache: LatencyCache | None, network: NetworkConfig,
                 resolution: int, reference: str | None = "network", use_cache: bool = True) -> Measurement:
    """Measure the network of an architecture (string or decoded blocks) end to end, through the cache."""
    blocks = arch if isinstance(arch, str) else list(arch)
    arch = arch if isinstance(arch, str) else encode_arch(blocks)
    where = measurement_where(measurer, network, reference)
    if use_cache and cache is not None:
        cached = cache.get(arch, resolution, where)
        if cached is not None:
            cached.source = "cache"
            return cached
    shape = (1, network.in_channels, resolution, resolution)
    try:
        item = measurer.prepare(build_network(blocks, network, resolution), shape, network_key(arch, network, resolution))
    except UserError as error:  # the backend rejected the network (ExportError)
        raise LatencyError(f"cannot prepare {arch} for {measurer.backend.name}: {error}") from None
    measurement = measurer.measure(item, shape, arch, reference=reference)
    if cache is not None:
        cache.put(arch, resolution, where, measurement)
    return measurement


def network_key(arch: str, network: NetworkConfig, resolution: int) -> str:
    """What decides the network a string builds: the string, the network configuration, the input."""
    return f"network {arch} @{resolution} {network!r}"


def make_latency_estimator(space: SearchSpace, settings: LatencySettings | None = None) -> LatencyEstimator:
    """An estimator for `space` (an mnas space, built at its resolution) with these settings.

    A module-level function of picklable arguments, so `functools.partial(make_latency_estimator,
    space, settings)` is the factory a Ray latency actor builds its own estimator from, on the
    device it owns.
    """
    settings = settings or LatencySettings()
    backend = get_backend(settings.backend, **settings.backend_options())
    converted = ConvertedFiles(settings.keep_converted, backend) if settings.keep_converted else None
    cache = LatencyCache(settings.cache)  # after every check: it creates the file
    measurer = Measurer(backend, settings.protocol, cache, settings.prepare_workers, converted)
    return LatencyEstimator(space, measurer, cache, settings)
