"""`edgenas train` then `edgenas export`: a real (tiny) training run writes a checkpoint that
rebuilds the network, the exported ONNX file computes what PyTorch computes, and bad input is
one line with exit status 2 and nothing written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import run_cli
from edgenas.cli.main import main
from edgenas.training.final import load_checkpoint

TINY = "ds_r1_k3_s2_c8 ir_r1_k3_s2_e3_c16"
PROJECT = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny trainings on one thread


def _run(args, capsys):
    return run_cli(args, capsys)


def _one_line_error(code, err, message):
    assert code == 2, err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("train") / "model"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        code = main(["train", *TINY.split(), "--dataset", "digits", "--epochs", "1", "--subset", "256",
                     "--batch-size", "64", "--out", str(out), "--quiet", "--json"])
    finally:
        torch.set_num_threads(threads)
    assert code == 0
    return out


def test_train_writes_a_checkpoint_that_rebuilds_the_network(trained):
    summary = json.loads((trained / "train.json").read_text())
    assert summary["arch"] == TINY and summary["resolution"] == 28
    assert summary["num_classes"] == 10 and summary["in_channels"] == 1
    assert summary["train_images"] == 256 and summary["test_images"] == 1000
    assert 0.0 <= summary["test_accuracy"] <= 1.0 and summary["train"]["epochs"] == 1
    model, recipe = load_checkpoint(trained)
    saved = torch.load(trained / "model.pt", weights_only=True)["state_dict"]
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, saved[name]), name
    assert recipe["params"] == sum(p.numel() for p in model.parameters())
    assert not any(p.name.endswith(".partial") for p in trained.iterdir())


def test_export_onnx_matches_pytorch(trained, capsys):
    code, out, err = _run(["export", trained, "--format", "onnx"], capsys)
    assert code == 0, err
    path = trained / "model.onnx"
    assert f"wrote {path}" in out and "max abs diff" in out
    # An independent check on a new input: ONNX Runtime against the rebuilt PyTorch model.
    import onnxruntime as ort

    model, _ = load_checkpoint(trained)
    x = torch.randn(4, 1, 28, 28, generator=torch.Generator().manual_seed(123))
    with torch.no_grad():
        expected = model(x).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = np.concatenate([session.run(None, {session.get_inputs()[0].name: x[i:i + 1].numpy()})[0]
                          for i in range(4)])
    assert np.abs(got - expected).max() < 1e-4
    assert np.abs(expected).max() > 1e-3  # a real output, not all zeros


def test_export_tflite_without_litert_names_the_extra(trained, tmp_path):
    # A stand-in package directory where `litert_torch` cannot be imported, as on a machine
    # without the extra.
    standin = tmp_path / "no_litert"
    standin.mkdir()
    (standin / "litert_torch.py").write_text("raise ImportError('litert-torch is not installed')\n")
    env = dict(os.environ, PYTHONPATH=f"{standin}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    done = subprocess.run([sys.executable, "-m", "edgenas.cli.main", "export", str(trained), "--format", "tflite"],
                          capture_output=True, text=True, env=env, cwd=PROJECT, timeout=120)
    _one_line_error(done.returncode, done.stderr, "pip install 'edgenas[litert]'")
    assert not (trained / "model.tflite").exists()


def test_bad_input_exits_2_with_one_line(trained, tmp_path, capsys):
    # Too deep for 28x28: five stride-2 stages after a stride-1 stem need at least 32 px.
    deep = "ds_r1_k3_s2_c8 ds_r1_k3_s2_c8 ds_r1_k3_s2_c8 ds_r1_k3_s2_c8 ds_r1_k3_s2_c8"
    out = tmp_path / "deep"
    code, _, err = _run(["train", *deep.split(), "--epochs", "1", "--subset", "64", "--out", out], capsys)
    _one_line_error(code, err, "total stride 32")
    assert not out.exists()
    code, _, err = _run(["train", "ir_r1_k3", "--out", out], capsys)
    assert code == 2 and "Traceback" not in err and not out.exists()
    code, _, err = _run(["train", TINY, "--space-preset", "demo", "--out", out], capsys)
    _one_line_error(code, err, "the mnas space has 4 blocks")
    code, _, err = _run(["train", TINY, "--dataset", "cifar10-jpeg", "--data-dir", tmp_path / "none", "--out", out], capsys)
    _one_line_error(code, err, str(tmp_path / "none"))
    assert not out.exists()

    before = (trained / "model.pt").read_bytes()
    code, _, err = _run(["train", TINY, "--out", trained], capsys)
    _one_line_error(code, err, "already exists")
    assert (trained / "model.pt").read_bytes() == before

    code, _, err = _run(["export", tmp_path / "empty"], capsys)
    _one_line_error(code, err, "model.pt does not exist")
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "model.pt").write_bytes(b"not a checkpoint")
    code, _, err = _run(["export", corrupt], capsys)
    _one_line_error(code, err, str(corrupt / "model.pt"))
    code, _, err = _run(["export", trained, "--format", "coreml"], capsys)
    _one_line_error(code, err, "unknown export format")
    code, _, err = _run(["export", trained, "--output", tmp_path / "model.bin"], capsys)
    _one_line_error(code, err, "must end in .onnx")


# ---- the library under the commands ----------------------------------------------------------------

def test_make_loaders_follows_one_rule_for_every_run():
    from edgenas.data import Augment, load_dataset
    from edgenas.training.loaders import make_loaders

    data = load_dataset("digits8").subset(100, seed=0)
    loaders = make_loaders(data, data, 32, 64, augment=Augment(crop_padding=1), device="cpu", seed=3,
                           channels_last=True)
    assert len(loaders.train) == 3 and loaders.train.seed == 3  # drop_last: more than one batch of images
    assert loaders.bn.seed == 4 and len(loaders.bn) == 4 and loaders.bn.augment == Augment()
    assert not loaders.eval.shuffle and loaders.eval.batch_size == 64
    assert loaders.bn.mean == loaders.eval.mean == loaders.train.mean
    small = make_loaders(data, data, 200, 64, augment=Augment(), device="cpu", seed=0, channels_last=False,
                         recalibrate=False)
    assert len(small.train) == 1 and small.bn is None  # one partial batch is kept when it is all there is


def test_train_final_then_write_and_load_round_trip(tmp_path):
    from edgenas.data import Augment, load_dataset
    from edgenas.training import TrainConfig
    from edgenas.training.final import train_final, write_checkpoint

    data = load_dataset("digits8")
    train_data, test_data = data.subset(128, seed=0), data.subset(64, seed=1)
    model, recipe = train_final(TINY, train_data, test_data, TrainConfig(epochs=1, batch_size=32),
                                augment=Augment(), device="cpu", bn_batches=2, progress=False)
    assert recipe["resolution"] == 8 and recipe["bn_recalibration_batches"] == 2
    assert recipe["dataset"] == train_data.name and not model.training
    write_checkpoint(tmp_path / "run", model, recipe)
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["model.pt", "train.json"]
    loaded, saved = load_checkpoint(tmp_path / "run")
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert saved == json.loads((tmp_path / "run" / "train.json").read_text())


def test_a_failed_onnx_export_leaves_no_file(tmp_path, monkeypatch):
    from edgenas.export import ExportError, export_onnx

    def half_written(model, example, path, **kwargs):
        Path(path).write_bytes(b"half")
        raise RuntimeError("exporter broke")

    monkeypatch.setattr(torch.onnx, "export", half_written)
    with pytest.raises(ExportError, match="exporter broke"):
        export_onnx(torch.nn.Conv2d(1, 2, 3), (1, 1, 8, 8), tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []
