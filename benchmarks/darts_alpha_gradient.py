"""How large is the cross-entropy's gradient on alpha in a small and in the published NB201 supernet?

Why it matters: beta-DARTS adds `weight * t/T * mean_e logsumexp(alpha_e)` to alpha's loss, and
alpha's optimiser is Adam, which divides each coordinate's step by the size of its gradient. What
steers alpha is therefore the *ratio* of the cross-entropy's gradient to the penalty's, and only
the first depends on the supernet: alpha is shared by every cell, so its gradient sums over the
cells (3 in the reduced protocol's N = 1 supernet, 15 in the published N = 5). The penalty's
weight that keeps the published balance on a smaller supernet is the published weight times the
ratio this script measures (docs/bench/darts_nb201.md).

It builds both supernets (`--small N,C` and `--large N,C`) at initialisation for a few seeds, and
prints the mean |dCE/dalpha| on a few batches of real CIFAR-10 training images (per channel
normalised), and the ratio of the medians.

    python benchmarks/darts_alpha_gradient.py --data-dir ../shared/data/cifar10
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch


def gradients(cells: int, channels: int, images: torch.Tensor, labels: torch.Tensor, seeds: int,
              batch: int) -> list[float]:
    """Mean |dCE/dalpha| for each (seed, batch) pair, supernet at initialisation, training mode."""
    from edgenas.darts.nb201_model import NB201SearchNetwork, NB201SupernetConfig

    out = []
    for seed in range(seeds):
        torch.manual_seed(seed)
        model = NB201SearchNetwork(NB201SupernetConfig(channels=channels, cells_per_stage=cells))
        model.train()
        for start in range(0, len(labels) - batch + 1, batch):
            model.zero_grad()
            logits = model(images[start:start + batch])
            torch.nn.functional.cross_entropy(logits, labels[start:start + batch]).backward()
            grad = torch.cat([a.grad.flatten() for a in model.arch_parameters()])
            out.append(float(grad.abs().mean()))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=str(Path("..") / "shared" / "data" / "cifar10"))
    parser.add_argument("--dataset", default="cifar10-jpeg:1")
    parser.add_argument("--small", default="1,8", help="cells per stage, channels (the reduced protocol's)")
    parser.add_argument("--large", default="5,16", help="cells per stage, channels (the published protocol's)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()

    from edgenas.data import load_dataset

    torch.set_num_threads(1)
    data = load_dataset(args.dataset, "train", Path(args.data_dir))
    count = args.batches * args.batch_size
    images = data.images[:count].float() / 255
    images = (images - images.mean((0, 2, 3), keepdim=True)) / images.std((0, 2, 3), keepdim=True)
    labels = data.labels[:count]
    medians = {}
    print("| supernet | mean abs dCE/dalpha: median over seeds x batches | range | s |")
    print("|---|---|---|---|")
    for label, spec in (("small", args.small), ("large", args.large)):
        cells, channels = (int(x) for x in spec.split(","))
        start = time.perf_counter()
        values = gradients(cells, channels, images, labels, args.seeds, args.batch_size)
        medians[label] = statistics.median(values)
        print(f"| N = {cells}, C = {channels} | {medians[label]:.5f} | {min(values):.5f}-{max(values):.5f} | "
              f"{time.perf_counter() - start:.0f} |", flush=True)
    print(f"\nratio large / small: {medians['large'] / medians['small']:.2f} "
          f"({args.seeds} seeds x {args.batches} batches of {args.batch_size}, at initialisation)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
