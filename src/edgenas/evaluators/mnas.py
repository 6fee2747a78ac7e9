"""`edgenas search --space mnas`: accuracy from proxy training, latency from a latency backend.

Why a plugin and not code in the search loop: the loop takes any evaluator. This module is the
one place that joins the three parts an MnasNet search needs — a dataset, the MnasNet space
fitted to that dataset (resolution, channels, classes, and optionally narrowed), and a latency
estimator for the same space on the target — and records every setting that defines the run in
its config, so that resuming a run with different data, space or latency settings is refused.

Space presets (`--space-preset`): `full` is the MnasNet space at the dataset's resolution; `demo`
is a narrowed one (4 blocks, the first strided, 3 ops, 2 kernels, 2 widths) in which a candidate
proxy-trains in seconds on a CPU. `--space-option KEY=VALUES` overrides one choice list, e.g.
`kernels=3,5`, `ops=dsconv,mbconv6`, `stages=c16_r1_s2,c24_r2_s2` (base channels, repeats,
stride of each block).
"""

from __future__ import annotations

import argparse
import functools
import re
from dataclasses import asdict, dataclass
from typing import Any

from edgenas.data import ImageDataset, load_dataset
from edgenas.errors import UserError
from edgenas.search.executors import Executor
from edgenas.spaces import get_space
from edgenas.spaces.mnas import BaseStage, MnasSpace
from edgenas.training.options import add_proxy_options, proxy_config_from_args
from edgenas.training.proxy import ProxyConfig, ProxyTrainingEvaluator

SPACE_PRESETS: dict[str, dict[str, Any]] = {
    "full": {},
    "demo": {
        "ops": ["dsconv", "mbconv3", "mbconv6"],
        "kernels": [3, 5],
        "se_ratios": [0.0, 0.25],
        "skips": ["none", "identity"],
        "width_multipliers": [0.5, 1.0],
        "layer_deltas": [-1, 0, 1],
        "stages": ["c16_r1_s2", "c24_r2_s2", "c40_r2_s2", "c80_r2_s1"],
    },
}
# Choice lists `--space-option` may set, and how each item is read.
_CHOICE_TYPES: dict[str, type] = {
    "ops": str, "kernels": int, "se_ratios": float, "skips": str,
    "width_multipliers": float, "layer_deltas": int, "stages": str,
}
_STAGE = re.compile(r"^c(\d+)_r(\d+)_s([12])$")
LATENCY_BACKENDS = ("onnxruntime", "torch", "litert", "adb", "ssh")
LATENCY_MODES = ("measure", "lut")


# ---- the space -----------------------------------------------------------------------------------
def parse_space_option(item: str) -> tuple[str, list[Any]]:
    """`KEY=V1,V2,...` -> (key, typed values); a bad key or value is a UserError naming the fix."""
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or key not in _CHOICE_TYPES:
        raise UserError(f"--space-option '{item}' is not KEY=V1,V2 with KEY one of {', '.join(_CHOICE_TYPES)}; "
                        "e.g. --space-option kernels=3,5")
    kind = _CHOICE_TYPES[key]
    values = [v.strip() for v in text.split(",") if v.strip()]
    if not values:
        raise UserError(f"--space-option '{item}' lists no values; e.g. {key}=...,...")
    try:
        return key, [kind(v) for v in values]
    except ValueError:
        raise UserError(f"--space-option '{item}': every value of {key} must be a {kind.__name__}") from None


def space_choices(preset: str = "full", overrides: list[str] | None = None) -> dict[str, Any]:
    """The JSON form of a space's choice lists: a preset with `KEY=VALUES` overrides applied."""
    if preset not in SPACE_PRESETS:
        raise UserError(f"unknown space preset '{preset}'; choose one of {', '.join(SPACE_PRESETS)}")
    choices = {k: list(v) for k, v in SPACE_PRESETS[preset].items()}
    for item in overrides or []:
        key, values = parse_space_option(item)
        choices[key] = values
    return choices


def parse_stage(text: str) -> BaseStage:
    match = _STAGE.match(text)
    if not match:
        raise UserError(f"stage '{text}' is not c<channels>_r<repeats>_s<1|2>; e.g. c24_r2_s2")
    channels, repeats, stride = (int(g) for g in match.groups())
    if channels < 1 or repeats < 1:
        raise UserError(f"stage '{text}' needs at least 1 channel and 1 repeat")
    return BaseStage(channels, repeats, stride)


def space_options_from_choices(choices: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments of the mnas space factory for JSON choices (tuples, BaseStage)."""
    options: dict[str, Any] = {}
    for key, values in choices.items():
        if key == "stages":
            options["base_stages"] = tuple(parse_stage(v) for v in values)
        else:
            options[key] = tuple(values)
    return options


def make_mnas_space(dataset: ImageDataset, choices: dict[str, Any]) -> MnasSpace:
    """The MnasNet space fitted to `dataset`'s resolution, channels and classes."""
    c, h, w = dataset.shape
    if h != w:
        raise UserError(f"dataset '{dataset.name}' has {h}x{w} images; the mnas space needs square images "
                        "(folder: datasets take --image-size)")
    space = get_space("mnas", resolution=h, num_classes=dataset.num_classes, in_channels=c,
                      **space_options_from_choices(choices))
    assert isinstance(space, MnasSpace)
    return space


# ---- latency -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LatencySettings:
    """How candidates' latency is obtained (recorded in the run config, except the cache path)."""

    backend: str = "onnxruntime"
    mode: str = "measure"
    threads: int = 1
    runs: int = 50
    warmup: int = 10
    device: str | None = None  # adb serial or ssh user@host
    cache: str | None = None  # None: the per-user cache ($EDGENAS_CACHE_DIR or ~/.cache/edgenas)

    def __post_init__(self) -> None:
        if self.backend not in LATENCY_BACKENDS:
            raise UserError(f"unknown latency backend '{self.backend}'; choose one of {', '.join(LATENCY_BACKENDS)}")
        if self.mode not in LATENCY_MODES:
            raise UserError(f"unknown latency mode '{self.mode}'; choose one of {', '.join(LATENCY_MODES)}")
        if self.threads < 1 or self.runs < 1 or self.warmup < 0:
            raise UserError(f"latency needs threads >= 1, runs >= 1 and warm-up >= 0 (got {self.threads}, "
                            f"{self.runs}, {self.warmup})")
        if self.device is not None and self.backend not in ("adb", "ssh"):
            raise UserError(f"--device names a remote device (adb serial, ssh user@host), but the '{self.backend}' "
                            "backend measures this machine; drop --device or use --latency-backend adb|ssh")

    def backend_options(self) -> dict[str, Any]:
        if self.backend == "adb":
            return {"serial": self.device}
        if self.backend == "ssh":
            return {"host": self.device}
        return {}

    def config(self) -> dict[str, Any]:
        values = asdict(self)
        values.pop("cache")
        return values


def make_latency_estimator_for(space: MnasSpace, settings: LatencySettings) -> Any:
    """A latency estimator for `space` (a module-level function, so a partial of it pickles: a Ray
    latency actor builds its own estimator from it on the device it owns)."""
    from edgenas.latency import make_latency_estimator

    return make_latency_estimator(
        space, backend=settings.backend, mode=settings.mode, cache_path=settings.cache,
        runs=settings.runs, warmup=settings.warmup, threads=settings.threads,
        backend_options=settings.backend_options(),
    )


# ---- one search's set-up -------------------------------------------------------------------------
@dataclass
class MnasSearchSetup:
    """Everything an mnas search needs, built once from the CLI options (data loaded once)."""

    dataset_spec: str
    dataset: ImageDataset
    preset: str
    choices: dict[str, Any]
    space: MnasSpace
    proxy: ProxyConfig
    latency: LatencySettings

    @property
    def latency_factory(self) -> functools.partial:
        """A picklable zero-argument factory of this search's latency estimator."""
        return functools.partial(make_latency_estimator_for, self.space, self.latency)

    def make_evaluator(self, executor: Executor | None = None) -> ProxyTrainingEvaluator:
        """The proxy evaluator, with latency from `executor.latency_service` (default: an estimator here).

        Backend and data are checked first, before any worker or Ray actor starts: an unusable
        backend, a dataset too small for the split or a subset too large is the user's to fix
        (exit 2 now), not a failed trial later.
        """
        from edgenas.latency.backends import get_backend

        get_backend(self.latency.backend, **self.latency.backend_options()).require()
        evaluator = ProxyTrainingEvaluator(self.proxy, dataset=self.dataset)
        evaluator.prepare()
        factory = self.latency_factory
        evaluator.latency_source = executor.latency_service(factory) if executor is not None else factory()
        return evaluator

    def config(self) -> dict[str, Any]:
        """What identifies the run (compared on resume): data, space, proxy training, latency."""
        c, h, _w = self.dataset.shape
        proxy = self.proxy.to_dict()
        for machine_only in ("device", "threads", "space_options", "data_dir", "space"):
            proxy.pop(machine_only, None)
        return {
            "dataset": self.dataset_spec,
            "resolution": h,
            "in_channels": c,
            "classes": self.dataset.num_classes,
            "space_preset": self.preset,
            "space_choices": self.choices,
            "proxy": proxy,
            "latency": self.latency.config(),
        }


def setup_from_args(args: argparse.Namespace) -> MnasSearchSetup:
    """Build (once per parsed command line) the data, space, proxy config and latency settings."""
    cached = getattr(args, "_mnas_setup", None)
    if cached is not None:
        return cached
    spec = getattr(args, "dataset", None) or "digits"
    data_dir = getattr(args, "data_dir", None)
    dataset = load_dataset(spec, "train", data_dir)
    preset = getattr(args, "space_preset", None) or "full"
    choices = space_choices(preset, getattr(args, "space_option", None) or [])
    space = make_mnas_space(dataset, choices)
    proxy = proxy_config_from_args(args, dataset=dataset, space="mnas",
                                   space_options=space_options_from_choices(choices))
    latency = LatencySettings(
        backend=getattr(args, "latency_backend", None) or "onnxruntime",
        mode=getattr(args, "latency_mode", None) or "measure",
        threads=_or(getattr(args, "latency_threads", None), 1),
        runs=_or(getattr(args, "latency_runs", None), 50),
        warmup=_or(getattr(args, "latency_warmup", None), 10),
        device=getattr(args, "device", None),
        cache=getattr(args, "latency_cache", None),
    )
    setup = MnasSearchSetup(spec, dataset, preset, choices, space, proxy, latency)
    args._mnas_setup = setup
    return setup


def _or(value: Any, default: Any) -> Any:
    return default if value is None else value


# ---- `edgenas search --space mnas` ----------------------------------------------------------------
def add_options(parser: Any) -> None:
    """The mnas flags; defaults are None so that flags shared with other plugins stay neutral."""
    add_proxy_options(parser)
    parser.add_argument("--space-preset", default=None, choices=sorted(SPACE_PRESETS),
                        help="mnas: full MnasNet space, or the narrowed demo space (default full)")
    parser.add_argument("--space-option", action="append", default=None, metavar="KEY=V1,V2",
                        help=f"mnas: override a choice list ({', '.join(_CHOICE_TYPES)}), e.g. kernels=3,5 (repeatable)")
    parser.add_argument("--latency-backend", default=None,
                        help=f"mnas: {' | '.join(LATENCY_BACKENDS)} (default onnxruntime, this machine)")
    parser.add_argument("--latency-mode", default=None, choices=LATENCY_MODES,
                        help="mnas: measure each network end to end (cached), or predict from the per-layer LUT")
    parser.add_argument("--latency-threads", type=int, default=None, help="mnas: runtime threads (default 1)")
    parser.add_argument("--latency-runs", type=int, default=None, help="mnas: timed runs per measurement (default 50)")
    parser.add_argument("--latency-warmup", type=int, default=None, help="mnas: warm-up runs (default 10)")
    parser.add_argument("--latency-cache", default=None,
                        help="mnas: latency cache file (default $EDGENAS_CACHE_DIR or ~/.cache/edgenas/latency.sqlite)")


def _make_space(args: argparse.Namespace) -> MnasSpace:
    return setup_from_args(args).space


def _make_evaluator(args: argparse.Namespace, space: Any, executor: Executor | None = None) -> ProxyTrainingEvaluator:
    return setup_from_args(args).make_evaluator(executor)


def _config(args: argparse.Namespace) -> dict[str, Any]:
    return setup_from_args(args).config()


def _register() -> None:
    from edgenas.search.loop import EvaluatorPlugin, register_evaluator

    register_evaluator(EvaluatorPlugin(
        "mnas", make=_make_evaluator, add_options=add_options, config=_config, make_space=_make_space,
    ))


_register()
