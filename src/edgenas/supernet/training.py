"""Training a supernet into a directory, and reading a trained one back.

Why it is built on the project's one training loop (`edgenas.training.loop.train`): the supernet
gets the same SGD, cosine schedule, NaN check, progress bar and per-epoch resume (weights,
optimizer, step counter, torch / loader / Python RNG states, and the path sampler's own state
through the checkpoint's `extra`) as every other training, so a killed `edgenas supernet train`
continues bit for bit on CPU. The loop sees a module (`SupernetTrainee`) whose forward runs the
step's paths and a loss (`SupernetLoss`) that joins them: one backward over the sum is the same
gradient as one backward per path.

The data: the training split of `dataset` (a class-balanced `subset` of it when set) is split by
class into a part that trains the supernet and a held-out part (`val_fraction`) that the one-shot
evaluator scores on, the split the proxy evaluator uses with the same settings. The supernet never
sees the held-out part.

`DIR/supernet.pt` holds the weights, the settings and what the space and data were; it is written
whole or not at all, then `DIR/resume.pt` is deleted: a directory with supernet.pt and no resume.pt
is finished. One process writes a directory at a time (`WriterLock`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgenas.data import Augment, ImageDataset, load_dataset
from edgenas.errors import UserError
from edgenas.spaces.mnas import MnasSpace
from edgenas.spaces.mnas_choices import space_choices, space_options_from_choices
from edgenas.supernet.network import SHARING_MODES, Supernet
from edgenas.supernet.sampling import SAMPLINGS, PathSampler
from edgenas.training.loaders import make_loaders, resolve_device
from edgenas.training.loop import TrainConfig, train
from edgenas.training.resume import EpochCheckpoint, data_fingerprint
from edgenas.util.atomic import torch_save_atomic, write_atomic
from edgenas.util.lock import WriterLock

WEIGHTS = "supernet.pt"
SUMMARY = "supernet.json"
RESUME = "resume.pt"
FORMAT = "edgenas-supernet"
VERSION = 1


@dataclass
class SupernetSettings:
    """Everything that defines a supernet training (the defaults live here and only here)."""

    dataset: str = "digits"
    data_dir: str | None = None
    subset: int | None = None  # class-balanced images drawn from the train split; None = all
    val_fraction: float = 0.2  # held out for the one-shot evaluator
    space_preset: str = "full"
    space_options: list[str] = field(default_factory=list)  # `--space-option KEY=V1,V2`
    sharing: str = "shared"
    sampling: str = "uniform"
    random_paths: int = 2  # sandwich: uniform paths besides the largest and the smallest
    distill_weight: float = 1.0  # sandwich: weight of the distillation loss of the smaller paths
    # The learning rate warms up over the first tenth of the steps: at the full rate from the
    # start the loss rose above chance for the first epochs (docs/bench/supernet.md, "Rank fidelity").
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=5, batch_size=64, lr=0.05, lr_warmup=0.1))
    device: str = "auto"
    channels_last: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.train, dict):
            self.train = TrainConfig(**self.train)
        if self.sharing not in SHARING_MODES:
            raise UserError(f"unknown --sharing '{self.sharing}'; choose one of {', '.join(SHARING_MODES)}")
        if self.sampling not in SAMPLINGS:
            raise UserError(f"unknown --sampling '{self.sampling}'; choose one of {', '.join(SAMPLINGS)}")
        if not 0.0 < self.val_fraction < 1.0:
            raise UserError(f"--val-fraction must lie strictly between 0 and 1, got {self.val_fraction}")
        if self.subset is not None and self.subset < 2:
            raise UserError(f"--subset must hold at least 2 images, got {self.subset}")
        if self.random_paths < 0:
            raise UserError(f"--random-paths cannot be negative, got {self.random_paths}")

    def choices(self) -> dict[str, Any]:
        return space_choices(self.space_preset, self.space_options)

    def to_dict(self) -> dict[str, Any]:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values["train"] = self.train.to_dict()
        return json.loads(json.dumps(values))

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SupernetSettings:
        return cls(**values)


def space_for(choices: dict[str, Any], shape: tuple[int, int, int], classes: int) -> MnasSpace:
    from edgenas.spaces import fitted_space

    space = fitted_space("mnas", shape, classes, **space_options_from_choices(choices))
    assert isinstance(space, MnasSpace)
    return space


def split_data(settings: SupernetSettings, data: ImageDataset) -> tuple[ImageDataset, ImageDataset]:
    """(the part the supernet trains on, the held-out part the one-shot evaluator scores on)."""
    if settings.subset is not None:
        data = data.subset(settings.subset, settings.seed)
    return data.split(1.0 - settings.val_fraction, settings.seed)


class SupernetTrainee(nn.Module):
    """What the training loop trains: each forward runs the sampler's paths for this step and
    returns their logits (the teacher first in sandwich sampling)."""

    def __init__(self, supernet: Supernet, sampler: PathSampler) -> None:
        super().__init__()
        self.supernet = supernet
        self.sampler = sampler

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        space = self.supernet.space
        return tuple(self.supernet.forward_path(space.blocks_from_indices(p), images)
                     for p in self.sampler.paths())


class SupernetLoss:
    """The mean over the step's paths of: cross-entropy against the labels, and for every path
    after the first (sandwich) the first one's predicted distribution learned as well (soft
    cross-entropy to its detached softmax, weighted by `distill_weight`).

    Why the mean, not the sum: the weights every path shares (stem, head, classifier) would get a
    gradient as many times larger as there are paths, which at the uniform sampling's learning rate
    took the supernet to chance accuracy, as four times the learning rate did (docs/bench/supernet.md).
    Why the smaller paths keep the labels (BigNAS distils them only): early in training the largest
    path predicts nearly uniformly, and its predictions alone teach nothing.
    """

    def __init__(self, label_smoothing: float = 0.0, distill_weight: float = 1.0) -> None:
        self.criterion = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
        self.distill_weight = distill_weight

    def __call__(self, outputs: tuple[torch.Tensor, ...], labels: torch.Tensor) -> torch.Tensor:
        teacher, *students = outputs
        loss = self.criterion(teacher, labels)
        if students:
            target = teacher.detach().softmax(1)
            for student in students:
                distill = -(target * student.log_softmax(1)).sum(1).mean()
                loss = loss + self.criterion(student, labels) + self.distill_weight * distill
        return loss / len(outputs)


def training_identity(settings: SupernetSettings, train_part: ImageDataset, augment: Augment) -> dict[str, Any]:
    """What a resume checkpoint must match: everything training depends on (not device or paths)."""
    values = settings.to_dict()
    for machine_only in ("data_dir", "device"):
        values.pop(machine_only)
    return {"job": "edgenas supernet train", **values, "choices": settings.choices(),
            "train_images": len(train_part), "train_data": data_fingerprint(train_part.images, train_part.labels),
            "augment": asdict(augment)}


def finished(out: str | Path) -> bool:
    out = Path(out)
    return (out / WEIGHTS).exists() and not (out / RESUME).exists()


def train_supernet(out: str | Path, settings: SupernetSettings, *, dataset: ImageDataset | None = None,
                   progress: bool = True, force: bool = False) -> tuple[Supernet, dict[str, Any]]:
    """Train a supernet into `out` (resuming a killed run there); return it and its record.

    Everything (data, space, settings) is checked before the directory is created or locked.
    """
    data = dataset or load_dataset(settings.dataset, "train", settings.data_dir)
    choices = settings.choices()
    space = space_for(choices, data.shape, data.num_classes)
    train_part, val_part = split_data(settings, data)
    augment = Augment.for_dataset(train_part)
    identity = training_identity(settings, train_part, augment)
    out = Path(out)
    with WriterLock.for_directory(out, "supernet training"):
        if finished(out) and not force:
            raise UserError(f"{out / WEIGHTS} already exists; choose another --out or pass --force")
        checkpoint_path = out / RESUME
        sampler = PathSampler(space, settings.sampling, settings.random_paths, seed=settings.seed)
        checkpoint = EpochCheckpoint(checkpoint_path, identity, extra=sampler, what="supernet training")
        checkpoint.load()  # a foreign resume.pt is refused before the supernet is built
        torch.manual_seed(settings.seed)
        supernet = Supernet(space, settings.sharing)
        device = resolve_device(settings.device)
        loaders = make_loaders(train_part, val_part, settings.train.batch_size, 256, augment=augment,
                               device=device, seed=settings.seed, channels_last=settings.channels_last,
                               recalibrate=False)
        trainee = SupernetTrainee(supernet, sampler)
        stats = train(trainee, loaders.train, settings.train,
                      loss_fn=SupernetLoss(settings.train.label_smoothing, settings.distill_weight),
                      checkpoint=checkpoint, progress=progress, description="supernet")
        supernet.to("cpu", memory_format=torch.contiguous_format)
        record = {
            "format": FORMAT, "version": VERSION, "settings": settings.to_dict(), "identity": identity,
            "choices": choices, "shape": list(data.shape), "classes": data.num_classes,
            "train_images": len(train_part), "val_images": len(val_part),
            "params": sum(p.numel() for p in supernet.parameters()),
            "stats": stats.to_dict(), "device": str(device),
        }
        torch_save_atomic(record | {"state_dict": supernet.state_dict()}, out / WEIGHTS)
        write_atomic(out / SUMMARY, json.dumps(record, indent=2) + "\n")
        checkpoint.remove()
    return supernet, record


def load_supernet(directory: str | Path) -> tuple[Supernet, dict[str, Any]]:
    """The trained supernet of `directory` (eval mode, CPU) and its record; UserError for anything
    that is not one (missing, half-written, corrupt, another kind of file)."""
    path = Path(directory) / WEIGHTS
    if not path.is_file():
        raise UserError(f"{directory} holds no trained supernet ({WEIGHTS} missing); "
                        f"train one: edgenas supernet train --out {directory}")
    # The file is there, so training into the same directory needs --force to replace it.
    fix = f"train a new one: edgenas supernet train --out {directory} --force"
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unreadable file is the same answer
        raise UserError(f"{path} is not a readable supernet ({type(error).__name__}); {fix}") from None
    if not isinstance(saved, dict) or saved.get("format") != FORMAT:
        raise UserError(f"{path} is not an edgenas supernet; {fix}")
    try:
        settings = SupernetSettings.from_dict(saved["settings"])
        space = space_for(saved["choices"], tuple(saved["shape"]), int(saved["classes"]))
        supernet = Supernet(space, settings.sharing)
        supernet.load_state_dict(saved["state_dict"])
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise UserError(f"{path} does not hold a usable supernet ({first}); {fix}") from None
    supernet.eval()
    return supernet, {k: v for k, v in saved.items() if k != "state_dict"}


def held_out_data(record: dict[str, Any], data_dir: str | None = None) -> tuple[ImageDataset, ImageDataset]:
    """The (train, held-out) parts a supernet was trained with, re-read and checked to be the same
    images (UserError when the dataset on this machine differs)."""
    settings = SupernetSettings.from_dict(record["settings"])
    data = load_dataset(settings.dataset, "train", data_dir if data_dir is not None else settings.data_dir)
    train_part, val_part = split_data(settings, data)
    if data_fingerprint(train_part.images, train_part.labels) != record["identity"]["train_data"]:
        raise UserError(f"the dataset '{settings.dataset}' here is not the one the supernet was trained on; "
                        "point --data-dir at the same data or train a supernet on this one")
    return train_part, val_part
