"""Fixtures for the integration tier: root, real namespaces, real speakers.

Each test gets its own lab name and state folder, and ends with a leak check: no namespace,
no process left that belongs to its lab.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from meshemu.lab import down
from meshemu.model import names

ROOT = Path(__file__).resolve().parents[2]
TOPOLOGIES = ROOT / "topologies"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


def lab_leftovers(lab: str, state_dir: Path) -> list[str]:
    """Namespaces and processes of `lab` still present (read only, never killed here)."""
    left = [
        f"netns {entry.name}"
        for entry in Path("/run/netns").glob("*")
        if names.lab_owns_netns(lab, entry.name)
    ]
    marker = str(state_dir).encode()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
            status = (proc / "status").read_text()
        except OSError:
            continue
        if marker in cmdline and "State:\tZ" not in status:
            text = cmdline.replace(b"\0", b" ").decode(errors="replace")[:120]
            left.append(f"process {proc.name}: {text}")
    return left


@pytest.fixture
def lab_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private state root for the test's labs; everything in it is brought down afterwards."""
    if os.geteuid() != 0:
        pytest.skip("integration tests need root (network namespaces)")
    state_root = tmp_path / "state"
    state_root.mkdir()
    monkeypatch.setenv("MESHEMU_STATE_DIR", str(state_root))
    yield state_root
    labs = [p.name for p in state_root.iterdir() if p.is_dir()]
    for lab in labs:
        down(lab, progress=lambda _m: None)
    deadline = time.monotonic() + 5
    leftovers: list[str] = []
    for lab in labs:
        while True:
            leftovers = lab_leftovers(lab, state_root / lab)
            if not leftovers or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert not leftovers, f"lab {lab} leaked: {leftovers}"
