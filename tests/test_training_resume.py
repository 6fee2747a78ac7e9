"""Final training resumes: `edgenas train` and `edgenas darts train` keep a per-epoch resume
checkpoint (DIR/resume.pt), a run stopped after any epoch (in process, or by a storm of SIGKILLs)
ends with the same weights as an uninterrupted run, bit for bit; a second writer and another run's
resume checkpoint are refused with one line and exit status 2. All tiny, one thread."""

from __future__ import annotations

import json
import subprocess
import time

import pytest
import torch

from conftest import run_cli
from edgenas.training.resume import EpochCheckpoint
from killstorm import EDGENAS, ENV, KILLS, kill_storm, run

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny trainings on one thread

ARCH = "ds_r1_k3_s1_c8 ir_r1_k3_s2_e3_c16"
EPOCHS = 12  # 6 steps each: enough for KILLS kills, each after one more finished epoch


def _train(out, epochs=EPOCHS, *extra):
    return ["train", *ARCH.split(), "--dataset", "digits8", "--subset", "200", "--batch-size", "32",
            "--epochs", epochs, "--out", out, "--quiet", *extra]


class _Stop(Exception):
    """Raised right after the resume checkpoint of a chosen epoch is written: a stop between epochs."""


def _stop_after(monkeypatch, epochs: int) -> None:
    original = EpochCheckpoint.save

    def save(self, state):
        path = original(self, state)
        if state["epoch"] >= epochs:
            raise _Stop
        return path

    monkeypatch.setattr(EpochCheckpoint, "save", save)


def _weights(path, key="state_dict") -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)[key]


def _assert_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, different


def _epochs_done(out) -> int:
    """Epochs the run in `out` has finished (its resume checkpoint; all of them once it is done)."""
    if (out / "model.pt").exists() and not (out / "resume.pt").exists():
        return EPOCHS
    try:
        return int(torch.load(out / "resume.pt", weights_only=True)["epoch"])
    except (OSError, RuntimeError, KeyError, EOFError):
        return 0


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """One uninterrupted `edgenas train` run, in process (one thread, as the storm's subprocesses)."""
    from edgenas.cli.main import main

    out = tmp_path_factory.mktemp("resume") / "uninterrupted"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main([str(a) for a in _train(out)]) == 0
    finally:
        torch.set_num_threads(threads)
    assert sorted(p.name for p in out.iterdir()) == [".edgenas.lock", "model.pt", "train.json"]  # resume.pt gone
    return out


def _summary(out) -> dict:
    return {k: v for k, v in json.loads((out / "train.json").read_text()).items() if k != "train_seconds"}


# ---- (a) stopped after an epoch, resumed in process ------------------------------------------------

def test_train_stopped_after_an_epoch_resumes_to_the_same_weights(uninterrupted, tmp_path, capsys, monkeypatch):
    out = tmp_path / "stopped"
    with monkeypatch.context() as patch:
        _stop_after(patch, 5)
        with pytest.raises(_Stop):
            run_cli(_train(out), capsys)
    assert not (out / "model.pt").exists() and _epochs_done(out) == 5
    saved = torch.load(out / "resume.pt", weights_only=True)
    assert saved["step"] == 30 and len(saved["stats"]["epoch_losses"]) == 5
    assert {"torch", "python", "loader"} <= set(saved["rng"]) and "momentum_buffer" in str(saved["optimizer"])

    code, stdout, err = run_cli(_train(out), capsys)
    assert code == 0, err
    assert f"resuming from {out / 'resume.pt'}" in stdout
    _assert_equal(_weights(out / "model.pt"), _weights(uninterrupted / "model.pt"))
    assert _summary(out) == _summary(uninterrupted)  # the same loss history and test score too
    assert not (out / "resume.pt").exists()

    code, _, err = run_cli(_train(out), capsys)  # finished: not retrained without --force
    assert code == 2 and "already exists" in err and len(err.strip().splitlines()) == 1


def test_a_run_killed_while_writing_its_results_finishes_without_training(uninterrupted, tmp_path, capsys,
                                                                        monkeypatch):
    """model.pt written, resume.pt not yet deleted: the same command redoes only the end."""
    import edgenas.training.loop as loop

    out = tmp_path / "late"
    with monkeypatch.context() as patch:
        _stop_after(patch, EPOCHS)  # every epoch done, stopped before model.pt
        with pytest.raises(_Stop):
            run_cli(_train(out), capsys)
    (out / "model.pt").write_bytes(b"half of the results")  # as if stopped between model.pt and the rest
    steps = []
    original = loop.cosine_lr
    with monkeypatch.context() as patch:
        patch.setattr(loop, "cosine_lr", lambda *a: steps.append(a) or original(*a))
        code, _, err = run_cli(_train(out), capsys)
    assert code == 0, err
    assert steps == []  # no training step was taken again
    _assert_equal(_weights(out / "model.pt"), _weights(uninterrupted / "model.pt"))


def test_darts_train_stopped_after_an_epoch_resumes_to_the_same_weights(tmp_path, monkeypatch):
    from edgenas.darts.genotypes import DARTS_V2
    from edgenas.darts.train import EvalTrainConfig, train_genotype
    from edgenas.data import load_dataset

    data = load_dataset("digits8")
    train_set, test_set = data.subset(96, seed=0), data.subset(48, seed=1)
    config = EvalTrainConfig(epochs=4, batch_size=32, channels=4, layers=3, cutout=2, crop_padding=1)

    def train(out):
        return train_genotype(DARTS_V2, "digits8", out, config, progress=False, train_set=train_set,
                              test_set=test_set)

    reference = train(tmp_path / "uninterrupted")
    with monkeypatch.context() as patch:
        _stop_after(patch, 2)
        with pytest.raises(_Stop):
            train(tmp_path / "stopped")
    assert not (tmp_path / "stopped" / "model.pt").exists()
    assert len(torch.load(tmp_path / "stopped" / "resume.pt", weights_only=True)["extra"]["history"]) == 2
    resumed = train(tmp_path / "stopped")
    _assert_equal(_weights(tmp_path / "stopped" / "model.pt", "model"),
                  _weights(tmp_path / "uninterrupted" / "model.pt", "model"))
    assert resumed["history"] == reference["history"] and len(resumed["history"]) == 4
    assert json.loads((tmp_path / "stopped" / "metrics.json").read_text())["history"] == reference["history"]
    assert not (tmp_path / "stopped" / "resume.pt").exists()


# ---- (b) a kill storm --------------------------------------------------------------------------------

@pytest.mark.slow
def test_kill_storm_on_train_ends_with_the_uninterrupted_weights(uninterrupted, tmp_path):
    out = tmp_path / "stormed"
    seen: list[int] = []

    def ready() -> bool:  # one more epoch finished since the last kill
        return _epochs_done(out) > (seen[-1] if seen else 0)

    landed = 0
    for kill in range(KILLS):
        landed += kill_storm(_train(out), 1, seed=300 + kill, ready=ready, max_delay=0.05)
        seen.append(_epochs_done(out))
    assert landed == KILLS and seen[-1] < EPOCHS and seen == sorted(set(seen)), seen  # each kill mid-run, later
    final = run(_train(out))
    assert final.returncode == 0, final.stderr
    _assert_equal(_weights(out / "model.pt"), _weights(uninterrupted / "model.pt"))
    assert _summary(out) == _summary(uninterrupted)


# ---- (c) one writer ----------------------------------------------------------------------------------

def test_a_second_train_on_the_same_out_is_refused(tmp_path, capsys):
    out = tmp_path / "busy"
    first = subprocess.Popen([*EDGENAS, *map(str, _train(out, 400))], env=ENV, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 120
        while _epochs_done(out) < 1 and first.poll() is None and time.time() < deadline:
            time.sleep(0.02)
        assert first.poll() is None, first.stderr.read().decode()
        before = (out / "resume.pt").stat().st_mtime_ns
        code, _, err = run_cli(_train(out, 400), capsys)
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1, err
        assert f"pid {first.pid}" in lines[0] and "being written by another process" in lines[0]
        assert first.poll() is None and (out / "resume.pt").stat().st_mtime_ns >= before
    finally:
        first.kill()
        first.wait()
        first.stderr.close()


def test_a_second_darts_train_on_the_same_out_is_refused(tmp_path, capsys):
    from edgenas.util.lock import WriterLock

    out = tmp_path / "busy"
    with WriterLock.for_directory(out, "training"):  # held as another process would hold it
        code, _, err = run_cli(["darts", "train", "DARTS_V2", "--dataset", "digits8", "--epochs", "1",
                                "--layers", "3", "--channels", "4", "--out", out, "--no-progress"], capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "being written by another process" in lines[0], err
    assert [p.name for p in out.iterdir()] == [".edgenas.lock"]


# ---- (d) another run's resume checkpoint ------------------------------------------------------------

def _listing(out) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in out.iterdir() if p.name != ".edgenas.lock"}


@pytest.mark.parametrize("change, fragment", [
    (["--lr", "0.1"], "train.lr"),
    (["--seed", "1"], "train.seed"),
    (["--subset", "190"], "train_images"),
    (["--no-augment"], "augment"),
])
def test_a_resume_checkpoint_of_another_training_is_refused(tmp_path, capsys, monkeypatch, change, fragment):
    out = tmp_path / "other"
    with monkeypatch.context() as patch:
        _stop_after(patch, 1)
        with pytest.raises(_Stop):
            run_cli(_train(out, 4), capsys)
    before = _listing(out)
    code, _, err = run_cli([*_train(out, 4), *change], capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert "belongs to another training" in lines[0] and fragment in lines[0]
    assert _listing(out) == before  # nothing written


def test_other_arch_epochs_or_dataset_are_refused_too(tmp_path, capsys, monkeypatch):
    out = tmp_path / "other"
    with monkeypatch.context() as patch:
        _stop_after(patch, 1)
        with pytest.raises(_Stop):
            run_cli(_train(out, 4), capsys)
    before = _listing(out)
    for argv, fragment in [
        (["train", "ds_r1_k3_s1_c8", *_train(out, 4)[len(ARCH.split()) + 1:]], "arch"),
        (_train(out, 5), "train.epochs"),
        ([*_train(out, 4)[:4], "digits", *_train(out, 4)[5:]], "dataset"),
    ]:
        code, _, err = run_cli(argv, capsys)
        assert code == 2 and len(err.strip().splitlines()) == 1 and fragment in err, err
    assert _listing(out) == before
    (out / "resume.pt").write_bytes(b"not a checkpoint")
    code, _, err = run_cli(_train(out, 4), capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "cannot resume from" in err, err
    assert not (out / "model.pt").exists()


def test_darts_train_refuses_another_runs_resume_checkpoint(tmp_path, capsys, monkeypatch):
    argv = ["darts", "train", "DARTS_V2", "--dataset", "digits8", "--epochs", "2", "--layers", "3",
            "--channels", "4", "--batch-size", "128", "--max-steps", "1", "--out", tmp_path / "run",
            "--no-progress"]
    with monkeypatch.context() as patch:
        _stop_after(patch, 1)
        with pytest.raises(_Stop):
            run_cli(argv, capsys)
    before = _listing(tmp_path / "run")
    code, _, err = run_cli([*argv, "--seed", "3"], capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "config.seed" in lines[0], err
    assert _listing(tmp_path / "run") == before
    code, _, err = run_cli(argv, capsys)  # the same options resume it and finish
    assert code == 0, err
    assert sorted(_listing(tmp_path / "run")) == ["metrics.json", "model.pt"]
    code, _, err = run_cli(argv, capsys)
    assert code == 2 and "already exists" in err and len(err.strip().splitlines()) == 1
    assert run_cli([*argv, "--force"], capsys)[0] == 0
