"""`edgenas model preset|info`: published architectures and per-stage summaries."""

from __future__ import annotations

import argparse

from edgenas.cli.output import print_json, print_table
from edgenas.spaces.mobilenet import NetworkConfig, build_network
from edgenas.spaces.presets import PRESETS, preset
from edgenas.util.modelinfo import count_macs, count_params, summarize


def register(subparsers: argparse._SubParsersAction) -> None:
    model = subparsers.add_parser("model", help="architecture presets and model summaries")
    commands = model.add_subparsers(dest="model_command", metavar="ACTION")
    commands.required = True

    show_preset = commands.add_parser("preset", help="print a preset's architecture string")
    show_preset.add_argument("name", help=f"one of {', '.join(sorted(PRESETS))}")
    show_preset.set_defaults(handler=lambda args: print(preset(args.name)))

    info = commands.add_parser("info", help="per-stage table and totals of an architecture")
    info.add_argument("arch", nargs="+", help="architecture string (stages), or a preset name")
    info.add_argument("--resolution", type=int, default=224)
    info.add_argument("--classes", type=int, default=1000)
    info.add_argument("--in-channels", type=int, default=3)
    info.add_argument("--stem-stride", type=int, default=None, help="default: 2 at >= 64 px, else 1")
    info.add_argument("--json", action="store_true", help="print one JSON object")
    info.set_defaults(handler=_info)


def _info(args: argparse.Namespace) -> int:
    arch = " ".join(args.arch)
    if arch in PRESETS:
        arch = PRESETS[arch]
    stem_stride = args.stem_stride or (2 if args.resolution >= 64 else 1)
    config = NetworkConfig(num_classes=args.classes, in_channels=args.in_channels, stem_stride=stem_stride)
    model = build_network(arch, config, args.resolution)
    shape = (1, args.in_channels, args.resolution, args.resolution)
    rows = summarize(model, shape)
    total = {"arch": arch, "resolution": args.resolution, "classes": args.classes,
             "params": count_params(model), "macs": count_macs(model, shape)}
    if args.json:
        total["stages"] = [vars(row) for row in rows]
        print_json(total)
        return 0
    strings = ["conv3x3"] + arch.split() + ["conv1x1", "linear"]
    table = [(r.name, s, "x".join(map(str, r.out_shape[1:])), f"{r.params:,}", f"{r.macs:,}")
             for r, s in zip(rows, strings)]
    print_table(None, ["part", "block", "output", "params", "MACs"], table)
    print(f"total: {total['params']:,} params, {total['macs'] / 1e6:.1f} M MACs at {args.resolution}x{args.resolution}")
    return 0
