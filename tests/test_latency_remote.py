"""adb and ssh: the real transport code against stand-in `adb`/`ssh`/`scp` executables on PATH,
and the benchmark_model parser on the real tool's output text."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from edgenas.latency.backends import get_backend
from edgenas.latency.backends.base import TimingItem, TimingJob
from edgenas.latency.backends.benchmark_output import parse_benchmark_output
from edgenas.latency.errors import LatencyError
from edgenas.latency.protocol import Measurer
from edgenas.spaces.mobilenet import NetworkConfig, build_network
from latency_helpers import FAST, TINY_ARCH, TINY_SHAPE, converted_tflite, need_litert


@pytest.fixture
def tflite_file(tmp_path_factory):
    return converted_tflite(tmp_path_factory)

STANDINS = Path(__file__).with_name("standins")

# Verbatim output of TFLite's benchmark_model in three generations of the tool.
OLD_OUTPUT = """\
count=50 first=249042 curr=250889 min=247067 max=254474 avg=249684 std=1442
Inference timings in us: Init: 16242, First inference: 360262, Warmup (avg): 304586, Inference (avg): 249684
Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE to the actual memory footprint of the model at runtime. Take the information at your discretion.
Peak memory footprint (MB): init=4.92969 overall=138.809
"""
SCIENTIFIC_OUTPUT = """\
Initialized session in 17.187ms.
Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
count=1 curr=3512391

Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
count=50 first=2990275 curr=2913402 min=2727568 max=3189954 avg=2.95034e+06 std=109798

Inference timings in us: Init: 17187, First inference: 3512391, Warmup (avg): 3.51239e+06, Inference (avg): 2.95034e+06
"""
NEW_OUTPUT = """\
   INFO: Initialized session in 5.579ms.
   INFO: Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
   INFO: count=1 curr=1357602 p5=1357602 median=1357602 p95=1357602

   INFO: Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
   INFO: count=50 first=1249964 curr=1240143 min=1238588 max=1252566 avg=1.24027e+06 std=2565 p5=1238753 median=1239807 p95=1247415

   INFO: Inference timings in us: Init: 5579, First inference: 1357602, Warmup (avg): 1.3576e+06, Inference (avg): 1.24027e+06
"""
LOGCAT_OUTPUT = "I tflite  : Inference timings in us: Init: 92318, First inference: 187533, Warmup (avg): 211669, Inference (avg): 145528\n"


def test_parser_reads_each_generation_of_benchmark_model():
    old = parse_benchmark_output(OLD_OUTPUT)
    assert (old.init_us, old.avg_us, old.count, old.std_us, old.median_us) == (16242, 249684, 50, 1442, None)
    assert old.typical_ms == pytest.approx(249.684)
    scientific = parse_benchmark_output(SCIENTIFIC_OUTPUT)
    assert scientific.avg_us == pytest.approx(2.95034e6) and scientific.min_us == 2727568
    assert scientific.count == 50  # the timed run, not the warm-up's count=1
    new = parse_benchmark_output(NEW_OUTPUT)
    assert new.median_us == 1239807 and new.p95_us == 1247415 and new.typical_ms == pytest.approx(1239.807)
    assert parse_benchmark_output(LOGCAT_OUTPUT).warmup_avg_us == 211669


def test_parser_quotes_the_tool_when_it_failed():
    with pytest.raises(LatencyError, match="Failed to initialize the interpreter"):
        parse_benchmark_output("ERROR: Could not open 'x.tflite'.\nERROR: Failed to initialize the interpreter\n")


@pytest.fixture
def standins(tmp_path, monkeypatch):
    """The stand-ins first on PATH; the phone's file system is a temporary folder."""
    monkeypatch.setenv("PATH", f"{STANDINS}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("EDGENAS_STANDIN_PYTHON", sys.executable)
    monkeypatch.setenv("EDGENAS_STANDIN_ROOT", str(tmp_path / "phone"))
    monkeypatch.setenv("EDGENAS_STANDIN_DEVICES", "phone-1")
    return tmp_path / "phone"


def install_benchmark_model(root: Path) -> None:
    binary = root / "data/local/tmp/benchmark_model"
    binary.parent.mkdir(parents=True)
    binary.write_text("stand-in binary")


def test_adb_without_device_or_binary_says_what_to_do(standins, monkeypatch):
    need_litert()
    monkeypatch.setenv("EDGENAS_STANDIN_DEVICES", "")
    status = get_backend("adb").status()
    assert not status.usable and status.reason == "no adb device is attached" and "adb devices" in status.fix
    monkeypatch.setenv("EDGENAS_STANDIN_DEVICES", "phone-1")
    status = get_backend("adb").status()
    assert not status.usable and "benchmark_model is missing" in status.reason and "adb push" in status.fix
    assert not get_backend("adb", serial="other").status().usable


def test_adb_pushes_and_runs_benchmark_model_pinned(standins, tflite_file, tmp_path):
    _, path = tflite_file
    reference = tmp_path / "reference.tflite"
    reference.write_bytes(path.read_bytes())
    install_benchmark_model(standins)
    backend = get_backend("adb", core_mask="f0", rounds=2)
    status = backend.require()
    assert status.device == "adb:Standin Phone:phone-1:maskf0" and "Android 14" in status.runtime
    job = TimingJob([TimingItem(path, TINY_SHAPE)], TimingItem(reference, TINY_SHAPE), warmup=1, runs=4)
    [raw] = list(backend.run(job))
    assert raw.error is None and len(raw.candidate_ms) == 2 and len(raw.reference_ms) == 2
    assert all(t > 0 for t in raw.candidate_ms) and raw.where == "adb phone-1 taskset f0"
    assert list((standins / "data/local/tmp/edgenas").iterdir()) == []  # the phone is left clean


def test_adb_pins_one_core_by_default_the_phones_highest(standins, tflite_file, monkeypatch):
    """No --core-mask: one core, the highest-numbered the phone lists (a big core on big.LITTLE),
    named in the status; benchmark_model runs under exactly that mask."""
    from edgenas.latency.backends.adb import mask_cores

    _, path = tflite_file
    install_benchmark_model(standins)
    backend = get_backend("adb", rounds=1)
    status = backend.require()
    assert mask_cores(backend.core_mask) == [7]  # the stand-in phone has cpus 0-7
    assert status.device == "adb:Standin Phone:phone-1:mask80"
    assert "pinned to cpu 7 (taskset mask 80)" in status.description
    [raw] = list(backend.run(TimingJob([TimingItem(path, TINY_SHAPE)], None, warmup=1, runs=2)))
    assert raw.error is None and raw.where == "adb phone-1 taskset 80"
    assert set((standins / "taskset.log").read_text().split()) == {"80"}

    # Other phones: a quad core; no readable sysfs list (then nproc); neither (then cpu 7).
    for cpus, nproc, core in (("0-3", None, 3), ("0-1,2-5", None, 5), ("", "6", 5), ("", "", 7)):
        monkeypatch.setenv("EDGENAS_STANDIN_CPUS", cpus)
        if nproc is None:
            monkeypatch.delenv("EDGENAS_STANDIN_NPROC", raising=False)
        else:
            monkeypatch.setenv("EDGENAS_STANDIN_NPROC", nproc)
        backend = get_backend("adb")
        status = backend.require()
        assert mask_cores(backend.core_mask) == [core], (cpus, nproc, backend.core_mask)
        assert f"pinned to cpu {core} " in status.description


def test_adb_core_mask_is_configurable_and_checked(standins, monkeypatch):
    need_litert()
    install_benchmark_model(standins)
    status = get_backend("adb", core_mask="c0").require()
    assert status.device.endswith(":maskc0") and "pinned to cpus 6,7 (taskset mask c0)" in status.description
    status = get_backend("adb", core_mask="zz").status()
    assert not status.usable and "names no core" in status.reason and "--core-mask" in status.fix


def test_adb_reports_a_failing_benchmark_as_a_recorded_error(standins, tmp_path):
    need_litert()
    install_benchmark_model(standins)
    bogus = tmp_path / "bogus.tflite"
    bogus.write_bytes(b"")
    [raw] = list(get_backend("adb").run(TimingJob([TimingItem(bogus, TINY_SHAPE)], None, warmup=1, runs=2)))
    assert not raw.candidate_ms and "adb shell failed" in raw.error
    assert "Failed to initialize the interpreter" in raw.error


def test_ssh_copies_onnx_and_times_it_with_the_remote_python(standins, tmp_path):
    backend = get_backend("ssh", host="pi@localhost", python=sys.executable, remote_dir=str(tmp_path / "board"))
    status = backend.require()
    assert status.device.startswith("ssh:pi@localhost:") and status.runtime.startswith("onnxruntime ")
    model = build_network(TINY_ARCH, NetworkConfig(num_classes=10, stem_stride=1), 32).eval()
    measurer = Measurer(backend, FAST)
    try:
        result = measurer.measure(model, TINY_SHAPE, "tiny", reference="layer")
    finally:
        measurer.close()
    assert result.backend == "ssh" and result.where.startswith("ssh pi@localhost pid")
    assert result.clock == "cpu" and result.reference_ratio > 0 and result.calibrated_ms > 0
    assert list((tmp_path / "board").iterdir()) == []  # the board is left clean


def test_ssh_board_times_lut_layers_in_passes(standins, tmp_path):
    """The board runs the same timing code, so LUT layers are timed there in passes too."""
    backend = get_backend("ssh", host="pi@localhost", python=sys.executable, remote_dir=str(tmp_path / "board"))
    model = build_network(TINY_ARCH, NetworkConfig(num_classes=10, stem_stride=1), 32).eval()
    measurer = Measurer(backend, FAST)
    try:
        entries = [(model, TINY_SHAPE, "a"), (model, TINY_SHAPE, "b")]
        results = dict(measurer.measure_many(entries, reference="layer", retries=0, in_passes=True))
    finally:
        measurer.close()
    assert sorted(results) == [0, 1]
    for result in results.values():
        assert not isinstance(result, Exception), result
        assert "in passes" in result.where and result.calibrated_ms > 0


def test_unreachable_ssh_host_is_unusable_with_the_reason(standins):
    status = get_backend("ssh", host="board.invalid", python=sys.executable).status()
    assert not status.usable and "cannot reach board.invalid" in status.reason
    with pytest.raises(LatencyError, match="cannot reach board.invalid"):
        get_backend("ssh", host="board.invalid").require()
