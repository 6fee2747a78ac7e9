"""`edgenas latency backends|measure|baseline|lut build|lut validate`: latency measured on the device."""

from __future__ import annotations

import argparse
import sys

from edgenas.cli.output import print_json, print_table
from edgenas.errors import UserError
from edgenas.latency.errors import LatencyError
from edgenas.latency.lut_check import CheckPlan, build_checked
from edgenas.latency.settings import LatencySettings, add_latency_options
from edgenas.util.progress import progress_bar


def register(subparsers: argparse._SubParsersAction) -> None:
    latency = subparsers.add_parser("latency", help="measure latency on a device; build and check the LUT")
    commands = latency.add_subparsers(dest="latency_command", metavar="ACTION")
    commands.required = True

    backends = commands.add_parser("backends", help="list the backends and whether each is usable here")
    _device_options(backends)
    backends.add_argument("--json", action="store_true", help="print one JSON object")
    backends.set_defaults(handler=_backends)

    measure = commands.add_parser("measure", help="measure one architecture end to end")
    measure.add_argument("arch", nargs="+", help="architecture string (stages), or a preset name")
    _common(measure)
    measure.add_argument("--classes", type=int, default=1000)
    measure.add_argument("--in-channels", type=int, default=3)
    measure.add_argument("--no-reference", action="store_true", help="do not interleave the reference model")
    measure.add_argument("--no-cache", action="store_true", help="measure even if the cache has it")
    measure.add_argument("--json", action="store_true", help="print one JSON object")
    measure.set_defaults(handler=_measure)

    baseline = commands.add_parser(
        "baseline", help="show the reference's baseline (taken now if none is stored); --retake times it again "
                         "and carries the cache over")
    _common(baseline)
    baseline.add_argument("--in-channels", type=int, default=3)
    add_latency_options(baseline, names=("lut-reference",))
    baseline.add_argument("--retake", action="store_true",
                          help="time the reference again and rescale every figure calibrated with the old "
                               "baseline (layers, measurements, LUT corrections): nothing is measured again")
    baseline.add_argument("--json", action="store_true", help="print one JSON object")
    baseline.set_defaults(handler=_baseline)

    lut = commands.add_parser("lut", help="the per-layer lookup table")
    lut_commands = lut.add_subparsers(dest="lut_command", metavar="ACTION")
    lut_commands.required = True
    build = lut_commands.add_parser("build", help="time every layer of a space (or of N sampled networks)")
    _space(build)
    _common(build)
    build.add_argument("--sample", type=int, default=None,
                       help="time only the layers of N random architectures (default: every layer of the space)")
    build.add_argument("--held-out", type=int, default=None,
                       help=f"networks measured after the fit to judge it, never fitted on (default "
                            f"{CheckPlan.held_out}; 0: no check)")
    build.add_argument("--target", type=float, default=None,
                       help=f"share of held-out networks within +-10 %% at which the check stops (default "
                            f"{CheckPlan.target}); below it the build measures more networks and refits")
    build.add_argument("--check-budget", type=float, default=None,
                       help=f"seconds the check may spend measuring (default {CheckPlan.budget_s:.0f})")
    build.add_argument("--json", action="store_true", help="print one JSON object")
    build.set_defaults(handler=_lut_build)

    validate = lut_commands.add_parser("validate", help="compare LUT predictions with end-to-end measurements")
    _space(validate)
    _common(validate)
    validate.add_argument("-n", type=int, default=20, help="random architectures to measure")
    validate.add_argument("--seed", type=int, default=1)
    validate.add_argument("--repeat", type=int, default=0, metavar="K",
                          help="measure the first K networks afresh and again after all of them, and report how far "
                               "the device's own measurements repeat (the floor of the LUT's error in this hour)")
    validate.add_argument("--json", action="store_true", help="print one JSON object")
    validate.set_defaults(handler=_lut_validate)


def _device_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default=None, help="ssh: user@board (or EDGENAS_SSH_HOST)")
    parser.add_argument("--remote-python", default=None, help="ssh: the board's python (default python3)")
    parser.add_argument("--serial", default=None, help="adb: device serial (default: the only one)")
    parser.add_argument("--core-mask", default=None, help="adb: taskset core mask (default: the phone's highest-numbered core, one core)")


def _common(parser: argparse.ArgumentParser) -> None:
    add_latency_options(parser, names=("backend", "runs", "warmup", "min-seconds", "threads", "clock", "cache"))
    parser.add_argument("--resolution", type=int, default=224)
    _device_options(parser)


def _space(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--space", default="mnas", help="search space (mnas)")
    parser.add_argument("--classes", type=int, default=1000)
    add_latency_options(parser, names=("lut-reference", "layer-passes", "calibration", "prepare-workers",
                                       "keep-converted"))


def _backend_options(args: argparse.Namespace) -> dict:
    return {
        "adb": {"serial": args.serial, "core_mask": args.core_mask},
        "ssh": {"host": args.host, "python": args.remote_python},
    }


def _settings(args: argparse.Namespace, **overrides) -> LatencySettings:
    """The command's latency settings; the remote device is --serial (adb) or --host (ssh)."""
    device = args.serial if args.backend == "adb" else args.host if args.backend == "ssh" else None
    return LatencySettings.from_args(args, device=device, core_mask=args.core_mask,
                                     remote_python=args.remote_python, **overrides)


def _backend(settings: LatencySettings):
    from edgenas.latency.backends import get_backend

    return get_backend(settings.backend, **settings.backend_options())


def _backends(args: argparse.Namespace) -> int:
    from edgenas.latency.backends import backend_statuses

    statuses = backend_statuses(**_backend_options(args))
    if args.json:
        print_json({"backends": [vars(s) for s in statuses]})
        return 0
    rows = [(s.name, "yes" if s.usable else "no", s.device if s.usable else s.reason,
             s.runtime if s.usable else s.fix) for s in statuses]
    print_table("latency backends", ["backend", "usable", "device / why not", "runtime / how to fix"], rows)
    return 0


def _measure(args: argparse.Namespace) -> int:
    from edgenas.latency.cache import LatencyCache
    from edgenas.latency.estimator import measure_arch
    from edgenas.latency.protocol import Measurer
    from edgenas.spaces.blockstrings import decode_arch
    from edgenas.spaces.mobilenet import NetworkConfig
    from edgenas.spaces.presets import PRESETS

    arch = " ".join(args.arch)
    arch = PRESETS.get(arch, arch)
    decode_arch(arch)  # a malformed string fails here, before any backend starts
    network = NetworkConfig(num_classes=args.classes, in_channels=args.in_channels,
                            stem_stride=2 if args.resolution >= 64 else 1)
    settings = _settings(args)
    backend = _backend(settings)
    backend.require()
    cache = LatencyCache(settings.cache)
    measurer = Measurer(backend, settings.protocol, cache)
    try:
        result = measure_arch(arch, measurer, cache, network, args.resolution,
                              None if args.no_reference else "network", use_cache=not args.no_cache)
    finally:
        measurer.close()
        cache.close()
    if args.json:
        print_json(result.to_dict())
        return 0
    rows = [("backend", result.backend), ("device", result.device), ("runtime", result.runtime),
            ("where", result.where), ("source", result.source), ("clock", result.clock),
            ("median / p10 / p90 ms", f"{result.median_ms:.3f} / {result.p10_ms:.3f} / {result.p90_ms:.3f}"),
            ("runs (warm-up)", f"{result.runs} ({result.warmup})")]
    if result.wall_median_ms is not None:
        rows.append(("wall-clock median ms", f"{result.wall_median_ms:.3f}"))
    if result.reference_ratio is not None:
        rows += [("reference", result.reference),
                 ("ratio to reference (p10-p90 per pair)",
                  f"{result.reference_ratio:.4f} ({result.ratio_p10:.3f}-{result.ratio_p90:.3f})"),
                 ("calibrated ms", f"{result.calibrated_ms:.3f}  (x baseline {result.reference_baseline_ms:.3f} ms)")]
    print_table(None, ["", arch if len(arch) < 60 else arch[:57] + "..."], rows)
    if result.noisy:
        print("warning: the machine was too noisy for a steady figure after re-measuring", file=sys.stderr)
    return 0


def _baseline(args: argparse.Namespace) -> int:
    from edgenas.latency.cache import LatencyCache
    from edgenas.latency.protocol import Measurer

    if args.resolution < 1 or args.in_channels < 1:
        raise UserError(f"need a resolution and input channels of at least 1, got {args.resolution}, {args.in_channels}")
    settings = _settings(args)
    shape = (1, args.in_channels, args.resolution, args.resolution)
    backend = _backend(settings)
    backend.require()
    cache = LatencyCache(settings.cache)
    measurer = Measurer(backend, settings.protocol, cache)
    try:
        if args.retake:
            result = measurer.retake_baseline(settings.lut_reference, shape)
        else:
            ref = measurer.reference(settings.lut_reference, shape)
            result = {"reference": ref.name, "baseline_ms": ref.baseline_ms}
    finally:
        measurer.close()
        cache.close()
    if args.json:
        print_json(result)
        return 0
    if not args.retake:
        print(f"{result['reference']}: baseline {result['baseline_ms']:.3f} ms ({cache.path})")
        return 0
    print(f"{result['reference']}: baseline {result['old_ms']:.3f} -> {result['new_ms']:.3f} ms "
          f"(x{result['factor']:.4f}); rescaled {result['measurements']} measurements, {result['lut']} LUT layers, "
          f"{result['lut_corrections']} LUT corrections")
    if result["corrections_left"]:
        print(f"warning: {result['corrections_left']} LUT correction(s) from an earlier version do not say which "
              "baseline they were fitted with and were left as they are; refit them with edgenas latency lut build",
              file=sys.stderr)
    return 0


def _estimator(args: argparse.Namespace):
    from edgenas.latency.estimator import make_latency_estimator
    from edgenas.spaces import get_space

    settings = _settings(args, mode="lut")
    if args.space != "mnas":
        raise UserError(f"the LUT supports the mnas space only, not '{args.space}'")
    space = get_space(args.space, resolution=args.resolution, num_classes=args.classes)
    return make_latency_estimator(space, settings)


def _lut_build(args: argparse.Namespace) -> int:
    import random

    from edgenas.latency.lut import network_like_order, space_layers
    from edgenas.util.lock import WriterLock

    plan = _check_plan(args)
    estimator = _estimator(args)
    # One LUT build per cache at a time (searches may still read and add measurements): a second
    # build would time the same layers twice. A killed build keeps its finished chunks of layers.
    lock = WriterLock(estimator.cache.path.with_name(estimator.cache.path.name + ".lut-build.lock"), "LUT build")
    try:
        lock.acquire()
        estimator.measurer.backend.require()
        lut = estimator.make_lut()
        if args.sample:
            rng = random.Random(0)
            archs = [estimator.space.sample(rng) for _ in range(args.sample)]
            specs = network_like_order([s for arch in archs for s in lut.layers(arch)])
        else:
            specs = space_layers(estimator.space)  # dealt by network_like_order already
        todo = lut.missing(specs)
        with progress_bar() as progress:
            task = progress.add_task("timing layers", total=len(todo))
            lut.fill(todo, progress=lambda k: progress.advance(task, k))
        # Always refit: the calibration networks' measurements come from the cache, so this costs
        # only the networks not measured yet, and the stored correction follows this version's form.
        # The held-out check calibrates in its first round: fitting here as well would fit twice.
        held_out = None
        if plan is None:
            correction = estimator.calibrate(estimator.calibration_archs)
        else:
            held_out = build_checked(estimator, plan, progress=lambda line: print(line, file=sys.stderr))
            correction = estimator.lut.correction
            odd = held_out["baseline"]
            if odd and odd["suspect"]:
                print(f"warning: the reference's baseline ({odd['baseline_ms']:.3f} ms) is {odd['off_pct']:+.0f} % off "
                      f"the {odd['reference_p10_ms']:.3f} ms it ran at (10th percentile) inside this build's "
                      "measurements: it was taken in an untypical minute and every figure in this cache carries "
                      "that factor; when the machine is quiet, run edgenas latency baseline --retake (same "
                      "--resolution and --cache) to carry the cache over to a new one", file=sys.stderr)
        summary = {"space": args.space, "resolution": estimator.resolution, "backend": estimator.backend,
                   "device": estimator.measurer.status.device, "layers": len(set((s.key, s.shape_key) for s in specs)),
                   "timed_now": len(todo), "lut_entries": len(estimator.lut),
                   "prepare_workers": estimator.measurer.prepare_workers,
                   "kept_files_reused": estimator.measurer.converted_reused,
                   "kept_files": None if estimator.measurer.converted is None else str(estimator.measurer.converted.folder),
                   "correction": {k: correction.get(k) for k in ("a", "c_per_layer", "d_per_mvalue", "b", "n", "rmse_ms")},
                   "cache": str(estimator.cache.path),
                   "held_out": None if held_out is None else {k: held_out[k] for k in HELD_OUT_SUMMARY}}
    finally:
        estimator.close()
        lock.release()
    if args.json:
        print_json(summary)
    else:
        print(f"LUT for {args.space} @ {summary['resolution']} on {estimator.backend}: {summary['layers']} layers "
              f"({summary['timed_now']} timed now), correction fitted on {summary['correction']['n']} networks "
              f"(RMSE {summary['correction']['rmse_ms']:.3f} ms); stored in {summary['cache']}")
        if held_out is not None:
            print(f"held-out check: {100 * held_out['within_tolerance']:.0f} % of {held_out['n']} networks never "
                  f"fitted on within +-10 % (target {100 * held_out['target']:.0f} %), "
                  f"{100 * held_out['within_5pct']:.0f} % within +-5 %, Kendall tau {held_out['kendall_tau']:.3f}; "
                  f"{held_out['ended']} after {held_out['rounds']} round(s), {held_out['seconds']:.0f} s")
        if summary["kept_files"]:
            print(f"converted files kept in {summary['kept_files']}: {summary['kept_files_reused']} reused")
    return 0


HELD_OUT_SUMMARY = ("n", "within_5pct", "within_10pct", "within_tolerance", "kendall_tau", "max_abs_pct",
                    "mean_error_pct", "sd_error_pct", "target", "reached", "ended", "rounds", "seconds",
                    "calibration_archs", "baseline")


def _check_plan(args: argparse.Namespace) -> CheckPlan | None:
    """The build's held-out check from its flags (None: --held-out 0); defaults live in CheckPlan."""
    if args.held_out == 0:
        return None
    given = {"held_out": args.held_out, "target": args.target, "budget_s": args.check_budget}
    try:
        return CheckPlan(**{k: v for k, v in given.items() if v is not None})
    except LatencyError as error:
        raise UserError(f"{error} (--held-out, --target, --check-budget)") from None


def _lut_validate(args: argparse.Namespace) -> int:
    from edgenas.latency.estimator import MIN_VALIDATION_ARCHS

    if args.n < MIN_VALIDATION_ARCHS:  # named as the flag, before the LUT is opened and the bar drawn
        raise UserError(f"-n must be at least {MIN_VALIDATION_ARCHS} (networks to measure and compare), "
                        f"got {args.n}")
    if not 0 <= args.repeat <= args.n:
        raise UserError(f"--repeat must be between 0 and -n ({args.n}): networks measured a second time, got {args.repeat}")
    estimator = _estimator(args)
    try:
        estimator.measurer.backend.require()
        with progress_bar() as progress:
            task = progress.add_task("measuring networks", total=args.n + args.repeat)
            report = estimator.validate(args.n, seed=args.seed, progress=lambda _: progress.advance(task),
                                        repeat=args.repeat)
    finally:
        estimator.close()
    moved = report.get("drift")
    if moved and moved["drifted"]:
        print(f"warning: the LUT has drifted from this device: its errors moved by {moved['shift_pct']:+.1f} % "
              f"since it was built (p = {moved['p']:.2g}); rebuild it (edgenas latency lut build with a new "
              "--cache) or measure end to end (--latency-mode measure)", file=sys.stderr)
    if args.json:
        print_json(report)
        return 0
    print_table(f"LUT vs end-to-end: {args.space} @ {report['resolution']}, {estimator.backend}",
                ["n", "within 5%", "within 10%", "RMSE ms", "Kendall tau", "max error"],
                [(report["n"], f"{100 * report['within_5pct']:.1f} %", f"{100 * report['within_10pct']:.1f} %",
                  f"{report['rmse_ms']:.3f}", f"{report['kendall_tau']:.3f}", f"{report['max_abs_pct']:.1f} %")])
    again = report.get("repeatability")
    if again:
        print_table("The device against itself: the first networks measured again, after all of them",
                    ["n", "mean change", "sd", "within 5%", "within 10%"],
                    [(again["n"], f"{again['mean_change_pct']:+.1f} %", f"{again['sd_change_pct']:.1f} %",
                      f"{100 * again['within_5pct']:.1f} %", f"{100 * again['within_tolerance']:.1f} %")])
        print("The LUT's shares above cannot be read more finely than the device repeats itself in this hour.")
    return 0
