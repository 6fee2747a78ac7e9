"""Command-line flags for proxy training, shared by every command that proxy-trains.

`edgenas data proxy` adds them all with `add_proxy_options(parser)`; `edgenas search --space mnas`
adds `add_proxy_training_options` (the search declares `--dataset` itself, for every space) and
both turn them into a `ProxyConfig` with `proxy_config_from_args`. Flags default to None and are
resolved here, from DEFAULTS; names avoid the search's own flags (`--device` there is the
latency device, hence `--train-device`).
"""

from __future__ import annotations

import argparse
from typing import Any

from edgenas.data import DATASET_HELP, Augment, ImageDataset, load_dataset
from edgenas.training.loop import TrainConfig
from edgenas.training.proxy import ProxyConfig

DEFAULTS: dict[str, Any] = {
    "dataset": "digits", "proxy_subset": None, "proxy_steps": None, "proxy_epochs": 1,
    "proxy_batch_size": 64, "proxy_lr": 0.05, "label_smoothing": 0.0, "weight_decay": 4e-5,
    "val_fraction": 0.2, "train_device": "auto",
}


def add_proxy_options(parser: Any) -> None:
    """Add `--dataset` and the proxy-training flags."""
    parser.add_argument("--dataset", default=None, help=f"{DATASET_HELP} (default digits)")
    add_proxy_training_options(parser)


def add_proxy_training_options(parser: Any) -> None:
    """Add the proxy-training flags, all but `--dataset` (to a parser, or anything with its `add_argument`)."""
    parser.add_argument("--proxy-subset", type=int, default=None,
                        help="train-split images used for proxy training + validation (default all)")
    parser.add_argument("--proxy-steps", type=int, default=None,
                        help="optimizer steps per candidate (default: --proxy-epochs)")
    parser.add_argument("--proxy-epochs", type=int, default=None, help="epochs per candidate (default 1)")
    parser.add_argument("--proxy-batch-size", type=int, default=None, help="default 64")
    parser.add_argument("--proxy-lr", type=float, default=None, help="peak SGD learning rate (default 0.05)")
    parser.add_argument("--label-smoothing", type=float, default=None, help="default 0")
    parser.add_argument("--weight-decay", type=float, default=None, help="default 4e-5")
    parser.add_argument("--val-fraction", type=float, default=None,
                        help="held out from the subset for validation (default 0.2)")
    parser.add_argument("--no-augment", action="store_true", default=None, help="no random crop/flip")
    parser.add_argument("--train-device", default=None, help="auto (cuda if present), cpu, cuda:0 ...")


def _get(args: argparse.Namespace, name: str) -> Any:
    value = getattr(args, name, None)
    return DEFAULTS.get(name) if value is None else value


def proxy_config_from_args(
    args: argparse.Namespace, *, dataset: ImageDataset | None = None, seed: int | None = None,
) -> ProxyConfig:
    """A ProxyConfig from parsed flags. `dataset` (already loaded) picks the augmentation's size."""
    spec = _get(args, "dataset")
    data_dir = getattr(args, "data_dir", None)
    data = dataset or load_dataset(spec, "train", data_dir)
    seed = getattr(args, "seed", 0) if seed is None else seed
    return ProxyConfig(
        dataset=spec, data_dir=data_dir,
        subset=_get(args, "proxy_subset"), val_fraction=_get(args, "val_fraction"),
        train=TrainConfig(
            epochs=_get(args, "proxy_epochs"), max_steps=_get(args, "proxy_steps"),
            batch_size=_get(args, "proxy_batch_size"), lr=_get(args, "proxy_lr"),
            label_smoothing=_get(args, "label_smoothing"), weight_decay=_get(args, "weight_decay"),
            seed=seed,
        ),
        augment=Augment() if getattr(args, "no_augment", None) else Augment.for_dataset(data),
        device=_get(args, "train_device"), seed=seed,
    )
