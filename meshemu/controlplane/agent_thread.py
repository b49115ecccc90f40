"""The node's agent as a thread of its ExaBGP process instead of a Python process of its own.

Owns what ExaBGP sees of the agent: its API process (`exabgp/reactor/api/processes.py`
`Processes._start`) is a `subprocess.Popen` with a pipe each way. Inside a speaker forked by
`controlplane.speaker`, `install` hands ExaBGP an `AgentThread` in its place when the command
is the agent's: the same two pipes, the same JSON lines, the same respawn when it ends (ExaBGP
reads the closed pipe as a dead process), but no second interpreter. A restart or crash the lab
asks for happens inside the thread (`agent.serve`), so the pipe, and what is in it, stays.
Measured on 50 nodes (docs/bench.md): the agent process cost 21.5 MB RSS / 12 MB PSS per node
and 80 ms of CPU to start; as a thread its code is in the pages the speakers share with their
launcher.

Every other command ExaBGP runs is started as a process, as ExaBGP would.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import subprocess
import sys
import threading
import traceback
from pathlib import Path
from types import SimpleNamespace
from typing import IO, Any

from meshemu.controlplane import agent

AGENT_MODULE = "meshemu.controlplane.agent"


def agent_arguments(run: str | list[str]) -> list[str] | None:
    """The agent's arguments when `run` is the agent's command (`python -m <agent> ...`)."""
    argv = shlex.split(run) if isinstance(run, str) else list(run)
    if len(argv) >= 3 and argv[1:3] == ["-m", AGENT_MODULE]:
        return argv[3:]
    return None


class AgentThread:
    """What `subprocess.Popen` is to ExaBGP's `Processes`, for an agent served by a thread."""

    def __init__(self, state_dir: Path, node: str) -> None:
        from_speaker, to_agent = os.pipe()
        from_agent, to_speaker = os.pipe()
        self.pid = os.getpid()
        self.returncode: int | None = None
        self.stdin: IO[bytes] = os.fdopen(to_agent, "wb")
        self.stdout: IO[bytes] = os.fdopen(from_agent, "rb", buffering=0)
        self._thread = threading.Thread(
            target=self._serve,
            args=(state_dir, node, from_speaker, to_speaker),
            name=f"agent:{node}",
            daemon=True,  # ExaBGP's exit ends the process; `serve` wrote the state before
        )
        self._thread.start()

    def _serve(self, state_dir: Path, node: str, from_speaker: int, to_speaker: int) -> None:
        code = 1
        try:
            _profiled(agent.serve, state_dir, node, (from_speaker, to_speaker), os.getpid())
            code = 0
        except BaseException:  # a thread's failure must reach the log, and end the agent
            traceback.print_exc(file=sys.stderr)
        finally:
            self.returncode = code  # before the pipe closes: ExaBGP polls, then reads
            os.close(from_speaker)
            os.close(to_speaker)

    def poll(self) -> int | None:
        return None if self._thread.is_alive() else self.returncode

    def terminate(self) -> None:
        """The agent ends when its input closes, as the process did on SIGTERM."""
        with contextlib.suppress(OSError):  # the agent had gone: nothing to tell
            self.stdin.close()

    kill = terminate  # a thread cannot be killed; its input closed ends it

    def wait(self, timeout: float | None = None) -> int | None:
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise subprocess.TimeoutExpired(f"agent thread {self._thread.name}", timeout or 0.0)
        return self.returncode


# Set to a node's name (or "all") to profile its agent thread with cProfile (CPU time of the
# thread): the stats go to `nodes/<node>/agent.prof` when ExaBGP stops.
PROFILE_ENV = "MESHEMU_PROFILE_AGENT"


def _profiled(serve: Any, state_dir: Path, node: str, *args: Any) -> None:
    if os.environ.get(PROFILE_ENV, "") not in ("all", node):
        serve(state_dir, node, *args)
        return
    import cProfile
    import time

    profile = cProfile.Profile(time.thread_time)
    try:
        profile.runcall(serve, state_dir, node, *args)
    finally:
        profile.dump_stats(str(state_dir / "nodes" / node / "agent.prof"))


def _popen(run: Any, **kwargs: Any) -> Any:
    arguments = agent_arguments(run)
    if arguments is None:
        return subprocess.Popen(run, **kwargs)
    try:
        args = agent.command_parser().parse_args(arguments)
    except SystemExit as err:  # argparse's way to refuse; ExaBGP reports a ValueError
        raise ValueError(f"not the agent's arguments: {arguments}") from err
    return AgentThread(args.state, args.node)


def install() -> None:
    """From here on, ExaBGP's API process of this process is served by a thread."""
    from exabgp.reactor.api import processes

    processes.subprocess = SimpleNamespace(
        Popen=_popen,
        PIPE=subprocess.PIPE,
        CalledProcessError=subprocess.CalledProcessError,
        TimeoutExpired=subprocess.TimeoutExpired,
    )
