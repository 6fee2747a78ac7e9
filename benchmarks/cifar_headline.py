"""The MnasNet headline on CIFAR-10: does a weight-sharing search find networks that beat MobileNetV2?

Protocol (issue 12), every step the command a user runs, each in a fresh process:

1. The MobileNetV2 width family in the space's CIFAR layout (the same stem, strides and head as
   every searched network; only the stages' channels scale, rounded to multiples of 8 as
   MobileNetV2 does) is measured end to end on single-thread ONNX Runtime. The search target is
   T = MobileNetV2 1.0's latency / --speedup (default 1.5): the question is whether a network
   that much faster is as accurate (MnasNet's claim on ImageNet: 1.8x faster at equal accuracy).
2. `edgenas supernet train` on the CIFAR-10 train split (its --val-fraction held out for scoring).
3. `edgenas search --evaluator oneshot` with the soft MnasNet reward (--objective) at T, latency
   from the ONNX Runtime LUT; the search measures its Pareto front end to end (front.json).
4. The --picks front networks whose measured latency lies nearest T, and every member of the
   family, are trained with one recipe (`edgenas train`, the whole train split, from scratch) and
   scored on the 10,000 test images, which no step of the search saw.
5. Every trained network is measured end to end on each of --backends (one thread, the latency
   cache of this run), then the table, results.json and headline.png (test accuracy against
   measured latency, both sets) are written.

Verdicts printed: for each family member, whether a pick dominates it (at least as accurate and
at most as slow); for each pick, the family's accuracy at its latency and the family's latency at
its accuracy (both interpolated piecewise-linearly in log latency between family members), so
"x times faster at equal accuracy". Nothing is extrapolated: a pick outside the family's range
says so, and no speed-up is read off a family whose accuracy does not rise with its latency (short
training can leave it so).

Besides the RL search, the latency-aware gradient search (issue 13, `edgenas supernet search`)
runs from the same supernet's weights at T times each of --gradient-targets (one setting for
all), and its networks are trained the same way.

The space is the full MnasNet space with ConvOp narrowed to MBConv3/MBConv6 by default (a
supernet of MBConv kinds only is far better trained after the same minutes: docs/bench/supernet.md,
"Where one-shot accuracy is lost"); `--space-option` changes it. The defaults are the CPU recipe,
sized for about 1.5 hours on a 2-core machine (what it took is in docs/bench/supernet.md): one
supernet epoch, 300 candidates, one training epoch per network. A GPU takes a longer recipe from
the same script (training runs on --train-device; the gradient search runs on the CPU).

Every step resumes: a finished supernet, search or training is read back, a killed one continues
(the commands' own resume), so rerunning the same command after a kill finishes the job.

    python benchmarks/cifar_headline.py --work runs/headline               # the CPU recipe
    python benchmarks/cifar_headline.py --work runs/headline-gpu --train-epochs 30 --supernet-epochs 20 \
        --budget 1000 --train-device cuda                                     # a longer one, on a GPU
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: see edgenas.util.threads

MBV2_EXPANSIONS = (1, 6, 6, 6, 6, 6, 6)  # MobileNetV2's per-stage expansion (its first stage: 1)


def edgenas(*argv: str, log: Path) -> dict | None:
    """Run `edgenas ARGV --json` in a fresh process, stderr (progress) to `log`; its JSON output."""
    command = [str(Path(sys.executable).with_name("edgenas")), *argv, "--json"]
    print("running: edgenas " + " ".join(argv), flush=True)
    started = time.perf_counter()
    with log.open("a") as err:
        done = subprocess.run(command, stdout=subprocess.PIPE, stderr=err, text=True)
    if done.returncode != 0:
        sys.exit(f"edgenas {argv[0]} failed ({done.returncode}); see {log}")
    print(f"  done in {time.perf_counter() - started:.0f} s", flush=True)
    text = done.stdout.strip()
    return json.loads(text) if text.startswith("{") else None


def mobilenetv2(stages, width: float) -> str:
    """MobileNetV2 at `width` on these base stages (the space's CIFAR layout): k3, no SE, identity
    skips, its expansions, channels make_divisible(c * width, 8)."""
    from edgenas.blocks import make_divisible

    return " ".join(f"ir_r{s.repeats}_k3_s{s.stride}_e{e}_c{make_divisible(s.channels * width, 8)}"
                    for s, e in zip(stages, MBV2_EXPANSIONS, strict=True))


def interpolate(x: float, xs: list[float], ys: list[float]) -> float | None:
    """y at x on the piecewise-linear curve through (xs, ys) (xs ascending); None outside it."""
    if not xs or x < xs[0] or x > xs[-1]:
        return None
    for (x0, y0), (x1, y1) in zip(zip(xs, ys), zip(xs[1:], ys[1:])):
        if x0 <= x <= x1:
            return y0 if x1 == x0 else y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return ys[-1]


def family_comparison(picks: list[dict], family: list[dict], backend: str) -> dict:
    """Dominance and equal-accuracy speed-ups of the picks against the family on one backend."""
    by_latency = sorted(family, key=lambda r: r["latency_ms"][backend])
    log_lat = [math.log(r["latency_ms"][backend]) for r in by_latency]
    acc = [r["test_accuracy"] for r in by_latency]
    monotone = all(a < b for a, b in zip(acc, acc[1:]))
    rows = []
    for pick in picks:
        lat = pick["latency_ms"][backend]
        family_acc = interpolate(math.log(lat), log_lat, acc)
        family_log_lat = interpolate(pick["test_accuracy"], acc, log_lat) if monotone else None
        rows.append({"name": pick["name"], "latency_ms": lat, "test_accuracy": pick["test_accuracy"],
                     "family_accuracy_at_latency": family_acc,
                     "above_family": None if family_acc is None else pick["test_accuracy"] > family_acc,
                     "speedup_at_equal_accuracy": None if family_log_lat is None else math.exp(family_log_lat) / lat})
    dominated = {r["name"]: [p["name"] for p in picks if p["test_accuracy"] >= r["test_accuracy"]
                             and p["latency_ms"][backend] <= r["latency_ms"][backend]] for r in family}
    return {"picks": rows, "dominated_by": dominated, "family_accuracy_increases_with_latency": monotone}


def plot(path: Path, picks: list[dict], gradient: list[dict], family: list[dict], backend: str,
         front: list[dict], target: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 5.0))
    fam = sorted(family, key=lambda r: r["latency_ms"][backend])
    ax.plot([r["latency_ms"][backend] for r in fam], [100 * r["test_accuracy"] for r in fam], "s-", color="tab:gray",
            label="MobileNetV2 width family")
    for r in fam:
        ax.annotate(r["name"].removeprefix("mobilenetv2_"), (r["latency_ms"][backend], 100 * r["test_accuracy"]),
                    textcoords="offset points", xytext=(4, -10), fontsize=8)
    ax.plot([r["latency_ms"][backend] for r in picks], [100 * r["test_accuracy"] for r in picks], "o",
            color="tab:red", label="RL search (one-shot PPO), trained the same way")
    if gradient:
        ax.plot([r["latency_ms"][backend] for r in gradient], [100 * r["test_accuracy"] for r in gradient], "^",
                color="tab:blue", label="gradient search, trained the same way")
    ax.axvline(target, color="tab:red", alpha=0.3, linestyle="--", label="target T")
    ax.set_xlabel(f"measured latency, ms ({backend}, 1 thread)")
    ax.set_ylabel("CIFAR-10 test accuracy, %")
    ax.set_title(f"CIFAR-10: search front ({len(front)} on it) vs MobileNetV2")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2)  # below: never over a point
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default="runs/headline", help="everything goes here; rerun to resume")
    parser.add_argument("--data-dir", default=None, help="the cifar10-jpeg shards (default $EDGENAS_DATA_DIR/cifar10 "
                        "or ../shared/data/cifar10)")
    parser.add_argument("--dataset", default="cifar10-jpeg", help="default: all 50,000 training images")
    parser.add_argument("--space-option", action="append", default=None, metavar="KEY=V1,V2",
                        help="narrow the MnasNet space (default: ops=mbconv3,mbconv6; docs/bench/supernet.md says why)")
    parser.add_argument("--supernet-epochs", type=int, default=1)
    parser.add_argument("--budget", type=int, default=300, help="candidates the search scores")
    parser.add_argument("--strategy", default="ppo")
    parser.add_argument("--objective", default="mnas-soft",
                        help="the search's reward (the issue's: mnas-soft; mnas-abs reached T where it did not: "
                        "docs/bench/supernet.md)")
    parser.add_argument("--speedup", type=float, default=1.5, help="T = MobileNetV2 1.0's latency / this")
    parser.add_argument("--target-ms", type=float, default=None, help="T itself (overrides --speedup)")
    parser.add_argument("--picks", type=int, default=3, help="front networks nearest T to train")
    parser.add_argument("--gradient-subset", type=int, default=5000,
                        help="images of each gradient search (weights from the supernet; 0: none)")
    parser.add_argument("--gradient-epochs", type=int, default=6,
                        help="6: what the headline trained; 2 also reach T since the per-step temperature "
                        "(docs/bench/gradient_search.md)")
    parser.add_argument("--gradient-targets", default="1,0.7,1.4",
                        help="gradient searches at these multiples of T (the first: gradient_1)")
    parser.add_argument("--widths", default="0.35,0.5,0.75,1.0", help="the MobileNetV2 family")
    parser.add_argument("--train-epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--train-device", default="auto")
    parser.add_argument("--backends", default="onnxruntime,litert", help="measured on each; the search uses the first")
    parser.add_argument("--latency-cache", default=None, help="default WORK/latency.sqlite")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from edgenas.cli.output import print_table
    from edgenas.errors import UserError
    from edgenas.latency.backends import get_backend
    from edgenas.latency.estimator import make_latency_estimator
    from edgenas.latency.settings import LatencySettings
    from edgenas.spaces.blockstrings import decode_arch
    from edgenas.spaces.mnas_choices import space_choices
    from edgenas.supernet.training import finished as supernet_finished
    from edgenas.supernet.training import space_for

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    log = work / "commands.log"
    data_dir = args.data_dir or str(Path(os.environ.get("EDGENAS_DATA_DIR") or Path(__file__).resolve().parents[2]
                                         / "shared" / "data") / "cifar10")
    data = ["--dataset", args.dataset, "--data-dir", data_dir]
    space_options = args.space_option if args.space_option is not None else ["ops=mbconv3,mbconv6"]
    cache = args.latency_cache or str(work / "latency.sqlite")
    backends = args.backends.split(",")
    usable = []
    for name in backends:
        try:
            get_backend(name).require()
            usable.append(name)
        except UserError as error:
            print(f"skipping backend {name}: {error}", flush=True)
    backends = usable
    search_backend = backends[0]
    results_path = work / "results.json"
    results: dict = json.loads(results_path.read_text()) if results_path.exists() else {}

    def save() -> None:
        results_path.write_text(json.dumps(results, indent=1) + "\n")

    # The space's CIFAR layout at 32 px and 10 classes, as the supernet fits it to the images.
    space = space_for(space_choices("full", space_options), (3, 32, 32), 10)
    widths = [float(w) for w in args.widths.split(",")]
    family = [{"name": f"mobilenetv2_{round(100 * w):03d}", "arch": mobilenetv2(space.config.base_stages, w)}
              for w in widths]
    estimators = {b: make_latency_estimator(space, LatencySettings(backend=b, mode="measure", cache=cache))
                  for b in backends}

    def measure(arch: str, on: list[str] = backends, fresh: bool = False) -> dict[str, float]:
        return {b: float(estimators[b].measure(decode_arch(arch), use_cache=not fresh).latency_ms) for b in on}

    # 1. The target: from MobileNetV2 1.0's measured latency (kept in results.json, so a resumed run
    # searches for the T it started with).
    if args.target_ms is not None:
        results["target_ms"] = args.target_ms
    elif "target_ms" not in results:
        if 1.0 not in widths:
            sys.exit("--widths lacks 1.0, whose latency sets T: give --target-ms")
        results["target_ms"] = measure(mobilenetv2(space.config.base_stages, 1.0), [search_backend])[
            search_backend] / args.speedup
    target = results["target_ms"]
    print(f"T = {target:.4f} ms on {search_backend}", flush=True)
    save()

    # 2. The supernet.
    supernet = work / "supernet"
    started = time.perf_counter()
    if not supernet_finished(supernet):
        edgenas("supernet", "train", *data, *[f"--space-option={o}" for o in space_options],
                "--epochs", str(args.supernet_epochs), "--train-device", args.train_device, "--seed", str(args.seed),
                "--out", str(supernet), "--quiet", log=log)
        results.setdefault("seconds", {})["supernet"] = time.perf_counter() - started
        save()

    # 3. The search (its front is measured end to end by the command itself).
    search = work / "search"
    started = time.perf_counter()
    outcome = edgenas("search", "--space", "mnas", "--evaluator", "oneshot", "--supernet", str(supernet),
                      "--data-dir", data_dir, "--strategy", args.strategy, "--objective", args.objective,
                      "--target-ms", f"{target:.5f}", "--latency-backend", search_backend,
                      "--latency-cache", cache, "--budget", str(args.budget), "--seed", str(args.seed),
                      "--out", str(search), "--quiet", log=log)
    results.setdefault("seconds", {}).setdefault("search", time.perf_counter() - started)
    front = json.loads((search / "front.json").read_text())
    results["search"] = {"completed": outcome["completed"] if outcome else None, "front": front}
    picks = sorted(front, key=lambda r: abs(r["measured_ms"] / target - 1))[: args.picks]
    picks = [{"name": f"found_{i + 1}", "arch": r["arch"], "oneshot_accuracy": r["accuracy"],
              "search_measured_ms": r["measured_ms"]} for i, r in enumerate(sorted(picks, key=lambda r: r["measured_ms"]))]
    save()

    # 3b. The latency-aware gradient search (issue 13) at T times each --gradient-targets factor, from
    # the same supernet's weights.
    gradient = []
    factors = [float(f) for f in args.gradient_targets.split(",")] if args.gradient_subset else []
    for i, factor in enumerate(factors):
        name = f"gradient_{i + 1}"
        result_path = work / name / "result.json"
        if not result_path.exists():  # a finished search is read back (the command refuses to redo it)
            started = time.perf_counter()
            edgenas("supernet", "search", "--target-ms", f"{factor * target:.5f}", "--supernet", str(supernet),
                    "--space-preset", "full", *[f"--space-option={o}" for o in space_options], *data,
                    "--subset", str(args.gradient_subset), "--epochs", str(args.gradient_epochs),
                    "--warmup-epochs", "0", "--seed", str(args.seed), "--latency-backend", search_backend,
                    "--latency-cache", cache, "--out", str(work / name), "--quiet", log=log)
            results.setdefault("seconds", {})[name] = time.perf_counter() - started
        found = json.loads(result_path.read_text())
        gradient.append({"name": name, "target_ms": factor * target, "arch": found["arch"],
                         "search_measured_ms": found["measured_ms"], "search_predicted_ms": found["predicted_ms"]})
        save()

    # 4. One recipe for every network.
    recipe = ["--epochs", str(args.train_epochs), "--batch-size", str(args.batch_size), "--lr", str(args.lr),
              "--train-device", args.train_device, "--seed", str(args.seed)]
    for row in picks + gradient + family:
        out = work / "train" / row["name"]
        summary = out / "train.json"
        if not (summary.exists() and not (out / "resume.pt").exists()):
            edgenas("train", row["arch"], *data, *recipe, "--out", str(out), "--quiet", log=log)
        trained = json.loads(summary.read_text())
        row.update(test_accuracy=trained["test_accuracy"], params=trained["params"], macs=trained["macs"],
                   train_seconds=trained["train_seconds"])

    # 5. Every trained network measured anew on every backend, one after another in this process
    # (not read from the cache: the searches measured theirs at other times, some beside training).
    for row in picks + gradient + family:
        row["latency_ms"] = measure(row["arch"], fresh=True)
    for estimator in estimators.values():
        estimator.close()
    results.update(picks=picks, gradient=gradient, family=family, backends=backends,
                   recipe={"train_epochs": args.train_epochs, "batch_size": args.batch_size, "lr": args.lr,
                           "supernet_epochs": args.supernet_epochs, "budget": args.budget,
                           "space_options": space_options, "dataset": args.dataset})
    results["comparison"] = {b: family_comparison(picks + gradient, family, b) for b in backends}
    save()

    print_table(f"CIFAR-10 test accuracy and measured latency (T = {target:.3f} ms on {search_backend}; "
                f"{args.train_epochs} epochs each)",
                ["network", "test acc %", *[f"{b} ms" for b in backends], "params", "MMACs", "train s", "arch"],
                [(r["name"], f"{100 * r['test_accuracy']:.2f}", *[f"{r['latency_ms'][b]:.3f}" for b in backends],
                  f"{r['params']:,}", f"{r['macs'] / 1e6:.1f}", f"{r['train_seconds']:.0f}", r["arch"])
                 for r in picks + gradient + family])
    for backend in backends:
        comparison = results["comparison"][backend]
        print(f"\n{backend}:")
        no_speedup = ("outside the family's accuracy range" if comparison["family_accuracy_increases_with_latency"]
                      else "no equal-accuracy speed-up: the family's accuracy does not rise with its latency")
        for r in comparison["picks"]:
            at = "outside the family's latency range" if r["family_accuracy_at_latency"] is None else (
                f"family at this latency {100 * r['family_accuracy_at_latency']:.2f} % "
                f"({'above' if r['above_family'] else 'not above'})")
            speed = no_speedup if r["speedup_at_equal_accuracy"] is None else (
                f"{r['speedup_at_equal_accuracy']:.2f}x faster than the family at equal accuracy")
            print(f"  {r['name']}: {100 * r['test_accuracy']:.2f} % at {r['latency_ms']:.3f} ms; {at}; {speed}")
        for name, by in comparison["dominated_by"].items():
            print(f"  {name}: {'dominated by ' + ', '.join(by) if by else 'not dominated'}")
    plot(work / "headline.png", picks, gradient, family, search_backend, front, target)
    print(f"\nwrote {results_path} and {work / 'headline.png'}")


if __name__ == "__main__":
    main()
