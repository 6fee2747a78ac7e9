"""The three loaders of a training run: augmented training, plain BatchNorm recalibration, evaluation.

Why one function: proxy training (search) and final training (`edgenas train`) must feed a network
the same way, or a candidate's proxy score and its final accuracy measure different things. Both
need the same three loaders with the same rules, written here once:

- `train`: augmented, shuffled with `seed`; the last partial batch is dropped when there is more
  than one batch's worth of images (a tiny last batch gives noisy BatchNorm statistics and steps);
- `bn`: the training images un-augmented, shuffled with `seed + 1` (a different order from
  training's), for re-estimating BatchNorm statistics after training;
- `eval`: the evaluation images in order (no shuffle), `eval_batch_size` at a time.

`bn` and `eval` use the training loader's mean/std, so every loader sees the same normalisation.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from edgenas.data import Augment, BatchLoader, ImageDataset


def resolve_device(device: str | torch.device) -> torch.device:
    """The device a run's loaders (and so its model) use; "auto" is cuda when present, else cpu."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@dataclass(frozen=True)
class Loaders:
    """`train`, `bn` (None when no recalibration was asked for) and `eval` loaders of one run."""

    train: BatchLoader
    bn: BatchLoader | None
    eval: BatchLoader


def make_loaders(
    train_data: ImageDataset,
    eval_data: ImageDataset,
    batch_size: int,
    eval_batch_size: int,
    *,
    augment: Augment,
    device: str | torch.device,
    seed: int,
    channels_last: bool,
    recalibrate: bool = True,
) -> Loaders:
    """The loaders for training on `train_data` and evaluating on `eval_data` (rules: module doc).

    `recalibrate=False` skips the BatchNorm loader (each loader holds its own copy of the images
    on `device`, so one that is never read is not built).
    """
    train = BatchLoader(train_data, batch_size, augment=augment, device=device, seed=seed,
                        drop_last=len(train_data) > batch_size, channels_last=channels_last)
    bn = None
    if recalibrate:
        bn = BatchLoader(train_data, batch_size, device=device, seed=seed + 1, mean=train.mean,
                         std=train.std, channels_last=channels_last)
    evaluation = BatchLoader(eval_data, eval_batch_size, shuffle=False, device=device, mean=train.mean,
                             std=train.std, channels_last=channels_last)
    return Loaders(train=train, bn=bn, eval=evaluation)
