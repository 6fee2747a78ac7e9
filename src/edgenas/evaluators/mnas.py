"""`edgenas search --space mnas`: accuracy from proxy training, latency from a latency backend.

Why a set-up of its own: this is the one place that joins the three parts an MnasNet search
needs — a dataset, the MnasNet space fitted to that dataset (resolution, channels, classes,
optionally narrowed: `edgenas.spaces.mnas_choices`), and a latency estimator for that same space
on the target — and records every setting that defines the run in its config, so that resuming
a run with other data, another space or other latency settings is refused. One space object
serves the strategy, the proxy evaluator and the latency estimator.
"""

from __future__ import annotations

import argparse
import functools
from typing import TYPE_CHECKING

from edgenas.data import load_dataset
from edgenas.errors import UserError
from edgenas.evaluators import oneshot
from edgenas.evaluators.base import EvaluatorSetup
from edgenas.latency.settings import LatencySettings, add_latency_options
from edgenas.search.front import front_estimator
from edgenas.spaces.mnas_choices import CHOICE_TYPES, SPACE_PRESETS, mnas_space_for, space_choices
from edgenas.training.options import add_proxy_training_options, proxy_config_from_args
from edgenas.training.proxy import ProxyTrainingEvaluator

if TYPE_CHECKING:
    from edgenas.search.executors import Executor

LATENCY_PREFIX = "latency-"  # `--latency-runs` etc.: `--runs` would read as training runs here
LATENCY_FLAGS = ("backend", "mode", "threads", "runs", "warmup", "min-seconds", "cache", "calibration",
                 "layer-passes", "prepare-workers", "keep-converted")


EVALUATOR_KINDS = ("proxy", "oneshot")


def add_options(parser: argparse.ArgumentParser) -> None:
    """The mnas flags: how candidates are scored (proxy training or a supernet's inherited
    weights), the space's preset and choice lists, latency."""
    parser.add_argument("--evaluator", choices=EVALUATOR_KINDS, default="proxy",
                        help="mnas: score candidates by proxy training (default) or with the weights they "
                             "inherit from a trained supernet (oneshot, needs --supernet)")
    parser.add_argument("--supernet", default=None, metavar="DIR",
                        help="mnas oneshot: a directory of edgenas supernet train")
    oneshot.add_options(parser)
    add_proxy_training_options(parser)
    parser.add_argument("--space-preset", default=None, choices=sorted(SPACE_PRESETS),
                        help="mnas: full MnasNet space, or the narrowed demo space (default full)")
    parser.add_argument("--space-option", action="append", default=None, metavar="KEY=V1,V2",
                        help=f"mnas: override a choice list ({', '.join(CHOICE_TYPES)}), e.g. kernels=3,5 (repeatable)")
    add_latency_options(parser, LATENCY_PREFIX, LATENCY_FLAGS, help_prefix="mnas latency: ")


def setup(args: argparse.Namespace) -> EvaluatorSetup:
    """Data loaded and space, proxy and latency settings checked once, before anything is written."""
    if getattr(args, "evaluator", "proxy") == "oneshot":
        return oneshot.setup(args, LATENCY_PREFIX)
    if getattr(args, "supernet", None):
        raise UserError("--supernet is read by --evaluator oneshot; add it, or drop --supernet")
    spec = args.dataset or "digits"
    dataset = load_dataset(spec, "train", args.data_dir)
    preset = args.space_preset or "full"
    choices = space_choices(preset, args.space_option or [])
    space = mnas_space_for(dataset, choices)
    proxy = proxy_config_from_args(args, dataset=dataset)
    latency = LatencySettings.from_args(args, LATENCY_PREFIX, device=args.device)
    c, h, _w = dataset.shape
    recorded = proxy.to_dict()
    for machine_only in ("device", "threads", "data_dir"):
        recorded.pop(machine_only, None)
    config = {
        "dataset": spec, "resolution": h, "in_channels": c, "classes": dataset.num_classes,
        "space_preset": preset, "space_choices": choices, "proxy": recorded, "latency": latency.config(),
    }

    def make_evaluator(executor: Executor) -> ProxyTrainingEvaluator:
        """Backend and data are checked first, before any worker or Ray actor starts: an unusable
        backend or a dataset too small for the split is the user's to fix (exit 2 now), not a
        failed trial later."""
        from edgenas.latency.backends import get_backend
        from edgenas.latency.estimator import make_latency_estimator

        get_backend(latency.backend, **latency.backend_options()).require()
        evaluator = ProxyTrainingEvaluator(proxy, space, dataset=dataset)
        evaluator.prepare()
        evaluator.latency_source = executor.latency_service(
            functools.partial(make_latency_estimator, space, latency))
        return evaluator

    return EvaluatorSetup(space, config, make_evaluator, front_estimator(space, latency))

