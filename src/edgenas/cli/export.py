"""`edgenas export DIR --format onnx|tflite`: the trained model as a file a runtime loads, checked.

Why the check is part of the command: an exported file that silently computes something else is
worse than none. After writing, the file is run (ONNX Runtime or LiteRT, one thread) on a random
input and compared with PyTorch; above the tolerance the file is deleted and the command fails
with one line, so a file that exists is a file that matched.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from edgenas.errors import UserError

FORMATS = {"onnx": ".onnx", "tflite": ".tflite"}
# Float32 end to end; differences come from operator order. The TFLite converter fuses more.
TOLERANCE = {"onnx": 1e-4, "tflite": 1e-3}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("export", help="export DIR/model.pt (from edgenas train) to ONNX or TFLite")
    parser.add_argument("run_dir", metavar="DIR", help="directory holding model.pt")
    parser.add_argument("--format", default="onnx", help="onnx, or tflite (needs pip install 'edgenas[litert]')")
    parser.add_argument("--output", default=None, help="file to write (default DIR/model.onnx or DIR/model.tflite)")
    parser.add_argument("--tolerance", type=float, default=None,
                        help=f"largest allowed |exported - PyTorch| output difference (default onnx {TOLERANCE['onnx']:g}, "
                             f"tflite {TOLERANCE['tflite']:g})")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    parser.set_defaults(handler=_export)


def _export(args: argparse.Namespace) -> int:
    from edgenas.export import LITERT_INSTALL, check_export, export_onnx, export_tflite
    from edgenas.training.final import load_checkpoint

    if args.format not in FORMATS:
        raise UserError(f"unknown export format '{args.format}'; choose one of {', '.join(FORMATS)}")
    tolerance = TOLERANCE[args.format] if args.tolerance is None else args.tolerance
    if not tolerance > 0:
        raise UserError(f"--tolerance must be positive, got {tolerance}")
    if args.format == "tflite":
        try:
            import litert_torch  # noqa: F401
        except ImportError:
            raise UserError(f"TFLite export needs the litert extra, which is not installed; run {LITERT_INSTALL}") from None
    model, recipe = load_checkpoint(args.run_dir)
    path = Path(args.output) if args.output else Path(args.run_dir) / f"model{FORMATS[args.format]}"
    if path.suffix != FORMATS[args.format]:
        raise UserError(f"--output '{path}' must end in {FORMATS[args.format]} for --format {args.format}")
    shape = (1, recipe["in_channels"], recipe["resolution"], recipe["resolution"])
    exporter = export_onnx if args.format == "onnx" else export_tflite
    written = exporter(model, shape, path)
    try:
        difference = check_export(model, written, shape)
    except BaseException:
        written.unlink(missing_ok=True)
        raise
    if not difference <= tolerance:  # also catches NaN
        written.unlink(missing_ok=True)
        raise UserError(f"the exported {args.format} model's outputs differ from PyTorch's by {difference:.3g} "
                        f"(tolerance {tolerance:g}); the file was removed; report the architecture {recipe['arch']!r}")
    result = {
        "file": str(written), "format": args.format, "max_abs_diff": difference, "tolerance": tolerance,
        "input_shape": list(shape), "mean": recipe.get("mean"), "std": recipe.get("std"),
        "classes": recipe.get("classes"), "arch": recipe["arch"], "bytes": written.stat().st_size,
    }
    if args.json:
        from edgenas.cli.output import print_json

        print_json(result)
        return 0
    print(f"wrote {written} ({result['bytes']:,} bytes); max abs diff vs PyTorch {difference:.2e} "
          f"(tolerance {tolerance:g})")
    mean = ", ".join(f"{m:.4f}" for m in recipe.get("mean", []))
    std = ", ".join(f"{s:.4f}" for s in recipe.get("std", []))
    print(f"input: float32 {list(shape)}, pixels/255 normalised with mean ({mean}) and std ({std})")
    return 0
