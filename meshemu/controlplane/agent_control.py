"""How the lab talks to a node's agent: one-byte requests through a FIFO in the node's folder.

Owns the control FIFO (`nodes/<node>/agent.ctl`) and its messages. The agent runs inside its
node's ExaBGP process (see `controlplane.agent_thread`), so it has no pid of its own to signal,
and ExaBGP keeps SIGHUP, SIGUSR1 and SIGUSR2 for itself. The agent holds the FIFO open for
reading (read-write, so it never sees an end of file) for as long as it runs; a FIFO with no
reader refuses a non-blocking writer (ENXIO), so "is the agent running" is "does the FIFO take
a write", exact to the process and never fooled by a reused pid. The folder is the lab's own
and a FIFO has no length limit on its path (a unix socket's is 108 bytes).
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

CONTROL_FILE = "agent.ctl"

WRITE_STATE = b"w"  # write agent.json now (verify reads it right after)
REPROGRAM = b"r"  # program the whole FIB again (repair; a link came back up)
CEASE = b"c"  # withdraw everything: the speaker stops for a configuration change
RESTART = b"n"  # a new agent configuration: write the state, a successor takes over from it
CRASH = b"k"  # a fault: end now, writing nothing; a successor takes over from the state file
MESSAGES = (WRITE_STATE, REPROGRAM, CEASE, RESTART, CRASH)


def open_for_agent(node_dir: Path) -> int:
    """The agent's end: create the FIFO if needed and open it; the caller closes the fd."""
    path = node_dir / CONTROL_FILE
    try:
        os.mkfifo(path, 0o600)
    except FileExistsError:
        if not stat.S_ISFIFO(os.lstat(path).st_mode):
            raise OSError(errno.EEXIST, f"{path} exists and is no FIFO") from None
    return os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)


def _open_writer(state_dir: Path, node: str) -> int | None:
    path = state_dir / "nodes" / node / CONTROL_FILE
    try:
        if not stat.S_ISFIFO(os.lstat(path).st_mode):
            return None  # never write into a file that took the FIFO's place
        return os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:  # ENXIO: no reader; ENOENT: no agent ever ran here
        return None


def tell(state_dir: Path, node: str, message: bytes) -> bool:
    """Send `message` to the agent of `node` in the lab whose state folder is `state_dir`;
    False when no agent runs (nothing was sent)."""
    assert message in MESSAGES
    fd = _open_writer(state_dir, node)
    if fd is None:
        return False
    try:
        return os.write(fd, message) == 1
    except OSError:  # EAGAIN: 64 KiB of requests unread, the agent is stuck
        return False
    finally:
        os.close(fd)


def running(state_dir: Path, node: str) -> bool:
    """An agent holds the node's FIFO open (asks nothing of it)."""
    fd = _open_writer(state_dir, node)
    if fd is None:
        return False
    os.close(fd)
    return True
