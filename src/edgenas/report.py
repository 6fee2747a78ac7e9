"""Reports of a search run, read from its store: the Pareto plot, the reward curve, a table, and
how the strategy behaved over the search (a controller's policy entropy, the repeat rate: the
share of proposals that were architectures already evaluated), from what the loop stores with
each trial (`metrics["strategy"]`, `metrics["search"]`).

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

from edgenas.search.front import read_front
from edgenas.search.store import Store, flatten  # noqa: E402
from edgenas.search.trials import TrialRecord  # noqa: E402


@dataclass(frozen=True)
class ReportFiles:
    pareto_png: Path
    reward_png: Path
    markdown: Path
    strategy_png: Path | None = None  # entropy and repeat rate over the search (None: nothing recorded)


def target_ms(config: dict[str, Any]) -> float | None:
    """The latency target of a run, wherever its config keeps it."""
    for key, value in flatten(config).items():
        if key.split(".")[-1] == "target_ms" and isinstance(value, (int, float)):
            return float(value)
    return None


def write_report(run_dir: str | Path, out_dir: str | Path | None = None) -> ReportFiles:
    """Write pareto.png, reward_curve.png, strategy.png (when the trials carry the loop's
    diagnostics) and report.md for the run in `run_dir`."""
    with Store.open_existing(run_dir) as store:
        trials = store.trials()
        front = store.pareto()
        counts = store.counts()
        config = store.config
    out = Path(out_dir) if out_dir is not None else Path(run_dir)
    out.mkdir(parents=True, exist_ok=True)
    target = target_ms(config)
    dynamics = search_dynamics(trials)
    files = ReportFiles(out / "pareto.png", out / "reward_curve.png", out / "report.md",
                        out / "strategy.png" if dynamics else None)
    _plot_pareto(trials, front, target, files.pareto_png)
    _plot_rewards(trials, files.reward_png)
    if files.strategy_png is not None:
        _plot_dynamics(dynamics, files.strategy_png)
    files.markdown.write_text(_markdown(config, trials, front, counts, target, dynamics, read_front(run_dir)))
    return files


def search_dynamics(trials: list[TrialRecord]) -> list[dict[str, Any]]:
    """One row per finished trial that carries the loop's diagnostics, in the order they finished:
    `trial` (1, 2, ... in that order), `id`, `asks`, `repeats`, `repeat_rate` (over the run so far),
    `window_repeat_rate` (of the proposals since the previous finished trial) and whatever the
    strategy reported (`entropy`, `entropy_share`, `ratio_min`, `ratio_max`, `approx_kl`, `epochs`,
    `updates` for the controllers; `moves`, `restarts` for local search)."""
    recorded = [t for t in trials if t.status != "running" and isinstance(t.metrics.get("search"), dict)]
    recorded.sort(key=lambda t: (t.metrics["search"].get("asks", 0), t.finished or 0.0, t.id))
    rows: list[dict[str, Any]] = []
    previous_asks = previous_repeats = 0
    for k, t in enumerate(recorded, start=1):
        search = t.metrics["search"]
        asks, repeats = int(search.get("asks", 0)), int(search.get("repeats", 0))
        new_asks = asks - previous_asks
        window = (repeats - previous_repeats) / new_asks if new_asks > 0 else 0.0
        strategy = t.metrics.get("strategy") if isinstance(t.metrics.get("strategy"), dict) else {}
        rows.append({"trial": k, "id": t.id, "asks": asks, "repeats": repeats,
                     "repeat_rate": float(search.get("repeat_rate", 0.0)), "window_repeat_rate": window,
                     **strategy})
        previous_asks, previous_repeats = asks, repeats
    return rows


def _plot_dynamics(rows: list[dict[str, Any]], path: Path) -> None:
    """Policy entropy (share of the uniform policy's) and repeat rate over the search."""
    fig, ax = plt.subplots(figsize=(7, 4))
    xs = [r["trial"] for r in rows]
    ax.plot(xs, [r["repeat_rate"] for r in rows], "-", color="tab:red", label="repeat rate (run so far)")
    # The proposals between two finished trials, smoothed over about an eighth of the run.
    window = max(1, len(rows) // 8)
    asks = [0] + [r["asks"] for r in rows]
    repeats = [0] + [r["repeats"] for r in rows]
    windowed = []
    for i in range(1, len(asks)):
        j = max(0, i - window)
        n = asks[i] - asks[j]
        windowed.append((repeats[i] - repeats[j]) / n if n else 0.0)
    ax.plot(xs, windowed, ":", color="tab:red", label=f"repeat rate (last {window} trials)")
    entropy = [(r["trial"], r["entropy_share"]) for r in rows if isinstance(r.get("entropy_share"), (int, float))]
    if entropy:
        ax.plot([e[0] for e in entropy], [e[1] for e in entropy], "-", color="tab:blue",
                label="policy entropy / uniform's")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("trial (in the order they finished)")
    ax.set_ylabel("share")
    ax.set_title("strategy over the search")
    _save(fig, ax, path)


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
              counts: dict[str, int], target: float | None, dynamics: list[dict[str, Any]],
              measured: list[dict[str, Any]] | None = None) -> str:
    lines = ["# Search report", ""]
    lines.append(f"- trials: {counts.get('ok', 0)} completed, {counts.get('failed', 0)} failed, "
                 f"{counts.get('running', 0)} in flight")
    if target is not None:
        lines.append(f"- latency target T: {target:g} ms")
    settings = ", ".join(f"{k}={v}" for k, v in sorted(flatten(config).items()) if not isinstance(v, (dict, list)))
    # A front searched on predicted latency is measured end to end after the search (front.json):
    # the prediction, the measurement and the error side by side.
    by_arch = {row["arch"]: row for row in measured or []}
    latency_columns = "LUT (ms) | measured (ms) | LUT error" if by_arch else "latency (ms)"
    lines += [f"- settings: {settings}", "", "## Pareto front (fastest first)", "",
              f"| arch | accuracy (%) | {latency_columns} | params | MACs | reward |",
              "|---|---|---|---|---|---|" + ("---|---|" if by_arch else "")]
    for t in front:
        params = t.metrics.get("params")
        macs = t.metrics.get("macs")
        reward = "" if t.reward is None else f"{t.reward:.4f}"
        latency = f"{t.latency_ms:.3f}"
        if by_arch:
            row = by_arch.get(t.arch)
            latency += (f" | {row['measured_ms']:.3f} | {100 * row['error']:+.1f} %"
                        if row else " | | ")
        lines.append(
            f"| {_cell(t.arch)} | {100 * t.accuracy:.2f} | {latency} | "
            f"{'' if params is None else f'{params:,}'} | {'' if macs is None else f'{macs:,}'} | {reward} |"
        )
    failed = [t for t in trials if t.status == "failed"]
    if failed:
        lines += ["", "## Failed trials", "", "| arch | reason |", "|---|---|"]
        lines += [f"| {_cell(t.arch)} | {(t.error or '').splitlines()[0] if t.error else ''} |" for t in failed]
    lines += _dynamics_table(dynamics)
    lines += ["", "![Pareto front](pareto.png)", "", "![Reward curve](reward_curve.png)", ""]
    if dynamics:
        lines += ["![Strategy over the search](strategy.png)", ""]
    return "\n".join(lines)


def _number(value: Any, spec: str) -> str:
    return format(value, spec) if isinstance(value, (int, float)) and not isinstance(value, bool) else ""


# What a strategy may report of itself (`Strategy.diagnostics()`), as report columns: the
# controllers' update and policy, local search's climb. A column appears when the run has it.
STRATEGY_COLUMNS = (
    ("entropy", "entropy (nats)", ".2f"), ("entropy_share", "entropy share", ".2f"), ("updates", "updates", "d"),
    ("ratio_min", "ratio min", ".3f"), ("ratio_max", "ratio max", ".3f"), ("approx_kl", "approx KL", ".4f"),
    ("epochs", "epochs", "d"), ("moves", "moves", "d"), ("restarts", "restarts", "d"),
)


def _dynamics_table(rows: list[dict[str, Any]], points: int = 10) -> list[str]:
    """About `points` rows, evenly over the search, the last trial always among them."""
    if not rows:
        return []
    step = max(1, round(len(rows) / points))
    picked = rows[step - 1:: step]
    if picked[-1] is not rows[-1]:
        picked.append(rows[-1])
    columns = [c for c in STRATEGY_COLUMNS if any(c[0] in r for r in rows)]
    reported = {c[0] for c in columns}
    lines = ["", "## Strategy over the search", "",
             "Repeat rate: the share of proposals that were architectures already evaluated (or in "
             "flight), which cost no evaluation; near 1 the strategy has stopped exploring."]
    if "entropy" in reported:
        lines[-1] += (" Entropy: of the controller's policy (nats; share of the uniform policy's), with the "
                      "probability ratios p_new / p_old of its last update's batch, the approximate KL and the "
                      "epochs run.")
    if "moves" in reported:
        lines[-1] += (" Moves: local search's steps to a better neighbour; restarts: its fresh random starts "
                      "from a local optimum.")
    lines += ["", "| trial | proposals | repeat rate (so far) | repeat rate (since last row) | "
              + "".join(f"{header} | " for _, header, _ in columns).rstrip(),
              "|---|---|---|---|" + "---|" * len(columns)]
    previous_asks = previous_repeats = 0
    for r in picked:
        new = r["asks"] - previous_asks
        since = (r["repeats"] - previous_repeats) / new if new > 0 else 0.0
        lines.append(f"| {r['trial']} | {r['asks']} | {r['repeat_rate']:.2f} | {since:.2f} |"
                     + "".join(f" {_number(r.get(key), spec)} |" for key, _, spec in columns))
        previous_asks, previous_repeats = r["asks"], r["repeats"]
    return lines
