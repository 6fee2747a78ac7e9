"""Shared fixtures.

`shared_data` is the real data beside the project (`../shared/data`, or $EDGENAS_DATA_DIR). A user's
fresh clone has none, so tests that need it skip with the reason; CI sets EDGENAS_REQUIRE_DATA=1
and then a missing folder fails the test instead.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def _data_dir() -> Path:
    configured = os.environ.get("EDGENAS_DATA_DIR")
    return Path(configured) if configured else PROJECT_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = _data_dir()
    if not path.is_dir():
        message = f"real data not found at {path} (set EDGENAS_DATA_DIR or place ../shared/data)"
        if os.environ.get("EDGENAS_REQUIRE_DATA") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def nb201_dir(shared_data: Path) -> Path:
    return shared_data / "nb201"


@pytest.fixture(scope="session")
def cifar10_dir(shared_data: Path) -> Path:
    return shared_data / "cifar10"


def run_cli(args, capsys) -> tuple[int, str, str]:
    """Run `edgenas ARGS` in process: (exit status, stdout, stderr); argparse errors included."""
    from edgenas.cli.main import main

    try:
        code = main([str(a) for a in args])
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def one_thread():
    """Tiny trainings run faster on one thread on these shared 2-core machines."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
