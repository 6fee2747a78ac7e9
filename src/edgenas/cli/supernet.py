"""`edgenas supernet train|check|search`: train a weight-sharing supernet of the MnasNet space, and measure
how well its inherited weights rank architectures.

A trained supernet directory is what `edgenas search --space mnas --evaluator oneshot --supernet
DIR` scores candidates with, and what `edgenas train ARCH --init-from DIR` starts from. Training
resumes when the same command is run again on the same --out (DIR/resume.pt, per epoch).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from edgenas.cli.output import print_json
from edgenas.errors import UserError


def register(subparsers: argparse._SubParsersAction) -> None:
    from edgenas.data import DATASET_HELP
    from edgenas.spaces.mnas_choices import CHOICE_TYPES, SPACE_PRESETS
    from edgenas.supernet.network import SHARING_MODES
    from edgenas.supernet.sampling import SAMPLINGS
    from edgenas.supernet.training import SupernetSettings

    d = SupernetSettings()
    group = subparsers.add_parser("supernet", help="weight sharing: train an MnasNet supernet, check its ranking")
    commands = group.add_subparsers(dest="supernet_command", metavar="ACTION")
    commands.required = True

    train = commands.add_parser("train", help="train a supernet into --out (rerun to resume a killed run)")
    train.add_argument("--space", default="mnas", choices=("mnas",), help="the space (mnas)")
    train.add_argument("--space-preset", default=None, choices=sorted(SPACE_PRESETS), help=f"default {d.space_preset}")
    train.add_argument("--space-option", action="append", default=None, metavar="KEY=V1,V2",
                       help=f"override a choice list ({', '.join(CHOICE_TYPES)}), e.g. kernels=3,5 (repeatable)")
    train.add_argument("--dataset", default=None, help=f"{DATASET_HELP} (default {d.dataset})")
    train.add_argument("--data-dir", default=None, help="where the cifar10-jpeg shards are")
    train.add_argument("--subset", type=int, default=None, help="use N images of the train split (default all)")
    train.add_argument("--val-fraction", type=float, default=None,
                       help=f"held out for scoring candidates, never trained on (default {d.val_fraction})")
    train.add_argument("--epochs", type=int, default=None, help=f"default {d.train.epochs}")
    train.add_argument("--max-steps", type=int, default=None, help="stop after this many steps (default: --epochs)")
    train.add_argument("--batch-size", type=int, default=None, help=f"default {d.train.batch_size}")
    train.add_argument("--lr", type=float, default=None, help=f"peak SGD learning rate, cosine (default {d.train.lr})")
    train.add_argument("--lr-warmup", type=float, default=None, metavar="SHARE",
                       help=f"share of the steps over which the learning rate rises linearly to --lr "
                            f"(default {d.train.lr_warmup})")
    train.add_argument("--weight-decay", type=float, default=None, help=f"default {d.train.weight_decay}")
    train.add_argument("--sharing", default=None, choices=SHARING_MODES,
                       help=f"one weight set per ConvOp (kernels, expansion and SE sliced) or per op x kernel x SE "
                            f"(default {d.sharing})")
    train.add_argument("--sampling", default=None, choices=SAMPLINGS,
                       help=f"uniform: one random path per step; sandwich: largest + smallest + random paths, "
                            f"distilled from the largest (default {d.sampling})")
    train.add_argument("--random-paths", type=int, default=None, help=f"sandwich: random paths per step (default {d.random_paths})")
    train.add_argument("--train-device", default=None, help="auto (cuda if present), cpu, cuda:0 ...")
    train.add_argument("--seed", type=int, default=None, help=f"default {d.seed}")
    train.add_argument("--out", required=True, help="supernet directory (supernet.pt, supernet.json, resume.pt)")
    train.add_argument("--force", action="store_true", help="retrain a finished --out")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.add_argument("--json", action="store_true", help="print the record as one JSON object")
    train.set_defaults(handler=_train)

    check = commands.add_parser("check", help="rank fidelity: one-shot accuracy against proxy training on N random archs")
    check.add_argument("supernet", help="a directory of edgenas supernet train")
    check.add_argument("-n", type=int, default=20, help="random architectures (default 20)")
    check.add_argument("--proxy-epochs", type=int, default=1, help="proxy training of each, in epochs (default 1)")
    check.add_argument("--data-dir", default=None, help="where the cifar10-jpeg shards are")
    check.add_argument("--seed", type=int, default=0, help="which random architectures (default 0)")
    check.add_argument("--json", action="store_true", help="print the result as one JSON object")
    check.set_defaults(handler=_check)
    _register_search(commands)


def _register_search(commands: argparse._SubParsersAction) -> None:
    """`edgenas supernet search`: latency-aware differentiable search on the supernet (issue 13).

    Why a supernet subcommand and not `edgenas search --strategy gradient`: `edgenas search` is
    ask/tell over a store of trials, and a gradient search has no trials to ask for; it trains the
    supernet's weights and its architecture logits together, which is this command group's job
    (`--supernet DIR` inherits a trained one)."""
    from edgenas.data import DATASET_HELP
    from edgenas.latency.settings import add_latency_options
    from edgenas.spaces.mnas_choices import CHOICE_TYPES, SPACE_PRESETS
    from edgenas.supernet.gradient_search import SearchSettings
    from edgenas.supernet.latency_loss import PENALTIES
    from edgenas.supernet.network import SHARING_MODES
    from edgenas.supernet.search_model import DERIVATIONS

    d = SearchSettings(target_ms=1.0)
    search = commands.add_parser("search", help="latency-aware gradient search on the supernet (rerun to resume)")
    search.add_argument("--target-ms", type=float, required=True, help="latency target T in ms, on the LUT's device")
    search.add_argument("--supernet", default=None, help="a trained supernet directory to inherit weights from "
                        "(default: start from scratch)")
    search.add_argument("--space-preset", default=None, choices=sorted(SPACE_PRESETS), help=f"default {d.space_preset}")
    search.add_argument("--space-option", action="append", default=None, metavar="KEY=V1,V2",
                        help=f"override a choice list ({', '.join(CHOICE_TYPES)}) (repeatable)")
    search.add_argument("--dataset", default=None, help=f"{DATASET_HELP} (default {d.dataset})")
    search.add_argument("--data-dir", default=None, help="where the cifar10-jpeg shards are")
    search.add_argument("--subset", type=int, default=None, help="use N images of the train split (default all)")
    search.add_argument("--val-fraction", type=float, default=None,
                        help=f"the part the architecture steps on (default {d.val_fraction})")
    search.add_argument("--sharing", default=None, choices=SHARING_MODES, help=f"default {d.sharing}")
    search.add_argument("--epochs", type=int, default=None, help=f"default {d.epochs}")
    search.add_argument("--warmup-epochs", type=int, default=None, help=f"weights only first (default {d.warmup_epochs})")
    search.add_argument("--batch-size", type=int, default=None, help=f"default {d.batch_size}")
    search.add_argument("--lr", type=float, default=None, help=f"weights' SGD learning rate, cosine (default {d.lr})")
    search.add_argument("--arch-lr", type=float, default=None, help=f"logits' Adam learning rate (default {d.arch_lr})")
    search.add_argument("--penalty", default=None, choices=tuple(PENALTIES),
                        help=f"how CE and E[LAT] join: abs = CE + w|E/T - 1|, mult = CE (E/T)^w (default {d.penalty})")
    search.add_argument("--latency-weight", type=float, default=None, help=f"w (default {d.latency_weight:g})")
    search.add_argument("--tau-start", type=float, default=None, help=f"default {d.tau_start:g}")
    search.add_argument("--tau-end", type=float, default=None, help=f"default {d.tau_end:g}")
    search.add_argument("--derive", default=None, choices=DERIVATIONS,
                        help="near-target = the most probable network whose LUT latency lies within "
                        "--derive-tolerance of T; most-probable = each decision's most probable choice "
                        f"(default {d.derive})")
    search.add_argument("--derive-tolerance", type=float, default=None,
                        help=f"relative band around T for near-target (default {d.derive_tolerance:g})")
    search.add_argument("--seed", type=int, default=None, help=f"default {d.seed}")
    add_latency_options(search, "latency-", ("backend", "runs", "warmup", "min-seconds", "threads", "cache",
                                              "calibration", "layer-passes", "prepare-workers", "keep-converted"))
    search.add_argument("--out", required=True, help="run directory (history.json, arch_history.png, result.json)")
    search.add_argument("--force", action="store_true", help="search again into a finished --out")
    search.add_argument("--quiet", action="store_true", help="no progress bar")
    search.add_argument("--json", action="store_true", help="print the result as one JSON object")
    search.set_defaults(handler=_search)


def search_settings_from_args(args: argparse.Namespace):
    """The search settings the flags ask for; flags not given keep `SearchSettings`' defaults."""
    from edgenas.latency.settings import LatencySettings
    from edgenas.supernet.gradient_search import SearchSettings

    given = {name: getattr(args, name) for name in (
        "target_ms", "supernet", "space_preset", "dataset", "data_dir", "subset", "val_fraction", "sharing", "epochs",
        "warmup_epochs", "batch_size", "lr", "arch_lr", "penalty", "latency_weight", "tau_start", "tau_end", "derive",
        "derive_tolerance", "seed")
        if getattr(args, name) is not None}
    if args.space_option:
        given["space_options"] = tuple(args.space_option)
    return SearchSettings(**given, latency=LatencySettings.from_args(args, "latency-", mode="lut"))


def _search(args: argparse.Namespace) -> int:
    from edgenas.supernet.gradient_search import RESULT, finished, run_search

    out = Path(args.out)
    if finished(out) and not args.force:  # checked again in run_search; here before a slow data load
        raise UserError(f"{out / RESULT} already exists (a finished search); choose another --out or pass --force")
    result = run_search(out, search_settings_from_args(args), progress=not (args.quiet or args.json), force=args.force)
    if args.json:
        print_json(result | {"out": str(out)})
        return 0
    print(f"derived: {result['arch']}")
    print(f"latency on {result['backend']}: target {result['target_ms']:g} ms, E[LAT] {result['expected_ms']:.4g} ms, "
          f"LUT {result['predicted_ms']:.4g} ms, measured {result['measured_ms']:.4g} ms "
          f"({result['measured_error']:+.0%} of the target)")
    if result["most_probable_arch"] != result["arch"]:
        print(f"most probable network (each decision's mode): {result['most_probable_arch']}, LUT "
              f"{result['most_probable_predicted_ms']:.4g} ms, measured {result['most_probable_measured_ms']:.4g} ms")
    print(f"history: {out / 'history.json'}, {out / 'arch_history.png'}")
    return 0


def settings_from_args(args: argparse.Namespace):
    """The settings the flags ask for; flags not given keep `SupernetSettings`' defaults."""
    from dataclasses import replace

    from edgenas.supernet.training import SupernetSettings

    d = SupernetSettings()
    given = {name: getattr(args, name) for name in ("dataset", "data_dir", "subset", "val_fraction", "space_preset",
                                                    "sharing", "sampling", "random_paths", "seed")
             if getattr(args, name) is not None}
    if args.space_option:
        given["space_options"] = list(args.space_option)
    if args.train_device is not None:
        given["device"] = args.train_device
    train = {name: getattr(args, flag) for name, flag in (("epochs", "epochs"), ("max_steps", "max_steps"),
             ("batch_size", "batch_size"), ("lr", "lr"), ("lr_warmup", "lr_warmup"),
             ("weight_decay", "weight_decay"), ("seed", "seed"))
             if getattr(args, flag) is not None}
    return replace(d, **given, train=replace(d.train, **train))


def _train(args: argparse.Namespace) -> int:
    from edgenas.supernet.training import WEIGHTS, finished, train_supernet

    out = Path(args.out)
    if finished(out) and not args.force:  # checked again under the lock; here before a slow data load
        raise UserError(f"{out / WEIGHTS} already exists; choose another --out or pass --force")
    settings = settings_from_args(args)
    _, record = train_supernet(out, settings, progress=not (args.quiet or args.json), force=args.force)
    if args.json:
        print_json(record | {"out": str(out)})
        return 0
    stats = record["stats"]
    print(f"supernet of {record['params']:,} parameters trained on {record['train_images']:,} images "
          f"({stats['epochs']} epochs, {stats['seconds']:.0f} s); {record['val_images']:,} held out for scoring")
    print(f"search with it: edgenas search --space mnas --evaluator oneshot --supernet {out} --strategy ppo ...")
    return 0


def _check(args: argparse.Namespace) -> int:
    from edgenas.supernet.fidelity import check_fidelity

    if args.n < 2:
        raise UserError(f"-n must be at least 2 (a ranking needs two architectures), got {args.n}")
    result = check_fidelity(args.supernet, args.n, proxy_epochs=args.proxy_epochs, seed=args.seed,
                            data_dir=args.data_dir, progress=not args.json)
    if args.json:
        print_json(result)
        return 0
    print(f"{args.n} random architectures: Kendall tau {result['kendall_tau']:.3f} (p {result['p_value']:.3g}) "
          f"between one-shot accuracy ({result['oneshot_seconds_mean']:.2f} s each) and proxy training "
          f"({args.proxy_epochs} epochs, {result['proxy_seconds_mean']:.1f} s each)")
    return 0
