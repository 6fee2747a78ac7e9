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
