"""The project's shared reference files (../shared): Calico's conformance corpus and schemas.

A test that needs one and does not find it skips with the reason in pytest's summary (`-ra`);
where `MESHEMU_REQUIRE_SHARED=1` (CI sets it: CI always has ../shared) it fails instead, so a
missing corpus can never pass silently.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MESHEMU_SHARED", ROOT.parent / "shared"))


def _require(path: Path, what: str) -> Path:
    if path.exists():
        return path
    message = f"{what} not found at {path}"
    if os.environ.get("MESHEMU_REQUIRE_SHARED") == "1":
        pytest.fail(f"{message} (MESHEMU_REQUIRE_SHARED=1: CI must have it)")
    pytest.skip(message)
    raise AssertionError("not reached")


@pytest.fixture
def require_shared() -> Callable[[Path, str], Path]:
    """`require_shared(path, what)`: the path, or skip (fail under MESHEMU_REQUIRE_SHARED=1)."""
    return _require
