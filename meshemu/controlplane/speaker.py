"""ExaBGP speaker lifecycle: one speaker per node, forked from one pre-imported parent.

Owns starting ExaBGP inside a node's namespace and the start gate. Python start-up and the
import of ExaBGP cost a few hundred milliseconds of CPU per process; with dozens of nodes on two
cores that alone delays convergence by seconds, so the parent imports ExaBGP once and forks a
child per node, which enters the node's namespace and runs ExaBGP's own entry point.

The start gate: ExaBGP backs off exponentially (1, 2, 3, 4, 5, 7, 9 ... 60 s) after a refused
connection, and when many speakers start at once the passive side is often not listening yet.
So every speaker starts with its outgoing connections held until the lab opens the gate (a file
in the state folder), which the lab does once every speaker listens. Every first connection
then finds its listener. After the gate, a failed connection is retried after a short fixed
delay instead of ExaBGP's growing one, so a peer coming back after a fault is found quickly.

The node's agent runs as a thread of its speaker (`controlplane.agent_thread`): one process
per node. It must not decide sessions (see `model.render`) nor touch routes (the agent does).
"""

from __future__ import annotations

import ctypes
import gc
import os
import sys
import time
from pathlib import Path
from typing import Any

from meshemu.controlplane import exabgp_tuning
from meshemu.errors import SpeakerError

CLONE_NEWNET = 0x40000000
RETRY_AFTER_FAILURE = 1.0  # seconds


def exabgp_environment(
    bind: list[str], port: int, log_file: Path, extra: dict[str, str]
) -> dict[str, str]:
    """ExaBGP's settings for one speaker: no shared paths, root, bound to the node only."""
    env = {
        "exabgp.api.cli": "false",  # no named pipes or sockets in shared folders
        "exabgp.api.ack": "false",  # the agent does not wait for 'done' after each command
        "exabgp.daemon.user": "root",  # the agent programs kernel routes
        "exabgp.daemon.pid": "",
        "exabgp.daemon.daemonize": "false",
        "exabgp.log.destination": str(log_file),
        exabgp_tuning.LOG_LEVEL: os.environ.get("MESHEMU_EXABGP_LOG", "INFO"),
        # A line per message received or sent: with dozens of peers per speaker this costs
        # more CPU than BGP itself.
        "exabgp.log.statistics": "false",
        # ExaBGP's reactor gives every neighbour a turn on each wake-up and, when idle, wakes
        # every speed/100 seconds: at the default (1.0) a speaker with 98 neighbours spends
        # about 5% of a core doing nothing, which fifty speakers on two cores cannot afford
        # (measured: 50 nodes converged in 170 s at 1.0, 47 s at 5.0, 30 s at 10.0; with the
        # callbacks drained (`exabgp_tuning`) a converged 50-node mesh idles at 63% of a core
        # at 10.0 and 16% at 40.0). Sockets and the agent's pipe still wake it at once, the
        # API's callbacks run in the turn they arrive, and while a few sessions are still
        # coming up it sleeps 50 ms at most (`exabgp_tuning.SETTLING_SLEEP_MS`).
        "exabgp.reactor.speed": os.environ.get("MESHEMU_EXABGP_SPEED", "40.0"),
        "exabgp.tcp.bind": " ".join(bind),
        "exabgp.tcp.port": str(port),
        "EXABGP_ENVFILE": "/nonexistent",
    }
    env.update(extra)
    return env


def _install_start_gate(gate: Path) -> None:
    import exabgp.reactor.delay as delay

    original_backoff = delay.Delay.backoff

    def backoff(self: object) -> bool:
        if not gate.exists():
            return True  # hold every outgoing connection until all listeners are up
        return bool(original_backoff(self))

    def increase(self: object) -> None:
        self._time = time.time() + RETRY_AFTER_FAILURE  # type: ignore[attr-defined]
        self._next = RETRY_AFTER_FAILURE  # type: ignore[attr-defined]

    delay.Delay.backoff = backoff
    delay.Delay.increase = increase


def _forget_parent_logging() -> None:
    """Drop logging handlers inherited from the parent (a CLI, a test runner).

    They write to descriptors the child is about to close; once ExaBGP reuses those numbers
    for BGP sockets, a stray log line would be written into a TCP session.
    """
    import logging

    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    for logger in loggers:
        if isinstance(logger, logging.Logger):
            logger.handlers.clear()


# Set to a node's namespace name (or "all") to profile its speaker with cProfile: the stats go
# to `<exabgp.out>.prof` when it stops (`python -m pstats` reads them). How the CPU a speaker
# spends was measured (docs/bench.md).
PROFILE_ENV = "MESHEMU_PROFILE_SPEAKER"


def _profiled(main: Any, netns: str, output: Path) -> Any:
    wanted = os.environ.get(PROFILE_ENV, "")
    if wanted not in ("all", netns):
        return main()
    import cProfile

    profile = cProfile.Profile(time.thread_time)  # CPU of the reactor thread, not waits
    try:
        return profile.runcall(main)
    finally:
        profile.dump_stats(f"{output}.prof")


class SpeakerLauncher:
    """Pre-imports ExaBGP, then forks one speaker per node."""

    def __init__(self) -> None:
        os.environ["EXABGP_ENVFILE"] = "/nonexistent"  # read at import time
        try:
            import exabgp.application.main as exabgp_main
            import exabgp.application.server
            import exabgp.reactor.api.processes
            import exabgp.reactor.api.response  # noqa: F401
        except ImportError as err:
            raise SpeakerError(f"cannot import ExaBGP: {err}") from err
        # Imported here, before the forks, so every speaker shares its agent's code pages.
        from meshemu.controlplane import agent_thread

        self._install_agent_thread = agent_thread.install
        self._main = exabgp_main.main
        self._libc = ctypes.CDLL(None, use_errno=True)
        # What is imported now is shared by every speaker until one writes to its pages, and
        # the cyclic collector writes to every object it visits: frozen, the children's
        # collections leave these objects alone (Python's `gc.freeze` advice for fork without
        # exec). 100-node mesh: 24.2 -> 20.5 MB PSS per node, the same CPU.
        gc.collect()
        gc.freeze()

    def start(self, netns: str, config: Path, env: dict[str, str], output: Path, gate: Path) -> int:
        """Fork a speaker into `netns`; returns its pid. The child never returns."""
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid:
            return pid
        code = 1
        try:
            os.setsid()  # its own session: Ctrl-C at the terminal does not reach it
            _forget_parent_logging()
            out = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
            null = os.open(os.devnull, os.O_RDONLY)
            os.dup2(null, 0)
            os.dup2(out, 1)
            os.dup2(out, 2)
            os.closerange(3, 65536)  # drop the parent's netlink sockets and files
            # The parent's sys.stdout may be a wrapper around a descriptor just closed (a test
            # runner capturing output): bind the standard streams to the new 0, 1 and 2.
            sys.stdin = open(0, closefd=False)  # noqa: SIM115
            sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
            sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
            fd = os.open(f"/run/netns/{netns}", os.O_RDONLY)
            if self._libc.setns(fd, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), f"setns {netns}")
            os.close(fd)
            os.environ.update(env)
            _install_start_gate(gate)
            exabgp_tuning.install()
            self._install_agent_thread()
            sys.argv = ["exabgp", "server", str(config)]
            result = _profiled(self._main, netns, output)
            code = result if isinstance(result, int) else 0
        except SystemExit as err:
            code = err.code if isinstance(err.code, int) else 1
        except BaseException:  # the child must never return into the parent's code
            import traceback

            traceback.print_exc()
        finally:
            os._exit(code)
