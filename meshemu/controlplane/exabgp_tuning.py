"""What meshemu changes in ExaBGP 5.0's reactor, each change measured, none changing BGP.

Owns the patches a speaker applies to ExaBGP after it is forked and before ExaBGP starts
(`install`): ExaBGP as released spends most of a large lab's CPU on work that is not BGP
(regexes, deep copies, turns of idle peers, debug messages nobody reads), and several of its
waits delay convergence. Every patch names the ExaBGP code it replaces and the profile or
run that showed the need (docs/bench.md). Sessions, messages and what goes to the agent stay
ExaBGP's own.
"""

from __future__ import annotations

import os
import time
from typing import Any

LOG_LEVEL = "exabgp.log.level"


def install() -> None:
    """Apply every patch; once per speaker process, before ExaBGP's main."""
    _install_fast_accept()
    _install_exact_neighbor_match()
    _install_drained_callbacks()
    _skip_debug_logging()
    _install_idle_peer_skip()
    _install_uncopied_changes()
    _install_shallow_api_defaults()
    _install_keepalive_wait()


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
        matched = exact_neighbor_match(peers, descriptions)
        return list(original(peers, descriptions)) if matched is None else matched

    for module in (limit, announce, rib):
        module.match_neighbors = match_neighbors


def exact_neighbor_match(peers: list[str], descriptions: list[list[str]]) -> list[str] | None:
    """The peers ExaBGP's `match_neighbors` finds for descriptions that are all a plain
    `neighbor <ip>`, in the same order; None for any other description (ExaBGP's to match)."""
    if not descriptions:
        return None
    wanted = set()
    for description in descriptions:
        words = description[0].split() if len(description) == 1 else []
        if len(words) != 2 or words[0] != "neighbor" or words[1] == "*":
            return None
        wanted.add(words[1])
    return [name for name in peers if name.split(" ", 2)[1] in wanted]


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


def _install_idle_peer_skip() -> None:
    """Give an established, idle peer a turn of the reactor only every eighth of its hold time,
    at most every `IDLE_TURN` seconds (`idle_turn`).

    ExaBGP 5.0 gives every peer a turn on every wake-up of its reactor (`reactor/loop.py`
    `run`: `active_peers` each time), and anything wakes it: a keepalive from any of its peers,
    the sleep running out. A node of a 100-node mesh has 198 peers, so each keepalive costs 198
    turns; measured, a converged 100-node mesh used a whole core doing nothing, which it took
    from the nodes still converging. A peer keeps its turn on every wake-up while it is not
    established, is stopping, its socket was readable in the last poll, it asked to be called
    again (`ACTION.NOW`), or it has anything to send (routes, End-of-RIB, route refresh,
    operational messages); otherwise its turn comes for its timers only (Calico's keepalive
    every 80 s and hold time 240 s: ten seconds late is nothing to them). Measured on an idle
    100-node mesh (the benchmark): 41% and 87% of a core in two runs with a turn every 2 s,
    28% and 34% with `idle_turn`.
    While sessions that should be up are not, the reactor sleeps less (`SETTLING_SLEEP_MS`).
    """
    from exabgp.bgp.fsm import FSM
    from exabgp.reactor import loop, peer
    from exabgp.reactor.peer import ACTION

    established = FSM.ESTABLISHED
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
        """Whether an established peer needs its turn now. Called for every peer on every
        wake-up (a reflector: 398 peers, thousands of wake-ups), so the cheap tests go first
        and nothing here goes through ExaBGP's accessors (in a profile of a 200-node lab's
        reflector they made this check a quarter of its CPU)."""
        state = item.__dict__
        if state.get("_meshemu_again", True):
            return True
        fd, idle_turn = _session_of(item)
        if now - state.get("_meshemu_turn", 0.0) >= idle_turn:
            return True
        neighbor = item.neighbor
        outgoing = neighbor.rib.outgoing
        if item._teardown is not None or outgoing._new_nlri or outgoing._refresh_changes:
            return True
        if neighbor.eor or neighbor.refresh or neighbor.messages:
            return True
        return bool(ready) and fd in ready

    def active_peers(self: Any) -> set[str]:
        ready = self.__dict__.get("_meshemu_ready", set())
        now = time.monotonic()
        peers = self._peers
        unsettled = 0
        wanted = set()
        for key in original_active(self):
            item = peers[key]
            if item.fsm.state != established:
                unsettled += 1
                wanted.add(key)
            elif busy(item, ready, now):
                wanted.add(key)
        self.__dict__["_meshemu_unsettled"] = unsettled
        return wanted

    peer.Peer.run = run
    loop.Reactor._wait_for_io = wait_for_io
    loop.Reactor.active_peers = active_peers


def _session_of(peer: Any) -> tuple[int, float]:
    """An established peer's socket (`Peer.socket()`) and how often it needs a turn when
    idle, remembered for as long as the peer keeps its protocol object (the session: its
    connection and negotiated hold time are the protocol's for life)."""
    proto = peer.proto
    known = peer.__dict__.get("_meshemu_session")
    if known is not None and known[0] is proto:
        return int(known[1]), float(known[2])
    fd = int(peer.socket())
    facts = (fd, idle_turn(int(proto.negotiated.holdtime) if proto is not None else 0))
    peer.__dict__["_meshemu_session"] = (proto, *facts)
    return facts


def idle_turn(hold_time: int) -> float:
    """Seconds between the turns of an established, idle peer whose session negotiated
    `hold_time` (0: no keepalives). ExaBGP sends a keepalive a third of the hold time after
    the last message, checked on the peer's turn: a turn every eighth of it sends each one
    at most 0.46 of the hold time after the last (mesh.yaml's 9 s: every 1.1 s), and
    Calico's 240 s wait for `IDLE_TURN`."""
    if hold_time <= 0:
        return IDLE_TURN
    return min(IDLE_TURN, max(MIN_IDLE_TURN, hold_time / 8))


IDLE_TURN = 10.0  # seconds between the turns of an established, idle peer, at most
MIN_IDLE_TURN = 0.5  # and at least (ExaBGP accepts hold times from 3 s)
# While a few sessions that should be up are not (a small lab starting, a peer restarting),
# the reactor sleeps at most 50 ms: connection attempts and the start gate are checked on the
# peers' turns, and nothing else wakes the reactor for them (measured: a 10-node mesh
# converged in 1.9 s with the 0.4 s sleep, 1.05 s with 50 ms). With many (a 100-node mesh
# starting: 198 per speaker) the turns would cost more CPU than the wait (measured: 77 s up
# and converged with the short sleep, 69 s without).
SETTLING_SLEEP_MS = 50
SETTLING_PEERS = 20


def _install_uncopied_changes() -> None:
    """Hand a route the agent announces to its peers without a deep copy of it per peer.

    ExaBGP 5.0 deep-copies every route for every peer it goes to (`bgp/neighbor.py`
    `Neighbor.remove_self`), so that a route sent to several peers at once can get each
    peer's own next hop for `next-hop self`. The agent never uses `next-hop self` (its commands
    carry the next hop `model.bgp` chose), so the peers a command names (one, or several joined
    by `events.coalesce_commands`) can share the one route object: ExaBGP's outgoing RIB
    never changes a route it holds (`rib/outgoing.py`: a withdrawal deep-copies it first, the
    updates it builds only read it). In a profile of a 60-node reflector lab the copies were a
    third of a reflector's CPU. A route with `next-hop self` still gets its copy.
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


def _install_shallow_api_defaults() -> None:
    """Copy the API defaults of a neighbour with a list copy per key, not `copy.deepcopy`.

    ExaBGP 5.0 deep-copies `ParseAPI.DEFAULT_API` for every neighbour it reads
    (`configuration/neighbor/api.py` `_empty`); its values are lists of process names, for
    which a list copy is the same copy. A 100-node mesh speaker reads 198 neighbours: the copies
    were a sixth of its configuration's parse time. Anything else in the defaults (another
    ExaBGP) keeps the deep copy.
    """
    import copy

    from exabgp.configuration.neighbor.api import ParseAPI

    def empty(cls: Any) -> dict[str, Any]:
        defaults = cls.DEFAULT_API
        if all(isinstance(v, list) and all(type(i) is str for i in v) for v in defaults.values()):
            return {key: list(value) for key, value in defaults.items()}
        return copy.deepcopy(defaults)

    ParseAPI._empty = classmethod(empty)


def _install_keepalive_wait() -> None:
    """Wait for the peer's first KEEPALIVE (OPENCONFIRM) on the socket, not in a busy loop.

    ExaBGP 5.0 asks to be called again at once (`ACTION.NOW`: the reactor polls with no
    timeout) on every turn a peer in OPENCONFIRM finds nothing to read (`reactor/peer.py`
    `_read_ka`), as its `_read_open` did before ExaBGP's issue 723. While a 100-node mesh comes
    up thousands of sessions wait there for peers starved of CPU, and every speaker spun
    through its reactor, taking the CPU those peers needed: the last fifth of the sessions took
    half the convergence time. Nothing to read is now `ACTION.LATER` (the reactor polls the
    peer's socket, which wakes it when the KEEPALIVE arrives), exactly as `_read_open` does;
    the messages read and the timers checked are ExaBGP's own.
    """
    from exabgp.bgp.message import Message
    from exabgp.reactor import peer
    from exabgp.reactor.peer import ACTION

    def read_ka(self: Any) -> Any:
        for message in self.proto.read_keepalive():
            self.recv_timer.check_ka_timer(message)
            yield ACTION.LATER if message.ID == Message.CODE.NOP else ACTION.NOW

    peer.Peer._read_ka = read_ka
