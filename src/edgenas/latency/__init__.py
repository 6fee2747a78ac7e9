"""Latency measured on the device: backends, an honest protocol, a cache and a per-layer LUT.

Imports are lazy so that the measuring subprocess (`edgenas.latency.worker`) starts without torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "LatencyError": "edgenas.latency.errors",
    "Measurement": "edgenas.latency.measurement",
    "Protocol": "edgenas.latency.protocol",
    "Measurer": "edgenas.latency.protocol",
    "LatencyCache": "edgenas.latency.cache",
    "default_cache_path": "edgenas.latency.cache",
    "get_backend": "edgenas.latency.backends",
    "backend_names": "edgenas.latency.backends",
    "backend_statuses": "edgenas.latency.backends",
    "LatencyEstimator": "edgenas.latency.estimator",
    "make_latency_estimator": "edgenas.latency.estimator",
    "LatencyLUT": "edgenas.latency.lut",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'edgenas.latency' has no attribute '{name}'")
