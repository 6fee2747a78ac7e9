"""`edgenas darts search|show|train`: differentiable cell search, genotypes, evaluation training."""

from __future__ import annotations

import argparse
from pathlib import Path

from edgenas.cli.output import print_json
from edgenas.errors import UserError


def register(subparsers: argparse._SubParsersAction) -> None:
    from edgenas.darts.step import SearchHyper
    from edgenas.data import DATASET_HELP

    darts = subparsers.add_parser("darts", help="DARTS: search cells, show and train genotypes")
    commands = darts.add_subparsers(dest="darts_command", metavar="ACTION")
    commands.required = True

    search = commands.add_parser("search", help="search a cell (resumes a killed search in --out)")
    search.add_argument("--space", choices=("darts", "nb201"), default="darts",
                        help="darts: DARTS' CIFAR cells; nb201: the NAS-Bench-201 cell, looked up in its tables")
    search.add_argument("--dataset", required=True, help=DATASET_HELP)
    search.add_argument("--data-dir", default=None, help="where the cifar10-jpeg shards are")
    search.add_argument("--order", type=int, choices=(1, 2), default=1, help="1: first order, 2: unrolled (default 1)")
    search.add_argument("--regularizer", default="none",
                        help="collapse mitigation: none (plain DARTS), beta (beta-DARTS), drnas (DrNAS)")
    search.add_argument("--regularizer-option", action="append", default=[], metavar="KEY=VALUE",
                        help="a mitigation setting, e.g. weight=25 (beta), scale=0.001 or prior=1 (drnas)")
    search.add_argument("--epochs", type=int, default=50)
    search.add_argument("--layers", type=int, default=8, help="darts: cells in the supernet (default 8)")
    search.add_argument("--cells-per-stage", type=int, default=5, help="nb201: cells per stage, N (default 5)")
    search.add_argument("--channels", type=int, default=16, help="initial channels, C (default 16)")
    search.add_argument("--batch-size", type=int, default=64)
    search.add_argument("--arch-lr", type=float, default=SearchHyper.arch_lr, help="alpha's Adam learning rate (default 3e-4)")
    search.add_argument("--hessian-iterations", type=int, default=20,
                        help="power steps for the Hessian eigenvalue each epoch (0: skip; default 20)")
    search.add_argument("--tables", default=None,
                        help="nb201: the NAS-Bench-201 tables' folder (default $EDGENAS_DATA_DIR/nb201 or ../shared/data/nb201)")
    search.add_argument("--table-dataset", default="cifar10", help="nb201: the tables' dataset columns (default cifar10)")
    search.add_argument("--latency-device", default="pixel3", help="nb201: the latency table's device (default pixel3)")
    search.add_argument("--limit", type=int, default=None, help="use only this many training images")
    search.add_argument("--steps-per-epoch", type=int, default=None, help="cap the steps of each epoch")
    search.add_argument("--seed", type=int, default=2)
    search.add_argument("--device", default="cpu", help="cpu or cuda")
    search.add_argument("--out", required=True, help="run directory (checkpoint, genotype.txt, history)")
    search.add_argument("--low-memory", action="store_true",
                        help="darts: recompute every cell in backward instead of keeping its activations "
                             "(least memory, slower steps; same results)")
    search.add_argument("--no-progress", action="store_true")
    search.set_defaults(handler=_search)

    summary = commands.add_parser("summary", help="a search's epochs: cell, skip share, eigenvalue, table accuracy")
    summary.add_argument("run_dir", help="the --out directory of 'edgenas darts search'")
    summary.add_argument("--json", action="store_true", help="print one JSON object")
    summary.set_defaults(handler=_summary)

    show = commands.add_parser("show", help="parse a genotype (string, preset or run directory)")
    show.add_argument("genotype", nargs="+", help="'normal=... reduce=...', DARTS_V2, or a search --out directory")
    show.add_argument("--png", help="draw both cells to this PNG file")
    show.add_argument("--json", action="store_true", help="cells and evaluation-network parameters as JSON")
    show.set_defaults(handler=_show)

    train = commands.add_parser("train", help="train a genotype's evaluation network from scratch")
    train.add_argument("genotype", nargs="+", help="'normal=... reduce=...', DARTS_V2, or a search --out directory")
    train.add_argument("--dataset", required=True, help=DATASET_HELP)
    train.add_argument("--epochs", type=int, required=True)
    train.add_argument("--out", required=True,
                       help="output directory (model.pt, metrics.json; a killed run resumes from DIR/resume.pt)")
    train.add_argument("--layers", type=int, default=20)
    train.add_argument("--channels", type=int, default=36)
    train.add_argument("--batch-size", type=int, default=96)
    train.add_argument("--lr", type=float, default=0.025)
    train.add_argument("--max-steps", type=int, default=None, help="stop after this many steps")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--device", default="cpu")
    train.add_argument("--force", action="store_true", help="retrain a finished DIR (overwrite its model.pt)")
    train.add_argument("--no-progress", action="store_true")
    train.set_defaults(handler=_train)


def read_genotype(words: list[str]):
    """A genotype from CLI words: the string (one or two words), a preset, or a run directory."""
    from edgenas.darts.genotypes import Genotype
    from edgenas.darts.search import GENOTYPE

    text = " ".join(words).strip()
    path = Path(text)
    if len(words) == 1 and (path.is_dir() or path.is_file()):
        source = path / GENOTYPE if path.is_dir() else path
        if not source.is_file():
            raise UserError(f"{path} holds no {GENOTYPE} yet (no finished search epoch); give a genotype string")
        text = source.read_text().strip()
    return Genotype.parse(text)


def _regularizer(args: argparse.Namespace):
    from edgenas.darts.regularizers import make_relaxation

    settings: dict[str, float] = {}
    for item in args.regularizer_option:
        key, sep, value = item.partition("=")
        try:
            settings[key.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not key.strip():
            raise UserError(f"--regularizer-option '{item}' should read KEY=NUMBER, e.g. weight=25")
    return make_relaxation(args.regularizer, **settings)


def _search(args: argparse.Namespace) -> int:
    from edgenas.darts.nb201_model import NB201SupernetConfig
    from edgenas.darts.search import Search, SearchConfig, check_low_memory
    from edgenas.darts.search_model import SupernetConfig
    from edgenas.darts.step import SearchHyper
    from edgenas.data import load_dataset

    if args.steps_per_epoch is not None and args.steps_per_epoch < 1:
        raise UserError(f"--steps-per-epoch must be at least 1, got {args.steps_per_epoch}")
    # Checks that need no data come first, so a bad flag fails before a slow load.
    regularizer = _regularizer(args)
    check_low_memory(args.space, args.low_memory)
    tables = None
    if args.space == "nb201":
        from edgenas.evaluators.nb201 import default_data_dir, load_tables

        NB201SupernetConfig(channels=args.channels, cells_per_stage=args.cells_per_stage)
        tables = load_tables(args.tables or default_data_dir())
        tables.check_dataset(args.table_dataset)
        tables.check_device(args.latency_device)
    else:
        SupernetConfig(channels=args.channels, layers=args.layers)
    hyper = SearchHyper(order=args.order, arch_lr=args.arch_lr)
    SearchConfig(dataset=args.dataset, epochs=args.epochs, batch_size=args.batch_size, hyper=hyper,
                 hessian_iterations=args.hessian_iterations)
    data = load_dataset(args.dataset, "train", args.data_dir)
    shape = {"num_classes": data.num_classes, "in_channels": data.shape[0]}
    if args.space == "nb201":
        supernet = NB201SupernetConfig(channels=args.channels, cells_per_stage=args.cells_per_stage, **shape)
    else:
        supernet = SupernetConfig(channels=args.channels, layers=args.layers, **shape)
    config = SearchConfig(dataset=args.dataset, epochs=args.epochs, batch_size=args.batch_size,
                          seed=args.seed, supernet=supernet, hyper=hyper, limit=args.limit,
                          regularizer=regularizer, hessian_iterations=args.hessian_iterations)
    search = Search(config, args.out, dataset=data, device=args.device, tables=tables,
                    table_dataset=args.table_dataset, latency_device=args.latency_device, low_memory=args.low_memory)

    def report(record) -> None:
        print(f"epoch {record.epoch}/{config.epochs}  lr {record.lr:.4f}  train loss {record.train_loss:.3f} "
              f"acc {record.train_accuracy:.3f}  val loss {record.val_loss:.3f} acc {record.val_accuracy:.3f}  "
              f"{record.seconds:.0f}s", flush=True)
        print(f"  {'cell' if config.space == 'nb201' else 'genotype'}: {record.genotype}", flush=True)
        print(f"  {_indicators(record.__dict__)}", flush=True)

    if search.run_dir.joinpath("checkpoint.pt").exists():
        print(f"resuming {search.run_dir}", flush=True)
    genotype = search.run(on_epoch=report, progress=not args.no_progress, max_steps=args.steps_per_epoch)
    print(genotype)
    return 0


def _number(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _indicators(record: dict) -> str:
    text = f"skip share {_number(record.get('skip_share'), '.2f')}  eigenvalue {_number(record.get('eigenvalue'), '.4g')}"
    if record.get("index") is not None:
        text += (f"  NB201 #{record['index']}: test {_number(record.get('test_accuracy'), '.2f')} %, "
                 f"latency {_number(record.get('latency_ms'), '.2f')} ms")
    return text


def search_summary(run_dir: str | Path) -> dict:
    """A search directory's configuration, epochs and final cell (what `darts summary` prints)."""
    import json

    from edgenas.darts.search import CONFIG, HISTORY

    root = Path(run_dir)
    try:
        config = json.loads((root / CONFIG).read_text())
        history = json.loads((root / HISTORY).read_text()) if (root / HISTORY).is_file() else []
    except (OSError, json.JSONDecodeError) as error:
        raise UserError(f"{root} is not a DARTS search directory ({type(error).__name__}); "
                        f"give the --out of 'edgenas darts search'") from None
    final = history[-1] if history else None
    best = max((r for r in history if r.get("test_accuracy") is not None),
               key=lambda r: r["test_accuracy"], default=None)
    return {
        "run_dir": str(root), "space": config.get("supernet", {}).get("space", "darts"),
        "regularizer": config.get("regularizer", {"name": "none"}), "order": config.get("hyper", {}).get("order"),
        "epochs_done": len(history), "epochs": config.get("epochs"), "final": final,
        "best_epoch_by_table": best and best["epoch"], "history": history, "config": config,
    }


def _summary(args: argparse.Namespace) -> int:
    from edgenas.cli.output import print_table

    summary = search_summary(args.run_dir)
    if args.json:
        print_json(summary)
        return 0
    regularizer = summary["regularizer"]
    print(f"run {summary['run_dir']}: space {summary['space']}, order {summary['order']}, regularizer "
          f"{regularizer.get('name')}, {summary['epochs_done']}/{summary['epochs']} epochs")
    columns = ["epoch", "cell", "skip", "eigenvalue", "index", "test acc %", "latency ms", "val acc"]
    rows = [[r["epoch"], r["genotype"].replace(" ", "\n").replace("|+|", "|\n+|"), _number(r.get("skip_share"), ".2f"),
             _number(r.get("eigenvalue"), ".4g"), _number(r.get("index"), "d"),
             _number(r.get("test_accuracy"), ".2f"), _number(r.get("latency_ms"), ".2f"),
             _number(r.get("val_accuracy"), ".3f")] for r in summary["history"]]
    print_table("epochs", columns, rows)
    if summary["final"]:
        print(f"final cell: {summary['final']['genotype']}")
        print(f"  {_indicators(summary['final'])}")
    return 0


def _show(args: argparse.Namespace) -> int:
    from edgenas.darts.draw import draw_genotype
    from edgenas.darts.eval_model import EvalNetwork, count_params

    text = " ".join(args.genotype).strip()
    if text.startswith("|"):  # a NAS-Bench-201 cell
        from edgenas.darts.nb201 import cell_ops
        from edgenas.spaces.nb201 import EDGES

        ops = cell_ops(text)
        if args.json:
            print_json({"nb201": text, "edges": [{"to": i, "from": j, "op": op} for (i, j), op in zip(EDGES, ops)]})
            return 0
        print(text)
        for (i, j), op in zip(EDGES, ops):
            print(f"  node {i} <- node {j}: {op}")
        return 0
    genotype = read_genotype(args.genotype)
    if args.png:
        draw_genotype(genotype, args.png)
    if args.json:
        model = EvalNetwork(genotype)  # the paper's evaluation network: 20 cells, 36 channels
        print_json({
            "genotype": str(genotype), **genotype.to_dict(),
            "params": count_params(model), "params_with_auxiliary": count_params(model, auxiliary=True),
            "network": {"layers": 20, "channels": 36, "num_classes": 10},
        })
        return 0
    print(genotype)
    for name, reduction in (("normal", False), ("reduce", True)):
        cell = genotype.cell(reduction)
        nodes = ["  ".join(f"{op}({j})" for op, j in cell[i : i + 2]) for i in range(0, len(cell), 2)]
        print(f"{name}:")
        for i, node in enumerate(nodes):
            print(f"  node {i + 2} = {node}")
    if args.png:
        print(f"wrote {args.png}")
    return 0


def _train(args: argparse.Namespace) -> int:
    from edgenas.darts.train import RESUME, EvalTrainConfig, train_genotype

    genotype = read_genotype(args.genotype)
    config = EvalTrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                             channels=args.channels, layers=args.layers, seed=args.seed,
                             max_steps=args.max_steps)
    if args.layers < 3:
        raise UserError(f"--layers must be at least 3, got {args.layers}")
    if Path(args.out, RESUME).exists():
        print(f"resuming from {Path(args.out, RESUME)}", flush=True)
    metrics = train_genotype(genotype, args.dataset, args.out, config, device=args.device,
                             progress=not args.no_progress, force=args.force)
    print(f"params {metrics['params']:,}  test accuracy {metrics['test_accuracy']:.4f}  "
          f"({metrics['images_per_second']:.0f} images/s)  -> {args.out}")
    return 0
