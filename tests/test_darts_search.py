"""DARTS search loop (real CIFAR-10 shard, checkpoint/resume, bad input), evaluation training on
the project's loop, the `darts` search space and the `edgenas darts` CLI. All tiny, one thread."""

from __future__ import annotations

import json
import random

import pytest
import torch

from edgenas.cli.main import main
from edgenas.darts.genotypes import DARTS_V2, Genotype
from edgenas.darts.search import Search, SearchConfig
from edgenas.darts.search_model import SupernetConfig
from edgenas.darts.step import SearchHyper, make_optimizers, search_step
from edgenas.darts.train import EvalTrainConfig, train_genotype
from edgenas.data import BatchLoader, ImageDataset
from edgenas.errors import UserError
from edgenas.spaces import get_space

TINY = SupernetConfig(channels=4, layers=3, num_classes=4, steps=2, multiplier=2)


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny trainings on one thread


def synthetic(n: int = 48, classes: int = 4, size: int = 8, seed: int = 0) -> ImageDataset:
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=generator)
    labels = torch.arange(n) % classes
    return ImageDataset(images, labels, [f"c{i}" for i in range(classes)], "synthetic")


def _config(**overrides) -> SearchConfig:
    values = {"dataset": "synthetic", "epochs": 2, "batch_size": 8, "supernet": TINY,
              "hyper": SearchHyper(order=1)}
    values.update(overrides)
    return SearchConfig(**values)


def test_search_on_a_cifar10_shard_lowers_validation_loss(cifar10_dir):
    from edgenas.data import load_dataset

    data = load_dataset("cifar10-jpeg", "train", data_dir=cifar10_dir, shards=1).subset(160, 0)
    train, val = data.split(0.5, 0)
    mean, std = train.channel_stats()
    torch.manual_seed(0)
    from edgenas.darts.search_model import SearchNetwork

    model = SearchNetwork(SupernetConfig(channels=4, layers=3, steps=2, multiplier=2))
    optimizer, architect = make_optimizers(model, SearchHyper(order=1))
    train_batches = list(BatchLoader(train, 20, seed=0, mean=mean, std=std))
    val_batches = list(BatchLoader(val, 20, shuffle=False, mean=mean, std=std))

    def val_loss() -> float:
        with torch.no_grad():  # training-mode BN: the loss the architect descends
            return sum(float(model.loss(x, y)) for x, y in val_batches) / len(val_batches)

    before = val_loss()
    alphas_before = [a.detach().clone() for a in model.arch_parameters()]
    for step in range(8):
        search_step(model, optimizer, architect, train_batches[step % len(train_batches)],
                    val_batches[step % len(val_batches)], 0.025, 5.0)
    after = val_loss()
    assert after < before
    assert any(not torch.equal(a, b) for a, b in zip(alphas_before, model.arch_parameters()))


def test_killed_search_resumes_exactly(tmp_path):
    data = synthetic()
    straight = Search(_config(), tmp_path / "straight", dataset=data)
    straight.run(max_steps=2)
    # Killed after its first epoch (the exception stands for the kill), then started again.
    part = Search(_config(), tmp_path / "killed", dataset=data)
    epochs_seen = []

    class Killed(Exception):
        pass

    def stop_after_first(record) -> None:
        epochs_seen.append(record.epoch)
        if record.epoch == 1:
            raise Killed

    with pytest.raises(Killed):
        part.run(on_epoch=stop_after_first, max_steps=2)
    resumed = Search(_config(), tmp_path / "killed", dataset=data)
    genotype = resumed.run(max_steps=2)
    assert resumed.start_epoch == 1 and len(resumed.history) == 2
    assert genotype == straight.model.genotype()
    for a, b in zip(straight.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)
    saved = (tmp_path / "killed" / "genotype.txt").read_text().strip()
    assert Genotype.parse(saved) == genotype


def _bytes_kept_for_backward(model, x, y) -> int:
    """What autograd keeps from one forward of the loss until its backward."""
    kept = 0

    def pack(tensor):
        nonlocal kept
        kept += tensor.numel() * tensor.element_size()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        model.loss(x, y)
    return kept


def test_low_memory_keeps_less_for_backward_and_searches_identically(tmp_path):
    """--low-memory recomputes every cell, the default only the cells up to the first reduction:
    less is kept for backward, and since recomputing changes no number, the same search results."""
    data = synthetic()
    default = Search(_config(hessian_iterations=0), tmp_path / "default", dataset=data)
    lean = Search(_config(hessian_iterations=0), tmp_path / "lean", dataset=data, low_memory=True)
    assert default.run(max_steps=2) == lean.run(max_steps=2)
    strip = [{k: v for k, v in vars(record).items() if k != "seconds"} for record in default.history]
    assert strip == [{k: v for k, v in vars(record).items() if k != "seconds"} for record in lean.history]
    assert all(torch.equal(a, b) for a, b in zip(default.model.state_dict().values(), lean.model.state_dict().values()))
    x, y = next(iter(default.train_loader))
    assert _bytes_kept_for_backward(lean.model, x, y) < 0.9 * _bytes_kept_for_backward(default.model, x, y)


def test_low_memory_is_refused_for_the_nb201_supernet(tmp_path, capsys):
    from edgenas.darts.nb201_model import NB201SupernetConfig

    config = _config(supernet=NB201SupernetConfig(channels=4, cells_per_stage=1, num_classes=4))
    with pytest.raises(UserError, match="drop --low-memory"):
        Search(config, tmp_path / "run", dataset=synthetic(), low_memory=True)
    assert not (tmp_path / "run").exists()
    # the CLI says the same in one line, exit status 2, before it reads any data
    code = main(["darts", "search", "--space", "nb201", "--dataset", "digits8", "--channels", "4",
                 "--cells-per-stage", "1", "--epochs", "1", "--low-memory", "--out", str(tmp_path / "cli")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "drop --low-memory" in err
    assert not (tmp_path / "cli").exists()


def test_resume_directory_of_another_configuration_is_refused(tmp_path):
    Search(_config(epochs=1), tmp_path / "run", dataset=synthetic()).run(max_steps=1)
    with pytest.raises(UserError, match="another configuration"):
        Search(_config(epochs=1, batch_size=4), tmp_path / "run", dataset=synthetic())


def test_dataset_too_small_for_the_split(tmp_path):
    with pytest.raises(UserError, match="fewer than one batch"):
        Search(_config(batch_size=32), tmp_path / "run", dataset=synthetic(n=40))


def test_second_order_search_step_runs_and_changes_alpha():
    from edgenas.darts.search_model import SearchNetwork

    torch.manual_seed(0)
    model = SearchNetwork(TINY)
    optimizer, architect = make_optimizers(model, SearchHyper(order=2))
    batch = (torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 2, 3]))
    before = [a.detach().clone() for a in model.arch_parameters()]
    weights_before = [w.detach().clone() for w in model.weight_parameters()]
    val_loss, train_loss, _ = search_step(model, optimizer, architect, batch, batch, 0.025, 5.0)
    assert val_loss > 0 and train_loss > 0
    assert all(not torch.equal(a, b) for a, b in zip(before, model.arch_parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(weights_before, model.weight_parameters()))


def test_evaluation_training_uses_the_project_loop(tmp_path):
    config = EvalTrainConfig(epochs=2, batch_size=8, channels=4, layers=3, cutout=4, crop_padding=1)
    metrics = train_genotype(DARTS_V2, "synthetic", tmp_path, config, progress=False,
                             train_set=synthetic(n=16, size=32), test_set=synthetic(n=8, size=32, seed=1))
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert written["params"] == metrics["params"] > 0
    assert len(written["history"]) == 2 and 0.0 <= written["test_accuracy"] <= 1.0
    saved = torch.load(tmp_path / "model.pt", weights_only=True)
    assert saved["epoch"] == 2 and Genotype.parse(saved["genotype"]) == DARTS_V2


def test_darts_space_codec_and_build():
    space = get_space("darts", channels=4, layers=3, num_classes=4)
    assert len(space.decisions) == 32
    arch = space.sample(random.Random(0))
    assert space.canonical(arch) == arch
    assert space.arch_from_indices(space.indices_from_arch("DARTS_V2")) == str(DARTS_V2)
    out = space.build(arch)(torch.randn(2, 3, 16, 16))
    assert out.shape == (2, 4)
    with pytest.raises(UserError, match="not a choice"):
        space.indices_from_arch(str(DARTS_V2).replace("dil_conv_3x3", "none"))


def test_cli_show_json_and_png(tmp_path, capsys):
    png = tmp_path / "cells.png"
    assert main(["darts", "show", "DARTS_V2", "--json", "--png", str(png)]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert abs(shown["params"] - 3.3e6) / 3.3e6 < 0.03
    assert shown["normal"][3][1] == {"op": "dil_conv_3x3", "input": 2}
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    # Two shell words, as printed by a search.
    normal, reduce = str(DARTS_V2).split()
    assert main(["darts", "show", normal, reduce]) == 0
    assert str(DARTS_V2) in capsys.readouterr().out


@pytest.mark.parametrize("argv, fragment", [
    (["darts", "show", "normal=sep_conv_3x3~0"], "two 'op~input' pairs"),
    (["darts", "show", "normal=foo~0,sep_conv_3x3~1", "reduce=max_pool_3x3~0,skip_connect~1"], "unknown DARTS op"),
    (["darts", "search", "--dataset", "digits", "--layers", "2", "--out", "X"], "at least 3 cells"),
    (["darts", "train", "DARTS_V2", "--dataset", "digits", "--epochs", "1", "--layers", "2", "--out", "X"], "at least 3"),
])
def test_cli_bad_input_is_one_line_and_status_2(argv, fragment, capsys, tmp_path):
    argv = [str(tmp_path / a) if a == "X" else a for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert fragment in err and len(err.splitlines()) == 1
