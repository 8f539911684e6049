"""Shared fixtures. Unit tests (tests/unit) build tiny stores inline; integration tests
(tests/integration) use the real recorded trajectories in ../shared/replay."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_REPLAY = REPO.parent / "shared" / "replay"


@pytest.fixture(scope="session")
def shared_replay() -> Path:
    """../shared/replay; CI must have it (fail), a developer without it skips with a reason."""
    if not (SHARED_REPLAY / "expected.csv").is_file():
        message = f"{SHARED_REPLAY} (the recorded Qwen3 trajectories) is missing"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message + " under CI=true")
        pytest.skip(message)
    return SHARED_REPLAY
