"""Rank fidelity and cost of the one-shot evaluator against stand-alone training.

Protocol (issue 12): N distinct random architectures of a space (seeded); each is trained stand-alone
on the supernet's training part for `--standalone-epochs` with `--reference-seeds` seeds and scored
on the held-out part; the reference ranking is the mean accuracy over the seeds (one seed's ranking
is itself noisy: the script reports the tau between seeds 0 and 1 over every architecture that has
both, and `--stability` adds seed 1 for the first archs when the reference has one seed). Beside it:
the short proxy training a search uses today (`--proxy-steps`), the parameter count (a ranking that
costs nothing, the floor an evaluator has to beat), and one-shot accuracy from each supernet variant
(`--variants`: sharing:sampling[:lr warm-up share], each trained `--supernet-epochs`; the warm-up
defaults to the library's). Kendall's tau of each against the reference ranking, and the seconds
one candidate costs. Stand-alone and proxy numbers are cached in `--cache` (JSON) so that a rerun
with other supernet variants does not retrain them.

    python benchmarks/supernet_fidelity.py --dataset digits --space-preset demo -n 40
    python benchmarks/supernet_fidelity.py --dataset cifar10-jpeg:2 --subset 10000 -n 40 --standalone-epochs 10
    python benchmarks/supernet_fidelity.py --dataset cifar10-jpeg:2 -n 40 --standalone-epochs 4 \
        --reference-seeds 2 --supernet-epochs 40 --variants shared:uniform:0,separate:uniform:0,shared:uniform
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: see edgenas.util.threads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--subset", type=int, default=None)
    parser.add_argument("--space-preset", default="demo")
    parser.add_argument("-n", type=int, default=40)
    parser.add_argument("--standalone-epochs", type=int, default=6)
    parser.add_argument("--reference-seeds", type=int, default=1,
                        help="stand-alone seeds per arch; the reference is their mean accuracy")
    parser.add_argument("--stability", type=int, default=10, help="archs trained with a second seed")
    parser.add_argument("--proxy-steps", type=int, default=50)
    parser.add_argument("--supernet-epochs", type=int, default=8)
    parser.add_argument("--variants", default="shared:uniform,shared:sandwich,separate:uniform")
    parser.add_argument("--val-images", type=int, default=None, help="default: the one-shot evaluator's")
    parser.add_argument("--bn-batches", type=int, default=None, help="default: the one-shot evaluator's")
    parser.add_argument("--work", default="/tmp/edgenas-fidelity")
    parser.add_argument("--cache", default=None, help="JSON of stand-alone/proxy results (default WORK/standalone.json)")
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args()

    from scipy.stats import kendalltau

    from edgenas.data import load_dataset
    from edgenas.evaluators.oneshot import OneShotConfig, OneShotEvaluator
    from edgenas.supernet.training import SupernetSettings, space_for, train_supernet
    from edgenas.training.loop import TrainConfig
    from edgenas.training.proxy import ProxyConfig, ProxyTrainingEvaluator
    from edgenas.util.threads import configure_threads

    configure_threads()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    data = load_dataset(args.dataset, "train", args.data_dir)
    base = SupernetSettings(dataset=args.dataset, data_dir=args.data_dir, subset=args.subset,
                            space_preset=args.space_preset, device="cpu")
    space = space_for(base.choices(), data.shape, data.num_classes)
    rng = random.Random(0)
    archs: list[str] = []
    while len(archs) < args.n:
        arch = space.sample(rng)
        if arch not in archs:
            archs.append(arch)

    def trainer(seed: int, **train) -> ProxyTrainingEvaluator:
        config = ProxyConfig(dataset=args.dataset, data_dir=args.data_dir, subset=args.subset,
                             val_fraction=base.val_fraction, seed=base.seed, device="cpu",
                             train=TrainConfig(batch_size=64, lr=0.05, seed=seed, **train))
        return ProxyTrainingEvaluator(config, space, dataset=data)

    cache_path = Path(args.cache or work / "standalone.json")
    cache = json.loads(cache_path.read_text()) if cache_path.exists() else {}
    key = f"{args.dataset}|{args.subset}|{args.space_preset}|{args.standalone_epochs}|{args.proxy_steps}"
    rows = cache.setdefault(key, {})
    seed_names = ["standalone"] + [f"standalone_seed{s}" for s in range(1, max(2, args.reference_seeds))]
    reference_names = seed_names[:args.reference_seeds]
    jobs = [(name, trainer(seed, epochs=args.standalone_epochs)) for seed, name in enumerate(seed_names)]
    jobs.append(("proxy", trainer(0, epochs=1, max_steps=args.proxy_steps)))
    for index, arch in enumerate(archs):
        row = rows.setdefault(arch, {})
        wanted = {*reference_names, "proxy", *(["standalone_seed1"] if index < args.stability else [])}
        for name, evaluator in jobs:
            if name in row or name not in wanted:
                continue
            result = evaluator.evaluate(arch)
            row[name] = result.accuracy
            row[f"{name}_seconds"] = result.metrics.get("seconds")
            cache_path.write_text(json.dumps(cache, indent=1))
            print(f"{index + 1}/{len(archs)} {name} {result.accuracy} ({result.metrics.get('seconds', 0):.1f} s)",
                  flush=True)

    standalone = [statistics.mean(rows[a][name] for name in reference_names) for a in archs]
    table = []
    stable = [a for a in archs if "standalone_seed1" in rows[a]]
    seed_tau = kendalltau([rows[a]["standalone"] for a in stable], [rows[a]["standalone_seed1"] for a in stable])[0]
    table.append(("stand-alone seed 1 against seed 0 (one seed's own stability)", len(stable), seed_tau,
                  statistics.mean(rows[a]["standalone_seconds"] for a in stable), None))
    params = [_params(space, arch) for arch in archs]
    table.append(("parameter count (no training)", len(archs), kendalltau(params, standalone)[0], 0.0, None))
    proxy = [rows[a]["proxy"] for a in archs]
    table.append((f"proxy training, {args.proxy_steps} steps", len(archs), kendalltau(proxy, standalone)[0],
                  statistics.mean(rows[a]["proxy_seconds"] for a in archs), None))
    results = {"archs": archs, "rows": rows, "variants": {}}
    for variant in args.variants.split(","):
        sharing, sampling, *warm = variant.split(":")
        warmup = float(warm[0]) if warm else base.train.lr_warmup
        out = work / (f"supernet-{args.dataset.replace(':', '_')}-{args.space_preset}-{sharing}-{sampling}-"
                      f"{args.supernet_epochs}" + (f"-w{warmup:g}" if warmup else ""))
        if not (out / "supernet.pt").exists():
            shutil.rmtree(out, ignore_errors=True)
            settings = SupernetSettings(**{**base.to_dict(), "sharing": sharing, "sampling": sampling,
                                           "train": replace(base.train, epochs=args.supernet_epochs,
                                                            lr_warmup=warmup)})
            started = time.perf_counter()
            train_supernet(out, settings, dataset=data, progress=False)
            print(f"supernet {variant}: {time.perf_counter() - started:.0f} s", flush=True)
        record = json.loads((out / "supernet.json").read_text())
        scoring = {k: v for k, v in (("val_images", args.val_images), ("bn_batches", args.bn_batches)) if v is not None}
        scorer = OneShotEvaluator(out, OneShotConfig(**scoring))
        scorer.prepare()
        scores, seconds = [], []
        for arch in archs:
            result = scorer.evaluate(arch)
            scores.append(result.accuracy)
            seconds.append(result.metrics["seconds"])
        tau = kendalltau(scores, standalone)[0]
        table.append((f"one-shot, {sharing} weights, {sampling}, warm-up {warmup:g} ({args.supernet_epochs} epochs, "
                      f"{record['stats']['seconds']:.0f} s)", len(archs), tau, statistics.median(seconds),
                      statistics.mean(scores)))
        results["variants"][variant] = {"scores": scores, "seconds": seconds, "tau": tau,
                                        "train_seconds": record["stats"]["seconds"]}
    print(f"\n{args.dataset} (subset {args.subset}), space preset {args.space_preset}, {len(archs)} random archs; "
          f"reference: stand-alone, {args.standalone_epochs} epochs, mean of {args.reference_seeds} seed(s); "
          f"mean reference accuracy {statistics.mean(standalone):.3f}")
    print("| ranking against the reference | archs | Kendall tau | s per candidate | mean accuracy |")
    print("|---|---|---|---|---|")
    for name, n, tau, seconds, mean in table:
        print(f"| {name} | {n} | {tau:.3f} | {seconds:.2f} | {'' if mean is None else f'{mean:.3f}'} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"table": table, **results}, indent=1))


def _params(space, arch: str) -> int:
    """Parameters of the architecture's stand-alone network (built on the meta device: no memory)."""
    import torch

    with torch.device("meta"):
        network = space.build(space.parse(arch))
    return sum(p.numel() for p in network.parameters())


if __name__ == "__main__":
    main()
