"""`edgenas report`: files written from a real run store, with the front as a table."""

from __future__ import annotations

from edgenas.cli.main import main
from edgenas.evaluators.base import TrialResult
from edgenas.report import write_report
from edgenas.search.objectives import make_objective
from edgenas.search.store import Store

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


def test_report_cli_and_missing_run(tmp_path, capsys):
    make_run(tmp_path / "run")
    assert main(["report", str(tmp_path / "run"), "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "report.md").is_file()
    capsys.readouterr()
    assert main(["report", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no search run" in err
    assert not (tmp_path / "nothing").exists()
