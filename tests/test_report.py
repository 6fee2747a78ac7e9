"""`edgenas report`: files written from a real run store, with the front as a table, and the
strategy's entropy and repeat rate over the search."""

from __future__ import annotations

from edgenas.cli.main import main
from edgenas.evaluators.base import TrialResult
from edgenas.report import search_dynamics, write_report
from edgenas.search.loop import run_search
from edgenas.search.objectives import make_objective
from edgenas.search.store import Store
from edgenas.spaces import get_space
from edgenas.strategies import make_strategy

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def make_run(run_dir) -> list[str]:
    objective = make_objective("mnas-soft", target_ms=5.0)
    results = {
        "|nor_conv_3x3~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|": TrialResult(accuracy=0.80, latency_ms=2.0,
                                                                               metrics={"params": 1000, "macs": 5000}),
        "|nor_conv_3x3~0|+|nor_conv_3x3~0|none~1|+|skip_connect~0|none~1|none~2|": TrialResult(accuracy=0.90, latency_ms=6.0),
        "|avg_pool_3x3~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|": TrialResult(accuracy=0.70, latency_ms=3.0),
        "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|": TrialResult.failed("NaN loss at step 3"),
    }
    with Store.create_or_resume(run_dir, {"space": "nb201", "objective": objective.config()}) as store:
        for arch, result in results.items():
            trial = store.begin_trial(arch, seed=0)
            store.finish_trial(trial, result, objective.reward(result), seconds=0.1)
    return list(results)


def test_report_files_show_the_front(tmp_path):
    archs = make_run(tmp_path / "run")
    files = write_report(tmp_path / "run")
    for png in (files.pareto_png, files.reward_png):
        assert png.read_bytes().startswith(PNG_MAGIC) and png.stat().st_size > 5000
    text = files.markdown.read_text()
    assert "3 completed, 1 failed" in text and "latency target T: 5 ms" in text
    front_rows = [line for line in text.splitlines() if line.startswith("| `")]
    # Front: the 2 ms / 80 % and the 6 ms / 90 % trials; the 3 ms / 70 % one is dominated; the
    # failed trial is listed with its reason.
    assert len(front_rows) == 3
    assert front_rows[0].startswith("| `\\|nor_conv_3x3~0\\|+\\|none~0") and "| 80.00 | 2.000 | 1,000 | 5,000 |" in front_rows[0]
    assert "| 90.00 | 6.000 |" in front_rows[1]
    assert "NaN loss at step 3" in front_rows[2]
    assert archs[2].replace("|", "\\|") not in text
    # Trials written without the loop carry no diagnostics: no such section, no such plot.
    assert files.strategy_png is None and "Strategy over the search" not in text


def test_report_cli_and_missing_run(tmp_path, capsys):
    make_run(tmp_path / "run")
    assert main(["report", str(tmp_path / "run"), "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "report.md").is_file()
    capsys.readouterr()
    assert main(["report", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no search run" in err
    assert not (tmp_path / "nothing").exists()


class CountingEvaluator:
    """NB201 strings scored without the tables: accuracy grows with the number of 3x3 convs."""

    def evaluate(self, arch: str) -> TrialResult:
        convs = arch.count("nor_conv_3x3")
        return TrialResult(accuracy=0.5 + 0.08 * convs, latency_ms=1.0 + convs)


def test_report_shows_entropy_and_repeat_rate_over_the_search(tmp_path):
    space = get_space("nb201")
    objective = make_objective("mnas-soft", target_ms=4.0)
    with Store.create_or_resume(tmp_path / "run", {"space": "nb201", "objective": objective.config()}) as store:
        run_search(space, make_strategy("ppo", space, seed=0, hidden_size=16, lr=0.05, target_kl=None),
                   CountingEvaluator(), objective, 40, store=store)
        trials = store.trials()
    rows = search_dynamics(trials)
    assert [r["trial"] for r in rows] == list(range(1, 41))
    assert rows[-1]["asks"] >= 40 and rows[-1]["repeat_rate"] == rows[-1]["repeats"] / rows[-1]["asks"]
    assert rows[-1]["updates"] == rows[-1]["asks"] // 5  # batches of 5, one tell per proposal
    files = write_report(tmp_path / "run")
    assert files.strategy_png is not None and files.strategy_png.read_bytes().startswith(PNG_MAGIC)
    text = files.markdown.read_text()
    assert "## Strategy over the search" in text and "![Strategy over the search](strategy.png)" in text
    table = text.split("## Strategy over the search")[1]
    lines = [line for line in table.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert len(lines) == 10 and lines[-1].startswith("| 40 | ")
    last = lines[-1].split(" | ")
    # trial | proposals | repeat rate | since last row | entropy (nats) | share | updates | ...
    assert int(last[1]) == rows[-1]["asks"] and float(last[2]) == round(rows[-1]["repeat_rate"], 2)
    assert float(last[4]) == round(rows[-1]["entropy"], 2) and int(last[6]) == rows[-1]["updates"]


def test_report_shows_the_columns_the_strategy_reports_and_no_others(tmp_path):
    # Local search reports its climb (moves, restarts), not a policy: the table has those
    # columns and none of the controller's, and its moves match the strategy's own count.
    space = get_space("nb201")
    objective = make_objective("mnas-soft", target_ms=4.0)
    strategy = make_strategy("local", space, seed=0, initial=3)
    with Store.create_or_resume(tmp_path / "run", {"space": "nb201", "objective": objective.config()}) as store:
        run_search(space, strategy, CountingEvaluator(), objective, 60, store=store)
    text = write_report(tmp_path / "run").markdown.read_text()
    table = text.split("## Strategy over the search")[1]
    header = next(line for line in table.splitlines() if line.startswith("| trial |"))
    assert header.endswith("| moves | restarts |") and "entropy" not in header and "ratio" not in header
    last = [line for line in table.splitlines() if line.startswith("| ") and line[2].isdigit()][-1].split(" | ")
    assert strategy.moves >= 1 and int(last[4]) == strategy.moves and int(last[5].rstrip(" |")) == strategy.restarts
