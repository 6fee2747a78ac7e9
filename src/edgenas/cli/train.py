"""`edgenas train ARCH --dataset D --epochs N --out DIR`: train a chosen architecture fully.

Why a checkpoint with its recipe: `edgenas export DIR` (and any later user) must rebuild the exact
network without the search that found it, so `DIR/model.pt` holds the state_dict and what the
network is built from (architecture string, resolution, classes, input channels) plus the input
normalisation it was trained with. Everything is checked and trained before DIR is written, and
the file is written under a temporary name and renamed, so a failure leaves nothing half-written.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgenas.data import DATASET_HELP, Augment, BatchLoader, ImageDataset, load_dataset
from edgenas.errors import UserError

CHECKPOINT = "model.pt"
FORMAT = "edgenas-model"
VERSION = 1
BN_BATCHES = 100  # training batches over which BatchNorm statistics are re-estimated after training


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("train", help="train an architecture fully and write DIR/model.pt")
    parser.add_argument("arch", nargs="+", help="architecture string (stages), or a preset name (mnasnet_a1 ...)")
    parser.add_argument("--dataset", default="digits", help=f"{DATASET_HELP} (default digits)")
    parser.add_argument("--data-dir", default=None, help="where cifar10-jpeg shards are")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--out", required=True, help="directory for model.pt and train.json")
    parser.add_argument("--space-preset", default=None,
                        help="check that ARCH belongs to this mnas space preset (demo, full) and use its spelling")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.05, help="peak SGD learning rate, cosine schedule (default 0.05)")
    parser.add_argument("--weight-decay", type=float, default=4e-5)
    parser.add_argument("--label-smoothing", type=float, default=0.1)
    parser.add_argument("--subset", type=int, default=None, help="train on N images of the train split (default all)")
    parser.add_argument("--no-augment", action="store_true", help="no random crop/flip")
    parser.add_argument("--train-device", default="auto", help="auto (cuda if present), cpu, cuda:0 ...")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--force", action="store_true", help="overwrite an existing DIR/model.pt")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    parser.set_defaults(handler=_train)


# ---- the network a checkpoint describes ----------------------------------------------------------
def resolve_arch(words: list[str]) -> str:
    """An architecture string from the command line's words: a preset name, or the stages."""
    from edgenas.spaces.presets import PRESETS

    text = " ".join(words).strip()
    return PRESETS.get(text, text)


def network_config(resolution: int, num_classes: int, in_channels: int):
    """The stem/head around the stages, as the mnas space uses for this input (one place, so
    train, export and search build the same network for the same string)."""
    from edgenas.spaces.mnas import config_for

    return config_for(resolution, num_classes, in_channels).network


def build_model(arch: str, resolution: int, num_classes: int, in_channels: int) -> nn.Module:
    """The network of `arch` for this input; too deep for the resolution is a UserError."""
    from edgenas.spaces.mobilenet import build_network

    return build_network(arch, network_config(resolution, num_classes, in_channels), resolution)


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


# ---- the command ---------------------------------------------------------------------------------
def _check_space(arch: str, preset: str | None, data: ImageDataset) -> str:
    if preset is None:
        return arch
    from edgenas.spaces.mnas_choices import mnas_space_for, space_choices

    return mnas_space_for(data, space_choices(preset)).canonical(arch)


def _train(args: argparse.Namespace) -> int:
    from edgenas.training.loop import TrainConfig, evaluate, train
    from edgenas.training.proxy import recalibrate_batchnorm, resolve_device

    out = Path(args.out)
    if (out / CHECKPOINT).exists() and not args.force:
        raise UserError(f"{out / CHECKPOINT} already exists; choose another --out or pass --force")
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                         weight_decay=args.weight_decay, label_smoothing=args.label_smoothing, seed=args.seed)
    train_data = load_dataset(args.dataset, "train", args.data_dir)
    test_data = load_dataset(args.dataset, "test", args.data_dir)
    if args.subset is not None:
        train_data = train_data.subset(args.subset, args.seed)
    arch = _check_space(resolve_arch(args.arch), args.space_preset, train_data)
    c, h, w = train_data.shape
    if h != w:
        raise UserError(f"dataset '{args.dataset}' has {h}x{w} images; use square images (folder: --image-size)")
    torch.manual_seed(args.seed)
    model = build_model(arch, h, train_data.num_classes, c)
    device = resolve_device(args.train_device)
    augment = Augment() if args.no_augment else Augment.for_dataset(train_data)
    loader = BatchLoader(train_data, args.batch_size, augment=augment, device=device, seed=args.seed,
                         drop_last=len(train_data) > args.batch_size, channels_last=True)
    stats = train(model, loader, config, progress=not (args.quiet or args.json), description="training")
    # MnasNet's BatchNorm momentum (0.01) leaves the running averages far from the weights' real
    # statistics after a short run (14 % instead of 66 % test accuracy after 5 epochs, measured); re-estimate them on
    # un-augmented training batches. After a long run this changes little.
    plain = BatchLoader(train_data, args.batch_size, device=device, seed=args.seed + 1, mean=loader.mean,
                        std=loader.std, channels_last=True)
    bn_batches = min(len(plain), BN_BATCHES)
    recalibrate_batchnorm(model, plain, bn_batches)
    test_loader = BatchLoader(test_data, 256, shuffle=False, device=device, mean=loader.mean, std=loader.std,
                              channels_last=True)
    test_accuracy, test_loss = evaluate(model, test_loader)
    model = model.to("cpu", memory_format=torch.contiguous_format)

    from edgenas.util.modelinfo import count_macs, count_params

    recipe: dict[str, Any] = {
        "format": FORMAT, "version": VERSION, "arch": arch, "resolution": h, "num_classes": train_data.num_classes,
        "in_channels": c, "classes": list(train_data.classes), "mean": list(loader.mean), "std": list(loader.std),
        "dataset": args.dataset, "train": config.to_dict(), "train_images": len(train_data),
        "test_accuracy": test_accuracy, "test_loss": test_loss, "test_images": len(test_data),
        "params": count_params(model), "macs": count_macs(model, (1, c, h, w)),
        "train_seconds": stats.seconds, "final_train_loss": stats.train_loss,
        "final_train_accuracy": stats.train_accuracy, "bn_recalibration_batches": bn_batches,
    }
    _write(out, recipe, model.state_dict())
    if args.json:
        from edgenas.cli.output import print_json

        print_json(recipe | {"out": str(out)})
        return 0
    print(f"{arch}: test accuracy {100 * test_accuracy:.2f}% on {len(test_data):,} {args.dataset} test images "
          f"after {stats.epochs} epochs ({stats.seconds:.0f} s); params {recipe['params']:,}, "
          f"MACs {recipe['macs']:,}")
    print(f"checkpoint: {out / CHECKPOINT}; export: edgenas export {out} --format onnx")
    return 0


def _write(out: Path, recipe: dict[str, Any], state_dict: dict[str, torch.Tensor]) -> None:
    """model.pt and train.json, each written to a temporary name and renamed."""
    out.mkdir(parents=True, exist_ok=True)
    checkpoint = out / CHECKPOINT
    partial = out / f".{CHECKPOINT}.partial"
    torch.save(recipe | {"state_dict": state_dict}, partial)
    summary = out / "train.json"
    summary_partial = out / ".train.json.partial"
    summary_partial.write_text(json.dumps(recipe, indent=2) + "\n")
    os.replace(partial, checkpoint)
    os.replace(summary_partial, summary)
