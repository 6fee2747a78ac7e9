"""A latency-aware gradient search of the MnasNet space into a run directory (issue 13).

Alternating optimisation as DARTS's first order does it (`edgenas.darts.Architect`): each step
trains the supernet's weights on a training batch (one path drawn from the distribution), then,
after `warmup_epochs` of weights only, takes one Adam step on the architecture logits on a
batch of the held-out part (CE of a drawn path joined with E[LAT] at the target). The sampling
temperature is annealed geometrically per step from `tau_start` (the first architecture step) to
`tau_end` (the last). Why per step and not per epoch as FBNet: with few epochs a per-epoch schedule
falls in a few large jumps (at 2 epochs straight from 5 to 0.3), and the latency term, which hardly
acts on a near-uniform distribution, gets no temperature in between to steer at
(docs/bench/gradient_search.md, the CIFAR-10 searches).

Resume: after every epoch `DIR/resume.pt` holds the model (weights and logits), both optimizers,
the step counters, the torch / Python / both loaders' RNG states and the history, written whole
(`EpochCheckpoint`); rerunning the same command continues from the last whole epoch bit for bit
on CPU, and a resume.pt of other settings, data or latency target/device is refused. Why rerun
rather than a `--resume` flag: the command is the run's identity, so a killed job is restarted by
the same line that started it (as `edgenas supernet train` and `edgenas darts search`).

The run directory: `history.json` (per epoch: the temperature at its end, E[LAT], derived
architecture, the probabilities of every decision, train / validation CE), `arch_history.png`, and at the end
`search.pt` (state_dict) and `result.json` (derived architecture, E[LAT], its LUT prediction and
its end-to-end measurement on the target). A directory with result.json and no resume.pt is
finished.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import torch

from edgenas.data import Augment, ImageDataset, load_dataset
from edgenas.errors import UserError
from edgenas.latency.settings import LatencySettings
from edgenas.spaces.mnas import MnasSpace
from edgenas.spaces.mnas_choices import space_choices
from edgenas.supernet.latency_loss import PENALTIES
from edgenas.supernet.search_model import DERIVATIONS
from edgenas.training.resume import EpochCheckpoint, data_fingerprint, loop_state, restore_loop

RESUME = "resume.pt"
HISTORY = "history.json"
PLOT = "arch_history.png"
RESULT = "result.json"
WEIGHTS = "search.pt"


@dataclass(frozen=True)
class SearchSettings:
    """Everything that defines a gradient search (the defaults live here and only here)."""

    target_ms: float = 0.0  # required: the latency target T
    dataset: str = "digits"
    data_dir: str | None = None
    subset: int | None = None
    val_fraction: float = 0.5  # the architecture's half (DARTS splits the training data in two)
    space_preset: str = "demo"
    space_options: tuple[str, ...] = ()
    sharing: str = "shared"
    epochs: int = 8
    warmup_epochs: int = 2
    batch_size: int = 64
    lr: float = 0.05  # weights: SGD, momentum 0.9, cosine over all steps
    momentum: float = 0.9
    weight_decay: float = 4e-5
    arch_lr: float = 0.05  # logits: Adam (the architect's)
    arch_weight_decay: float = 0.0
    penalty: str = "abs"
    latency_weight: float = 2.0
    tau_start: float = 5.0
    tau_end: float = 0.3
    derive: str = "near-target"  # or most-probable (GradientSearchModel.derive says why)
    derive_tolerance: float = 0.02  # near-target: the band around T, relative, on the LUT's prediction
    supernet: str | None = None  # a trained supernet directory to inherit weights from
    seed: int = 0
    latency: LatencySettings = field(default_factory=lambda: LatencySettings(mode="lut"))

    def __post_init__(self) -> None:
        checks = [
            (self.target_ms > 0, f"--target-ms must be positive, got {self.target_ms:g}"),
            (self.epochs >= 1, f"--epochs must be at least 1, got {self.epochs}"),
            (0 <= self.warmup_epochs < self.epochs,
             f"--warmup-epochs must lie in 0..{self.epochs - 1} (fewer than --epochs), got {self.warmup_epochs}"),
            (0.0 < self.val_fraction < 1.0, f"--val-fraction must lie strictly between 0 and 1, got {self.val_fraction}"),
            (self.penalty in PENALTIES, f"unknown --penalty '{self.penalty}'; choose one of {', '.join(PENALTIES)}"),
            (self.latency_weight >= 0, f"--latency-weight cannot be negative, got {self.latency_weight:g}"),
            (self.tau_start > 0 and self.tau_end > 0, "--tau-start and --tau-end must be positive"),
            (self.derive in DERIVATIONS, f"unknown --derive '{self.derive}'; choose one of {', '.join(DERIVATIONS)}"),
            (0.0 <= self.derive_tolerance < 1.0, f"--derive-tolerance must lie in [0, 1), got {self.derive_tolerance:g}"),
            (self.batch_size >= 1, f"--batch-size must be at least 1, got {self.batch_size}"),
            (self.subset is None or self.subset >= 4, f"--subset must hold at least 4 images, got {self.subset}"),
        ]
        for ok, message in checks:
            if not ok:
                raise UserError(message)

    def tau(self, step: int, steps_per_epoch: int) -> float:
        """The sampling temperature at weight step `step` of the run (from 0): tau_start through the
        warm-up, then geometric to tau_end at the last architecture step."""
        first = self.warmup_epochs * steps_per_epoch
        span = (self.epochs - self.warmup_epochs) * steps_per_epoch - 1
        if step < first:
            return self.tau_start
        if span <= 0:
            return self.tau_end
        return self.tau_start * (self.tau_end / self.tau_start) ** (min(step - first, span) / span)

    def choices(self) -> dict[str, Any]:
        return space_choices(self.space_preset, list(self.space_options))

    def to_dict(self) -> dict[str, Any]:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values["latency"] = asdict(self.latency)
        values["space_options"] = list(self.space_options)
        return json.loads(json.dumps(values))


def finished(out: str | Path) -> bool:
    out = Path(out)
    return (out / RESULT).exists() and not (out / RESUME).exists()


class _RunState:
    """What the checkpoint saves besides the loop's own: the history, the architect's Adam and
    the validation loader's shuffling generator."""

    def __init__(self, architect, val_loader) -> None:
        self.architect = architect
        self.val_loader = val_loader
        self.history: list[dict[str, Any]] = []

    def state_dict(self) -> dict[str, Any]:
        return {"history": json.loads(json.dumps(self.history)), "architect": self.architect.optimizer.state_dict(),
                "val_rng": self.val_loader.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.history = list(state["history"])
        self.architect.optimizer.load_state_dict(state["architect"])
        self.val_loader.generator.set_state(state["val_rng"])


def prepare(settings: SearchSettings, dataset: ImageDataset | None = None):
    """Data, space, LUT and E[LAT], all checked before anything is written (UserError, one line):
    (train part, arch part, space, estimator, expected latency, latency range)."""
    from edgenas.latency.estimator import make_latency_estimator
    from edgenas.supernet.expected_latency import ExpectedLatency
    from edgenas.supernet.training import space_for

    data = dataset or load_dataset(settings.dataset, "train", settings.data_dir)
    space = space_for(settings.choices(), data.shape, data.num_classes)
    if settings.subset is not None:
        data = data.subset(settings.subset, settings.seed)
    train_part, arch_part = data.split(1.0 - settings.val_fraction, settings.seed)
    if settings.supernet is not None:
        check_supernet(settings, space, data.shape, data.num_classes)
    estimator = make_latency_estimator(space, settings.latency)
    expected = ExpectedLatency(space, estimator.lut)
    check_correction(space, estimator.lut)
    low, high = expected.latency_range()
    if not low <= settings.target_ms <= high:
        estimator.close()
        raise UserError(f"--target-ms {settings.target_ms:g} lies outside this space's latency range on "
                        f"{estimator.backend} ({low:.3f} to {high:.3f} ms, the LUT's fastest and slowest "
                        f"networks); choose a target in it")
    return train_part, arch_part, space, estimator, expected, (low, high)


def check_correction(space: MnasSpace, lut) -> None:
    """Refuse a LUT whose correction was fitted on networks of another space (one line)."""
    for arch in lut.correction.get("archs") or []:
        try:
            space.parse(arch)
        except UserError:
            raise UserError(f"the latency LUT's correction was fitted on networks of another space ({arch}); "
                            "use a --latency-cache of this space or rebuild the LUT for it") from None


def check_supernet(settings: SearchSettings, space: MnasSpace, shape, classes: int) -> None:
    """Refuse a --supernet trained on another space, input or weight sharing (one line)."""
    from edgenas.supernet.training import load_supernet

    _, record = load_supernet(settings.supernet)
    differs = [name for name, mine, theirs in (
        ("space choices", settings.choices(), record.get("choices")),
        ("image shape", list(shape), record.get("shape")), ("classes", classes, record.get("classes")),
        ("sharing", settings.sharing, record.get("settings", {}).get("sharing")))
        if json.loads(json.dumps(mine)) != theirs]
    if differs:
        raise UserError(f"the supernet in {settings.supernet} is of another configuration (differs in: "
                        f"{', '.join(differs)}); pass the same --space-preset/--space-option/--sharing and "
                        "dataset it was trained with, or drop --supernet")


def identity(settings: SearchSettings, train_part: ImageDataset, arch_part: ImageDataset, estimator) -> dict[str, Any]:
    values = settings.to_dict()
    values.pop("data_dir")
    values["latency"].pop("cache")
    values["latency"].pop("keep_converted")  # where files are kept decides no figure (nor did runs before it)
    return {"job": "edgenas supernet search", **values, "choices": settings.choices(),
            "where": str(estimator.lut.where), "correction": estimator.lut.correction.get("a"),
            "train_data": data_fingerprint(train_part.images, train_part.labels),
            "arch_data": data_fingerprint(arch_part.images, arch_part.labels)}


def run_search(out: str | Path, settings: SearchSettings, *, dataset: ImageDataset | None = None,
               progress: bool = True, force: bool = False, measure: bool = True,
               stop_after: int | None = None) -> dict[str, Any]:
    """Search into `out` (resuming a killed run there); return the result record.

    `stop_after` ends the process's work after that many epochs in all (for tests of resume:
    the checkpoint is then exactly what a kill after that epoch leaves)."""
    from edgenas.darts import Architect
    from edgenas.supernet.arch_history import plot_history
    from edgenas.supernet.network import Supernet
    from edgenas.supernet.search_model import GradientSearchModel
    from edgenas.supernet.training import load_supernet
    from edgenas.training.loaders import make_loaders
    from edgenas.util.atomic import torch_save_atomic, write_atomic
    from edgenas.util.lock import WriterLock

    out = Path(out)
    if finished(out) and not force:
        raise UserError(f"{out / RESULT} already exists (a finished search); choose another --out or pass --force")
    train_part, arch_part, space, estimator, expected, bounds = prepare(settings, dataset)
    run_identity = identity(settings, train_part, arch_part, estimator)
    started = time.perf_counter()
    try:
        with WriterLock.for_directory(out, "gradient search"):
            if force:
                (out / RESUME).unlink(missing_ok=True)
            torch.manual_seed(settings.seed)
            if settings.supernet is not None:
                supernet, _ = load_supernet(settings.supernet)
                supernet.train()
            else:
                supernet = Supernet(space, settings.sharing)
            model = GradientSearchModel(supernet, expected, settings.target_ms, settings.penalty,
                                        settings.latency_weight, settings.derive, settings.derive_tolerance)
            augment = Augment.for_dataset(train_part)
            loaders = make_loaders(train_part, arch_part, settings.batch_size, settings.batch_size, augment=augment,
                                   device="cpu", seed=settings.seed, channels_last=False, recalibrate=False)
            from edgenas.data.loader import BatchLoader

            val_loader = BatchLoader(arch_part, settings.batch_size, device="cpu", seed=settings.seed + 7,
                                     mean=loaders.train.mean, std=loaders.train.std,
                                     drop_last=len(arch_part) > settings.batch_size)
            weights = torch.optim.SGD(model.weight_parameters(), lr=settings.lr, momentum=settings.momentum,
                                      weight_decay=settings.weight_decay)
            architect = Architect(model, weights, order=1, lr=settings.arch_lr,
                                  weight_decay=settings.arch_weight_decay)
            state = _RunState(architect, val_loader)
            checkpoint = EpochCheckpoint(out / RESUME, run_identity, extra=state, what="gradient search")
            steps_per_epoch = len(loaders.train)
            total = steps_per_epoch * settings.epochs
            epoch, step = 0, 0
            saved = checkpoint.load()
            if saved is not None:
                epoch, step, _ = restore_loop(saved, checkpoint, model, weights, loaders.train, torch.device("cpu"),
                                              steps_per_epoch, total)
            out.mkdir(parents=True, exist_ok=True)
            bar = _Bar(settings.epochs, epoch, progress)
            try:
                while epoch < settings.epochs:
                    if stop_after is not None and epoch >= stop_after:
                        return {"stopped_after": epoch}
                    record = _epoch(model, architect, weights, loaders.train, val_loader, settings, epoch, step, total,
                                    steps_per_epoch)
                    step += steps_per_epoch
                    epoch += 1
                    state.history.append(record)
                    checkpoint.save(loop_state(model, weights, loaders.train, torch.device("cpu"), epoch, step,
                                               steps_per_epoch, total, {}))
                    write_atomic(out / HISTORY, json.dumps(state.history, indent=1) + "\n")
                    bar.update(record)
            finally:
                bar.close()
            plot_history(state.history, settings.target_ms, out / PLOT)
            model.tau = settings.tau(total - 1, steps_per_epoch)  # also when a resumed run had no epoch left
            arch, most_probable = model.derive(), model.distribution.derive()
            result = {
                "arch": arch, "target_ms": settings.target_ms, "expected_ms": float(model.expected_ms().detach()),
                "predicted_ms": float(estimator.lut.predict(arch)), "latency_range_ms": list(bounds),
                "derive": settings.derive, "most_probable_arch": most_probable,
                "most_probable_predicted_ms": float(estimator.lut.predict(most_probable)),
                "backend": estimator.backend, "where": str(estimator.lut.where),
                "epochs": settings.epochs, "final_val_ce": state.history[-1]["val_ce"],
                "seconds_this_run": time.perf_counter() - started, "settings": settings.to_dict(),
            }
            if measure:
                result["measured_ms"] = float(estimator.measure(arch).latency_ms)
                result["measured_error"] = result["measured_ms"] / settings.target_ms - 1.0
                if most_probable != arch:  # both, so a user sees what the near-target derivation bought
                    result["most_probable_measured_ms"] = float(estimator.measure(most_probable).latency_ms)
            torch_save_atomic({"state_dict": model.state_dict(), "arch": arch}, out / WEIGHTS)
            write_atomic(out / RESULT, json.dumps(result, indent=2) + "\n")
            checkpoint.remove()
            return result
    finally:
        estimator.close()


def _epoch(model, architect, weights, train_loader, val_loader, settings: SearchSettings, epoch: int, step: int,
           total: int, steps_per_epoch: int) -> dict[str, Any]:
    """One epoch: per training batch a weight step, then (after warm-up) an architecture step, both
    at the step's temperature; the record holds the epoch's last."""
    start = time.perf_counter()
    model.train()
    searching = epoch >= settings.warmup_epochs
    train_ce, val_ce, val_loss = [], [], []
    val_batches = iter(val_loader)
    for images, labels in train_loader:
        model.tau = settings.tau(step, steps_per_epoch)
        lr = 0.5 * settings.lr * (1.0 + math.cos(math.pi * step / total))
        for group in weights.param_groups:
            group["lr"] = lr
        weights.zero_grad(set_to_none=True)
        loss = model.weight_loss(images, labels)
        loss.backward()
        weights.step()
        train_ce.append(float(loss.detach()))
        step += 1
        if searching:
            try:
                val = next(val_batches)
            except StopIteration:
                val_batches = iter(val_loader)
                val = next(val_batches)
            val_loss.append(architect.step((images, labels), val, lr))
            val_ce.append(model.last["ce"])
    arch = model.derive()
    return {
        "epoch": epoch + 1, "tau": model.tau, "searching": searching,
        "expected_ms": float(model.expected_ms().detach()), "arch": arch,
        "train_ce": sum(train_ce) / len(train_ce),
        "val_ce": sum(val_ce) / len(val_ce) if val_ce else None,
        "val_loss": sum(val_loss) / len(val_loss) if val_loss else None,
        "probabilities": model.distribution.table(), "seconds": time.perf_counter() - start,
    }


class _Bar:
    """The epoch bar: the derived architecture and E[LAT] after each epoch."""

    def __init__(self, epochs: int, done: int, enabled: bool) -> None:
        from rich.progress import TextColumn

        from edgenas.util.progress import progress_bar

        self._progress = progress_bar(TextColumn("{task.fields[info]}"), disable=not enabled)
        self._task = self._progress.add_task("gradient search", total=epochs, completed=done, info="")
        self._progress.start()

    def update(self, record: dict[str, Any]) -> None:
        self._progress.update(self._task, advance=1, info=f"E[LAT] {record['expected_ms']:.3f} ms  {record['arch']}")

    def close(self) -> None:
        self._progress.stop()


def settings_with(settings: SearchSettings, **changes: Any) -> SearchSettings:
    return replace(settings, **changes)
