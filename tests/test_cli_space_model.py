"""CLI: `space show|sample`, `model preset|info`, and one-line errors with exit status 2."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from edgenas.cli.main import main
from edgenas.spaces import get_space


def run(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exit_:  # argparse usage errors
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


def test_space_show_json(capsys):
    code, out, _ = run(capsys, "space", "show", "mnas", "--json")
    assert code == 0
    summary = json.loads(out)
    assert len(summary["decisions"]) == 42
    assert summary["size"] == get_space("mnas").size()


def test_space_sample_is_seeded_and_parseable(capsys):
    _, first, _ = run(capsys, "space", "sample", "mnas", "-n", "3", "--seed", "5", "--resolution", "32")
    _, again, _ = run(capsys, "space", "sample", "mnas", "-n", "3", "--seed", "5", "--resolution", "32")
    lines = first.strip().splitlines()
    assert first == again and len(lines) == 3
    space = get_space("mnas", resolution=32)
    for arch in lines:
        space.indices_from_arch(arch)


def test_model_info_json_counts(capsys):
    code, out, _ = run(capsys, "model", "info", "mobilenetv2_100", "--json")
    info = json.loads(out)
    assert code == 0
    assert info["params"] == 3_504_872
    assert isinstance(info["macs"], int) and abs(info["macs"] / 300e6 - 1) < 0.03
    assert sum(stage["params"] for stage in info["stages"]) == info["params"]
    assert sum(stage["macs"] for stage in info["stages"]) == info["macs"]


def test_model_preset_prints_string(capsys):
    code, out, _ = run(capsys, "model", "preset", "mnasnet_a1")
    assert code == 0 and out.startswith("ds_r1_k3_s1_c16_noskip ")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("model", "info", "ir_r1_k3_s1_c16"), "expansion"),
        (("model", "preset", "resnet50"), "unknown preset"),
        (("model", "info", "mnasnet_a1", "--resolution", "16", "--stem-stride", "2"), "total stride 32"),
        (("model", "info", "mnasnet_a1", "--classes", "0"), "classes"),
        (("model", "info", "mnasnet_a1", "--classes", "-3"), "classes"),
        (("space", "show", "nosuchspace"), "unknown search space"),
        (("space", "sample", "mnas", "-n", "0"), "-n must be"),
        (("space", "sample", "mnas", "-n", "x"), "invalid int"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert err.count("\n") == 1 and message in err
    assert "Traceback" not in err


def test_cli_as_a_process_has_no_traceback():
    done = subprocess.run(
        [sys.executable, "-m", "edgenas.cli.main", "model", "info", "ir_r1_k3_s9_e6"],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("edgenas: error: stage 1") and "Traceback" not in done.stderr
