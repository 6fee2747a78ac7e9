"""The DARTS search loop: epochs of search steps, a genotype per epoch, checkpoint and resume.

The training images are split 50/50 (class-stratified, seeded) into a part that trains the
weights and a part that trains alpha, as in the paper. Both parts are augmented (crop + flip) and
normalised with the training part's statistics. The weight learning rate follows a cosine per
epoch from `lr` to `lr_min`.

Everything a resumed search needs is written after every epoch to `RUN_DIR/checkpoint.pt`
(supernet with alphas, both optimisers, the loaders' and the global RNG states, the history),
atomically (`edgenas.util.atomic`), so a search killed at any moment resumes from its last
finished epoch with the same command and continues exactly as if it had not stopped.
`RUN_DIR/config.json` records the configuration; a run directory of another configuration is
refused.

Two search spaces share the loop: DARTS' cells (`SupernetConfig`) and NAS-Bench-201's
(`NB201SupernetConfig`). Each epoch also records what tells a collapsing search from a healthy
one: the derived cell's share of skip connections, the dominant eigenvalue of the validation
loss' Hessian w.r.t. alpha (`edgenas.darts.hessian`, on a fixed un-augmented validation batch),
the alphas themselves and, for NB201 with its tables, the derived cell's table row (index,
200-epoch test accuracy, latency). A mitigation (`edgenas.darts.regularizers`) is part of the
configuration: it sets the supernets' mixing and the architect's extra term. The checkpoint is read with `torch.load(weights_only=True)`: resuming never runs code
from a file in the run directory.
"""

from __future__ import annotations

import json
import math
import random
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgenas.darts.genotypes import Genotype
from edgenas.darts.hessian import dominant_eigenvalue
from edgenas.darts.nb201_model import NB201SearchNetwork, NB201SupernetConfig
from edgenas.darts.regularizers import Relaxation
from edgenas.darts.search_model import SearchNetwork, SupernetConfig
from edgenas.darts.step import SearchHyper, make_optimizers, search_step
from edgenas.errors import UserError
from edgenas.util.atomic import torch_save_atomic, write_atomic
from edgenas.util.lock import LOCK_NAME, WriterLock
from edgenas.util.progress import TaskBar

CHECKPOINT = "checkpoint.pt"
CONFIG = "config.json"
GENOTYPE = "genotype.txt"
HISTORY = "history.json"


@dataclass(frozen=True)
class SearchConfig:
    """A whole search: data, supernet, optimisation."""

    dataset: str
    epochs: int = 50
    batch_size: int = 64
    train_portion: float = 0.5
    seed: int = 2
    supernet: SupernetConfig | NB201SupernetConfig = field(default_factory=SupernetConfig)
    hyper: SearchHyper = field(default_factory=SearchHyper)
    crop_padding: int = 4
    flip: bool = True
    limit: int | None = None  # use only this many training images (class-balanced)
    regularizer: Relaxation = field(default_factory=Relaxation)  # plain DARTS
    hessian_iterations: int = 20  # power steps per epoch for the eigenvalue (0: not measured)

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise UserError(f"--epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 1:
            raise UserError(f"--batch-size must be at least 1, got {self.batch_size}")
        if self.hyper.order not in (1, 2):
            raise UserError(f"--order must be 1 or 2, got {self.hyper.order}")
        if self.hessian_iterations < 0:
            raise UserError(f"--hessian-iterations must be 0 or more, got {self.hessian_iterations}")

    @property
    def space(self) -> str:
        return "nb201" if isinstance(self.supernet, NB201SupernetConfig) else "darts"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (and as read back from JSON, so that two configs compare equal)."""
        out = asdict(self)
        out["supernet"] = self.supernet.to_dict()
        out["regularizer"] = self.regularizer.settings()
        return json.loads(json.dumps(out))


@dataclass
class EpochRecord:
    epoch: int
    lr: float
    train_loss: float
    train_accuracy: float
    val_loss: float
    val_accuracy: float
    seconds: float
    genotype: str  # DARTS: the genotype string; NB201: the cell's NAS-Bench-201 string
    skip_share: float | None = None  # skip connections among the derived cell's ops
    eigenvalue: float | None = None  # dominant eigenvalue of the Hessian of L_val w.r.t. alpha
    alphas: list | None = None  # every alpha matrix, as nested lists
    index: int | None = None  # NB201 with tables: the cell's row
    test_accuracy: float | None = None  # its 200-epoch test accuracy, percent
    latency_ms: float | None = None  # its latency on the table's device
    # torch's intra-op threads for this epoch: the summation order, and with it the search's path,
    # depends on them (docs/bench/darts_nb201.md), so a resume notes a change
    threads: int | None = None


def epoch_lr(epoch: int, epochs: int, lr: float, lr_min: float) -> float:
    """Cosine annealing per epoch (the paper's schedule)."""
    return lr_min + 0.5 * (lr - lr_min) * (1.0 + math.cos(math.pi * epoch / epochs))


def _split(config: SearchConfig, dataset: Any) -> tuple[Any, Any]:
    if config.limit is not None:
        dataset = dataset.subset(config.limit, config.seed)
    train, val = dataset.split(config.train_portion, config.seed)
    smaller = min(len(train), len(val))
    if smaller < config.batch_size:
        raise UserError(
            f"dataset '{dataset.name}' has {len(dataset)} images: its {config.train_portion:g}/"
            f"{1 - config.train_portion:g} split leaves {smaller} in the smaller part, fewer than one "
            f"batch of {config.batch_size}; use a smaller --batch-size or more images"
        )
    return train, val


def check_low_memory(space: str, low_memory: bool) -> None:
    """Only the DARTS supernet recomputes cells; asked of the NB201 one, say so before anything runs."""
    if low_memory and space == "nb201":
        raise UserError("--low-memory recomputes DARTS cells; the nb201 supernet keeps its activations: "
                        "drop --low-memory")


class Search:
    """A search in `run_dir`; `run()` starts it or resumes it."""

    def __init__(
        self, config: SearchConfig, run_dir: str | Path, dataset: Any = None, device: str = "cpu",
        fast: bool = True, tables: Any = None, table_dataset: str = "cifar10", latency_device: str = "pixel3",
        low_memory: bool = False,
    ) -> None:
        """`tables` (`edgenas.evaluators.nb201.NB201Tables`, NB201 only): look every epoch's cell
        up in its `table_dataset` columns and `latency_device` column. `low_memory` (DARTS cells
        only): recompute every cell's edges in backward instead of the default's first cells only,
        for the least memory at some time (docs/bench/darts.md); the results are the same, so it
        is no part of the configuration and a resumed search may change it."""
        from edgenas.data import Augment, BatchLoader, load_dataset

        check_low_memory(config.space, low_memory)
        self.config = config
        self.tables = tables
        self.table_dataset, self.latency_device = table_dataset, latency_device
        if tables is not None:
            tables.check_dataset(table_dataset)
            tables.check_device(latency_device)
        self.run_dir = Path(run_dir)
        self.device = torch.device(device)
        self._check_run_dir()
        torch.manual_seed(config.seed)
        random.seed(config.seed)
        data = dataset if dataset is not None else load_dataset(config.dataset, "train")
        train, val = _split(config, data)
        supernet = config.supernet
        if data.num_classes != supernet.num_classes or data.shape[0] != supernet.in_channels:
            raise UserError(
                f"the supernet is configured for {supernet.num_classes} classes and "
                f"{supernet.in_channels} channels, dataset '{data.name}' has {data.num_classes} "
                f"and {data.shape[0]}"
            )
        augment = Augment(crop_padding=config.crop_padding, flip=config.flip)
        mean, std = train.channel_stats()
        self.train_loader = BatchLoader(train, config.batch_size, augment=augment, device=device,
                                        seed=config.seed, drop_last=True, mean=mean, std=std)
        self.val_loader = BatchLoader(val, config.batch_size, augment=augment, device=device,
                                      seed=config.seed + 1, drop_last=True, mean=mean, std=std)
        # The eigenvalue's batch: the first validation images, not augmented, the same every epoch.
        self.hessian_batch = next(iter(BatchLoader(val, config.batch_size, shuffle=False, device=device,
                                                   mean=mean, std=std)))
        if config.space == "nb201":
            self.model: nn.Module = NB201SearchNetwork(supernet, fast=fast, relaxation=config.regularizer)
        else:
            self.model = SearchNetwork(supernet, fast=fast, recompute=True if low_memory else None,
                                       relaxation=config.regularizer)
        self.model.to(self.device)
        self.optimizer, self.architect = make_optimizers(self.model, config.hyper)
        self.history: list[EpochRecord] = []
        self.start_epoch = 0

    # -- run directory ----------------------------------------------------------------------

    def _check_run_dir(self) -> None:
        path = self.run_dir / CONFIG
        if path.exists():
            try:
                saved = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError) as error:
                raise UserError(f"cannot read {path} ({error}); use a new --out directory") from None
            if saved != self.config.to_dict():
                changed = sorted(k for k in set(saved) | set(self.config.to_dict())
                                 if saved.get(k) != self.config.to_dict().get(k))
                raise UserError(
                    f"{self.run_dir} holds a search with another configuration (differs in: "
                    f"{', '.join(changed)}); use a new --out directory or the same options"
                )
        elif self.run_dir.exists() and any(p.name != LOCK_NAME for p in self.run_dir.iterdir()):
            raise UserError(f"{self.run_dir} exists and is not a DARTS search directory; use a new --out directory")

    def _save(self) -> None:
        # Tensors and plain Python values only (the Python RNG state is a tuple of ints), so that
        # `_load` can read it with weights_only=True: a run directory may come from someone else.
        state = {
            "epoch": len(self.history),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "arch_optimizer": self.architect.optimizer.state_dict(),
            "train_rng": self.train_loader.generator.get_state(),
            "val_rng": self.val_loader.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "python_rng": random.getstate(),
            "history": [asdict(r) for r in self.history],
        }
        if self.device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        write_atomic(self.run_dir / CONFIG, json.dumps(self.config.to_dict(), indent=2))
        torch_save_atomic(state, self.run_dir / CHECKPOINT)
        write_atomic(self.run_dir / HISTORY, json.dumps([asdict(r) for r in self.history], indent=2))
        if self.history:
            write_atomic(self.run_dir / GENOTYPE, self.history[-1].genotype + "\n")

    def _load(self) -> bool:
        path = self.run_dir / CHECKPOINT
        if not path.exists():
            return False
        try:
            state = torch.load(path, map_location=self.device, weights_only=True)
            self.model.load_state_dict(state["model"])
        except Exception as error:  # a foreign or damaged file: the user's to fix
            raise UserError(f"cannot resume from {path} ({type(error).__name__}); use a new --out directory") from None
        self.optimizer.load_state_dict(state["optimizer"])
        self.architect.optimizer.load_state_dict(state["arch_optimizer"])
        self.train_loader.generator.set_state(state["train_rng"])
        self.val_loader.generator.set_state(state["val_rng"])
        torch.set_rng_state(state["torch_rng"])
        random.setstate(state["python_rng"])
        if "cuda_rng" in state and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda_rng"], self.device)
        self.history = [EpochRecord(**r) for r in state["history"]]
        self.start_epoch = int(state["epoch"])
        ran_with = self.history[-1].threads if self.history else None
        if ran_with is not None and ran_with != torch.get_num_threads() and self.start_epoch < self.config.epochs:
            print(f"note: {self.run_dir} ran with {ran_with} thread(s), resumes with {torch.get_num_threads()}: "
                  f"the rest of the search will not be bit-identical to an uninterrupted run "
                  f"(set EDGENAS_THREADS={ran_with} for that)", file=sys.stderr)
        return True

    # -- the loop ---------------------------------------------------------------------------

    def run(
        self, on_epoch: Callable[[EpochRecord], None] | None = None, progress: bool = False,
        max_steps: int | None = None,
    ) -> Genotype | str:
        """Search (resuming if the run directory holds a checkpoint); the final genotype (NB201:
        the cell's string).

        `max_steps` caps the steps per epoch (for quick runs and tests). The run directory is
        locked for the whole run: a second process on it exits with one line (`WriterLock`)."""
        with WriterLock.for_directory(self.run_dir, "DARTS search"):
            self._check_run_dir()  # again, under the lock: another process may have just written it
            return self._run(on_epoch, progress, max_steps)

    def _run(self, on_epoch: Callable[[EpochRecord], None] | None, progress: bool,
             max_steps: int | None) -> Genotype | str:
        resumed = self._load()
        if resumed and on_epoch is not None:
            for record in self.history:
                on_epoch(record)
        if not resumed:
            self._save()  # config.json first: a second start sees the directory as this search's
        hyper, epochs = self.config.hyper, self.config.epochs
        for epoch in range(self.start_epoch, epochs):
            started = time.perf_counter()
            lr = epoch_lr(epoch, epochs, hyper.lr, hyper.lr_min)
            steps = len(self.train_loader) if max_steps is None else min(max_steps, len(self.train_loader))
            bar = TaskBar(f"epoch {epoch + 1}/{epochs}", steps) if progress else None
            self.model.train()
            progress_now = epoch / epochs
            self.architect.penalty = lambda alphas, p=progress_now: self.config.regularizer.penalty(alphas, p)
            loss_sum, correct, seen = 0.0, 0, 0
            val_batches = _cycle(self.val_loader)
            try:
                for step, train_batch in enumerate(self.train_loader):
                    if step >= steps:
                        break
                    _, loss, logits = search_step(self.model, self.optimizer, self.architect,
                                                  train_batch, next(val_batches), lr, hyper.grad_clip)
                    if not math.isfinite(loss):
                        raise UserError(f"the search diverged (loss {loss}) in epoch {epoch + 1}; lower --lr")
                    n = train_batch[1].shape[0]
                    loss_sum += loss * n
                    correct += int((logits.argmax(1) == train_batch[1]).sum())
                    seen += n
                    if bar is not None:
                        bar.advance()
            finally:
                if bar is not None:
                    bar.close()
            val_accuracy, val_loss = self.validate(max_steps)
            record = EpochRecord(
                epoch=epoch + 1, lr=lr, train_loss=loss_sum / max(1, seen),
                train_accuracy=correct / max(1, seen), val_loss=val_loss, val_accuracy=val_accuracy,
                seconds=time.perf_counter() - started, genotype=str(self.model.genotype()),
                threads=torch.get_num_threads(),
                **self.diagnostics(epoch),
            )
            self.history.append(record)
            self._save()
            if on_epoch is not None:
                on_epoch(record)
        return self.model.genotype()

    def diagnostics(self, epoch: int) -> dict[str, Any]:
        """The collapse indicators of the current alphas (see the module docstring)."""
        from edgenas.darts import nb201

        out: dict[str, Any] = {"alphas": [a.detach().cpu().double().tolist() for a in self.model.arch_parameters()]}
        if self.config.hessian_iterations:
            out["eigenvalue"] = dominant_eigenvalue(self.model, self.hessian_batch, self.config.hessian_iterations,
                                                    seed=self.config.seed + epoch)
        if self.config.space == "nb201":
            arch = self.model.genotype()
            out["skip_share"] = nb201.skip_share(nb201.cell_ops(arch))
            if self.tables is not None:
                row = nb201.look_up(self.tables, arch, self.table_dataset, self.latency_device)
                out.update(index=row["index"], test_accuracy=row["test_accuracy"], latency_ms=row["latency_ms"])
        else:
            ops = [op for op, _ in self.model.genotype().normal]
            out["skip_share"] = nb201.skip_share(ops)
        return out

    @torch.no_grad()
    def validate(self, max_steps: int | None = None) -> tuple[float, float]:
        """(accuracy, mean loss) of the supernet on the validation part, in evaluation mode."""
        from edgenas.training import evaluate

        loader = self.val_loader if max_steps is None else _Take(self.val_loader, max_steps)
        return evaluate(self.model, loader)


def _cycle(loader: Any):
    while True:
        yield from loader


class _Take:
    """The first `n` batches of a loader (it keeps the loader's `device`)."""

    def __init__(self, loader: Any, n: int) -> None:
        self.loader, self.n, self.device = loader, n, loader.device

    def __iter__(self):
        for i, batch in enumerate(self.loader):
            if i >= self.n:
                return
            yield batch

    def __len__(self) -> int:
        return min(self.n, len(self.loader))
