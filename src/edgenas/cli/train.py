"""`edgenas train ARCH --dataset D --epochs N --out DIR`: train a chosen architecture fully.

Why this command is thin: the recipe and the checkpoint format live in `edgenas.training.final`
(one home, shared with Python users and benchmarks). Here are only the flags, the checks of the
user's input, all made before anything is trained or written (a refused run leaves DIR as it
was), and what is printed. A killed run resumes when the same command is run again (DIR/resume.pt,
see `train_to_directory`); a second process on the same DIR is refused with one line.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from edgenas.data import DATASET_HELP, ImageDataset
from edgenas.errors import UserError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("train", help="train an architecture fully and write DIR/model.pt")
    parser.add_argument("arch", nargs="+", help="architecture string (stages), or a preset name (mnasnet_a1 ...)")
    parser.add_argument("--dataset", default="digits", help=f"{DATASET_HELP} (default digits)")
    parser.add_argument("--data-dir", default=None, help="where cifar10-jpeg shards are")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--out", required=True,
                        help="directory for model.pt and train.json (a killed run resumes from DIR/resume.pt)")
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
    parser.add_argument("--init-from", default=None, metavar="SUPERNET_DIR",
                        help="start from the weights ARCH inherits from a trained supernet (edgenas supernet train)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing DIR/model.pt")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    parser.set_defaults(handler=_train)


# ---- the command ---------------------------------------------------------------------------------
def resolve_arch(words: list[str]) -> str:
    """An architecture string from the command line's words: a preset name, or the stages."""
    from edgenas.spaces.presets import PRESETS

    text = " ".join(words).strip()
    return PRESETS.get(text, text)


def _check_space(arch: str, preset: str | None, data: ImageDataset) -> str:
    if preset is None:
        return arch
    from edgenas.spaces.mnas_choices import mnas_space_for, space_choices

    return mnas_space_for(data, space_choices(preset)).canonical(arch)


def _train(args: argparse.Namespace) -> int:
    from edgenas.data import Augment, load_dataset
    from edgenas.training.final import CHECKPOINT, RESUME, finished, train_to_directory
    from edgenas.training.loop import TrainConfig

    out = Path(args.out)
    if finished(out) and not args.force:  # checked again under the lock; here before a slow data load
        raise UserError(f"{out / CHECKPOINT} already exists; choose another --out or pass --force")
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                         weight_decay=args.weight_decay, label_smoothing=args.label_smoothing, seed=args.seed)
    train_data = load_dataset(args.dataset, "train", args.data_dir)
    test_data = load_dataset(args.dataset, "test", args.data_dir)
    if args.subset is not None:
        train_data = train_data.subset(args.subset, args.seed)
    arch = _check_space(resolve_arch(args.arch), args.space_preset, train_data)
    _, h, w = train_data.shape
    if h != w:
        raise UserError(f"dataset '{args.dataset}' has {h}x{w} images; use square images (folder: --image-size)")
    if (out / RESUME).exists() and not args.json:
        print(f"resuming from {out / RESUME}", flush=True)
    _, recipe = train_to_directory(
        out, arch, train_data, test_data, config, force=args.force, augment=Augment() if args.no_augment else None,
        device=args.train_device, dataset=args.dataset, progress=not (args.quiet or args.json),
        init_from=args.init_from,
    )
    if args.json:
        from edgenas.cli.output import print_json

        print_json(recipe | {"out": str(out)})
        return 0
    print(f"{arch}: test accuracy {100 * recipe['test_accuracy']:.2f}% on {recipe['test_images']:,} {args.dataset} "
          f"test images after {config.epochs} epochs ({recipe['train_seconds']:.0f} s); params {recipe['params']:,}, "
          f"MACs {recipe['macs']:,}")
    print(f"checkpoint: {out / CHECKPOINT}; export: edgenas export {out} --format onnx")
    return 0
