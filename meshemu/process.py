"""Process identity: is the process a lab recorded still the same, running process?

Owns telling a recorded process apart from a reused pid (the kernel's start time, read from
`/proc/<pid>/stat`), treating zombies as gone, and signalling or waiting for a pid without
racing its exit. It never finds processes by name: callers hand it the pids the state folder
recorded.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path


def start_time(pid: int) -> int | None:
    """The kernel's start time of `pid` (clock ticks since boot), or None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may hold spaces and parentheses: the fields follow the last ')'.
    fields = stat.rsplit(")", 1)[1].split()
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def exists(pid: int) -> bool:
    """The pid runs and is not a zombie (a dead child not reaped yet counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        return "State:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False


def command_line(pid: int) -> list[str]:
    """The argv of `pid`, or [] when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def same_process(pid: int | None, started: int | None) -> bool:
    """`pid` still runs *and* is the process recorded with start time `started`."""
    return pid is not None and started is not None and start_time(pid) == started and exists(pid)


def send(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def wait_gone(pids: set[int], seconds: float) -> set[int]:
    """Wait until these pids are gone; returns those still running at the deadline."""
    deadline = time.monotonic() + seconds
    alive = {pid for pid in pids if exists(pid)}
    while alive and time.monotonic() < deadline:
        time.sleep(0.02)
        alive = {pid for pid in alive if exists(pid)}
    return alive


def stop(pids: set[int], grace: float = 3.0) -> None:
    """SIGTERM, then SIGKILL what is still there after `grace` seconds."""
    for pid in pids:
        send(pid, signal.SIGTERM)
    for pid in wait_gone(pids, grace):
        send(pid, signal.SIGKILL)
    wait_gone(pids, 2.0)
