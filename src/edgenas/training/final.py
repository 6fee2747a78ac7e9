"""Final training of a chosen architecture, and the checkpoint that lets anyone rebuild it.

Why this lives in the library, not in the `edgenas train` command: the recipe (seeded build, the
shared loop, BatchNorm re-estimation, a test-split score) is what a search's winner is reported
with, so a Python user, a benchmark and the CLI must all get the same network from the same
settings. The checkpoint (`DIR/model.pt`) holds the state_dict and what the network is built from
(architecture string, resolution, classes, input channels) plus the input normalisation it was
trained with, so `edgenas export DIR` (and any later user) rebuilds the exact network without the
search that found it. `DIR/train.json` is the same recipe, readable. Both files are written whole
or not at all (`edgenas.util.atomic`), so a failure leaves nothing half-written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgenas.data import Augment, ImageDataset
from edgenas.errors import UserError
from edgenas.training.loaders import make_loaders, resolve_device
from edgenas.training.loop import TrainConfig, evaluate, recalibrate_batchnorm, train
from edgenas.util.atomic import torch_save_atomic, write_atomic

CHECKPOINT = "model.pt"
SUMMARY = "train.json"
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
    """
    from edgenas.util.modelinfo import count_macs, count_params

    resolution = square_resolution(train_data)
    c = train_data.shape[0]
    torch.manual_seed(config.seed)
    model = build_model(arch, resolution, train_data.num_classes, c)
    augment = Augment.for_dataset(train_data) if augment is None else augment
    loaders = make_loaders(train_data, test_data, config.batch_size, eval_batch_size, augment=augment,
                           device=resolve_device(device), seed=config.seed, channels_last=True,
                           recalibrate=bn_batches > 0)
    stats = train(model, loaders.train, config, progress=progress, description="training")
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
        "dataset": train_data.name if dataset is None else dataset, "train": config.to_dict(),
        "train_images": len(train_data), "test_accuracy": test_accuracy, "test_loss": test_loss,
        "test_images": len(test_data), "params": count_params(model),
        "macs": count_macs(model, (1, c, resolution, resolution)), "train_seconds": stats.seconds,
        "final_train_loss": stats.train_loss, "final_train_accuracy": stats.train_accuracy,
        "bn_recalibration_batches": recalibrated,
    }
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
