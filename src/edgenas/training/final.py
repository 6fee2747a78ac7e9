"""Final training of a chosen architecture, and the checkpoint that lets anyone rebuild it.

Why this lives in the library, not in the `edgenas train` command: the recipe (seeded build, the
shared loop, BatchNorm re-estimation, a test-split score) is what a search's winner is reported
with, so a Python user, a benchmark and the CLI must all get the same network from the same
settings. The checkpoint (`DIR/model.pt`) holds the state_dict and what the network is built from
(architecture string, resolution, classes, input channels) plus the input normalisation it was
trained with, so `edgenas export DIR` (and any later user) rebuilds the exact network without the
search that found it. `DIR/train.json` is the same recipe, readable. Both files are written whole
or not at all (`edgenas.util.atomic`), so a failure leaves nothing half-written.

`train_to_directory` is the whole job behind `edgenas train`: it holds the directory's writer lock
(`WriterLock`, one process per directory) and keeps `DIR/resume.pt`, the loop's per-epoch resume
checkpoint (`EpochCheckpoint`), so a run killed at any moment resumes with the same call after its
last finished epoch and ends with the same weights, bit for bit on CPU. resume.pt is deleted once
model.pt and train.json are written: a directory with model.pt and no resume.pt is finished (and
is not retrained without `force`); one with both was killed while writing its results, and the
same call finishes it without training again.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgenas.data import Augment, ImageDataset
from edgenas.errors import UserError
from edgenas.training.loaders import make_loaders, resolve_device
from edgenas.training.loop import TrainConfig, evaluate, recalibrate_batchnorm, train
from edgenas.training.resume import EpochCheckpoint, data_fingerprint
from edgenas.util.atomic import torch_save_atomic, write_atomic
from edgenas.util.lock import WriterLock

CHECKPOINT = "model.pt"
SUMMARY = "train.json"
RESUME = "resume.pt"  # the per-epoch resume checkpoint of a training in progress
FORMAT = "edgenas-model"
VERSION = 1
BN_BATCHES = 100  # training batches over which BatchNorm statistics are re-estimated after training
EVAL_BATCH_SIZE = 256


# ---- the network a checkpoint describes ----------------------------------------------------------
def network_config(resolution: int, num_classes: int, in_channels: int):
    """The stem/head around the stages, as the mnas space uses for this input (one place, so
    train, export and search build the same network for the same string)."""
    from edgenas.spaces.mnas import config_for

    return config_for(resolution, num_classes, in_channels).network


def build_model(arch: str, resolution: int, num_classes: int, in_channels: int) -> nn.Module:
    """The network of `arch` for this input; too deep for the resolution is a UserError."""
    from edgenas.spaces.mobilenet import build_network

    return build_network(arch, network_config(resolution, num_classes, in_channels), resolution)


def check_arch(arch: str, data: ImageDataset) -> None:
    """Refuse (UserError) an architecture that cannot be built for `data`'s images, without building it."""
    from edgenas.spaces.blockstrings import decode_arch
    from edgenas.spaces.mobilenet import check_resolution

    resolution = square_resolution(data)
    check_resolution(decode_arch(arch), network_config(resolution, data.num_classes, data.shape[0]), resolution)


def square_resolution(data: ImageDataset) -> int:
    """The side of `data`'s images; the networks are built for square inputs only."""
    _, h, w = data.shape
    if h != w:
        raise UserError(f"dataset '{data.name}' has {h}x{w} images; the network needs square images")
    return h


# ---- training ------------------------------------------------------------------------------------
def train_final(
    arch: str,
    train_data: ImageDataset,
    test_data: ImageDataset,
    config: TrainConfig,
    *,
    augment: Augment | None = None,
    device: str | torch.device = "auto",
    bn_batches: int = BN_BATCHES,
    eval_batch_size: int = EVAL_BATCH_SIZE,
    dataset: str | None = None,
    progress: bool = True,
    resume_dir: str | Path | None = None,
    init_from: str | Path | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """Train `arch` on `train_data` per `config`, score it on `test_data`; return (model, recipe).

    The model is built after `torch.manual_seed(config.seed)`, so the same settings give the same
    network; `augment` defaults to the dataset's own (`Augment.for_dataset`), pass `Augment()` for
    none. After training, BatchNorm statistics are re-estimated over up to `bn_batches`
    un-augmented training batches: MnasNet's BatchNorm momentum (0.01) leaves the running averages
    far from the weights' real statistics after a short run (14 % instead of 66 % test accuracy
    after 5 epochs, measured); after a long run this changes little. The returned model is on the
    CPU in eval mode; `recipe` is what `write_checkpoint` stores beside its weights (`dataset`
    names the data in it, default `train_data.name`).

    `resume_dir`: keep the per-epoch resume checkpoint `resume_dir/resume.pt` there and resume from
    it when it exists (refused with a UserError, before anything is trained, when it belongs to
    another architecture, data or config). The caller holds the directory's lock.

    `init_from`: a trained supernet's directory; the network starts from the weights it inherits
    there (`Supernet.extract`) instead of a random initialisation (`inherited_weights` checks it).
    """
    from edgenas.util.modelinfo import count_macs, count_params

    resolution = square_resolution(train_data)
    c = train_data.shape[0]
    dataset = train_data.name if dataset is None else dataset
    augment = Augment.for_dataset(train_data) if augment is None else augment
    checkpoint = None
    if resume_dir is not None:
        checkpoint = EpochCheckpoint(Path(resume_dir) / RESUME,
                                     training_identity(arch, train_data, config, augment, dataset, init_from))
        checkpoint.load()  # another run's file is refused here, before the slow part
    torch.manual_seed(config.seed)
    model = build_model(arch, resolution, train_data.num_classes, c)
    if init_from is not None:
        model.load_state_dict(inherited_weights(init_from, arch, train_data))
    loaders = make_loaders(train_data, test_data, config.batch_size, eval_batch_size, augment=augment,
                           device=resolve_device(device), seed=config.seed, channels_last=True,
                           recalibrate=bn_batches > 0)
    stats = train(model, loaders.train, config, checkpoint=checkpoint, progress=progress, description="training")
    recalibrated = 0
    if loaders.bn is not None:
        recalibrated = min(len(loaders.bn), bn_batches)
        recalibrate_batchnorm(model, loaders.bn, recalibrated)
    test_accuracy, test_loss = evaluate(model, loaders.eval)
    model = model.to("cpu", memory_format=torch.contiguous_format).eval()
    recipe: dict[str, Any] = {
        "format": FORMAT, "version": VERSION, "arch": arch, "resolution": resolution,
        "num_classes": train_data.num_classes, "in_channels": c, "classes": list(train_data.classes),
        "mean": list(loaders.train.mean), "std": list(loaders.train.std),
        "dataset": dataset, "train": config.to_dict(),
        "train_images": len(train_data), "test_accuracy": test_accuracy, "test_loss": test_loss,
        "test_images": len(test_data), "params": count_params(model),
        "macs": count_macs(model, (1, c, resolution, resolution)), "train_seconds": stats.seconds,
        "final_train_loss": stats.train_loss, "final_train_accuracy": stats.train_accuracy,
        "bn_recalibration_batches": recalibrated,
    }
    if init_from is not None:
        recipe["init_from"] = str(init_from)
    return model, recipe


def training_identity(arch: str, train_data: ImageDataset, config: TrainConfig, augment: Augment,
                      dataset: str, init_from: str | Path | None = None) -> dict[str, Any]:
    """What a resume checkpoint must match to be resumed: everything training depends on (not the
    device, and not the BatchNorm re-estimation or the test split, which come after it)."""
    identity = {
        "job": "edgenas train", "arch": arch, "dataset": dataset, "train_images": len(train_data),
        "train_data": data_fingerprint(train_data.images, train_data.labels), "train": config.to_dict(),
        "augment": asdict(augment),
    }
    if init_from is not None:
        identity["init_from"] = str(Path(init_from).resolve())
    return identity


def inherited_weights(supernet_dir: str | Path, arch: str, train_data: ImageDataset) -> dict[str, torch.Tensor]:
    """The state_dict `arch` inherits from the supernet in `supernet_dir`; UserError when that is no
    supernet, when it was trained for other images (shape, classes) or `arch` is not one of its paths."""
    from edgenas.supernet.training import load_supernet

    supernet, record = load_supernet(supernet_dir)
    if tuple(record["shape"]) != tuple(train_data.shape) or int(record["classes"]) != train_data.num_classes:
        c, h, w = record["shape"]
        raise UserError(f"the supernet in {supernet_dir} was trained on {record['classes']} classes of {c}x{h}x{w} "
                        f"images, not this dataset's; drop --init-from or train a supernet on this dataset")
    return supernet.extract(supernet.blocks(arch)).state_dict()


def finished(out: str | Path) -> bool:
    """`out` holds a finished training: model.pt, and no resume.pt of a run still writing its results."""
    out = Path(out)
    return (out / CHECKPOINT).exists() and not (out / RESUME).exists()


def train_to_directory(
    out: str | Path,
    arch: str,
    train_data: ImageDataset,
    test_data: ImageDataset,
    config: TrainConfig,
    *,
    force: bool = False,
    **options: Any,
) -> tuple[nn.Module, dict[str, Any]]:
    """`train_final` into `out`, resumable and one writer at a time; then `write_checkpoint`.

    Holds `out`'s writer lock for the whole run (a second process is refused with one line);
    resumes from `out/resume.pt` when it is there (the same settings only); refuses a finished `out`
    (model.pt without resume.pt) unless `force`. Bad settings are refused before anything is
    written. `options` are `train_final`'s. Returns what `train_final` returns.
    """
    out = Path(out)
    check_arch(arch, train_data)  # a bad architecture leaves no directory behind
    if options.get("init_from") is not None:  # so does a bad supernet, or an arch outside it
        inherited_weights(options["init_from"], arch, train_data)
    with WriterLock.for_directory(out, "training"):
        if finished(out) and not force:
            raise UserError(f"{out / CHECKPOINT} already exists; choose another --out or pass --force")
        model, recipe = train_final(arch, train_data, test_data, config, resume_dir=out, **options)
        write_checkpoint(out, model, recipe)
        (out / RESUME).unlink(missing_ok=True)  # finished: model.pt is the result, nothing to resume
    return model, recipe


# ---- the checkpoint ------------------------------------------------------------------------------
def write_checkpoint(out: str | Path, model: nn.Module, recipe: dict[str, Any]) -> Path:
    """`out/model.pt` (recipe + state_dict) and `out/train.json` (the recipe), each written whole.

    model.pt is written first: a run killed between the two leaves a loadable checkpoint whose
    summary may be missing or old, never a summary that describes weights that are not there.
    """
    import json

    out = Path(out)
    checkpoint = torch_save_atomic(recipe | {"state_dict": model.state_dict()}, out / CHECKPOINT)
    write_atomic(out / SUMMARY, json.dumps(recipe, indent=2) + "\n")
    return checkpoint


def load_checkpoint(run_dir: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """The trained model of `run_dir/model.pt` (eval mode) and its recipe."""
    path = Path(run_dir) / CHECKPOINT
    if not path.is_file():
        raise UserError(f"{path} does not exist; train a model first: edgenas train ARCH --out {run_dir}")
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unreadable file is the same answer
        raise UserError(f"{path} is not a readable checkpoint ({type(error).__name__}); retrain with edgenas train") from None
    if not isinstance(saved, dict) or saved.get("format") != FORMAT:
        raise UserError(f"{path} is not an edgenas model checkpoint; retrain with edgenas train")
    model = build_model(saved["arch"], saved["resolution"], saved["num_classes"], saved["in_channels"])
    try:
        model.load_state_dict(saved["state_dict"])
    except RuntimeError as error:
        first = str(error).strip().splitlines()[0]
        raise UserError(f"{path}: weights do not fit the architecture ({first}); retrain with edgenas train") from None
    model.eval()
    recipe = {k: v for k, v in saved.items() if k != "state_dict"}
    return model, recipe
