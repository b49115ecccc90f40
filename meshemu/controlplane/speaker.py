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
import os
import sys
import time
from pathlib import Path
from typing import Any

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
        LOG_LEVEL: os.environ.get("MESHEMU_EXABGP_LOG", "INFO"),
        # A line per message received or sent: with dozens of peers per speaker this costs
        # more CPU than BGP itself.
        "exabgp.log.statistics": "false",
        # ExaBGP's reactor gives every neighbour a turn on each wake-up and, when idle, wakes
        # every speed/100 seconds: at the default (1.0) a speaker with 98 neighbours spends
        # about 5% of a core doing nothing, which fifty speakers on two cores cannot afford
        # (measured: 50 nodes converged in 170 s at 1.0, 47 s at 5.0, 30 s at 10.0; with the
        # callbacks drained, below, a converged 50-node mesh idles at 63% of a core at 10.0 and
        # 16% at 40.0). Sockets and the agent's pipe still wake it at once, and the API's
        # callbacks run in the turn they arrive, so updates are not delayed; a connection
        # retry (after the gate, or a refused one) waits up to one sleep (0.4 s) longer.
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


def _install_fast_accept() -> None:
    """Accept every waiting connection per reactor turn, not one per listening socket.

    ExaBGP 5.0 takes one new connection per listening socket per turn of its reactor; a node
    that is the passive side of dozens of sessions then needs dozens of turns, and under load a
    turn takes a good fraction of a second, so the last peers wait seconds after their TCP
    handshake completed. Draining the accept queue each turn removes that wait; the matching
    of connections to neighbours stays ExaBGP's own.
    """
    import socket as socket_module

    from exabgp.reactor import listener as listener_module
    from exabgp.reactor.network.error import error
    from exabgp.reactor.network.incoming import Incoming

    def incoming(self: Any) -> bool:
        if not self.serving:
            return False
        waiting = self.__dict__.setdefault("_meshemu_waiting", [])
        for sock in self._sockets:
            while True:
                try:
                    connection, _address = sock.accept()
                except OSError as exc:
                    if exc.errno not in error.block:
                        listener_module.log.critical(lambda exc=exc: str(exc), "network")
                    break
                waiting.append((sock, connection))
        return bool(waiting)

    def connected(self: Any) -> Any:
        waiting = self.__dict__.get("_meshemu_waiting", [])
        self.__dict__["_meshemu_waiting"] = []
        for sock, connection in waiting:
            if sock.family not in (socket_module.AF_INET, socket_module.AF_INET6):
                connection.close()
                continue
            # ExaBGP names the connection from the peer's point of view: "local" is the
            # remote end's address and "remote" ours.
            peer_end = connection.getpeername()[0]
            our_end = connection.getsockname()[0]
            yield Incoming(self._family_AFI_map[sock.family], our_end, peer_end, connection)

    listener_module.Listener.incoming = incoming
    listener_module.Listener._connected = connected


def _install_exact_neighbor_match() -> None:
    """Find the peer a command names by its address instead of a regex per configured peer.

    ExaBGP 5.0 matches every API command's `neighbor <ip>` against every peer's name with a
    regex compiled on the fly (`reactor/api/command/limit.py` `match_neighbors`). The agent
    sends a command per peer and prefix, so a mesh node of N peers runs N^2 regex searches, the
    lab N^3: in a profile of a 50-node mesh's speaker they were a fifth of its CPU. A peer's
    name always starts `neighbor <peer-address> ` (`bgp/neighbor.py` `Neighbor.name`), so a
    description that is only `neighbor <ip>` matches exactly the peers whose second word is
    that address; any other description goes to ExaBGP's own matcher.
    """
    from exabgp.reactor.api.command import announce, limit, rib

    original = limit.match_neighbors

    def match_neighbors(peers: list[str], descriptions: list[list[str]]) -> list[str]:
        wanted = set()
        for description in descriptions:
            words = description[0].split() if len(description) == 1 else []
            if len(words) != 2 or words[0] != "neighbor" or words[1] == "*":
                return list(original(peers, descriptions))
            wanted.add(words[1])
        if not descriptions:
            return peers
        return [name for name in peers if name.split(" ", 2)[1] in wanted]

    for module in (limit, announce, rib):
        module.match_neighbors = match_neighbors


def _install_drained_callbacks() -> None:
    """Run the API commands' callbacks to the end in the turn they arrive.

    ExaBGP 5.0 runs 50 steps of its scheduled callbacks per reactor turn (`reactor/
    asynchronous.py` `ASYNC.run`, whose "more to do" answer the loop ignores), so a burst of
    commands (an agent announcing its blocks to every peer) waits a reactor sleep per 50
    steps. Bounded, so a callback that waits for something cannot hold the reactor.
    """
    from exabgp.reactor.asynchronous import ASYNC

    original = ASYNC.run

    def run(self: Any) -> bool:
        return all(original(self) for _ in range(DRAIN_ROUNDS))

    ASYNC.run = run


DRAIN_ROUNDS = 40  # of ExaBGP's 50 steps each
LOG_LEVEL = "exabgp.log.level"


def _install_idle_peer_skip() -> None:
    """Give an established, idle peer a turn of the reactor only every `IDLE_TURN` seconds.

    ExaBGP 5.0 gives every peer a turn on every wake-up of its reactor (`reactor/loop.py`
    `run`: `active_peers` each time), and anything wakes it: a keepalive from any of its peers,
    the sleep running out. A node of a 100-node mesh has 198 peers, so each keepalive costs 198
    turns; measured, a converged 100-node mesh used a whole core doing nothing, which it took
    from the nodes still converging. A peer keeps its turn on every wake-up while it is not
    established, is stopping, its socket was readable in the last poll, it asked to be called
    again (`ACTION.NOW`), or it has anything to send (routes, End-of-RIB, route refresh,
    operational messages); otherwise its turn comes every `IDLE_TURN` seconds, for its timers
    (keepalive every 80 s, hold time 240 s: a second or two late is nothing to them).
    While sessions that should be up are not, the reactor sleeps less (`SETTLING_SLEEP_MS`).
    """
    from exabgp.bgp.fsm import FSM
    from exabgp.reactor import loop, peer
    from exabgp.reactor.peer import ACTION

    original_active = loop.Reactor.active_peers
    original_wait = loop.Reactor._wait_for_io
    original_run = peer.Peer.run

    def run(self: Any) -> Any:
        action = original_run(self)
        self.__dict__["_meshemu_turn"] = time.monotonic()
        self.__dict__["_meshemu_again"] = action == ACTION.NOW
        return action

    def wait_for_io(self: Any, sleeptime: int) -> Any:
        ready: set[int] = set()
        self.__dict__["_meshemu_ready"] = ready
        if 0 < self.__dict__.get("_meshemu_unsettled", 1) <= SETTLING_PEERS:
            sleeptime = min(sleeptime, SETTLING_SLEEP_MS)
        for fd in original_wait(self, sleeptime):
            ready.add(fd)
            yield fd

    def busy(item: Any, ready: set[int], now: float) -> bool:
        neighbor = item.neighbor
        return bool(
            item.fsm != FSM.ESTABLISHED
            or item._teardown is not None
            or item.__dict__.get("_meshemu_again", True)
            or now - item.__dict__.get("_meshemu_turn", 0.0) >= IDLE_TURN
            or item.socket() in ready
            or neighbor.rib.outgoing.pending()
            or neighbor.eor
            or neighbor.refresh
            or neighbor.messages
        )

    def active_peers(self: Any) -> set[str]:
        ready = self.__dict__.get("_meshemu_ready", set())
        now = time.monotonic()
        active = original_active(self)
        self.__dict__["_meshemu_unsettled"] = sum(
            1 for key in active if self._peers[key].fsm != FSM.ESTABLISHED
        )
        return {key for key in active if busy(self._peers[key], ready, now)}

    peer.Peer.run = run
    loop.Reactor._wait_for_io = wait_for_io
    loop.Reactor.active_peers = active_peers


IDLE_TURN = 2.0  # seconds between the turns of an established, idle peer
# While a few sessions that should be up are not (a small lab starting, a peer restarting),
# the reactor sleeps at most 50 ms: connection attempts and the start gate are checked on the
# peers' turns, and nothing else wakes the reactor for them (measured: a 10-node mesh
# converged in 1.9 s with the 0.4 s sleep, 1.05 s with 50 ms). With many (a 100-node mesh
# starting: 198 per speaker) the turns would cost more CPU than the wait (measured: 77 s up
# and converged with the short sleep, 69 s without).
SETTLING_SLEEP_MS = 50
SETTLING_PEERS = 20


def _install_uncopied_changes() -> None:
    """Hand a route the agent announces to its one peer without a deep copy of it.

    ExaBGP 5.0 deep-copies every route for every peer it goes to (`bgp/neighbor.py`
    `Neighbor.remove_self`), so that a route sent to several peers at once can get each
    peer's own next hop for `next-hop self`. The agent names one peer per command and never
    uses `next-hop self` (its commands carry the next hop `model.bgp` chose), so each route
    parsed from a command goes to one peer's RIB only: the copy protects nothing. In a profile
    of a 60-node reflector lab it was a third of a reflector's CPU. A route with `next-hop
    self` still gets its copy.
    """
    from exabgp.bgp.neighbor import Neighbor

    original = Neighbor.remove_self

    def remove_self(self: Any, change: Any) -> Any:
        return original(self, change) if change.nlri.nexthop.SELF else change

    Neighbor.remove_self = remove_self


def _skip_debug_logging() -> None:
    """ExaBGP builds and checks every debug message (some ten thousand while a 50-node mesh
    converges, a tenth of a speaker's CPU) even when the level is INFO: skip them then."""
    if os.environ.get(LOG_LEVEL, "INFO").upper() == "DEBUG":
        return
    from exabgp.logger import log

    log.debug = classmethod(lambda cls, message, source="", level="DEBUG": None)


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
            _install_fast_accept()
            _install_exact_neighbor_match()
            _install_drained_callbacks()
            _skip_debug_logging()
            _install_idle_peer_skip()
            _install_uncopied_changes()
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
