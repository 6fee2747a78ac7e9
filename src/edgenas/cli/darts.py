"""`edgenas darts search|show|train`: differentiable cell search, genotypes, evaluation training."""

from __future__ import annotations

import argparse
from pathlib import Path

from edgenas.cli.output import print_json
from edgenas.errors import UserError


def register(subparsers: argparse._SubParsersAction) -> None:
    from edgenas.data import DATASET_HELP

    darts = subparsers.add_parser("darts", help="DARTS: search cells, show and train genotypes")
    commands = darts.add_subparsers(dest="darts_command", metavar="ACTION")
    commands.required = True

    search = commands.add_parser("search", help="search a cell (resumes a killed search in --out)")
    search.add_argument("--dataset", required=True, help=DATASET_HELP)
    search.add_argument("--order", type=int, choices=(1, 2), default=1, help="1: first order, 2: unrolled (default 1)")
    search.add_argument("--epochs", type=int, default=50)
    search.add_argument("--layers", type=int, default=8, help="cells in the supernet (default 8)")
    search.add_argument("--channels", type=int, default=16, help="initial channels (default 16)")
    search.add_argument("--batch-size", type=int, default=64)
    search.add_argument("--limit", type=int, default=None, help="use only this many training images")
    search.add_argument("--steps-per-epoch", type=int, default=None, help="cap the steps of each epoch")
    search.add_argument("--seed", type=int, default=2)
    search.add_argument("--device", default="cpu", help="cpu or cuda")
    search.add_argument("--out", required=True, help="run directory (checkpoint, genotype.txt, history)")
    search.add_argument("--no-progress", action="store_true")
    search.set_defaults(handler=_search)

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


def _search(args: argparse.Namespace) -> int:
    from edgenas.darts.search import Search, SearchConfig
    from edgenas.darts.search_model import SupernetConfig
    from edgenas.darts.step import SearchHyper
    from edgenas.data import load_dataset

    if args.steps_per_epoch is not None and args.steps_per_epoch < 1:
        raise UserError(f"--steps-per-epoch must be at least 1, got {args.steps_per_epoch}")
    # Checks that need no data come first, so a bad flag fails before a slow load.
    SupernetConfig(channels=args.channels, layers=args.layers)
    data = load_dataset(args.dataset, "train")
    supernet = SupernetConfig(channels=args.channels, layers=args.layers, num_classes=data.num_classes,
                              in_channels=data.shape[0])
    config = SearchConfig(dataset=args.dataset, epochs=args.epochs, batch_size=args.batch_size,
                          seed=args.seed, supernet=supernet, hyper=SearchHyper(order=args.order),
                          limit=args.limit)
    search = Search(config, args.out, dataset=data, device=args.device)

    def report(record) -> None:
        print(f"epoch {record.epoch}/{config.epochs}  lr {record.lr:.4f}  train loss {record.train_loss:.3f} "
              f"acc {record.train_accuracy:.3f}  val loss {record.val_loss:.3f} acc {record.val_accuracy:.3f}  "
              f"{record.seconds:.0f}s", flush=True)
        print(f"  genotype: {record.genotype}", flush=True)

    if search.run_dir.joinpath("checkpoint.pt").exists():
        print(f"resuming {search.run_dir}", flush=True)
    genotype = search.run(on_epoch=report, progress=not args.no_progress, max_steps=args.steps_per_epoch)
    print(genotype)
    return 0


def _show(args: argparse.Namespace) -> int:
    from edgenas.darts.draw import draw_genotype
    from edgenas.darts.eval_model import EvalNetwork, count_params

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
