"""What one candidate costs: the one-shot evaluator against proxy training, side by side in one run.

For each space preset at the dataset's resolution (CIFAR-10: 32x32, the CIFAR layout): a supernet is
trained briefly (`--supernet-steps`: its weights do not change the cost of scoring), then `-n`
random architectures are scored one-shot at the evaluator's defaults (`OneShotConfig`) and `--proxy-n` of them proxy-trained as `edgenas search
--space mnas` does at `--proxy-steps`. Prints seconds per candidate (median and p90) and the ratio.

    python benchmarks/oneshot_cost.py --dataset cifar10-jpeg:1 -n 20
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: see edgenas.util.threads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="cifar10-jpeg:1")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--presets", default="demo,full")
    parser.add_argument("-n", type=int, default=20)
    parser.add_argument("--proxy-n", type=int, default=3)
    parser.add_argument("--proxy-steps", type=int, default=60)
    parser.add_argument("--supernet-steps", type=int, default=20)
    parser.add_argument("--work", default="/tmp/edgenas-oneshot-cost")
    args = parser.parse_args()

    from edgenas.data import load_dataset
    from edgenas.evaluators.oneshot import OneShotEvaluator
    from edgenas.supernet.training import SupernetSettings, space_for, train_supernet
    from edgenas.training.loop import TrainConfig
    from edgenas.training.proxy import ProxyConfig, ProxyTrainingEvaluator
    from edgenas.util.threads import configure_threads

    configure_threads()
    data = load_dataset(args.dataset, "train", args.data_dir)
    print(f"{args.dataset}: {len(data)} images {data.shape}; torch threads {__import__('torch').get_num_threads()}")
    print("| space preset | supernet params | one-shot s/candidate (median, p90) | proxy s/candidate (median) | ratio |")
    print("|---|---|---|---|---|")
    for preset in args.presets.split(","):
        out = Path(args.work) / preset
        shutil.rmtree(out, ignore_errors=True)
        settings = SupernetSettings(dataset=args.dataset, data_dir=args.data_dir, space_preset=preset, device="cpu",
                                    train=TrainConfig(epochs=1, max_steps=args.supernet_steps, batch_size=64))
        _, record = train_supernet(out, settings, dataset=data, progress=False)
        space = space_for(settings.choices(), data.shape, data.num_classes)
        rng = random.Random(0)
        archs = [space.sample(rng) for _ in range(args.n)]
        scorer = OneShotEvaluator(out)
        scorer.prepare()
        scorer.evaluate(archs[0])  # warm-up
        seconds = sorted(scorer.evaluate(a).metrics["seconds"] for a in archs)
        proxy = ProxyTrainingEvaluator(
            ProxyConfig(dataset=args.dataset, data_dir=args.data_dir, device="cpu",
                        train=TrainConfig(epochs=1, max_steps=args.proxy_steps, batch_size=64)), space, dataset=data)
        proxy_seconds = [proxy.evaluate(a).metrics["seconds"] for a in archs[: args.proxy_n]]
        one, p90 = statistics.median(seconds), seconds[int(0.9 * (len(seconds) - 1))]
        two = statistics.median(proxy_seconds)
        print(f"| {preset} | {record['params']:,} | {one:.2f}, {p90:.2f} | {two:.1f} ({args.proxy_steps} steps) | "
              f"{two / one:.0f}x |", flush=True)


if __name__ == "__main__":
    main()
