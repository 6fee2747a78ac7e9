"""Every `edgenas` command pays for what the parser imports: keep the slow, rarely needed
libraries out of it (they are imported by the code that uses them)."""

from __future__ import annotations

import subprocess
import sys

# Libraries only a few commands need, each slow to import (`python -X importtime -m
# edgenas.cli.main --help` shows how slow).
SLOW_AND_RARE = ("scipy.stats", "matplotlib.pyplot")


def test_the_parser_imports_neither_scipy_stats_nor_pyplot():
    code = ("import sys; from edgenas.cli.main import build_parser; build_parser(); "
            f"print(','.join(m for m in {SLOW_AND_RARE!r} if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.strip() == "", f"imported at start-up: {loaded.stdout.strip()}"
