"""DARTS on NAS-Bench-201: the NB201 supernet against the stand-alone network, derivation and table
lookup, the Hessian eigenvalue against an explicit Hessian, the mitigations' loss terms by hand,
resume, the CLI and its bad input. Everything tiny (2-4 channels, 1 cell per stage, 8 px), one thread."""

from __future__ import annotations

import csv
import json
import math
import re
import shutil

import pytest
import torch

from conftest import run_cli
from edgenas.darts.architect import Architect
from edgenas.darts.hessian import dominant_eigenvalue
from edgenas.darts.nb201 import derive_nb201, look_up
from edgenas.darts.nb201_model import NB201SearchNetwork, NB201SupernetConfig
from edgenas.darts.regularizers import BetaDecay, Dirichlet, make_relaxation
from edgenas.darts.search import Search, SearchConfig
from edgenas.darts.search_model import SearchNetwork, SupernetConfig
from edgenas.darts.step import SearchHyper
from edgenas.errors import UserError
from edgenas.spaces.nb201 import OPS, NB201Network
from test_darts_search import synthetic

pytestmark = pytest.mark.usefixtures("one_thread")

CELL = ("nor_conv_3x3", "skip_connect", "nor_conv_1x1", "none", "avg_pool_3x3", "nor_conv_3x3")


def _one_hot(net: NB201SearchNetwork, ops) -> None:
    with torch.no_grad():  # softmax of (0, -inf, ...) is exactly (1, 0, ...)
        net.alphas_cell.fill_(float("-inf"))
        for edge, op in enumerate(ops):
            net.alphas_cell[edge, OPS.index(op)] = 0.0


@pytest.mark.parametrize("affine", [False, True])
def test_one_hot_supernet_is_the_stand_alone_network(affine):
    torch.manual_seed(0)
    net = NB201SearchNetwork(NB201SupernetConfig(channels=4, cells_per_stage=2, num_classes=5, affine=affine)).double()
    _one_hot(net, CELL)
    with torch.no_grad():
        for p in net.weight_parameters():
            p.normal_()
    reference = NB201Network(CELL, channels=4, cells_per_stage=2, num_classes=5).double()
    # The test's own key mapping: edge e of a cell holds op k of the mixed op in the supernet.
    supernet_state, state = net.state_dict(), {}
    for key, value in reference.state_dict().items():
        match = re.match(r"cells\.(\d+)\.edges\.(\d+)\.(.*)", key)
        if match:
            i, e, rest = match.groups()
            mapped = f"cells.{i}.edges.{e}.ops.{OPS.index(CELL[int(e)])}.{rest}"
            # Without affine, the supernet's BN has no weight/bias: the reference keeps 1 and 0.
            state[key] = supernet_state[mapped] if mapped in supernet_state else value
        else:
            state[key] = supernet_state[key]
    reference.load_state_dict(state)
    x = torch.randn(3, 3, 8, 8, dtype=torch.double)
    assert torch.equal(net(x), reference(x))  # training-mode BN (batch statistics): bit for bit
    net.eval(), reference.eval()
    assert torch.equal(net(x), reference(x))  # evaluation mode (running statistics): bit for bit


def _table_row(nb201_dir, arch: str) -> tuple[int, float]:
    """Row and 200-epoch CIFAR-10 test accuracy, read from the CSV here (not by the code under test)."""
    with (nb201_dir / "nats_bench.csv").open(newline="") as handle:
        for i, row in enumerate(csv.DictReader(handle)):
            if row["ArchitectureString"] == arch:
                return i, float(row["CIFAR10TestAccuracy200Epochs"])
    raise AssertionError(f"{arch} not in the table")


def test_derivation_from_hand_set_alphas_and_table_lookup(nb201_dir):
    from edgenas.evaluators.nb201 import load_tables

    alphas = torch.zeros(6, 5)
    alphas[0, OPS.index("nor_conv_3x3")] = 2.0
    alphas[1, OPS.index("none")] = 1.0  # `none` may win an edge (NB201's rule)
    alphas[2, OPS.index("skip_connect")] = 0.5
    alphas[2, OPS.index("nor_conv_1x1")] = 0.4
    alphas[3] = torch.tensor([0.1, 0.3, 0.3, 0.2, 0.0])  # a tie: the earlier op
    alphas[4, OPS.index("avg_pool_3x3")] = 3.0
    alphas[5, OPS.index("nor_conv_1x1")] = 1.0
    expected = ("|nor_conv_3x3~0|+|none~0|skip_connect~1|+|skip_connect~0|avg_pool_3x3~1|"
                "nor_conv_1x1~2|")
    net = NB201SearchNetwork(NB201SupernetConfig(channels=2, cells_per_stage=1))
    with torch.no_grad():
        net.alphas_cell.copy_(alphas)
    assert net.genotype() == expected == derive_nb201(torch.softmax(alphas, -1))
    row = look_up(load_tables(nb201_dir), expected)
    index, accuracy = _table_row(nb201_dir, expected)
    assert row["index"] == index and row["test_accuracy"] == accuracy


def test_hessian_eigenvalue_matches_the_explicit_hessian():
    from torch.func import functional_call

    torch.manual_seed(0)
    net = NB201SearchNetwork(NB201SupernetConfig(channels=2, cells_per_stage=1, num_classes=3)).double()
    with torch.no_grad():
        net.alphas_cell.normal_()
    batch = (torch.randn(4, 3, 8, 8, dtype=torch.double), torch.tensor([0, 1, 2, 0]))
    before = [b.clone() for b in net.buffers()]
    estimate = dominant_eigenvalue(net, batch, iterations=500, tolerance=1e-12)
    assert all(torch.equal(a, b) for a, b in zip(before, net.buffers()))  # BN statistics untouched

    def loss(alpha: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(functional_call(net, {"alphas_cell": alpha}, (batch[0],)), batch[1])

    hessian = torch.autograd.functional.hessian(loss, net.alphas_cell.detach().clone()).reshape(30, 30)
    eigenvalues = torch.linalg.eigvalsh((hessian + hessian.T) / 2)
    assert abs(estimate - float(eigenvalues[-1])) < 1e-4 * max(1.0, abs(float(eigenvalues[-1])))


def test_beta_decay_term_by_hand():
    alphas = [torch.tensor([[0.0, math.log(3.0)], [math.log(2.0), math.log(2.0)]], dtype=torch.double)]
    # log(1 + 3) and log(2 + 2): both edges log 4; lambda = 25 x 0.5.
    assert float(BetaDecay().penalty(alphas, 0.5)) == pytest.approx(12.5 * math.log(4.0), rel=1e-12)
    assert float(BetaDecay(weight=2.0).penalty(alphas, 1.0)) == pytest.approx(2.0 * math.log(4.0), rel=1e-12)
    # Its gradient in the architect: weight x progress x softmax / |E| on top of the CE gradient.
    model = SearchNetwork(SupernetConfig(channels=2, layers=3, num_classes=3, steps=1, multiplier=1))
    optimizer = torch.optim.SGD(model.weight_parameters(), lr=0.1)
    batch = (torch.randn(2, 3, 8, 8), torch.tensor([0, 2]))
    plain = Architect(model, optimizer).hypergradient(batch, batch, 0.1)[0]
    term = Architect(model, optimizer, penalty=lambda a: BetaDecay(weight=4.0).penalty(a, 0.5))
    regularised = term.hypergradient(batch, batch, 0.1)[0]
    for g0, g1, alpha in zip(plain, regularised, model.arch_parameters()):
        by_hand = 4.0 * 0.5 * torch.softmax(alpha.detach(), -1) / 4  # 2 matrices x 2 edges
        assert torch.allclose(g1 - g0, by_hand, atol=1e-6)


def test_drnas_term_and_mixing_by_hand():
    # alpha (0, 1) -> concentration (ELU(0) + 1, ELU(1) + 1) = (1, 2): Dir(1, 2) is Beta(1, 2), density
    # 2(1 - x); against the flat prior KL = int 2(1-x) log(2(1-x)) dx = log 2 - 1/2.
    alphas = [torch.tensor([[0.0, 1.0]], dtype=torch.double)]
    assert float(Dirichlet(scale=1.0).penalty(alphas, 0.3)) == pytest.approx(math.log(2.0) - 0.5, rel=1e-10)
    assert float(Dirichlet().penalty(alphas, 0.3)) == pytest.approx(1e-3 * (math.log(2.0) - 0.5), rel=1e-10)
    relaxation = Dirichlet()
    assert torch.allclose(relaxation.mixing(alphas[0], sample=False), torch.tensor([[1 / 3, 2 / 3]], dtype=torch.double))
    alpha = torch.zeros(6, 5, requires_grad=True)
    torch.manual_seed(0)
    drawn = relaxation.mixing(alpha, sample=True)
    assert torch.allclose(drawn.sum(-1), torch.ones(6)) and not torch.allclose(drawn, torch.full((6, 5), 0.2))
    (drawn[:, 0].sum()).backward()  # reparameterised: the sample carries alpha's gradient
    assert alpha.grad is not None and alpha.grad.abs().sum() > 0


def test_mitigations_run_on_the_darts_space():
    torch.manual_seed(0)
    config = SupernetConfig(channels=2, layers=3, num_classes=3, steps=2, multiplier=2)
    plain = SearchNetwork(config)
    torch.manual_seed(0)
    drnas = SearchNetwork(config, relaxation=Dirichlet())
    x = torch.randn(2, 3, 8, 8)
    assert not torch.allclose(plain(x), drnas(x))  # sampled mixing weights, not the softmax
    assert drnas.genotype().steps == 2
    with pytest.raises(UserError, match="unknown DARTS regularizer 'gdas'; choose one of none, beta, drnas"):
        make_relaxation("gdas")


def _config(regularizer: str = "drnas") -> SearchConfig:
    return SearchConfig(dataset="synthetic", epochs=2, batch_size=8,
                        supernet=NB201SupernetConfig(channels=2, cells_per_stage=1, num_classes=4),
                        hyper=SearchHyper(order=1), regularizer=make_relaxation(regularizer), hessian_iterations=3)


def test_killed_nb201_search_resumes_exactly(tmp_path, nb201_dir):
    from edgenas.evaluators.nb201 import load_tables

    tables, data = load_tables(nb201_dir), synthetic()
    straight = Search(_config(), tmp_path / "straight", dataset=data, tables=tables)
    straight.run(max_steps=2)

    class Killed(Exception):
        pass

    def stop(record) -> None:
        if record.epoch == 1:
            raise Killed

    with pytest.raises(Killed):
        Search(_config(), tmp_path / "killed", dataset=data, tables=tables).run(on_epoch=stop, max_steps=2)
    resumed = Search(_config(), tmp_path / "killed", dataset=data, tables=tables)
    resumed.run(max_steps=2)
    assert resumed.start_epoch == 1
    for a, b in zip(straight.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)

    def timeless(history):
        return [{k: v for k, v in r.__dict__.items() if k != "seconds"} for r in history]

    assert len(resumed.history) == 2 and timeless(resumed.history) == timeless(straight.history)
    last = json.loads((tmp_path / "killed" / "history.json").read_text())[-1]
    assert last["index"] == _table_row(nb201_dir, last["genotype"])[0]
    assert last["eigenvalue"] is not None and len(last["alphas"][0]) == 6


def test_resume_with_another_thread_count_says_so(tmp_path, capsys):
    """Each epoch records its thread count; a resume on another count says the rest will differ."""

    class Killed(Exception):
        pass

    def stop(record) -> None:
        raise Killed

    config = _config("none")
    with pytest.raises(Killed):
        Search(config, tmp_path / "run", dataset=synthetic()).run(on_epoch=stop, max_steps=1)
    assert json.loads((tmp_path / "run" / "history.json").read_text())[0]["threads"] == 1
    Search(config, tmp_path / "run", dataset=synthetic()).run(max_steps=1)  # same count: no note
    assert "thread" not in capsys.readouterr().err
    shutil.rmtree(tmp_path / "run")
    with pytest.raises(Killed):
        Search(config, tmp_path / "run", dataset=synthetic()).run(on_epoch=stop, max_steps=1)
    torch.set_num_threads(2)  # the one_thread fixture restores the count afterwards
    resumed = Search(config, tmp_path / "run", dataset=synthetic())
    resumed.run(max_steps=1)
    err = capsys.readouterr().err
    assert "ran with 1 thread(s), resumes with 2" in err and "EDGENAS_THREADS=1" in err
    assert [r.threads for r in resumed.history] == [1, 2]


def test_cli_search_nb201_and_summary(tmp_path, capsys, cifar10_dir, nb201_dir):
    out = tmp_path / "run"
    code, printed, err = run_cli(["darts", "search", "--space", "nb201", "--dataset", "cifar10-jpeg:1",
                                  "--data-dir", cifar10_dir, "--tables", nb201_dir, "--channels", "2",
                                  "--cells-per-stage", "1", "--batch-size", "8", "--limit", "32", "--epochs", "1",
                                  "--hessian-iterations", "2", "--regularizer", "beta", "--regularizer-option",
                                  "weight=5", "--out", out, "--no-progress"], capsys)
    assert code == 0, err
    code, printed, _ = run_cli(["darts", "summary", out, "--json"], capsys)
    summary = json.loads(printed)
    final = summary["final"]
    assert summary["regularizer"] == {"name": "beta", "weight": 5.0} and summary["space"] == "nb201"
    index, accuracy = _table_row(nb201_dir, final["genotype"])
    assert (final["index"], final["test_accuracy"]) == (index, accuracy)
    code, printed, _ = run_cli(["darts", "summary", out], capsys)
    assert code == 0 and f"{accuracy:.2f}" in printed


@pytest.mark.parametrize("argv, fragment", [
    (["darts", "show", "|nor_conv_3x3~0|+|foo~0|none~1|+|none~0|none~1|none~2|"], "unknown op 'foo'"),
    (["darts", "show", "|nor_conv_3x3~0|+|none~0|+|none~0|none~1|none~2|"], "needs 2 inputs"),
    (["darts", "search", "--space", "nb201", "--dataset", "digits", "--tables", "EMPTY", "--out", "X"], "lacks nats_bench.csv"),
    (["darts", "search", "--space", "nb201", "--dataset", "digits", "--regularizer", "gdas", "--out", "X"],
     "unknown DARTS regularizer 'gdas'"),
    (["darts", "search", "--dataset", "digits", "--regularizer", "beta", "--regularizer-option", "weight", "--out", "X"],
     "should read KEY=NUMBER"),
    (["darts", "search", "--dataset", "digits", "--regularizer", "beta", "--regularizer-option", "scale=1", "--out", "X"],
     "has no setting"),
])
def test_cli_bad_input_is_one_line_and_status_2(argv, fragment, capsys, tmp_path):
    (tmp_path / "EMPTY").mkdir()
    argv = [str(tmp_path / a) if a in ("X", "EMPTY") else a for a in argv]
    code, _, err = run_cli(argv, capsys)
    assert code == 2 and fragment in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "X").exists()  # nothing half-written
