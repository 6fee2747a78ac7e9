"""Training a derived cell from scratch: the paper's evaluation recipe on the project's loop.

SGD (lr 0.025 cosine to 0, momentum 0.9, weight decay 3e-4, no Nesterov), gradient clipping 5,
batch 96, cutout 16 on top of crop + flip, auxiliary loss weight 0.4, drop path growing linearly
to 0.2 over the epochs. The loop, the loader and the augmentation are the project's
(`edgenas.training.train`, `edgenas.data.BatchLoader`); this module supplies the loss (logits +
auxiliary logits), the per-epoch drop-path setting and the per-epoch metrics.

The output directory is locked for the run (one writer) and holds `resume.pt`, the loop's
per-epoch resume checkpoint (`EpochCheckpoint`, with the metrics history as the caller's state):
the same call after a kill resumes after the last finished epoch and ends with the same weights,
bit for bit on CPU. At the end `model.pt` and then `metrics.json` are written and resume.pt is
deleted; a directory with metrics.json and no resume.pt is finished and is not retrained without
`force`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgenas.darts.eval_model import EvalNetwork, count_params
from edgenas.darts.genotypes import Genotype
from edgenas.errors import UserError
from edgenas.util.atomic import torch_save_atomic, write_atomic
from edgenas.util.lock import WriterLock

CHECKPOINT = "model.pt"
METRICS = "metrics.json"
RESUME = "resume.pt"


@dataclass(frozen=True)
class EvalTrainConfig:
    """The paper's evaluation training (600 epochs in the paper; `epochs` is the user's)."""

    epochs: int = 600
    batch_size: int = 96
    lr: float = 0.025
    momentum: float = 0.9
    weight_decay: float = 3e-4
    grad_clip: float = 5.0
    channels: int = 36
    layers: int = 20
    auxiliary_weight: float = 0.4
    drop_path: float = 0.2
    cutout: int = 16
    crop_padding: int = 4
    seed: int = 0
    max_steps: int | None = None

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise UserError(f"--epochs must be at least 1, got {self.epochs}")
        if self.auxiliary_weight < 0:
            raise UserError(f"the auxiliary weight must be >= 0, got {self.auxiliary_weight}")


def auxiliary_loss(weight: float):
    """Cross-entropy of the logits plus `weight` times that of the auxiliary logits."""
    criterion = nn.CrossEntropyLoss()

    def loss_fn(outputs: Any, targets: torch.Tensor) -> torch.Tensor:
        if isinstance(outputs, (tuple, list)):
            logits, aux = outputs
            return criterion(logits, targets) + weight * criterion(aux, targets)
        return criterion(outputs, targets)

    return loss_fn


class _History:
    """The per-epoch metrics, saved and restored with the loop's resume state."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def state_dict(self) -> dict[str, Any]:
        return {"history": [dict(r) for r in self.records]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.records[:] = [dict(r) for r in state["history"]]


def train_genotype(
    genotype: Genotype, dataset: str, out_dir: str | Path, config: EvalTrainConfig,
    device: str = "cpu", progress: bool = True, train_set: Any = None, test_set: Any = None,
    force: bool = False,
) -> dict[str, Any]:
    """Train the evaluation network of `genotype`; write `model.pt` and `metrics.json` to
    `out_dir` at the end (`resume.pt` after every epoch meanwhile); return the metrics.

    Resumes from `out_dir/resume.pt` of the same genotype, data and config (another one's is
    refused with a UserError before anything is written); refuses a finished `out_dir` unless
    `force`; a second process on `out_dir` is refused while this one runs."""
    from edgenas.data import Augment, BatchLoader, load_dataset
    from edgenas.training import TrainConfig, evaluate, train
    from edgenas.training.resume import EpochCheckpoint, data_fingerprint

    out = Path(out_dir)
    train_set = train_set if train_set is not None else load_dataset(dataset, "train")
    test_set = test_set if test_set is not None else load_dataset(dataset, "test")
    torch.manual_seed(config.seed)
    model = EvalNetwork(genotype, config.channels, config.layers, train_set.num_classes,
                        auxiliary=config.auxiliary_weight > 0, drop_path=config.drop_path,
                        in_channels=train_set.shape[0])
    augment = Augment(crop_padding=config.crop_padding, flip=True, cutout=config.cutout)
    mean, std = train_set.channel_stats()
    loader = BatchLoader(train_set, config.batch_size, augment=augment, device=device,
                         seed=config.seed, mean=mean, std=std)
    test_loader = BatchLoader(test_set, 256, shuffle=False, device=device, mean=mean, std=std)
    loop = TrainConfig(
        epochs=config.epochs, max_steps=config.max_steps, batch_size=config.batch_size, lr=config.lr,
        momentum=config.momentum, nesterov=False, weight_decay=config.weight_decay,
        grad_clip=config.grad_clip, min_lr=0.0, seed=config.seed,
    )
    identity = {
        "job": "edgenas darts train", "genotype": str(genotype), "dataset": dataset, "config": asdict(config),
        "train_images": len(train_set), "train_data": data_fingerprint(train_set.images, train_set.labels),
        "test_images": len(test_set), "test_data": data_fingerprint(test_set.images, test_set.labels),
    }
    history = _History()

    def set_drop_path(epoch: int, net: nn.Module) -> None:
        net.drop_path_prob = config.drop_path * epoch / config.epochs

    def end_of_epoch(epoch: int, net: nn.Module, stats: Any) -> None:
        accuracy, loss = evaluate(net, test_loader)
        history.records.append({"epoch": epoch + 1, "train_loss": stats.train_loss,
                                "train_accuracy": stats.train_accuracy, "test_accuracy": accuracy,
                                "test_loss": loss})

    with WriterLock.for_directory(out, "training"):
        checkpoint = EpochCheckpoint(out / RESUME, identity, extra=history)
        if (out / METRICS).exists() and not checkpoint.exists() and not force:
            raise UserError(f"{out / METRICS} already exists (a finished training); choose another --out "
                            "or pass --force")
        checkpoint.load()  # another run's resume.pt is refused here, before anything is written
        stats = train(model, loader, loop, loss_fn=auxiliary_loss(config.auxiliary_weight),
                      epoch_callback=set_drop_path, epoch_end_callback=end_of_epoch, checkpoint=checkpoint,
                      progress=progress, description="darts train")
        records = list(history.records)
        metrics = {
            "genotype": str(genotype), "dataset": dataset, "params": count_params(model),
            "config": asdict(config), "history": records,
            "test_accuracy": records[-1]["test_accuracy"] if records else None,
            "images_per_second": stats.images_per_second,
        }
        # model.pt, then metrics.json, then resume.pt gone: metrics.json without resume.pt is a finished run.
        torch_save_atomic({"genotype": str(genotype), "epoch": stats.epochs, "model": model.state_dict()},
                          out / CHECKPOINT)
        write_atomic(out / METRICS, json.dumps(metrics, indent=2))
        checkpoint.remove()
    return metrics
