"""The plot of a gradient search's architecture parameters over its epochs (`arch_history.png`).

Why a plot of its own: what a differentiable search decided, and when, is read from how each
decision's probabilities moved and how E[LAT] approached the target; `history.json` holds the same
numbers for reading by program.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; no display on the machines that run searches
import matplotlib.pyplot as plt  # noqa: E402

from edgenas.util.atomic import atomic_path  # noqa: E402


def plot_history(history: list[dict[str, Any]], target_ms: float, path: str | Path) -> Path:
    """One panel per block (every decision's probability of its most probable choice at the end,
    per epoch) and one of E[LAT] against the target."""
    if not history:
        raise ValueError("no epochs to plot")
    epochs = [record["epoch"] for record in history]
    names = list(history[-1]["probabilities"])
    blocks: dict[str, list[str]] = {}
    for name in names:
        blocks.setdefault(name.split(".")[0], []).append(name)
    figure, axes = plt.subplots(len(blocks) + 1, 1, figsize=(7, 1.8 * (len(blocks) + 1)), sharex=True)
    for axis, (block, decisions) in zip(axes, blocks.items()):
        for name in decisions:
            final = history[-1]["probabilities"][name]
            best = max(range(len(final)), key=final.__getitem__)
            axis.plot(epochs, [r["probabilities"][name][best] for r in history],
                      label=f"{name.split('.')[1]} #{best}")
        axis.set_ylim(0, 1)
        axis.set_ylabel(f"{block}\nP(chosen)", fontsize=8)
        axis.legend(fontsize=6, ncol=3, loc="lower right")
    latency = axes[-1]
    latency.plot(epochs, [r["expected_ms"] for r in history], marker="o", label="E[LAT]")
    latency.axhline(target_ms, color="grey", linestyle="--", label=f"target {target_ms:g} ms")
    latency.set_ylabel("ms", fontsize=8)
    latency.set_xlabel("epoch")
    latency.legend(fontsize=7)
    figure.tight_layout()
    path = Path(path)
    with atomic_path(path) as partial:
        figure.savefig(partial, format="png", dpi=90)
    plt.close(figure)
    return path
