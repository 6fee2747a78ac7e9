"""Rank fidelity of a supernet: does its one-shot accuracy order architectures as training does?

The measure the field reports (Kendall's tau between one-shot and stand-alone accuracy over a set
of architectures): here the stand-alone accuracy is proxy training (`ProxyTrainingEvaluator`) on
the very split the supernet was trained with, scored on the same held-out part, so the two
rankings differ only in how the weights were obtained. Kendall's tau comes from scipy.
"""

from __future__ import annotations

import random
import time
from typing import Any

from edgenas.evaluators.oneshot import OneShotConfig, OneShotEvaluator


def check_fidelity(supernet_dir: str, n: int, *, proxy_epochs: int = 1, seed: int = 0, data_dir: str | None = None,
                   oneshot: OneShotConfig | None = None, progress: bool = False) -> dict[str, Any]:
    """One-shot and proxy-trained accuracy of `n` distinct random architectures, and their tau."""
    from scipy.stats import kendalltau, spearmanr

    from edgenas.supernet.training import SupernetSettings
    from edgenas.training.loop import TrainConfig
    from edgenas.training.proxy import ProxyConfig, ProxyTrainingEvaluator
    from edgenas.util.progress import TaskBar

    oneshot = oneshot or OneShotConfig()
    scorer = OneShotEvaluator(supernet_dir, oneshot, data_dir=data_dir)
    space = scorer.supernet.space
    settings = SupernetSettings.from_dict(scorer.record["settings"])
    train_part, _ = scorer.data_parts()
    proxy = ProxyTrainingEvaluator(
        ProxyConfig(dataset=settings.dataset, data_dir=data_dir or settings.data_dir, subset=settings.subset,
                    val_fraction=settings.val_fraction, seed=settings.seed, device=oneshot.device,
                    train=TrainConfig(epochs=proxy_epochs, batch_size=settings.train.batch_size,
                                      lr=settings.train.lr, seed=settings.seed)),
        space)
    rng = random.Random(seed)
    archs: list[str] = []
    while len(archs) < n:
        arch = space.sample(rng)
        if arch not in archs:
            archs.append(arch)
    rows = []
    bar = TaskBar("fidelity", 2 * n) if progress else None
    try:
        for arch in archs:
            started = time.perf_counter()
            one = scorer.evaluate(arch)
            oneshot_seconds = time.perf_counter() - started
            if bar:
                bar.advance()
            trained = proxy.evaluate(arch)
            if bar:
                bar.advance()
            rows.append({"arch": arch, "oneshot_accuracy": one.accuracy, "proxy_accuracy": trained.accuracy,
                         "oneshot_seconds": oneshot_seconds, "proxy_seconds": trained.metrics.get("seconds"),
                         "error": one.error or trained.error})
    finally:
        if bar:
            bar.close()
    ok = [r for r in rows if r["error"] is None]
    tau, p_value = kendalltau([r["oneshot_accuracy"] for r in ok], [r["proxy_accuracy"] for r in ok])
    rho, _ = spearmanr([r["oneshot_accuracy"] for r in ok], [r["proxy_accuracy"] for r in ok])
    return {
        "supernet": str(supernet_dir), "architectures": n, "scored": len(ok), "proxy_epochs": proxy_epochs,
        "kendall_tau": float(tau), "p_value": float(p_value), "spearman_rho": float(rho),
        "oneshot_seconds_mean": sum(r["oneshot_seconds"] for r in ok) / max(1, len(ok)),
        "proxy_seconds_mean": sum(r["proxy_seconds"] or 0.0 for r in ok) / max(1, len(ok)),
        "train_images": len(train_part), "rows": rows,
    }
