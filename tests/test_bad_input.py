"""Bad input across every command: one line on stderr naming the problem (and the fix), exit
status 2, no traceback, nothing written. The table in docs/reliability.md lists these cases."""

from __future__ import annotations

import pytest

from conftest import run_cli
from edgenas.util.lock import WriterLock

NB201 = "{nb201}"
OUT = "{out}"
SEARCH = ["search", "--budget", "3", "--out", OUT]
MNAS = [*SEARCH, "--space", "mnas", "--strategy", "random", "--space-preset", "demo", "--dataset", "digits"]
NB = [*SEARCH, "--space", "nb201", "--strategy", "random", "--data-dir", NB201]

# (case, argv, a phrase the one line must contain)
CASES = [
    ("unknown space", [*SEARCH, "--space", "nope", "--strategy", "random"], "unknown search space"),
    ("unknown strategy", [*NB[:-4], "--space", "nb201", "--strategy", "nope", "--data-dir", NB201], "unknown strategy"),
    ("objective without target", [*NB, "--objective", "mnas-soft"], "needs a latency target"),
    ("negative target", [*NB, "--objective", "mnas-soft", "--target-ms", "-1"], "must be positive"),
    ("zero budget", ["search", "--space", "nb201", "--strategy", "random", "--budget", "0", "--out", OUT],
     "--budget must be at least 1"),
    ("missing tables", [*SEARCH, "--space", "nb201", "--strategy", "random", "--data-dir", "{tmp}/none"],
     "does not exist"),
    ("unknown nb201 dataset", [*NB, "--dataset", "mnist"], "unknown NAS-Bench-201 dataset"),
    ("malformed strategy option", [*NB, "--strategy-option", "lr"], "is not KEY=VALUE"),
    ("bad space option", [*MNAS, "--space-option", "kernels="], "lists no values"),
    ("unknown latency backend", [*MNAS, "--latency-backend", "nope"], "unknown latency backend"),
    ("--device with a local backend", [*MNAS, "--device", "phone1"], "names a remote device"),
    ("unknown dataset", [*MNAS[:-1], "mnist"], "mnist"),
    ("malformed architecture", ["model", "info", "ir_r1_kx_s1"], "ir_r1_kx_s1"),
    ("architecture too deep", ["latency", "measure", *["ir_r1_k3_s2_e6_c16"] * 6, "--resolution", "16"],
     "total stride"),
    ("zero layer passes", ["latency", "lut", "build", "--cache", "{tmp}/c.sqlite", "--layer-passes", "0"],
     "--layer-passes must be at least 1"),
    ("no converting process", ["latency", "lut", "build", "--cache", "{tmp}/c.sqlite", "--prepare-workers", "0"],
     "--prepare-workers must be at least 1"),
    ("zero calibration", ["latency", "lut", "build", "--cache", "{tmp}/c.sqlite", "--calibration", "0"],
     "--calibration must be at least 1"),
    ("kept files in a file", ["latency", "lut", "build", "--cache", "{out}/c.sqlite", "--keep-converted",
                              "{corrupt}/store.sqlite"], "is a file, not a folder"),
    ("held-out target above 1", ["latency", "lut", "build", "--cache", "{tmp}/c.sqlite", "--target", "1.5"],
     "--target"),
    ("one held-out network", ["latency", "lut", "build", "--cache", "{tmp}/c.sqlite", "--held-out", "1"],
     "at least 2 networks"),
    ("DARTS supernet too shallow", ["darts", "search", "--dataset", "digits8", "--layers", "2", "--out", OUT],
     "at least 3 cells"),
    ("malformed genotype", ["darts", "train", "normal=bogus", "--dataset", "digits8", "--epochs", "1",
                            "--out", OUT], "normal cell"),
    ("final training on missing data", ["train", "ds_r1_k3_s1_c8", "--dataset", "cifar10:{tmp}/none",
                                        "--out", OUT], "{tmp}/none"),
    ("export of nothing", ["export", "{tmp}/none"], "does not exist"),
    ("report of nothing", ["runs", "show", "{tmp}/none"], "no search run"),
    ("corrupt store", ["runs", "show", "{corrupt}"], "not a readable edgenas store"),
]


def _fill(argv, tmp_path, nb201):
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir(exist_ok=True)
    (corrupt / "store.sqlite").write_bytes(b"not a database, just bytes " * 40)
    values = {"{out}": str(tmp_path / "out"), "{tmp}": str(tmp_path), "{nb201}": str(nb201),
              "{corrupt}": str(corrupt)}
    filled = []
    for arg in argv:
        for key, value in values.items():
            arg = arg.replace(key, value)
        filled.append(arg)
    return filled


def _check_one_line(code, err, phrase):
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("edgenas"), err
    assert "Traceback" not in err and phrase in lines[0], err


@pytest.mark.parametrize("case, argv, phrase", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(case, argv, phrase, tmp_path, nb201_dir, capsys):
    code, _out, err = run_cli(_fill(argv, tmp_path, nb201_dir), capsys)
    _check_one_line(code, err, _fill([phrase], tmp_path, nb201_dir)[0])
    assert not (tmp_path / "out").exists(), f"{case}: wrote {list((tmp_path / 'out').iterdir())}"


SECOND_WRITERS = [
    ("search", [*NB, "--budget", "3"]),
    ("DARTS search", ["darts", "search", "--dataset", "digits8", "--layers", "3", "--channels", "4",
                      "--limit", "100", "--batch-size", "16", "--epochs", "1", "--out", OUT, "--no-progress"]),
]


@pytest.mark.parametrize("case, argv", SECOND_WRITERS, ids=[c[0] for c in SECOND_WRITERS])
def test_a_second_writer_is_refused_with_one_line(case, argv, tmp_path, nb201_dir, capsys):
    out = tmp_path / "out"
    with WriterLock.for_directory(out, "test"):  # another writer holds the run (flock is per open file)
        code, _out, err = run_cli(_fill(argv, tmp_path, nb201_dir), capsys)
    _check_one_line(code, err, "being written by another process")
    assert sorted(p.name for p in out.iterdir()) == [".edgenas.lock"]  # nothing of the run written


def test_a_second_lut_build_on_one_cache_is_refused(tmp_path, capsys):
    cache = tmp_path / "c.sqlite"
    with WriterLock(tmp_path / "c.sqlite.lut-build.lock", "test"):
        code, _out, err = run_cli(["latency", "lut", "build", "--cache", str(cache), "--resolution", "32",
                                   "--classes", "10", "--sample", "1"], capsys)
    _check_one_line(code, err, "being written by another process")
