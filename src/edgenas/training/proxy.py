"""Proxy training: score an architecture by training it briefly on a held-out split.

MnasNet ranks candidates by a short training on a proxy task rather than by full training;
what matters is that the *ranking* is stable and that a bad candidate costs one failed trial,
never the search. So this evaluator:

- is given its search space (the same object the strategy samples and the latency estimator
  measures; it never builds one of its own), decodes each candidate once (`space.decode`) and
  builds it from that, seeded, so the same arch + seed gives the same accuracy on CPU (bit for bit);
- trains it on a seeded, class-stratified train part of a dataset subset and reports accuracy on
  the held-out part (never the dataset's test split, which stays for final reporting);
- re-estimates BatchNorm statistics on training batches before validating: after a few hundred
  steps the running averages (momentum 0.01, as in MnasNet) are still far from the weights'
  real statistics and validation accuracy would read ~chance for every candidate;
- asks an optional latency collaborator for the target latency (any object with
  `.latency(arch)` returning something with `median_ms`, e.g. `edgenas.latency`'s);
- turns NaN loss, out of memory, a latency failure or any exception into
  `TrialResult.failed(reason)`.

It is constructible from a plain dict and its space (`ProxyTrainingEvaluator.from_dict`) and
picklable (the loaded data is dropped and re-read in the worker), so a Ray worker can build its own.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Protocol

import torch

from edgenas.data import Augment, ImageDataset, load_dataset
from edgenas.errors import UserError
from edgenas.evaluators.base import TrialResult
from edgenas.spaces.base import SearchSpace
from edgenas.training.loaders import make_loaders, resolve_device
from edgenas.training.loop import (
    TrainConfig,
    TrainingDiverged,
    evaluate,
    recalibrate_batchnorm,
    train,
)
from edgenas.util.modelinfo import count_macs, count_params


class LatencySource(Protocol):
    """What the evaluator needs from the latency subsystem."""

    def latency(self, arch: Any) -> Any: ...  # the space's decoded arch -> an object with `median_ms`


@dataclass
class ProxyConfig:
    """Everything that defines a proxy evaluation; plain values only, so it travels as a dict."""

    dataset: str = "digits"
    data_dir: str | None = None
    subset: int | None = None  # images drawn (class-balanced) from the train split; None = all
    val_fraction: float = 0.2  # held out from the subset for validation
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=1, batch_size=64, lr=0.05))
    augment: Augment = field(default_factory=Augment)
    eval_batch_size: int = 256
    bn_recalibration_batches: int = 10  # 0 keeps the running averages from training
    device: str = "auto"  # "auto": cuda when available, else cpu
    channels_last: bool = True  # NHWC batches and model: 1.5-2.7x faster CPU training here
    threads: int | None = None  # torch intra-op threads for this process (None: leave as is)
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.train, dict):
            self.train = TrainConfig(**self.train)
        if isinstance(self.augment, dict):
            self.augment = Augment(**self.augment)
        if not 0.0 < self.val_fraction < 1.0:
            raise UserError(f"val_fraction must lie strictly between 0 and 1, got {self.val_fraction}")
        if self.subset is not None and self.subset < 2:
            raise UserError(f"subset must hold at least 2 images, got {self.subset}")

    def to_dict(self) -> dict[str, Any]:
        """Plain values (what a run records, and what `from_dict` reads back)."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values["train"] = self.train.to_dict()
        values["augment"] = asdict(self.augment)
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ProxyConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise UserError(f"unknown proxy settings {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return cls(**values)


class ProxyTrainingEvaluator:
    """Accuracy by short training, latency from a collaborator; failures become failed trials."""

    def __init__(
        self,
        config: ProxyConfig,
        space: SearchSpace,
        *,
        latency: LatencySource | None = None,
        dataset: ImageDataset | None = None,
        progress: bool = False,
    ) -> None:
        """`space` must fit the data (resolution, channels, classes; `spaces.fitted_space` makes
        one); `dataset` (optional) replaces loading `config.dataset` (a caller that holds it)."""
        self.config = config
        self.space = space
        self.latency_source = latency
        self.progress = progress
        self._given_dataset = dataset
        self._parts: tuple[ImageDataset, ImageDataset] | None = None

    @classmethod
    def from_dict(cls, values: dict[str, Any], space: SearchSpace, *,
                  latency: LatencySource | None = None) -> ProxyTrainingEvaluator:
        return cls(ProxyConfig.from_dict(values), space, latency=latency)

    def to_dict(self) -> dict[str, Any]:
        return self.config.to_dict()

    # Pickling sends the settings, the space and the collaborator, not tensors: the worker reloads the data.
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_parts"] = None
        state["_given_dataset"] = None
        return state

    # ---- lazily prepared pieces -------------------------------------------------------------
    def parts(self) -> tuple[ImageDataset, ImageDataset]:
        """(train part, validation part): a seeded subset of the train split, split by class."""
        if self._parts is None:
            cfg = self.config
            data = self._given_dataset or load_dataset(cfg.dataset, "train", cfg.data_dir)
            if cfg.subset is not None:
                data = data.subset(cfg.subset, cfg.seed)
            self._parts = data.split(1.0 - cfg.val_fraction, cfg.seed)
        return self._parts

    def prepare(self) -> None:
        """Load and split the data now (raises UserError for bad settings)."""
        self.parts()

    # ---- the evaluation ---------------------------------------------------------------------
    def evaluate(self, arch: str) -> TrialResult:
        """Proxy-train `arch` and return its validation accuracy (and latency); never raises."""
        started = time.perf_counter()
        try:
            return self._evaluate(arch, started)
        except TrainingDiverged as error:
            return TrialResult.failed(f"diverged: {error}", seconds=time.perf_counter() - started)
        except Exception as error:  # noqa: BLE001 - a candidate's failure must not end the search
            return TrialResult.from_exception(error, seconds=time.perf_counter() - started)

    def _evaluate(self, arch: str, started: float) -> TrialResult:
        cfg = self.config
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        device = resolve_device(cfg.device)
        train_part, val_part = self.parts()
        decoded = self.space.decode(arch)  # the one decoding of the string in this trial
        torch.manual_seed(cfg.seed)
        model = self.space.build(decoded)
        c, h, w = train_part.shape
        metrics: dict[str, Any] = {
            "params": count_params(model),
            "macs": count_macs(model, (1, c, h, w)),
        }
        latency_ms = None
        if self.latency_source is not None:
            latency_ms = self._latency(decoded, metrics)
            if isinstance(latency_ms, TrialResult):
                return latency_ms
        loaders = make_loaders(train_part, val_part, cfg.train.batch_size, cfg.eval_batch_size,
                               augment=cfg.augment, device=device, seed=cfg.seed,
                               channels_last=cfg.channels_last, recalibrate=cfg.bn_recalibration_batches > 0)
        stats = train(model, loaders.train, cfg.train, progress=self.progress, description="proxy training")
        if loaders.bn is not None:
            recalibrate_batchnorm(model, loaders.bn, cfg.bn_recalibration_batches)
        accuracy, val_loss = evaluate(model, loaders.eval)
        metrics.update(
            train_seconds=stats.seconds,
            train_steps=stats.steps,
            train_images=stats.images,
            images_per_second=stats.images_per_second,
            train_loss=stats.train_loss,
            train_accuracy=stats.train_accuracy,
            val_loss=val_loss,
            val_images=len(val_part),
            seconds=time.perf_counter() - started,
            device=str(device),
        )
        return TrialResult(accuracy=accuracy, latency_ms=latency_ms, metrics=metrics)

    def _latency(self, decoded: Any, metrics: dict[str, Any]) -> float | TrialResult:
        assert self.latency_source is not None
        try:
            measured = self.latency_source.latency(decoded)
            median = float(measured.median_ms)
        except Exception as error:  # noqa: BLE001 - a device failure is this trial's failure
            return TrialResult.failed(f"latency: {type(error).__name__}: {error}", **metrics)
        value = float(getattr(measured, "latency_ms", median))
        metrics["latency_median_ms"] = median
        if hasattr(measured, "to_dict"):
            metrics["latency"] = measured.to_dict()
        return value
