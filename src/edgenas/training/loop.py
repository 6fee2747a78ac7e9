"""The one training loop every part uses: SGD with momentum, cosine learning rate, options.

Proxy training (MnasNet search), final training (`edgenas train`) and DARTS' evaluation training
all call `train`; what differs between them is only a `TrainConfig` and, for DARTS, a `loss_fn`
(logits + auxiliary logits) and an `epoch_callback` (drop-path schedule, metrics).

Long trainings pass an `EpochCheckpoint` (`edgenas.training.resume`): after every epoch the loop
writes its whole state (model, optimizer, step counter, RNG states, running stats, the caller's own
state) to one file, written whole or not at all, and a later `train` with the same checkpoint
resumes after the last finished epoch, bit for bit on CPU as if it had never stopped. Without one
the loop writes nothing.

The learning rate follows a cosine from `lr` to `min_lr` over the run's total steps, updated every
step (so a 200-step proxy run gets the whole schedule, not one epoch's worth of it); with
`lr_warmup` it also rises linearly over that share of the steps first (`scheduled_lr`).

`recalibrate_batchnorm` lives here too: every run that trains briefly (proxy training, a short
final training) must re-estimate BatchNorm statistics before `evaluate` reads anything.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from edgenas.errors import UserError
from edgenas.training.resume import EpochCheckpoint, loop_state, restore_loop
from edgenas.util.progress import TaskBar

LossFn = Callable[[Any, torch.Tensor], torch.Tensor]
EpochCallback = Callable[[int, nn.Module], None]


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite: the candidate (or its learning rate) cannot train."""


@dataclass
class TrainConfig:
    """How to train. `max_steps`, when set, fixes the run's length in optimizer steps instead
    of `epochs` (as many passes over the loader as that takes, the last one partial)."""

    epochs: int = 1
    max_steps: int | None = None
    batch_size: int = 64
    lr: float = 0.05
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 4e-5
    label_smoothing: float = 0.0
    grad_clip: float | None = None
    min_lr: float = 0.0
    seed: int = 0
    lr_warmup: float = 0.0  # share of the run's steps over which the learning rate rises linearly

    def __post_init__(self) -> None:
        if self.epochs < 1 and not self.max_steps:
            raise UserError(f"epochs must be at least 1, got {self.epochs}")
        if self.max_steps is not None and self.max_steps < 1:
            raise UserError(f"max_steps must be at least 1, got {self.max_steps}")
        if self.batch_size < 1:
            raise UserError(f"batch size must be at least 1, got {self.batch_size}")
        if self.lr <= 0 or self.min_lr < 0 or self.min_lr > self.lr:
            raise UserError(f"need 0 <= min_lr <= lr and lr > 0, got lr={self.lr} min_lr={self.min_lr}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise UserError(f"label smoothing must lie in [0, 1), got {self.label_smoothing}")
        if not 0.0 <= self.lr_warmup < 1.0:
            raise UserError(f"the learning-rate warm-up is a share of the run's steps in [0, 1), got {self.lr_warmup}")

    def to_dict(self) -> dict[str, Any]:
        """The settings; `lr_warmup` only when set, so that runs stored before it existed resume."""
        values = asdict(self)
        if not self.lr_warmup:
            values.pop("lr_warmup")
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        return cls(**values)

    def total_steps(self, steps_per_epoch: int) -> int:
        return self.max_steps if self.max_steps else self.epochs * steps_per_epoch


@dataclass
class TrainStats:
    """What a run did: its length, its last-epoch loss and accuracy, and its speed."""

    epochs: int = 0
    steps: int = 0
    images: int = 0
    seconds: float = 0.0
    train_loss: float = float("nan")
    train_accuracy: float = float("nan")
    epoch_losses: list[float] = field(default_factory=list)

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["images_per_second"] = self.images_per_second
        return out


def cosine_lr(step: int, total: int, lr: float, min_lr: float) -> float:
    """Learning rate at `step` of `total`: half a cosine from `lr` down to `min_lr`."""
    progress = min(1.0, step / max(1, total))
    return min_lr + 0.5 * (lr - min_lr) * (1.0 + math.cos(math.pi * progress))


def scheduled_lr(step: int, total: int, config: TrainConfig) -> float:
    """The learning rate of `step`: the cosine, times a linear ramp from 1/`warm` to 1 over the first
    `warm = lr_warmup * total` steps. Why a ramp (docs/bench/supernet.md, "Rank fidelity"): a
    supernet's uniformly sampled paths start far apart, and at the full rate from step 0 its
    loss rose above chance for the first epochs."""
    lr = cosine_lr(step, total, config.lr, config.min_lr)
    warm = config.lr_warmup * total
    return lr * min(1.0, (step + 1) / warm) if warm >= 1 else lr


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.SGD:
    return torch.optim.SGD(
        [p for p in model.parameters() if p.requires_grad],
        lr=config.lr,
        momentum=config.momentum,
        nesterov=config.nesterov and config.momentum > 0,
        weight_decay=config.weight_decay,
    )


def logits_of(outputs: Any) -> torch.Tensor:
    """The main logits of a model's output (DARTS' evaluation network returns (logits, aux))."""
    return outputs[0] if isinstance(outputs, (tuple, list)) else outputs


def _place(model: nn.Module, loader: Any) -> torch.device:
    """Move the model to the loader's device, and to channels-last when the loader yields it."""
    device = _loader_device(loader, model)
    if getattr(loader, "channels_last", False):
        model.to(device=device, memory_format=torch.channels_last)
    else:
        model.to(device)
    return device


def _loader_device(loader: Any, model: nn.Module) -> torch.device:
    device = getattr(loader, "device", None)
    if device is not None:
        return torch.device(device)
    first = next(model.parameters(), None)
    return first.device if first is not None else torch.device("cpu")


# How often the loss is read back to the host to check it is finite. Reading it every step would
# make every GPU step wait for the previous one; a NaN found a few steps late fails the run anyway.
CHECK_EVERY = 10


def train(
    model: nn.Module,
    loader: Any,
    config: TrainConfig,
    *,
    loss_fn: LossFn | None = None,
    epoch_callback: EpochCallback | None = None,
    epoch_end_callback: Callable[[int, nn.Module, TrainStats], None] | None = None,
    checkpoint: EpochCheckpoint | None = None,
    progress: bool = True,
    description: str = "train",
) -> TrainStats:
    """Train `model` in place on `loader`'s batches per `config`; return what happened.

    - `loss_fn(outputs, targets)`: defaults to cross-entropy with `config.label_smoothing`; pass
      one for models whose output is not plain logits. Accuracy reads `outputs[0]` for tuples.
    - `epoch_callback(epoch, model)`: called at the START of every epoch (0-based), before its
      first step: set per-epoch settings there (e.g. drop-path probability = p * epoch / epochs).
    - `epoch_end_callback(epoch, model, stats)`: called after each epoch's last step (checkpoint,
      validation); `stats` holds the run so far.
    - The model moves to `loader.device` (and to channels-last if `loader.channels_last`); a
      loader without a device (a plain DataLoader) keeps the model where it is, and its batches
      are copied there.
    - `checkpoint`: after every epoch (after `epoch_end_callback`) the loop's state is saved there;
      when it already holds a state, training resumes after that epoch (callbacks are called for
      the remaining epochs only) and ends with the weights an uninterrupted run ends with.
    - `torch.manual_seed(config.seed)` is set first so dropout and drop-path draws repeat.
    - A NaN/inf loss raises `TrainingDiverged`.
    """
    device = _place(model, loader)
    model.train()
    torch.manual_seed(config.seed)
    criterion = loss_fn or nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    optimizer = make_optimizer(model, config)
    steps_per_epoch = len(loader)
    if steps_per_epoch == 0:
        raise UserError("the training loader yields no batches; use a smaller batch size or more images")
    total = config.total_steps(steps_per_epoch)
    epochs = math.ceil(total / steps_per_epoch)
    stats = TrainStats()
    start_epoch = step = 0
    saved = checkpoint.load() if checkpoint is not None else None
    if saved is not None:
        start_epoch, step, saved_stats = restore_loop(saved, checkpoint, model, optimizer, loader, device,
                                                      steps_per_epoch, total)
        stats = TrainStats(**saved_stats)
    started = time.perf_counter() - stats.seconds  # a resumed run's time includes its earlier part
    bar = TaskBar(description, total - step) if progress and step < total else None
    try:
        for epoch in range(start_epoch, epochs):
            if epoch_callback is not None:
                epoch_callback(epoch, model)
            loss_sum = torch.zeros((), device=device)
            correct = torch.zeros((), device=device, dtype=torch.int64)
            seen = 0
            for images, labels in loader:
                if step >= total:
                    break
                images, labels = _to_device(images, labels, device)
                for group in optimizer.param_groups:
                    group["lr"] = scheduled_lr(step, total, config)
                outputs = model(images)
                loss = criterion(outputs, labels)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if config.grad_clip:
                    nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
                optimizer.step()
                step += 1
                batch = labels.shape[0]
                seen += batch
                loss_sum += loss.detach() * batch
                correct += (logits_of(outputs).detach().argmax(1) == labels).sum()
                if step % CHECK_EVERY == 0 or step == total:
                    _check_finite(loss_sum, step)
                if bar is not None:
                    bar.advance()
            _check_finite(loss_sum, step)
            stats.epochs = epoch + 1
            stats.steps = step
            stats.images += seen
            stats.train_loss = float(loss_sum) / max(1, seen)
            stats.train_accuracy = float(correct) / max(1, seen)
            stats.epoch_losses.append(stats.train_loss)
            stats.seconds = time.perf_counter() - started
            if epoch_end_callback is not None:
                epoch_end_callback(epoch, model, stats)
            if checkpoint is not None:
                checkpoint.save(loop_state(model, optimizer, loader, device, epoch + 1, step,
                                           steps_per_epoch, total, asdict(stats)))
    finally:
        if bar is not None:
            bar.close()
    stats.seconds = time.perf_counter() - started
    return stats


def _to_device(images: torch.Tensor, labels: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """A host batch (a plain DataLoader's) copied to the model's device; device batches pass as they are.

    Why: `BatchLoader` already makes its batches on the device, but a user's own DataLoader yields
    CPU tensors; the copy is asynchronous when the loader pins memory.
    """
    if images.device != device:
        images = images.to(device, non_blocking=True)
        labels = labels.to(device, non_blocking=True)
    return images, labels


def _check_finite(loss_sum: torch.Tensor, step: int) -> None:
    value = float(loss_sum)
    if not math.isfinite(value):
        raise TrainingDiverged(f"loss became {value} by step {step}")


@torch.no_grad()
def evaluate(model: nn.Module, loader: Any) -> tuple[float, float]:
    """(accuracy as a fraction, mean cross-entropy) over every batch of `loader`, in eval mode."""
    device = _place(model, loader)
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.int64)
    seen = 0
    try:
        for images, labels in loader:
            images, labels = _to_device(images, labels, device)
            logits = logits_of(model(images))
            loss_sum += nn.functional.cross_entropy(logits, labels, reduction="sum")
            correct += (logits.argmax(1) == labels).sum()
            seen += labels.shape[0]
    finally:
        model.train(was_training)
    if seen == 0:
        return 0.0, float("nan")
    return float(correct) / seen, float(loss_sum) / seen


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, loader: Any, batches: int) -> None:
    """Replace BatchNorm running statistics by their plain average over `batches` training batches.

    Why: short training leaves the exponential running averages mostly at their initial values;
    evaluating with them measures the averages, not the candidate.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms or batches <= 0:
        return
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average: equal weight to every batch
    was_training = model.training
    model.train()
    try:
        for i, (images, _) in enumerate(loader):
            if i >= batches:
                break
            model(images)
    finally:
        for m, momentum in zip(norms, saved):
            m.momentum = momentum
        model.train(was_training)
