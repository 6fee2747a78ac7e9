"""Reports of a search run, read from its store: the Pareto plot, the reward curve, a table.

Why from the store only: a report must work on a finished run, a running one, or one that was
killed, on another machine, without the search's process. Everything it shows is a row there.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; no display on the machines that run searches
import matplotlib.pyplot as plt  # noqa: E402

from edgenas.search.store import Store, flatten  # noqa: E402
from edgenas.search.trials import TrialRecord  # noqa: E402


@dataclass(frozen=True)
class ReportFiles:
    pareto_png: Path
    reward_png: Path
    markdown: Path


def target_ms(config: dict[str, Any]) -> float | None:
    """The latency target of a run, wherever its config keeps it."""
    for key, value in flatten(config).items():
        if key.split(".")[-1] == "target_ms" and isinstance(value, (int, float)):
            return float(value)
    return None


def write_report(run_dir: str | Path, out_dir: str | Path | None = None) -> ReportFiles:
    """Write pareto.png, reward_curve.png and report.md for the run in `run_dir`."""
    with Store.open_existing(run_dir) as store:
        trials = store.trials()
        front = store.pareto()
        counts = store.counts()
        config = store.config
    out = Path(out_dir) if out_dir is not None else Path(run_dir)
    out.mkdir(parents=True, exist_ok=True)
    target = target_ms(config)
    files = ReportFiles(out / "pareto.png", out / "reward_curve.png", out / "report.md")
    _plot_pareto(trials, front, target, files.pareto_png)
    _plot_rewards(trials, files.reward_png)
    files.markdown.write_text(_markdown(config, trials, front, counts, target))
    return files


def _ok(trials: list[TrialRecord]) -> list[TrialRecord]:
    return [t for t in trials if t.status == "ok" and t.accuracy is not None and t.latency_ms is not None]


def _plot_pareto(trials: list[TrialRecord], front: list[TrialRecord], target: float | None, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    done = _ok(trials)
    ax.scatter([t.latency_ms for t in done], [100 * t.accuracy for t in done], s=14, alpha=0.45,
               color="tab:gray", label=f"trials ({len(done)})")
    ax.plot([t.latency_ms for t in front], [100 * t.accuracy for t in front], "o-", color="tab:red",
            label=f"Pareto front ({len(front)})")
    if target is not None:
        ax.axvline(target, color="tab:blue", linestyle="--", label=f"target T = {target:g} ms")
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title("accuracy against measured latency")
    _save(fig, ax, path)


def _save(fig, ax, path: Path) -> None:
    """The finish both plots share: grid, legend, tight layout, written at 120 dpi, figure freed."""
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _plot_rewards(trials: list[TrialRecord], path: Path) -> None:
    """Reward per trial in evaluation order, with a running mean: is the controller learning?"""
    scored = [t for t in trials if t.reward is not None]
    fig, ax = plt.subplots(figsize=(7, 4))
    xs = list(range(1, len(scored) + 1))
    rewards = [t.reward for t in scored]
    ax.plot(xs, rewards, ".", color="tab:gray", alpha=0.6, label="reward")
    window = max(1, len(rewards) // 8)
    running = [sum(rewards[max(0, i - window + 1): i + 1]) / len(rewards[max(0, i - window + 1): i + 1])
               for i in range(len(rewards))]
    ax.plot(xs, running, "-", color="tab:green", label=f"running mean ({window})")
    best = [max(rewards[: i + 1]) for i in range(len(rewards))]
    ax.plot(xs, best, "-", color="tab:red", alpha=0.7, label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel("reward")
    _save(fig, ax, path)


def _cell(text: str) -> str:
    """Code in a table cell; NAS-Bench-201 strings contain '|', which would split the cell."""
    return "`" + text.replace("|", "\\|") + "`"


def _markdown(config: dict[str, Any], trials: list[TrialRecord], front: list[TrialRecord],
              counts: dict[str, int], target: float | None) -> str:
    lines = ["# Search report", ""]
    lines.append(f"- trials: {counts.get('ok', 0)} completed, {counts.get('failed', 0)} failed, "
                 f"{counts.get('running', 0)} in flight")
    if target is not None:
        lines.append(f"- latency target T: {target:g} ms")
    settings = ", ".join(f"{k}={v}" for k, v in sorted(flatten(config).items()) if not isinstance(v, (dict, list)))
    lines += [f"- settings: {settings}", "", "## Pareto front (fastest first)", "",
              "| arch | accuracy (%) | latency (ms) | params | MACs | reward |", "|---|---|---|---|---|---|"]
    for t in front:
        params = t.metrics.get("params")
        macs = t.metrics.get("macs")
        reward = "" if t.reward is None else f"{t.reward:.4f}"
        lines.append(
            f"| {_cell(t.arch)} | {100 * t.accuracy:.2f} | {t.latency_ms:.3f} | "
            f"{'' if params is None else f'{params:,}'} | {'' if macs is None else f'{macs:,}'} | {reward} |"
        )
    failed = [t for t in trials if t.status == "failed"]
    if failed:
        lines += ["", "## Failed trials", "", "| arch | reason |", "|---|---|"]
        lines += [f"| {_cell(t.arch)} | {(t.error or '').splitlines()[0] if t.error else ''} |" for t in failed]
    lines += ["", "![Pareto front](pareto.png)", "", "![Reward curve](reward_curve.png)", ""]
    return "\n".join(lines)
