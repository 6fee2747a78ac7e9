"""The per-layer lookup table: time each distinct layer once, predict a network as the sum.

Each layer is its own model, timed in passes with up to CHUNK other layers and the network
reference (MobileNetV2 at the network's input shape): every pass runs the reference, then each
layer once (`timing.time_chain`), so between two runs of a layer the others evict its weights
from the caches, as the other layers of a network do. Timed back to back with itself instead, a
layer runs from warm caches and the sums predicted networks worse (88 % of 25 held-out networks
within +-10 % against 100 % in passes, `benchmarks/latency_lut_timing.py`; the old scheme, one
layer alternated with a whole reference run at a time, also took ~25x longer to build). Entries are stored calibrated (ratio to the
reference run of the same pass x the reference's baseline), so entries timed on a quiet minute
and on a busy one agree as far as a ratio can make them; each is the mean of `passes_per_layer`
passes in separate processes (`LatencySettings.layer_passes`). Backends that time one model per call
(adb's benchmark_model) time layers alone; the LUT's key says which (`timing=`).

Why a correction: a layer timed alone pays what a network pays once: the runtime's call overhead
and the layout conversions at its input and output (ONNX Runtime reorders NCHW to its blocked
layout and back), whose cost grows with the activation size. So the prediction is

    latency = a * (sum of layer latencies) + d * (input activations, M) + b

fitted by least squares on relative errors on a few networks measured end to end (`calibrate`;
with fewer than 20, only `a * sum + b`). How good it is, is measured (`accuracy_report`), not
assumed. A term per layer (call overhead) was dropped: fitted, it came out near 0 ms, and refits
on random draws of 112 and 124 measured networks judged the form without it better on average at
every calibration size from 8 to 40 (benchmarks/latency_lut_calibration.py). Corrections stored
with it (`c_per_layer`) still apply.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from edgenas.blocks import make_divisible
from edgenas.errors import UserError
from edgenas.latency.backends.base import TimingItem
from edgenas.latency.cache import LatencyCache, Where
from edgenas.latency.errors import LatencyError
from edgenas.latency.layers import LayerSpec, conv_size, network_layers
from edgenas.latency.measurement import Measurement
from edgenas.latency.protocol import Entry, Measurer
from edgenas.latency.settings import DEFAULT_LAYER_PASSES
from edgenas.spaces.blockstrings import BlockArgs
from edgenas.spaces.mnas import MnasSpace, op_to_block
from edgenas.spaces.mobilenet import NetworkConfig

CHUNK = 24  # layers per measuring process and pass (about one network's worth); stored chunk by chunk
FULL_CORRECTION_ARCHS = 20  # fewer calibration networks fit only `a * sum + b` (see fit_correction)


class LatencyLUT:
    """Layer latencies for one backend, device and network configuration, with its correction."""

    def __init__(self, measurer: Measurer, cache: LatencyCache, config: NetworkConfig, resolution: int,
                 name: str = "mnas", reference: str = "network", passes_per_layer: int = DEFAULT_LAYER_PASSES) -> None:
        if passes_per_layer < 1:
            raise LatencyError(f"each layer needs at least one timing pass, got {passes_per_layer}")
        self.passes_per_layer = passes_per_layer
        self.measurer = measurer
        self.cache = cache
        self.config = config
        self.resolution = resolution
        self.name = f"{name}@{resolution}:classes={config.num_classes}:in={config.in_channels}"
        self.reference = reference
        base = measurer.where
        self.in_passes = measurer.backend.times_in_passes
        timing = "passes" if self.in_passes else "alone"
        self.where = Where(base.backend, base.device, base.runtime,
                           f"{base.setting};act={config.act};ref={reference};timing={timing}")
        self._table = cache.get_layers(self.where)
        self.correction: dict[str, Any] | None = cache.get_correction(self.name, self.where)

    def __len__(self) -> int:
        return len(self._table)

    @property
    def network_shape(self) -> tuple[int, int, int, int]:
        """The input of the networks this LUT predicts (and the shape its reference is made for)."""
        return (1, self.config.in_channels, self.resolution, self.resolution)

    def layers(self, arch: str) -> list[LayerSpec]:
        return network_layers(arch, self.config, self.resolution)

    def missing(self, specs: Iterable[LayerSpec]) -> list[LayerSpec]:
        """The distinct layers not yet in the table, in first-seen order."""
        seen: dict[tuple[str, str], LayerSpec] = {}
        for spec in specs:
            key = (spec.key, spec.shape_key)
            if key not in self._table and key not in seen:
                seen[key] = spec
        return list(seen.values())

    def fill(self, specs: Iterable[LayerSpec], progress: Callable[[int], None] | None = None) -> int:
        """Time every missing layer among `specs` and store it; returns how many were timed.

        Passes are cut from `specs` in the given order: give layers network by network, or
        dealt by `network_like_order` (as `space_layers` does), so that a pass runs like a network.
        """
        todo = self.missing(specs)
        for start in range(0, len(todo), CHUNK):
            chunk = todo[start : start + CHUNK]
            entries = [(item, spec.input_shape, spec.key) for item, spec in zip(self._prepare(chunk), chunk)]
            timed: dict[int, list[Measurement]] = {i: [] for i in range(len(chunk))}
            for repeat in range(self.passes_per_layer):
                order = list(range(len(chunk))) if repeat % 2 == 0 else list(reversed(range(len(chunk))))
                for index, result in self._time_in_passes([entries[i] for i in order]):
                    spec = chunk[order[index]]
                    if isinstance(result, Exception):
                        raise LatencyError(f"cannot time layer {spec.key} at {spec.shape_key}: {result}")
                    timed[order[index]].append(result)
            for index, results in timed.items():
                spec = chunk[index]
                latency = sum(r.latency_ms for r in results) / len(results)
                data = {**results[0].to_dict(), "passes_ms": [r.latency_ms for r in results]}
                self.cache.put_layer(spec.key, spec.shape_key, self.where, latency, data)
                self._table[(spec.key, spec.shape_key)] = latency
            if progress:
                progress(len(chunk))
        return len(todo)

    def fill_dealt(self, archs: Iterable[str], progress: Callable[[int], None] | None = None) -> int:
        """Time the missing layers of these networks dealt by `network_like_order` over all of
        them (as the full build deals the space's), not network by network; returns how many."""
        return self.fill(network_like_order(self.missing(spec for arch in archs for spec in self.layers(arch))),
                         progress)

    def _prepare(self, specs: Sequence[LayerSpec]) -> list[TimingItem]:
        """The layers' files, converted once for all their passes (several at a time where the
        backend's conversion is slow: `Measurer.prepare_many`)."""
        items = self.measurer.prepare_many([(spec.build(self.config).eval(), spec.input_shape) for spec in specs],
                                           [f"layer {spec.key} {self.config!r}" for spec in specs])
        for spec, item in zip(specs, items):
            if isinstance(item, UserError):
                raise LatencyError(f"cannot time layer {spec.key} at {spec.shape_key}: {item}")
        return items  # type: ignore[return-value]  # every item is a TimingItem here

    def _time_in_passes(self, entries: Sequence[Entry]) -> Iterator[tuple[int, Measurement | LatencyError]]:
        """One measuring process: these layers, in this order, each once per pass."""
        # No re-measuring: a layer is a few percent of a network and the errors of ~20 layers
        # average out, while re-measuring every noisy 0.1 ms layer tripled the build time.
        yield from self.measurer.measure_many(entries, reference=self.reference, reference_shape=self.network_shape,
                                              retries=0, in_passes=self.in_passes)

    def layer_sum(self, specs: Sequence[LayerSpec], fill: bool = True) -> float:
        """Sum of the stored latencies of these layers (timing missing ones first if `fill`)."""
        if fill:
            self.fill(specs)
        try:
            return sum(self._table[(spec.key, spec.shape_key)] for spec in specs)
        except KeyError as missing:
            raise LatencyError(f"layer {missing} is not in the LUT; run 'edgenas latency lut build'") from None

    def features(self, arch: str) -> list[float]:
        """[layer sum (ms), number of layers, input activations (millions of values)] of `arch`."""
        specs = self.layers(arch)
        activations = sum(math.prod(spec.input_shape) for spec in specs) / 1e6
        return [self.layer_sum(specs), float(len(specs)), activations]

    def calibrate(self, archs: Sequence[str], measured_ms: Sequence[float],
                  measured_reference: tuple[str, float] | None = None) -> dict[str, Any]:
        """Fit the correction on networks measured end to end, store and return it.

        20 or more networks: `a * sum + d * activations + b`; 3 to 19: `a * sum + b`; 1 or 2: `a * sum`.
        The correction records the baselines its inputs were calibrated with (the layers' reference,
        and `measured_reference`, the measurements' reference and baseline, if any), so that
        `LatencyCache.rebase` can carry it over to a re-taken baseline.
        """
        if len(archs) != len(measured_ms) or not archs:
            raise LatencyError("calibration needs at least one end-to-end measurement per architecture")
        # Their missing layers are timed dealt like any other networks' (as the full build and
        # `LatencyEstimator.validate` do), not in passes cut from these very networks: the
        # correction must be fitted on layer sums made the way the predicted networks' are.
        self.fill_dealt(archs)
        features = [self.features(arch) for arch in archs]
        layer_reference = self.measurer.reference(self.reference, self.network_shape)
        baselines = {"layers": [layer_reference.name, layer_reference.baseline_ms] if layer_reference else None,
                     "measured": list(measured_reference) if measured_reference else None}
        self.correction = {**fit_correction(features, measured_ms), "archs": list(archs), "fitted": time.time(),
                           "baselines": baselines}
        self.cache.put_correction(self.name, self.where, self.correction)
        return self.correction

    def store_held_out(self, report: dict[str, Any]) -> None:
        """Keep the build's held-out check with the correction it judged (`lut_check.build_checked`)."""
        if self.correction is None:
            raise LatencyError("a held-out report needs a fitted correction to go with")
        self.correction = {**self.correction, "held_out": report}
        self.cache.put_correction(self.name, self.where, self.correction)

    def predict(self, arch: str) -> float:
        """Predicted end-to-end latency (ms) of `arch`: the layer sum through the correction."""
        return self._corrected(self.features(arch))

    def _corrected(self, features: Sequence[float]) -> float:
        if self.correction is None:
            raise LatencyError("the LUT has no end-to-end correction yet; calibrate it on a few "
                               "measured networks (edgenas latency lut build does this)")
        c = self.correction
        total, layers, activations = features
        return c["a"] * total + c["c_per_layer"] * layers + c["d_per_mvalue"] * activations + c["b"]

    def prediction(self, arch: str) -> Measurement:
        """The prediction as a Measurement (source 'lut', no runs), for code that wants one type."""
        features = self.features(arch)
        value = self._corrected(features)
        status = self.measurer.status
        return Measurement(
            median_ms=value, p10_ms=value, p90_ms=value, runs=0, backend=self.where.backend,
            device=status.device, runtime=status.runtime, where="lut", what=arch,
            input_shape=self.network_shape,
            threads=self.measurer.protocol.threads, source="lut", calibrated_ms=value,
            extra={"layer_sum_ms": features[0],
                   "correction": {k: self.correction[k] for k in ("a", "c_per_layer", "d_per_mvalue", "b", "n")}},
        )


def fit_correction(features: Sequence[Sequence[float]], measured_ms: Sequence[float]) -> dict[str, Any]:
    """Least-squares correction from per-network [layer sum, layers, activations] to measured ms.

    The squares are of relative errors (each network's row weighted by 1 / its measured ms). Why:
    a LUT is judged, and used, by its relative error, and an unweighted fit lets the slowest
    networks decide the coefficients at the expense of the fast ones. Over six builds of 148
    networks at 224 px it put more held-out networks within +-5 %, and at 32 px it made no
    difference (docs/bench/latency.md, "Issue 17 at 224 with the minimum timed duration").

    As many terms as the networks support: 20 or more fit `a * sum + d * act + b`, 3 to 19
    `a * sum + b`, 1 or 2 `a * sum`; the unfitted terms are 0 (`c_per_layer` always: the layer
    count is a feature for corrections stored by earlier versions). Why 20: fitted on 12 or 16
    networks, the activation term's worst draws were much worse on one of two runs (69 % within
    +-10 % against 83-86 %); from 24 it was as good or better in mean and worst draw on both
    (benchmarks/latency_lut_calibration.py).
    """
    x = np.array(features, dtype=float)
    measured = np.array(measured_ms, dtype=float)
    n = len(measured)
    columns = [0, 2] if n >= FULL_CORRECTION_ARCHS else [0]
    design = x[:, columns]
    if n >= 3:
        design = np.hstack([design, np.ones((n, 1))])
    weight = 1.0 / measured
    fitted, *_ = np.linalg.lstsq(design * weight[:, None], measured * weight, rcond=None)
    coef = np.zeros(4)  # a, c, d, b
    coef[columns] = fitted[: len(columns)]
    if n >= 3:
        coef[3] = fitted[-1]
    residual = measured - (x @ coef[:3] + coef[3])
    return {
        "a": float(coef[0]), "c_per_layer": float(coef[1]), "d_per_mvalue": float(coef[2]), "b": float(coef[3]),
        "n": n, "measured_ms": measured.tolist(), "features": x.tolist(),
        "rmse_ms": float(np.sqrt(np.mean(residual**2))),
    }


def network_like_order(specs: Sequence[LayerSpec]) -> list[LayerSpec]:
    """Deal layers into passes that run like networks: one layer of each input size in turn, largest first.

    Why: a pass of 24 layers that all see 112x112 inputs (the order in which the space is
    enumerated) evicts the caches differently from a network, whose layers go from large activations to
    small. The full MnasNet space at 224 (2,837 layers), timed in enumeration order, predicted 37 of
    40 random networks within +-10 % (max error 12.0 %); dealt like this, 40 of 40 (max 8.1 %).
    """
    by_size: dict[int, list[LayerSpec]] = {}
    for spec in specs:
        by_size.setdefault(spec.input_shape[-1] * spec.input_shape[-2], []).append(spec)
    groups = [by_size[size] for size in sorted(by_size, reverse=True)]
    return [spec for round_ in itertools.zip_longest(*groups) for spec in round_ if spec is not None]


def space_layers(space: MnasSpace) -> list[LayerSpec]:
    """Every distinct layer any architecture of the MnasNet space can contain (for a full build),
    dealt by `network_like_order` so that the passes timing them run like networks."""
    config = space.config
    net = config.network
    stem = BlockArgs("cn", 1, 3, net.stem_stride, net.stem_channels)
    found: dict[tuple[str, str], LayerSpec] = {}

    def add(spec: LayerSpec) -> None:
        found.setdefault((spec.key, spec.shape_key), spec)

    size = config.resolution
    add(LayerSpec("stem", net.in_channels, net.stem_channels, (1, net.in_channels, size, size), stem))
    size = conv_size(size, net.stem_stride)
    widths = {net.stem_channels}
    for block_index, base in enumerate(config.base_stages):
        outs = sorted({_width(space, base, w) for w in config.width_multipliers})
        layer_choices = space.block_decisions(block_index)[5].choices
        repeats = base.repeats + max(layer_choices)
        after = conv_size(size, base.stride)
        for op in config.ops:
            block_type, expansion = op_to_block(op)
            for kernel in config.kernels:
                for se in config.se_ratios:
                    for skip in config.skips:
                        for out in outs:
                            args = BlockArgs(block_type, 1, kernel, base.stride, out, expansion, float(se), skip)
                            for cin in sorted(widths):
                                add(_layer(args, cin, size))
                            if repeats > 1:
                                add(_layer(BlockArgs(block_type, 1, kernel, 1, out, expansion, float(se), skip),
                                           out, after))
        size = after
        widths = set(outs)
    for cin in sorted(widths):
        add(LayerSpec("head", cin, net.head_channels, (1, cin, size, size)))
    add(LayerSpec("classifier", net.head_channels, net.num_classes, (1, net.head_channels, size, size)))
    return network_like_order(list(found.values()))


def _width(space: MnasSpace, base, multiplier: float) -> int:
    """The space's own rounding of a block width (its channel divisor), for equal keys."""
    if hasattr(space, "width"):
        return space.width(base, multiplier)
    return make_divisible(base.channels * multiplier)


def _layer(args: BlockArgs, in_channels: int, size: int) -> LayerSpec:
    spec = network_layers([args], NetworkConfig(stem_channels=in_channels, stem_stride=1), size)[1]
    return spec


def accuracy_report(measured_ms: Sequence[float], predicted_ms: Sequence[float]) -> dict[str, float]:
    """How well predictions match measurements: shares within +-5 % and +-10 %, RMSE, Kendall's tau."""
    # Imported here, not at the top: scipy.stats is slow to import and few commands need it.
    from scipy.stats import kendalltau

    measured = np.asarray(measured_ms, dtype=float)
    predicted = np.asarray(predicted_ms, dtype=float)
    relative = np.abs(predicted - measured) / measured
    tau = kendalltau(measured, predicted).statistic if len(measured) > 1 else float("nan")
    return {
        "n": int(len(measured)),
        "within_5pct": float(np.mean(relative <= 0.05)),
        "within_10pct": float(np.mean(relative <= 0.10)),
        "rmse_ms": float(np.sqrt(np.mean((predicted - measured) ** 2))),
        "mean_abs_pct": float(100 * np.mean(relative)),
        "max_abs_pct": float(100 * np.max(relative)),
        "kendall_tau": float(tau),
    }
