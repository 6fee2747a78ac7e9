"""`edgenas latency ...`: JSON contracts, and bad input as one line with exit status 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from edgenas.cli.main import main

ARCH = ["ds_r1_k3_s1_c16", "ir_r1_k3_s2_e3_c24"]


def run_cli(args, capsys):
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_backends_json_lists_each_with_reason(capsys):
    code, out, _ = run_cli(["latency", "backends", "--json"], capsys)
    backends = {b["name"]: b for b in json.loads(out)["backends"]}
    assert code == 0 and set(backends) == {"onnxruntime", "torch", "litert", "adb", "ssh"}
    assert backends["onnxruntime"]["usable"] is True
    assert backends["ssh"]["usable"] is False and "--host" in backends["ssh"]["fix"]


def test_measure_json_has_the_contract_fields(tmp_path, capsys):
    args = ["latency", "measure", *ARCH, "--resolution", "32", "--classes", "10", "--runs", "5",
            "--warmup", "1", "--cache", str(tmp_path / "c.sqlite"), "--json"]
    code, out, _ = run_cli(args, capsys)
    result = json.loads(out)
    assert code == 0
    for key in ("median_ms", "p10_ms", "p90_ms", "runs", "backend", "device", "reference_ratio", "calibrated_ms"):
        assert key in result
    assert result["backend"] == "onnxruntime" and result["runs"] >= 5 and result["source"] == "measured"
    code, out, _ = run_cli(args, capsys)
    assert json.loads(out)["source"] == "cache"  # measured once, then read back


@pytest.mark.parametrize("args, message", [
    (["latency", "measure", *ARCH, "--backend", "tpu"], "unknown latency backend 'tpu'"),
    (["latency", "measure", "xx_r1_k3_s1_c16"], "unknown block type 'xx'"),
    (["latency", "measure", *ARCH, "--backend", "ssh", "--host", "board.invalid"], "cannot reach board.invalid"),
    (["latency", "lut", "validate", "--space", "darts", "-n", "2"], "mnas space only"),
    (["latency", "lut", "validate", "-n", "1"], "-n must be at least 2"),
    (["latency", "lut", "validate", "-n", "2", "--repeat", "3"], "--repeat must be between 0 and -n (2)"),
    (["latency", "lut", "build", "--layer-passes", "0"], "--layer-passes must be at least 1"),
    (["latency", "lut", "build", "--calibration", "0"], "--calibration must be at least 1"),
])
def test_bad_input_is_one_line_and_status_2(args, message, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("EDGENAS_CACHE_DIR", str(tmp_path))
    code, out, err = run_cli(args, capsys)
    assert code == 2 and message in err and err.count("\n") == 1 and "Traceback" not in err


def test_missing_extra_names_the_pip_install(tmp_path):
    """A Python where the litert extra cannot be found: the error says what to install."""
    script = ("import importlib.metadata as m; real = m.version\n"
              "def fake(name):\n"
              "    if name in ('ai-edge-litert', 'litert-torch'): raise m.PackageNotFoundError(name)\n"
              "    return real(name)\n"
              "m.version = fake\n"
              "from edgenas.latency.backends import get_backend\n"
              "get_backend('litert').require()\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=dict(os.environ, EDGENAS_CACHE_DIR=str(tmp_path)))
    assert done.returncode != 0
    assert "LatencyError: backend 'litert' is not usable" in done.stderr
    assert "pip install 'edgenas[litert]'" in done.stderr


def test_lut_build_keeps_converted_files_and_a_rebuild_into_a_new_cache_reuses_them(tmp_path, capsys):
    """`--keep-converted DIR` reaches the build: the first build keeps a file per layer, calibration
    network and the reference; a second build into an empty cache times all of them again (every
    layer timed now) without writing one new file."""
    kept = tmp_path / "kept"
    common = ["--space", "mnas", "--resolution", "32", "--classes", "10", "--runs", "3", "--warmup", "1",
              "--min-seconds", "0", "--sample", "1", "--calibration", "2", "--held-out", "0",
              "--keep-converted", str(kept), "--json"]
    code, out, err = run_cli(["latency", "lut", "build", *common, "--cache", str(tmp_path / "a.sqlite")], capsys)
    first = json.loads(out)
    assert code == 0, err
    files = {p: p.stat().st_mtime_ns for p in kept.rglob("*.onnx")}
    assert first["kept_files"] == str(kept) and len(files) > first["timed_now"] > 0
    code, out, err = run_cli(["latency", "lut", "build", *common, "--cache", str(tmp_path / "b.sqlite")], capsys)
    second = json.loads(out)
    assert code == 0, err
    assert second["timed_now"] == first["timed_now"]  # an empty cache: every layer timed again
    assert {p: p.stat().st_mtime_ns for p in kept.rglob("*.onnx")} == files
    assert second["kept_files_reused"] == len(files)


def test_lut_build_then_validate_json_contract(tmp_path, capsys):
    """`lut build` times the layers and fits the correction (refitting it on every build, from
    cached measurements); `lut validate --json` carries the issue's fields, and the small LUT it
    judges is a working one; `--repeat K` measures K networks afresh and twice.

    Floors, from what this shared 2-core machine gave (load 1-3.5, mnas at 48 px, 6 networks, 7 runs
    of this test and of the same commands by hand): Kendall's tau 0.73-1.0, within +-10 % 0.33-0.83,
    mean error 6-14 %. On the same pairs the raw layer sum (no correction) was 0 % within +-10 %
    (mean error 37-40 %); a constant has no tau (NaN fails the floor). A LUT this small (4
    calibration networks) on a busy machine does not do better; test_latency_lut.py holds the
    tighter floors.
    """
    common = ["--space", "mnas", "--resolution", "48", "--classes", "10", "--runs", "3", "--warmup", "1",
              "--min-seconds", "0", "--cache", str(tmp_path / "c.sqlite")]
    code, out, err = run_cli(["latency", "lut", "build", *common, "--sample", "2", "--calibration", "3",
                              "--held-out", "0", "--json"], capsys)
    built = json.loads(out)
    assert code == 0, err
    assert built["lut_entries"] >= built["layers"] > 0 and built["timed_now"] == built["layers"]
    assert built["correction"]["n"] == 3 and built["held_out"] is None
    assert built["prepare_workers"] == 1  # ONNX files are quick to write: converted in the build's own process

    # the second build judges its fit on 3 held-out networks; a budget of 0 s allows one round
    code, out, err = run_cli(["latency", "lut", "build", *common, "--sample", "2", "--calibration", "4",
                              "--held-out", "3", "--check-budget", "0", "--json"], capsys)
    again = json.loads(out)
    assert code == 0 and again["timed_now"] == 0 and again["correction"]["n"] == 4, err
    check = again["held_out"]
    assert check["n"] == 3 and check["rounds"] == 1 and check["calibration_archs"] == 4
    assert check["ended"] == ("target reached" if check["within_tolerance"] >= 0.99 else "budget spent")
    assert "round 1: 4 calibration networks" in err
    # each phase of a round is announced before it starts (a LiteRT round takes many minutes)
    assert err.index("round 1: fitting on 4 calibration") < err.index("round 1: judging on 3 held-out") \
        < err.index("round 1: 4 calibration networks")

    validate = ["latency", "lut", "validate", *common, "-n", "6", "--calibration", "4", "--json"]
    code, out, err = run_cli(validate, capsys)
    report = json.loads(out)
    assert code == 0, err
    assert report["n"] == 6 == len(report["pairs"]) and report["calibration_archs"] == 4
    assert report["kendall_tau"] >= 0.4, report
    assert report["within_10pct"] >= 0.15 and report["mean_abs_pct"] <= 25, report
    assert "repeatability" not in report
    cached = [p["measured_ms"] for p in report["pairs"]]

    # --repeat 2: the first two networks measured afresh (not read from the cache; timings never
    # repeat to the last bit), the others read from it; then the two measured again after all six,
    # and that second figure not stored over the first (a later validation reads the first)
    code, out, err = run_cli([*validate, "--repeat", "2"], capsys)
    repeated = json.loads(out)
    measured = [p["measured_ms"] for p in repeated["pairs"]]
    again = repeated["repeatability"]
    assert code == 0 and again["n"] == 2, err
    assert all(m != c for m, c in zip(measured[:2], cached[:2])) and measured[2:] == cached[2:]
    assert again["first_ms"] == measured[:2] and all(s != f for s, f in zip(again["second_ms"], measured[:2]))
    code, out, err = run_cli(validate, capsys)
    assert code == 0 and [p["measured_ms"] for p in json.loads(out)["pairs"]] == measured, err
