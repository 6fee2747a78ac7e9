"""`edgenas data info|proxy`: check that a dataset loads, and score one architecture by proxy training.

`info` is the quick answer to "will the search read my data?" (a missing or corrupt file is one
line and exit status 2). `proxy` runs exactly what a search runs per candidate, so a user can
calibrate the proxy (steps, subset) before spending a search on it.
"""

from __future__ import annotations

import argparse

import torch

from edgenas.cli.output import print_json, print_table
from edgenas.data import DATASET_HELP, load_dataset
from edgenas.training.options import add_proxy_options, proxy_config_from_args


def register(subparsers: argparse._SubParsersAction) -> None:
    data = subparsers.add_parser("data", help="datasets and proxy training")
    commands = data.add_subparsers(dest="data_command", metavar="ACTION")
    commands.required = True

    info = commands.add_parser("info", help="load a dataset and summarise it")
    info.add_argument("spec", help=DATASET_HELP)
    info.add_argument("--split", choices=("train", "test"), default="train")
    info.add_argument("--data-dir", default=None, help="where cifar10-jpeg shards are")
    info.add_argument("--image-size", type=int, default=None, help="resize folder: images to N x N")
    info.add_argument("--json", action="store_true", help="print one JSON object")
    info.set_defaults(handler=_info)

    proxy = commands.add_parser("proxy", help="proxy-train one architecture, print its accuracy")
    proxy.add_argument("arch", help="architecture string of the space")
    proxy.add_argument("--data-dir", default=None, help="where cifar10-jpeg shards are")
    proxy.add_argument("--space", default="mnas")
    proxy.add_argument("--seed", type=int, default=0)
    proxy.add_argument("--json", action="store_true")
    add_proxy_options(proxy)
    proxy.set_defaults(handler=_proxy)


def _info(args: argparse.Namespace) -> int:
    data = load_dataset(args.spec, args.split, args.data_dir, image_size=args.image_size)
    mean, std = data.channel_stats()
    counts = torch.bincount(data.labels, minlength=data.num_classes).tolist()
    summary = data.describe() | {"mean": mean, "std": std,
                                 "per_class": dict(zip(data.classes, counts))}
    if args.json:
        print_json(summary)
        return 0
    c, h, w = data.shape
    rows = [("images", f"{len(data):,}"), ("shape", f"{c} x {h} x {w} (uint8, in memory)"),
            ("classes", data.num_classes), ("mean", ", ".join(f"{m:.4f}" for m in mean)),
            ("std", ", ".join(f"{s:.4f}" for s in std)),
            ("per class", f"{min(counts):,} .. {max(counts):,}")]
    print_table(f"dataset {data.name}", ["", "value"], rows)
    return 0


def _proxy(args: argparse.Namespace) -> int:
    from edgenas.spaces import fitted_space
    from edgenas.training.proxy import ProxyTrainingEvaluator

    spec = args.dataset or "digits"
    probe = load_dataset(spec, "train", args.data_dir)
    config = proxy_config_from_args(args, dataset=probe)
    space = fitted_space(args.space, probe.shape, probe.num_classes)
    evaluator = ProxyTrainingEvaluator(config, space, dataset=probe, progress=not args.json)
    evaluator.prepare()
    space.build(space.decode(args.arch))  # a malformed or too-deep string is the user's to fix: exit 2
    result = evaluator.evaluate(args.arch)
    if args.json:
        print_json(result.to_dict())
    elif result.ok:
        m = result.metrics
        print_table(f"proxy training on {spec}", ["", "value"], [
            ("validation accuracy", f"{result.accuracy:.4f} ({m['val_images']:,} images)"),
            ("train loss / accuracy", f"{m['train_loss']:.4f} / {m['train_accuracy']:.4f}"),
            ("steps", f"{m['train_steps']:,} ({m['images_per_second']:.0f} images/s)"),
            ("params / MACs", f"{m['params']:,} / {m['macs']:,}"),
            ("seconds", f"{m['seconds']:.1f}"),
        ])
    if not result.ok:
        print(f"edgenas: trial failed: {result.error}")
        return 1
    return 0
