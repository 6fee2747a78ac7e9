"""The measuring protocol: warm-up, many timed runs, median with p10/p90, an interleaved reference.

`Measurer` owns one backend, a scratch folder and the reference models. For each candidate it
writes the backend's model file, times it in a fresh pinned process in alternation with a
reference (A B A B ...), and re-measures when the spread is too wide. The reported calibrated
figure is the median candidate/reference ratio times the reference's baseline: the reference's
own median latency, measured once per device and runtime (the lowest of a few medians, that is
the quietest the machine was), and kept in the cache.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from torch import nn

from edgenas.errors import UserError
from edgenas.latency.backends.base import Backend, BackendStatus, RawTiming, TimingItem, TimingJob
from edgenas.latency.cache import LatencyCache, Where
from edgenas.latency.converted import ConvertedFiles
from edgenas.latency.errors import LatencyError
from edgenas.latency.measurement import (
    Measurement,
    Summary,
    split_half_disagreement,
    summarize_interleaved,
)
from edgenas.latency.reference import layer_reference, network_reference
from edgenas.util.scratch import ScratchDirectory


@dataclass(frozen=True)
class Protocol:
    """How to time: warm-up and timed runs, threads, core (None: quietest), re-measure rules.

    A measurement whose two halves disagree by more than `max_disagreement` (relative) is taken
    again with twice the runs (and twice `min_seconds`), up to `retries` times; the steadiest
    attempt is kept.

    `min_seconds`: a measurement times at least `runs` pairs (candidate, reference) and goes on
    until the pairs have taken this long, so that a 2 ms network gets as long a look as a 20 ms
    one (`timing.time_pairs` says why). LUT layers, timed in passes, are not extended: a
    network's sum averages the noise of its ~20 layers.

    `clock="cpu"` (the default) reports the process CPU time of each run. With one runtime thread
    on one pinned core this equals the wall time on a machine of one's own, and it stays so on a
    shared machine, where wall time also counts the slices the core spent on other processes
    (seen here: 11.8 ms wall for 7.8 ms CPU at load 4 on 2 cores). Wall time is always reported
    beside it; backends that only see wall time (adb's benchmark_model) report that, and more than
    one thread forces wall time (CPU time would add the threads up).
    """

    warmup: int = 10
    runs: int = 50
    threads: int = 1
    core: int | None = None
    max_disagreement: float = 0.02
    retries: int = 2
    max_seconds: float = 60.0
    min_seconds: float = 2.0
    baseline_repeats: int = 3
    clock: str = "cpu"

    def __post_init__(self) -> None:
        if self.clock not in ("cpu", "wall"):
            raise LatencyError(f"unknown clock '{self.clock}'; use cpu or wall")
        if self.runs < 1 or self.warmup < 0 or self.threads < 1:
            raise LatencyError(f"runs must be >= 1, warm-up >= 0 and threads >= 1 (got runs={self.runs}, "
                               f"warmup={self.warmup}, threads={self.threads})")
        if not 0 <= self.min_seconds <= self.max_seconds:
            raise LatencyError(f"the minimum timed duration must be between 0 and the maximum ({self.max_seconds} s), "
                               f"got {self.min_seconds} s")


@dataclass
class _Reference:
    name: str
    item: TimingItem
    baseline_ms: float


# A converting process holds ~0.7 GB once litert-torch is loaded: the automatic count stops here.
MAX_AUTO_PREPARE_WORKERS = 4


def default_prepare_workers(backend: Backend) -> int:
    """Processes that convert at once when none are asked for: one per usable core (at most
    MAX_AUTO_PREPARE_WORKERS) for a backend whose conversion is slow, else one (in this process)."""
    if not backend.slow_to_prepare:
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cores, MAX_AUTO_PREPARE_WORKERS))


def _one_thread() -> None:
    """A converting process's start: one conversion per process, one process per core."""
    import torch

    torch.set_num_threads(1)


def _prepare_file(backend: Backend, model: nn.Module, input_shape: tuple[int, ...], path: Path) -> Path:
    """`backend.prepare` in a converting process (module level, so a spawned process can run it)."""
    return backend.prepare(model, input_shape, path)


# model (or its file, made once by `Measurer.prepare` when it is timed more than once), input shape,
# what it is (for the record)
Entry = tuple["nn.Module | TimingItem", Sequence[int], str]


class Measurer:
    """Measures models on one backend with the interleaved protocol."""

    def __init__(self, backend: Backend, protocol: Protocol | None = None,
                 cache: LatencyCache | None = None, prepare_workers: int | None = None,
                 converted: ConvertedFiles | None = None) -> None:
        """`converted`: where converted files are kept between runs (see `edgenas.latency.converted`);
        a model given a key is looked up there before it is converted. None: every file is scratch."""
        self.backend = backend
        self.converted = converted
        self.converted_reused = 0  # models whose kept file was timed instead of converting them again
        self.protocol = protocol or Protocol()
        self.cache = cache
        self.prepare_workers = default_prepare_workers(backend) if prepare_workers is None else prepare_workers
        if self.prepare_workers < 1:
            raise LatencyError(f"a measurer needs at least one converting process, got prepare_workers={self.prepare_workers}")
        self.prepared_in_workers = 0  # models converted by `prepare_many`'s processes so far
        self._pool: Any = None
        self._scratch = ScratchDirectory("edgenas-latency-")  # removed by a later measurer after a kill
        self._references: dict[str, _Reference] = {}
        self._baselines: dict[str, float] = {}
        self._status: BackendStatus | None = None
        self._count = 0

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None
        self._scratch.cleanup()

    @property
    def status(self) -> BackendStatus:
        if self._status is None:
            self._status = self.backend.require()
        return self._status

    @property
    def where(self) -> Where:
        """The cache key part for baselines: backend, device, runtime, threads."""
        return Where(self.backend.name, self.status.device, self.status.runtime,
                     f"threads={self.protocol.threads};clock={self.clock}")

    @property
    def clock(self) -> str:
        return "wall" if self.protocol.threads > 1 else self.protocol.clock

    def series(self, raw: RawTiming) -> tuple[list[float], list[float], str]:
        """The candidate and reference timings to report, and which clock they are on."""
        if self.clock == "cpu" and raw.candidate_cpu_ms:
            return raw.candidate_cpu_ms, raw.reference_cpu_ms, "cpu"
        return raw.candidate_ms, raw.reference_ms, "wall"

    def prepare(self, model: nn.Module, input_shape: Sequence[int], key: str | None = None) -> TimingItem:
        """The model as the backend's file, for measuring it in more than one `measure_many` call.
        `key` names what the model is (with its input shape it must decide the model's structure
        entirely): with kept files, a file kept under it is reused and a new one is kept."""
        return self._file(model, input_shape, "model", key)

    def prepare_many(self, models: Sequence[tuple[nn.Module, Sequence[int]]],
                     keys: Sequence[str | None] | None = None) -> list[TimingItem | UserError]:
        """The models as the backend's files, in order; a model the backend rejects is its
        UserError (ExportError) in its place, so that the caller can say which one it was.
        `keys` (one per model, as for `prepare`) lets kept files stand in for conversions.

        With `prepare_workers` > 1 they are converted that many at a time, in processes spawned on
        first use and kept until `close`. Why: a LiteRT LUT build converts every layer of the space
        (~2 s each, one core each), and nothing is timed while it converts: the passes that time
        the layers start once their files are written, with the converting processes idle.
        """
        keys = list(keys) if keys is not None else [None] * len(models)
        if self.prepare_workers <= 1:
            done: list[TimingItem | UserError] = []
            for (model, shape), key in zip(models, keys):
                try:
                    done.append(self.prepare(model, shape, key))
                except UserError as error:
                    done.append(error)
            return done
        from concurrent.futures.process import BrokenProcessPool

        targets = [self._target(shape, "model", key) for (_, shape), key in zip(models, keys)]
        pool = self._prepare_pool()
        futures = {i: pool.submit(_prepare_file, self.backend, model, tuple(shape), path)
                   for i, ((model, shape), (path, kept)) in enumerate(zip(models, targets)) if not kept}
        done = []
        for i, ((_, shape), (path, _)) in enumerate(zip(models, targets)):
            try:
                done.append(TimingItem(futures[i].result() if i in futures else path, tuple(shape)))
            except UserError as error:
                done.append(error)
            except BrokenProcessPool:
                raise LatencyError(f"a process converting models for {self.backend.name} died (out of memory?); "
                                   "run again with --prepare-workers 1") from None
        self.prepared_in_workers += len(futures)
        self.converted_reused += len(models) - len(futures)
        return done

    def _prepare_pool(self) -> Any:
        if self._pool is None:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            # spawn, not fork: this process may hold threads (torch's, a progress bar's)
            self._pool = ProcessPoolExecutor(self.prepare_workers, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_one_thread)
        return self._pool

    def _next_path(self, stem: str) -> Path:
        self._count += 1
        return self._scratch.path / f"{stem}{self._count}{self.backend.suffix}"

    def _target(self, input_shape: Sequence[int], stem: str, key: str | None) -> tuple[Path, bool]:
        """Where the model's file goes, and whether a kept file is already there."""
        if key is None or self.converted is None:
            return self._next_path(stem), False
        path = self.converted.path(key, input_shape)
        return path, path.is_file()

    def _file(self, model: nn.Module, input_shape: Sequence[int], stem: str, key: str | None = None) -> TimingItem:
        path, kept = self._target(input_shape, stem, key)
        if kept:
            self.converted_reused += 1
            return TimingItem(path, tuple(input_shape))
        return TimingItem(self.backend.prepare(model, input_shape, path), tuple(input_shape))

    # --- references -------------------------------------------------------------------------
    def reference(self, kind: str | None, input_shape: Sequence[int]) -> _Reference | None:
        """The reference for `kind` ('network', 'layer' or None) and this input shape, with its baseline."""
        if kind is None:
            return None
        if kind == "network":
            made = network_reference(input_shape)
            if made is None:
                made = layer_reference()
        elif kind == "layer":
            made = layer_reference()
        else:
            raise LatencyError(f"unknown reference '{kind}'; use 'network', 'layer' or none")
        name, model, shape = made
        if name not in self._references:
            item = self._file(model, shape, "reference", f"reference {name}")
            self._references[name] = _Reference(name, item, self.baseline(name, item))
        return self._references[name]

    def baseline(self, name: str, item: TimingItem) -> float:
        """The reference's latency when the machine was quietest: the lowest of a few medians, cached."""
        if name in self._baselines:
            return self._baselines[name]
        stored = self.cache.get_baseline(name, self.where) if self.cache is not None else None
        if stored is None:
            stored, medians = self._take_baseline(name, item)
            if self.cache is not None:
                self.cache.put_baseline(name, self.where, stored, {"medians_ms": medians})
        self._baselines[name] = stored
        return stored

    def _take_baseline(self, name: str, item: TimingItem) -> tuple[float, list[float]]:
        """The lowest of `baseline_repeats` medians, each from a process of its own, and the medians."""
        medians = []
        for _ in range(self.protocol.baseline_repeats):
            raw = next(iter(self.backend.run(self._job([item], None, self.protocol.runs))))
            if raw.error:
                raise LatencyError(f"cannot time the reference model {name}: {raw.error}")
            medians.append(Summary.of(self.series(raw)[0]).median)
        return min(medians), medians

    def retake_baseline(self, kind: str, input_shape: Sequence[int]) -> dict[str, Any]:
        """Time the reference again as the baseline is taken, and carry every figure in the cache
        calibrated with the old baseline over to the new one (`LatencyCache.rebase`).

        Why: the baseline is taken once, when the cache is new; taken in a slow or fast phase of
        the machine it scales every figure alike (`lut build` warns when its own measurements
        say so). Ratios to the reference are what repeats, so nothing needs measuring again.
        """
        if self.cache is None:
            raise LatencyError("re-taking a baseline needs the latency cache it lives in")
        ref = self.reference(kind, input_shape)
        if ref is None:
            raise LatencyError("there is no reference to re-take: measurements without one have no baseline")
        baseline, medians = self._take_baseline(ref.name, ref.item)
        report = self.cache.rebase(ref.name, self.where, baseline, {"medians_ms": medians})
        self._baselines[ref.name] = ref.baseline_ms = baseline
        return report

    def _job(self, items: Sequence[TimingItem], reference: _Reference | TimingItem | None, runs: int,
             in_passes: bool = False) -> TimingJob:
        ref_item = reference.item if isinstance(reference, _Reference) else reference
        p = self.protocol
        # Re-measurements double `runs`; the minimum duration grows with them.
        min_seconds = min(p.max_seconds, p.min_seconds * runs / p.runs)
        return TimingJob(list(items), ref_item, p.warmup, runs, p.threads, p.core, p.max_seconds, in_passes,
                         min_seconds)

    # --- measuring --------------------------------------------------------------------------
    def measure(self, model: nn.Module | TimingItem, input_shape: Sequence[int], what: str = "",
                reference: str | None = "network") -> Measurement:
        """One model, end to end; raises LatencyError with the reason if it cannot be measured."""
        result = next(self.measure_many([(model, input_shape, what)], reference))[1]
        if isinstance(result, Exception):
            raise result
        return result

    def measure_many(self, entries: Sequence[Entry], reference: str | None = "network",
                     progress: Callable[[int], None] | None = None,
                     reference_shape: Sequence[int] | None = None, retries: int | None = None,
                     in_passes: bool = False) -> Iterator[tuple[int, Measurement | LatencyError]]:
        """Measure several models in one measuring process, yielding (index, result) as each ends.

        A model that fails (export rejected, runtime error) yields a LatencyError, not an exception.
        All entries share one reference, made for `reference_shape` (default: the first entry's).
        `retries` overrides the protocol's number of re-measurements. `in_passes` times the models
        together, each once per pass (`timing.time_chain`: how layers of a network run), where
        the backend can (`Backend.times_in_passes`).
        """
        retries = self.protocol.retries if retries is None else retries
        if not entries:
            return
        ref = self.reference(reference, reference_shape or entries[0][1])
        items: dict[int, TimingItem] = {}
        for index, (model, shape, what) in enumerate(entries):
            if isinstance(model, TimingItem):
                items[index] = model
                continue
            try:
                items[index] = self._file(model, shape, "model")
            except UserError as error:
                yield index, LatencyError(f"cannot prepare {what or 'the model'} for {self.backend.name}: {error}")
        best: dict[int, tuple[RawTiming, int]] = {}
        pending = sorted(items)
        runs = self.protocol.runs
        for attempt in range(1, retries + 2):
            job = self._job([items[i] for i in pending], ref, runs, in_passes)
            for raw in self.backend.run(job):
                index = pending[raw.index]
                if raw.error:
                    if index not in best:
                        best[index] = (raw, attempt)
                    continue
                old = best.get(index)
                if old is None or old[0].error or self._spread(raw) < self._spread(old[0]):
                    best[index] = (raw, attempt)
            noisy = [i for i in pending if not best[i][0].error and self._spread(best[i][0]) > self.protocol.max_disagreement]
            done = [i for i in pending if i not in noisy]
            for index in done:
                yield index, self._result(best[index], entries[index], ref, attempt, False)
                if progress:
                    progress(index)
            pending = noisy
            runs *= 2
            if not pending:
                break
        for index in pending:
            yield index, self._result(best[index], entries[index], ref, retries + 1, True)
            if progress:
                progress(index)

    def _result(self, best: tuple[RawTiming, int], entry: Entry, ref: _Reference | None, attempts: int,
                noisy: bool) -> Measurement | LatencyError:
        raw, _ = best
        _, shape, what = entry
        if raw.error:
            return LatencyError(f"{self.backend.name} could not run {what or 'the model'}: {raw.error}")
        candidate_ms, reference_ms, clock = self.series(raw)
        candidate = Summary.of(candidate_ms)
        measurement = Measurement(
            median_ms=candidate.median, p10_ms=candidate.p10, p90_ms=candidate.p90, runs=candidate.n,
            backend=self.backend.name, device=self.status.device, runtime=self.status.runtime,
            where=raw.where, what=what, input_shape=tuple(shape), threads=self.protocol.threads,
            warmup=self.protocol.warmup, attempts=attempts, noisy=noisy, clock=clock,
            wall_median_ms=Summary.of(raw.candidate_ms).median,
        )
        if ref is not None and reference_ms:
            _, ref_summary, ratio = summarize_interleaved(candidate_ms, reference_ms)
            measurement = replace(
                measurement, reference=ref.name, reference_median_ms=ref_summary.median,
                reference_ratio=ratio.median, ratio_p10=ratio.p10, ratio_p90=ratio.p90,
                reference_baseline_ms=ref.baseline_ms, calibrated_ms=ratio.median * ref.baseline_ms,
            )
        measurement.extra["split_half"] = round(self._spread(raw), 5)
        return measurement

    def _spread(self, raw: RawTiming) -> float:
        """The split-half disagreement of what will be reported (see `split_half_disagreement`)."""
        if raw.error or not raw.candidate_ms:
            return float("inf")
        candidate_ms, reference_ms, _ = self.series(raw)
        return split_half_disagreement(candidate_ms, reference_ms or None)
