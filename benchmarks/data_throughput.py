"""Proxy-training throughput: our in-memory batched pipeline against a plain per-sample DataLoader.

Same data, same model (same initial weights), same training loop (`edgenas.training.train`),
same batch size and augmentation (random crop with padding + horizontal flip); only the way
batches are made differs:

  dataloader     torch.utils.data.DataLoader, num_workers=0, per-sample crop/flip/normalise on
                 tensors in __getitem__, default collate (the plain recipe)
  dataloader-w2  the same with 2 worker processes (persistent)
  batched        edgenas BatchLoader: one index-select + one gather + one fused normalise per batch
  batched-cl     the same, yielding channels-last batches (the model follows): the proxy
                 evaluator's default

Configurations alternate inside every round, so a slow-down of the shared machine hits all of
them alike; the table gives the median over rounds and the per-round ratio to `dataloader`.

    .venv/bin/python benchmarks/data_throughput.py [--rounds 5] [--steps 12] [--threads 1] [--device cuda]

On a GPU (`--device cuda`) the DataLoader pins memory and its batches are copied to the GPU
asynchronously inside the training loop; BatchLoader keeps the uint8 dataset on the GPU.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time

import torch
from torch import nn

from edgenas.data import Augment, BatchLoader, ImageDataset, load_dataset
from edgenas.errors import UserError
from edgenas.spaces.mnas import config_for
from edgenas.spaces.mobilenet import build_network
from edgenas.training import TrainConfig, train

MODELS = {
    # MobileNetV2 at width 0.35 (channels rounded to multiples of 8), CIFAR layout.
    "mobilenetv2-0.35": "ir_r1_k3_s1_e1_c8 ir_r2_k3_s2_e6_c8 ir_r3_k3_s2_e6_c16 ir_r4_k3_s2_e6_c24 "
                        "ir_r3_k3_s1_e6_c32 ir_r3_k3_s2_e6_c56 ir_r1_k3_s1_e6_c112",
    # A small proxy candidate of the kind a short search samples: few, narrow layers.
    "proxy-small": "ds_r1_k3_s1_c8 ir_r1_k3_s2_e3_c16 ir_r1_k5_s2_e3_c24 ir_r1_k3_s2_e3_c32",
}


class PerSampleDataset(torch.utils.data.Dataset):
    """The plain recipe: each __getitem__ pads, crops, flips and normalises one image."""

    def __init__(self, data: ImageDataset, padding: int, mean, std) -> None:
        self.data, self.padding = data, padding
        self.mean = torch.tensor(mean).view(-1, 1, 1)
        self.std = torch.tensor(std).view(-1, 1, 1)
        self.size = data.shape[1:]

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int):
        image = self.data.images[index].to(torch.float32).div_(255.0)
        p = self.padding
        image = nn.functional.pad(image, (p, p, p, p))
        top, left = torch.randint(0, 2 * p + 1, (2,)).tolist()
        image = image[:, top : top + self.size[0], left : left + self.size[1]]
        if torch.rand(()) < 0.5:
            image = image.flip(-1)
        return (image - self.mean) / self.std, int(self.data.labels[index])


def make_loader(kind: str, data: ImageDataset, batch: int, padding: int, seed: int, device: str = "cpu"):
    mean, std = data.channel_stats()
    if kind.startswith("dataloader"):
        workers = 2 if kind.endswith("w2") else 0
        generator = torch.Generator().manual_seed(seed)
        return torch.utils.data.DataLoader(
            PerSampleDataset(data, padding, mean, std), batch_size=batch, shuffle=True,
            drop_last=True, num_workers=workers, persistent_workers=workers > 0, generator=generator,
            pin_memory=device != "cpu")
    return BatchLoader(data, batch, augment=Augment(crop_padding=padding, flip=True), seed=seed,
                       drop_last=True, channels_last=kind.endswith("-cl"), device=device)


def timed_run(template: nn.Module, loader, steps: int, device: str = "cpu") -> float:
    """Images per second of `steps` training steps (a fresh copy of the same initial weights).

    `train` ends by reading the loss back, which waits for a GPU's queued work, so the clock is fair.
    """
    model = copy.deepcopy(template).to(device)
    stats = train(model, loader, TrainConfig(max_steps=steps, lr=0.05), progress=False)
    return stats.images / stats.seconds


def data_only(loader, batches: int, device: str = "cpu") -> float:
    started, images = time.perf_counter(), 0
    for i, (x, _) in enumerate(loader):
        x = x.to(device, non_blocking=True)
        images += x.shape[0]
        if i + 1 == batches:
            break
    if device != "cpu":
        torch.cuda.synchronize()
    return images / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="cifar10-jpeg:2")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--kinds", default="dataloader,dataloader-w2,batched,batched-cl")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    args = parser.parse_args(argv)
    if args.device != "cpu" and not torch.cuda.is_available():
        print(f"--device {args.device}: no CUDA device here; run with --device cpu", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    try:
        data = load_dataset(args.dataset)
    except UserError as error:
        print(f"{error}; falling back to the embedded digits", file=sys.stderr)
        data = load_dataset("digits")
    c, h, _ = data.shape
    padding = max(1, h // 8)
    kinds = args.kinds.split(",")
    print(f"# {data.name}: {len(data)} images {c}x{h}x{h}; batch {args.batch_size}, "
          f"{args.steps} steps x {args.rounds} rounds, torch threads {args.threads}, device {args.device}")

    data_rates = {k: [] for k in kinds}
    for kind in kinds:
        loader = make_loader(kind, data, args.batch_size, padding, 0, args.device)
        data_only(loader, 3, args.device)
        for _ in range(3):
            data_rates[kind].append(data_only(loader, 30, args.device))
    print("\n| data only (no model) | images/s (median of 3) |\n|---|---|")
    for kind in kinds:
        print(f"| {kind} | {statistics.median(data_rates[kind]):,.0f} |")

    network = config_for(h, data.num_classes, c).network
    for name in args.models.split(","):
        torch.manual_seed(0)
        template = build_network(MODELS[name], network, h)
        loaders = {k: make_loader(k, data, args.batch_size, padding, 0, args.device) for k in kinds}
        for kind in kinds:  # warm-up: allocator, oneDNN/cuDNN kernels, worker start
            timed_run(template, loaders[kind], 2, args.device)
        rates = {k: [] for k in kinds}
        for round_index in range(args.rounds):
            order = kinds if round_index % 2 == 0 else list(reversed(kinds))
            for kind in order:
                rates[kind].append(timed_run(template, loaders[kind], args.steps, args.device))
        base = rates[kinds[0]]
        print(f"\n## {name} ({sum(p.numel() for p in template.parameters()):,} params)\n")
        print(f"| pipeline | images/s (median) | min..max | x {kinds[0]} (median of per-round ratios) |")
        print("|---|---|---|---|")
        for kind in kinds:
            ratios = [r / b for r, b in zip(rates[kind], base)]
            print(f"| {kind} | {statistics.median(rates[kind]):,.1f} | {min(rates[kind]):,.1f}.."
                  f"{max(rates[kind]):,.1f} | {statistics.median(ratios):.2f} "
                  f"({min(ratios):.2f}..{max(ratios):.2f}) |")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
