"""The one-shot evaluator: an architecture scored with the weights it inherits from a supernet.

Why it looks like this (single-path one-shot's protocol): the path of the architecture is copied
out of the trained supernet into a stand-alone network (`Supernet.extract`), its BatchNorm
statistics are re-estimated on a few training batches (the supernet's running averages mix every
path's statistics and describe none), and it is scored on the held-out part of the supernet's
data, which the supernet never trained on. Nothing trains, so a candidate costs about a second
instead of a proxy training, and a strategy can see thousands of them.

Every candidate is recalibrated on the same batches (drawn once, seeded) and scored on the same
images, so its score does not depend on when in the search it was evaluated, and a resumed search
scores the same architecture the same. The process keeps freed memory for the next candidate
(`edgenas.util.allocator`): without it the kernel's page faults cost as much as the arithmetic.
Latency comes from a latency collaborator, as for the proxy
evaluator (the LUT by default: predicted, not measured; the final front is measured end to end).

An architecture outside the supernet's space, a latency failure or any exception is a failed
trial with its reason. The evaluator pickles without its tensors (a Ray worker reloads the
supernet directory), like the proxy evaluator.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from edgenas.errors import UserError
from edgenas.evaluators.base import TrialResult
from edgenas.search.front import front_estimator
from edgenas.training.loaders import resolve_device
from edgenas.training.loop import evaluate, recalibrate_batchnorm
from edgenas.training.proxy import LatencySource


@dataclass(frozen=True)
class OneShotConfig:
    """How candidates are scored (the defaults live here and only here)."""

    bn_batches: int = 2  # training batches that re-estimate BatchNorm statistics
    bn_batch_size: int = 128
    # Held-out images scored (a class-balanced part; None: all). 1,000 rather than 500: the one-shot
    # accuracies of a space's networks lie a few points apart, as close as the sampling error of
    # 500 images; with 1,000 the ranking of two supernets came out markedly closer to stand-alone
    # training (docs/bench/supernet.md, "Rank fidelity").
    val_images: int | None = 1000
    eval_batch_size: int = 500
    device: str = "cpu"
    channels_last: bool = True  # NHWC batches and network: the same scores, faster on CPU (docs/bench/supernet.md)

    def __post_init__(self) -> None:
        if self.bn_batches < 1 or self.bn_batch_size < 1:
            raise UserError(f"BatchNorm re-estimation needs at least one batch of one image, got "
                            f"{self.bn_batches} batches of {self.bn_batch_size}")
        if self.val_images is not None and self.val_images < 1:
            raise UserError(f"--oneshot-val-images must be at least 1, got {self.val_images}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Loaded:
    """What an evaluator reads once: the supernet, its record, and the data every candidate shares."""

    supernet: Any
    record: dict[str, Any]
    bn_batches: list[tuple[torch.Tensor, torch.Tensor]]
    val_loader: Any
    train_part: Any


class OneShotEvaluator:
    """Accuracy of a path with inherited weights, latency from a collaborator; failures recorded."""

    def __init__(self, supernet_dir: str | Path, config: OneShotConfig = OneShotConfig(), *,
                 data_dir: str | None = None, latency: LatencySource | None = None) -> None:
        self.supernet_dir = str(supernet_dir)
        self.config = config
        self.data_dir = data_dir
        self.latency_source = latency
        self._loaded: _Loaded | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_loaded"] = None  # the worker reloads the supernet and the data
        return state

    def prepare(self) -> None:
        """Load the supernet and its data now (UserError for a directory that holds none)."""
        self._load()

    @property
    def space(self) -> Any:
        """The supernet's space (what a strategy over this evaluator samples)."""
        return self._load().supernet.space

    @property
    def supernet(self) -> Any:
        return self._load().supernet

    @property
    def record(self) -> dict[str, Any]:
        return self._load().record

    def data_parts(self) -> tuple[Any, Any]:
        """(the supernet's training part, the held-out images candidates are scored on)."""
        loaded = self._load()
        return loaded.train_part, loaded.val_loader.dataset

    def _load(self) -> _Loaded:
        if self._loaded is None:
            from edgenas.data import BatchLoader
            from edgenas.supernet.training import held_out_data, load_supernet
            from edgenas.util.allocator import keep_freed_memory

            keep_freed_memory()  # in whichever process scores: the CLI's, a Ray worker's
            supernet, record = load_supernet(self.supernet_dir)
            train_part, val_part = held_out_data(record, self.data_dir)
            cfg = self.config
            device = resolve_device(cfg.device)
            supernet.to(device)
            seed = int(record["settings"]["seed"])
            bn_loader = BatchLoader(train_part, cfg.bn_batch_size, device=device, seed=seed + 1,
                                    channels_last=cfg.channels_last)
            bn_batches = list(itertools.islice(bn_loader, cfg.bn_batches))  # the same for every candidate
            if cfg.val_images is not None and cfg.val_images < len(val_part):
                val_part = val_part.subset(cfg.val_images, seed)  # class-balanced
            val_loader = BatchLoader(val_part, cfg.eval_batch_size, shuffle=False, device=device,
                                     mean=bn_loader.mean, std=bn_loader.std, channels_last=cfg.channels_last)
            self._loaded = _Loaded(supernet, record, bn_batches, val_loader, train_part)
        return self._loaded

    def evaluate(self, arch: str) -> TrialResult:
        """Score `arch` with inherited weights; never raises."""
        started = time.perf_counter()
        try:
            return self._evaluate(arch, started)
        except Exception as error:  # noqa: BLE001 - a candidate's failure must not end the search
            return TrialResult.from_exception(error, seconds=time.perf_counter() - started)

    def _evaluate(self, arch: str, started: float) -> TrialResult:
        loaded = self._load()
        blocks = loaded.supernet.blocks(arch)  # UserError: not a path of this supernet
        metrics: dict[str, Any] = {}
        latency_ms = None
        if self.latency_source is not None:
            try:
                measured = self.latency_source.latency(blocks)
                latency_ms = float(getattr(measured, "latency_ms", measured.median_ms))
            except Exception as error:  # noqa: BLE001 - a device failure is this trial's failure
                return TrialResult.failed(f"latency: {type(error).__name__}: {error}")
            metrics["latency_median_ms"] = float(measured.median_ms)
            if hasattr(measured, "to_dict"):
                metrics["latency"] = measured.to_dict()
        with torch.no_grad():
            model = loaded.supernet.extract(blocks)
        if self.config.channels_last:
            model = model.to(memory_format=torch.channels_last)
        activations_in_place(model)
        recalibrate_batchnorm(model, loaded.bn_batches, len(loaded.bn_batches))
        fold_batchnorm(model.eval())
        if self.config.channels_last:  # folding made new weights, in the default layout
            model = model.to(memory_format=torch.channels_last)
        accuracy, val_loss = evaluate(model, loaded.val_loader)
        metrics.update(params=sum(p.numel() for p in model.parameters()), val_loss=val_loss,
                       val_images=len(loaded.val_loader.dataset), bn_batches=len(loaded.bn_batches),
                       seconds=time.perf_counter() - started)
        return TrialResult(accuracy=accuracy, latency_ms=latency_ms, metrics=metrics)


def fold_batchnorm(model: torch.nn.Module) -> torch.nn.Module:
    """Fold every BatchNorm that follows a convolution into that convolution (eval mode only).

    Why: a scored network is only run forward, and on CPU the separate BatchNorm passes cost about
    as much as the convolutions themselves (profiled: docs/bench/supernet.md); folded, the network
    computes the same function up to float rounding.
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    for module in model.modules():
        if not isinstance(module, torch.nn.Sequential):
            continue
        names = list(module._modules)
        for first, second in zip(names, names[1:]):
            conv, norm = module._modules[first], module._modules[second]
            if isinstance(conv, torch.nn.Conv2d) and isinstance(norm, torch.nn.BatchNorm2d):
                module._modules[first] = fuse_conv_bn_eval(conv, norm)
                module._modules[second] = torch.nn.Identity()
    return model


def activations_in_place(model: torch.nn.Module) -> torch.nn.Module:
    """Let every activation that directly follows a convolution or BatchNorm overwrite its input.

    Why: a scored network only runs without gradients, and out of place each activation writes a
    fresh tensor as large as the layer's output (the profile of a full-space candidate put a quarter
    of its scoring time in ReLU: docs/bench/supernet.md). Only where the input is the output of the
    module before it in a `Sequential`, which nothing else reads; an activation that reads a block's
    input (the cell spaces' pre-activation order) is left alone.
    """
    for module in model.modules():
        if isinstance(module, torch.nn.Sequential):
            children = list(module.children())
            for before, activation in zip(children, children[1:]):
                if isinstance(before, (torch.nn.Conv2d, torch.nn.BatchNorm2d)) and hasattr(activation, "inplace"):
                    activation.inplace = True
    return model


# ---- `edgenas search --space mnas --evaluator oneshot` ------------------------------------------
def add_options(parser: Any) -> None:
    """The one-shot flags of `edgenas search --space mnas` (beside `--evaluator` and `--supernet`)."""
    defaults = OneShotConfig()
    parser.add_argument("--oneshot-bn-batches", type=int, default=None,
                        help=f"oneshot: training batches that re-estimate BatchNorm (default {defaults.bn_batches})")
    parser.add_argument("--oneshot-val-images", type=int, default=None,
                        help=f"oneshot: held-out images each candidate is scored on (default {defaults.val_images})")


def setup(args: Any, latency_prefix: str) -> Any:
    """The supernet, its space and data, checked before anything is written; the space and the data
    are the supernet's (a --dataset or --space-* that says otherwise is refused)."""
    import functools

    from edgenas.evaluators.base import EvaluatorSetup
    from edgenas.latency.settings import LatencySettings
    from edgenas.spaces.mnas_choices import space_choices

    if not args.supernet:
        raise UserError("--evaluator oneshot needs --supernet DIR (a directory of edgenas supernet train)")
    from edgenas.supernet.training import load_supernet

    _, record = load_supernet(args.supernet)
    settings = record["settings"]
    if args.dataset is not None and args.dataset != settings["dataset"]:
        raise UserError(f"the supernet in {args.supernet} was trained on '{settings['dataset']}', not "
                        f"'{args.dataset}'; drop --dataset or train a supernet on it")
    if (args.space_preset is not None or args.space_option) and \
            space_choices(args.space_preset or "full", args.space_option or []) != record["choices"]:
        raise UserError(f"--space-preset/--space-option describe another space than the supernet in "
                        f"{args.supernet} was trained on; drop them (the supernet's space is used)")
    defaults = OneShotConfig()
    config = OneShotConfig(
        bn_batches=args.oneshot_bn_batches if args.oneshot_bn_batches is not None else defaults.bn_batches,
        val_images=args.oneshot_val_images if args.oneshot_val_images is not None else defaults.val_images,
        device=args.train_device or defaults.device)
    mode = {} if getattr(args, latency_prefix.replace("-", "_") + "mode") else {"mode": "lut"}
    latency = LatencySettings.from_args(args, latency_prefix, device=args.device, **mode)
    probe = OneShotEvaluator(args.supernet, config, data_dir=args.data_dir)
    probe.prepare()  # the data is here and is the supernet's
    space = probe.supernet.space
    run_config = {
        "evaluator": "oneshot", "supernet": str(Path(args.supernet).resolve()),
        "supernet_training": record["identity"], "oneshot": config.to_dict(), "latency": latency.config(),
    }
    for machine_only in ("device", "channels_last"):  # the same scores either way
        run_config["oneshot"].pop(machine_only)

    def make_evaluator(executor: Any) -> OneShotEvaluator:
        from edgenas.latency.backends import get_backend
        from edgenas.latency.estimator import make_latency_estimator

        get_backend(latency.backend, **latency.backend_options()).require()
        probe.latency_source = executor.latency_service(functools.partial(make_latency_estimator, space, latency))
        return probe

    return EvaluatorSetup(space, run_config, make_evaluator, front_estimator(space, latency))
