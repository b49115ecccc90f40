"""The per-node agent: ExaBGP's API process, playing calico-node's route programming.

Owns, for one node: announcing the node's blocks with itself as next hop; the Adj-RIB-In per
peer; best-path selection, route reflection and the sessions' BGPFilters (the rules in
`model.bgp`, shared with the planner: a session's import filter on what its peer sends, its
export filter on what goes to the peer); programming the node's kernel FIB exactly as
`model.routes` decides (blackholes for its own blocks, direct / tunl0 / VXLAN routes for
learned ones), withdrawing when a peer withdraws or its session drops; and writing its
observed sessions, RIB and FIB as JSON into the lab's state folder, atomically, on every change.

`AgentCore` is pure (events in, commands and desired routes out) so it is unit-tested without
ExaBGP or root; `main` is the thin runtime around it (stdin, stdout, netlink, files).
Run by ExaBGP as `python -m meshemu.controlplane.agent --state DIR --node NAME`.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import selectors
import signal
import socket
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path as FsPath
from typing import Any

from meshemu.controlplane.events import (
    OtherEvent,
    RecordedPath,
    StateEvent,
    UpdateEvent,
    announce_command,
    parse_message,
    path_from_json,
    path_to_json,
    withdraw_command,
)
from meshemu.errors import MeshemuError
from meshemu.model.agent_config import AgentConfig
from meshemu.model.bgp import Link, Path, accept, best_path, export, imported, received
from meshemu.model.routes import FibRoute, prefix_sort_key, route_for


@dataclass
class PeerState:
    peer_ip: str
    peer_node: str | None
    kind: str
    state: str = "idle"
    since: float = field(default_factory=time.time)
    reason: str = ""
    received: int = 0


class AgentCore:
    """A node's BGP decisions: Adj-RIB-In, Loc-RIB, Adj-RIB-Out and the desired FIB."""

    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.me = config.speaker()
        # External peers (no `peer_node`) are not emulated: no link, no state.
        self.links: dict[str, Link] = config.links()
        self.peers: dict[str, PeerState] = {
            s.peer_ip: PeerState(s.peer_ip, s.peer_node, s.kind)
            for s in config.sessions
            if s.peer_node is not None
        }
        self.router_ids = config.router_ids()
        self.pools = [pool.rule() for pool in config.pools]
        self.own: dict[str, Path] = {}
        for block in config.exported_blocks():
            family = ipaddress.ip_network(block.cidr).version
            self.own[block.cidr] = Path(prefix=block.cidr, next_hop=config.address(family) or "")
        self.blackholes = list(config.blackholes())
        self.ctx = config.route_context()
        self.adj_in: dict[str, dict[str, Path]] = {peer: {} for peer in self.links}
        self.adj_out: dict[str, dict[str, Path]] = {peer: {} for peer in self.links}
        self.best: dict[str, Path] = dict(self.own)
        # Prefixes whose kernel route may need changing since the runtime last looked.
        self.dirty: set[str] = set(self.blackholes) | set(self.own)

    # -- decisions -------------------------------------------------------------------------
    def _recompute(self, prefixes: Iterable[str]) -> set[str]:
        changed = set()
        for prefix in prefixes:
            candidates = [rib[prefix] for rib in self.adj_in.values() if prefix in rib]
            if prefix in self.own:
                candidates.append(self.own[prefix])
            chosen = best_path(candidates)
            if chosen != self.best.get(prefix):
                changed.add(prefix)
                self.dirty.add(prefix)
                if chosen is None:
                    self.best.pop(prefix, None)
                else:
                    self.best[prefix] = chosen
        return changed

    def _exports(self, prefixes: Iterable[str]) -> list[str]:
        """Adj-RIB-Out changes as ExaBGP commands."""
        commands = []
        for prefix in sorted(prefixes):
            path = self.best.get(prefix)
            for peer, link in self.links.items():
                wanted = export(path, self.me, link) if path is not None else None
                current = self.adj_out[peer].get(prefix)
                if wanted == current:
                    continue
                if wanted is None:
                    assert current is not None
                    commands.append(withdraw_command(peer, current))
                    del self.adj_out[peer][prefix]
                else:
                    commands.append(announce_command(peer, wanted))
                    self.adj_out[peer][prefix] = wanted
        return commands

    def restore(self, previous: object) -> None:
        """Take over what a previous agent of this node recorded (it was restarted): the
        Adj-RIB-In, what it sent each peer, and the sessions' states.

        ExaBGP restarts a dead API process but replays nothing to it; the sessions stayed up,
        so what the last agent learned is still what the peers advertise. A route refresh
        asked of every peer afterwards (see `refresh_commands`) corrects anything missed.
        What it sent is kept as `RecordedPath`s, so `start` withdraws what this agent no longer
        wants and announces the rest again. The record is `snapshot`'s form; anything else in
        it (another version, a cut file, a hand edit) is ignored, entry by entry, never raised.
        """
        state = previous if isinstance(previous, dict) else {}
        self._restore_rib(state.get("rib"))
        self._restore_adj_out(state.get("adj_out"))
        self._restore_sessions(state.get("sessions"))
        self._recompute({p for rib in self.adj_in.values() for p in rib})

    def _restore_rib(self, entries: object) -> None:
        for entry in entries if isinstance(entries, list) else []:
            peer = entry.get("learned_from") if isinstance(entry, dict) else None
            path = path_from_json(entry)
            if not isinstance(peer, str) or peer not in self.adj_in or path is None:
                continue
            self.adj_in[peer][path.prefix] = replace(
                path,
                learned_from=peer,
                learned_router_id=self.router_ids.get(peer, ""),
                ebgp=self.links[peer].ebgp,
                from_rr_client=self.links[peer].rr_client,
            )

    def _restore_adj_out(self, sent: object) -> None:
        for peer_ip, entries in (sent if isinstance(sent, dict) else {}).items():
            if peer_ip not in self.adj_out or not isinstance(entries, list):
                continue
            for entry in entries:
                path = path_from_json(entry)
                if path is not None:
                    self.adj_out[peer_ip][path.prefix] = RecordedPath.of(path)

    def _restore_sessions(self, sessions: object) -> None:
        # The states `snapshot` writes (ExaBGP reports connected, up and down; up is written
        # as established).
        recorded_states = ("idle", "connected", "established", "down")
        for session in sessions if isinstance(sessions, list) else []:
            if not isinstance(session, dict):
                continue
            peer_ip, state = session.get("peer_ip"), session.get("state")
            since, info = session.get("since"), session.get("info")
            peer = self.peers.get(peer_ip) if isinstance(peer_ip, str) else None
            if (
                peer is None
                or not isinstance(state, str)
                or state not in recorded_states
                or isinstance(since, bool)  # a bool is an int to Python, never a time
                or not isinstance(since, int | float)
                # A Unix time; a comparison, not math.isfinite, which overflows on a huge int.
                or not 0 <= since < 1e12
                or not isinstance(info, str)
            ):
                continue
            peer.state = "up" if state == "established" else state
            peer.since, peer.reason = float(since), info
            peer.received = len(self.adj_in.get(peer.peer_ip, {}))

    def refresh_commands(self) -> list[str]:
        """Ask every established peer to send its routes again (BGP route refresh)."""
        out = []
        for peer_ip, peer in self.peers.items():
            if peer.state == "up":
                family = "ipv6" if ":" in peer_ip else "ipv4"
                out.append(f"neighbor {peer_ip} announce route-refresh {family} unicast")
        return out

    def start(self) -> list[str]:
        """Announce the node's own blocks to every peer (ExaBGP sends them once established).

        After a takeover this also withdraws what the previous agent announced and this one
        no longer wants (a pool or block removed by a live change).
        """
        announced = {prefix for paths in self.adj_out.values() for prefix in paths}
        return self._exports(set(self.own) | announced | set(self.best))

    def on_state(self, event: StateEvent) -> list[str]:
        peer = self.peers.get(event.peer)
        if peer is None:
            return []
        if event.state != peer.state:
            peer.state, peer.since, peer.reason = event.state, time.time(), event.reason
        if event.state == "down" and self.adj_in.get(event.peer):
            lost = list(self.adj_in[event.peer])
            self.adj_in[event.peer] = {}
            return self._exports(self._recompute(lost))
        return []

    def on_update(self, event: UpdateEvent) -> list[str]:
        link = self.links.get(event.peer)
        if link is None or event.end_of_rib:
            return []
        rib = self.adj_in[event.peer]
        touched = set()
        for prefix in event.withdrawn:
            if rib.pop(prefix, None) is not None:
                touched.add(prefix)
        router_id = self.router_ids.get(event.peer, event.peer if ":" not in event.peer else "")
        for path in event.announced:
            stored = received(path, link, router_id)
            touched.add(path.prefix)
            kept = imported(stored, link) if accept(stored, self.me, link) else None
            if kept is not None:
                rib[path.prefix] = kept
            else:
                # A looped route, or one the import filter rejects, replaces what the peer sent
                # before and is kept itself by nothing.
                rib.pop(path.prefix, None)
        self.peers[event.peer].received = len(rib)
        return self._exports(self._recompute(touched))

    def route(self, prefix: str) -> FibRoute | None:
        """The kernel route this node wants for `prefix` now, or None for no route."""
        if prefix in self.blackholes:
            return FibRoute(prefix, "blackhole")
        path = self.best.get(prefix)
        if path is None or path.learned_from is None:
            return None
        return route_for(prefix, path.next_hop, self.pools, self.ctx)

    def snapshot(self) -> dict[str, Any]:
        rib = []
        for peer, paths in sorted(self.adj_in.items()):
            for prefix, path in sorted(paths.items()):
                rib.append(_path_json(path, self.best.get(prefix) == path, peer))
        for prefix, path in sorted(self.own.items()):
            rib.append(_path_json(path, self.best.get(prefix) == path, None))
        return {
            "sessions": [
                {
                    "peer_ip": p.peer_ip,
                    "peer_node": p.peer_node,
                    "kind": p.kind,
                    "state": "established" if p.state == "up" else p.state,
                    "since": p.since,
                    "info": p.reason,
                    "prefixes_received": p.received,
                }
                for p in self.peers.values()
            ],
            "rib": rib,
            # What was sent each peer, with the attributes a withdrawal or a comparison needs
            # (`restore` reads it back).
            "adj_out": {
                peer: [path_to_json(path) for _, path in sorted(paths.items())]
                for peer, paths in sorted(self.adj_out.items())
            },
        }


AGENT_CONFIG = "agent-config.json"  # in the node's state folder: `AgentConfig.to_json()`


def _path_json(path: Path, best: bool, peer: str | None) -> dict[str, Any]:
    return {
        "prefix": path.prefix,
        "next_hop": path.next_hop,
        "learned_from": peer,
        "as_path": list(path.as_path),
        "local_pref": path.local_pref,
        "originator_id": path.originator_id,
        "cluster_list": list(path.cluster_list),
        "best": best,
    }


class Runtime:
    """stdin/stdout with ExaBGP, FIB changes through the lab's route programmer, the state file.

    The agent holds no netlink library of its own: it sends route changes to the lab's `fibd`
    over a unix socket (see `dataplane.fibd`), which keeps every node's agent small.
    """

    STATE_INTERVAL = 0.25  # seconds between state-file writes while updates stream in

    def __init__(self, state_dir: FsPath, node: str) -> None:
        import json

        path = state_dir / "nodes" / node / AGENT_CONFIG
        self.core = AgentCore(AgentConfig.from_json(json.loads(path.read_text()), str(path)))
        self.restarted = False
        self.netns = self.core.config.netns
        self.out_file = state_dir / "nodes" / node / "agent.json"
        self.fibd_path = state_dir / "fib.sock"
        self.fibd: socket.socket | None = None
        self.programmed: dict[str, FibRoute] = {}
        self.reprogram: set[str] = set()  # prefixes to program again even if recorded as done
        self.errors: list[str] = []
        self.started = time.time()
        self.last_write = 0.0
        self.state_pending = True
        self._take_over()

    def _take_over(self) -> None:
        """A previous agent of this node left its state: continue from it."""
        import json

        try:
            previous = json.loads(self.out_file.read_text())
        except (OSError, ValueError, RecursionError):
            return
        if not isinstance(previous, dict) or previous.get("pid") == os.getpid():
            return
        self.restarted = True
        self.core.restore(previous)
        fib = previous.get("fib")
        for entry in fib if isinstance(fib, list) else []:
            try:
                route = FibRoute.from_json(entry, "agent.json fib")
            except MeshemuError:
                continue  # not a route this agent wrote: program it afresh
            self.programmed[route.prefix] = route
        # What the previous agent recorded is what it meant to program, not what the kernel
        # holds now (it may have died between a change and its write, or the node's namespace
        # was rebuilt): program every one of those routes again, once.
        self.reprogram = set(self.programmed)
        self.core.dirty |= set(self.programmed)
        errors = previous.get("errors")
        self.errors = [
            *[e for e in (errors if isinstance(errors, list) else []) if isinstance(e, str)][-10:],
            f"{time.strftime('%H:%M:%S')} agent restarted (previous pid {previous.get('pid')})",
        ]

    def send(self, commands: list[str]) -> None:
        if commands:
            sys.stdout.write("".join(command + "\n" for command in commands))
            sys.stdout.flush()

    def _fibd(self) -> socket.socket | None:
        if self.fibd is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(str(self.fibd_path))
            except OSError as err:
                sock.close()
                self._error(f"route programmer unreachable: {err}")
                return None
            self.fibd = sock
        return self.fibd

    def _error(self, text: str) -> None:
        self.errors = [*self.errors[-19:], f"{time.strftime('%H:%M:%S')} {text}"]

    def sync_fib(self) -> None:
        """Send the kernel-route changes of the dirty prefixes; failures stay dirty."""
        import json

        changes: list[tuple[str, FibRoute | None, dict[str, object]]] = []
        for prefix in sorted(self.core.dirty):
            wanted = self.core.route(prefix)
            current = self.programmed.get(prefix)
            if wanted == current and (wanted is None or prefix not in self.reprogram):
                continue
            request: dict[str, object]
            if wanted is None:
                assert current is not None
                request = {
                    "netns": self.netns,
                    "op": "del",
                    "prefix": prefix,
                    "type": current.type,
                    "via": current.via,
                    "dev": current.dev,
                }
            else:
                request = {
                    "netns": self.netns,
                    "op": "replace",
                    "prefix": prefix,
                    "type": wanted.type,
                    "via": wanted.via,
                    "dev": wanted.dev,
                    "onlink": wanted.onlink,
                }
            changes.append((prefix, wanted, request))
        if not changes:
            self.core.dirty.clear()
            self.reprogram.clear()
            return
        sock = self._fibd()
        if sock is None:
            return
        payload = "".join(json.dumps(request) + "\n" for _, _, request in changes)
        try:
            sock.sendall(payload.encode())
            replies = self._read_lines(sock, len(changes))
        except OSError as err:
            self._error(f"route programmer: {err}")
            self.fibd = None
            return
        self.state_pending = True
        failed = set()
        for (prefix, wanted, _), reply in zip(changes, replies, strict=True):
            if reply == "ok":
                self.reprogram.discard(prefix)
                if wanted is None:
                    self.programmed.pop(prefix, None)
                else:
                    self.programmed[prefix] = wanted
            else:
                # The kernel's state of the prefix is unknown now: send it again next time,
                # even if what is wanted equals what was last programmed.
                failed.add(prefix)
                if wanted is not None:
                    self.reprogram.add(prefix)
                self._error(f"{prefix}: {reply}")
        self.core.dirty = failed

    def _read_lines(self, sock: socket.socket, count: int) -> list[str]:
        data = b""
        while data.count(b"\n") < count:
            chunk = sock.recv(65536)
            if not chunk:
                raise OSError("route programmer closed the connection")
            data += chunk
        return data.decode().splitlines()[:count]

    def write_state(self, force: bool = False) -> None:
        from meshemu.state import write_json_atomic

        now = time.time()
        if not force and now - self.last_write < self.STATE_INTERVAL:
            self.state_pending = True
            return
        data = self.core.snapshot()
        data.update(
            {
                "node": self.core.me.name,
                "pid": os.getpid(),
                "started": self.started,
                "updated": now,
                "fib": [
                    r.to_json()
                    for r in sorted(
                        self.programmed.values(), key=lambda r: prefix_sort_key(r.prefix)
                    )
                ],
                "errors": self.errors,
            }
        )
        write_json_atomic(self.out_file, data)
        self.last_write, self.state_pending = now, False

    def on_signals(self, wakeup: socket.socket) -> None:
        """SIGUSR1: write the state now (`verify` asks before it reads, so it never reads a
        state older than the last update); SIGHUP: program the whole FIB again (`repair`: a
        route deleted by hand comes back)."""
        try:
            received = wakeup.recv(64)
        except BlockingIOError:
            return
        if signal.SIGHUP in received:
            self.reprogram = set(self.programmed) | set(self.core.best) | set(self.core.blackholes)
            self.core.dirty |= self.reprogram
            self.sync_fib()
        self.write_state(force=True)

    def _signal_socket(self) -> socket.socket:
        reader, writer = socket.socketpair()
        reader.setblocking(False)
        writer.setblocking(False)
        self._wakeup_writer = writer  # kept open for the life of the agent
        signal.set_wakeup_fd(writer.fileno())
        for signum in (signal.SIGUSR1, signal.SIGHUP):
            signal.signal(signum, lambda *_: None)  # the wake-up byte is the message
        return reader

    def run(self) -> int:
        self.send(self.core.start())
        if self.restarted:
            self.send(self.core.refresh_commands())
        self.sync_fib()
        self.write_state(force=True)
        selector = selectors.DefaultSelector()
        stdin = sys.stdin.fileno()
        os.set_blocking(stdin, False)
        selector.register(stdin, selectors.EVENT_READ)
        wakeup = self._signal_socket()
        selector.register(wakeup, selectors.EVENT_READ)
        pending = b""
        while True:
            # Wake up to retry failed routes (tunl0 restarting) and to flush a pending state.
            timeout = (
                1.0 if self.core.dirty else self.STATE_INTERVAL if self.state_pending else None
            )
            ready = selector.select(timeout)
            if not ready:
                self.sync_fib()
                self.write_state(force=True)
                continue
            if any(key.fileobj is wakeup for key, _ in ready):
                self.on_signals(wakeup)
                if all(key.fileobj is wakeup for key, _ in ready):
                    continue
            try:
                chunk = os.read(stdin, 65536)
            except BlockingIOError:
                continue
            if not chunk:
                self.write_state(force=True)
                return 0  # ExaBGP closed our stdin: it is shutting down
            pending += chunk
            *lines, pending = pending.split(b"\n")
            commands: list[str] = []
            for raw in lines:
                event = parse_message(raw.decode(errors="replace"))
                if isinstance(event, StateEvent):
                    commands += self.core.on_state(event)
                    self.state_pending = True
                elif isinstance(event, UpdateEvent):
                    commands += self.core.on_update(event)
                elif isinstance(event, OtherEvent) and event.problem:
                    self._error(f"ignored a message from ExaBGP: {event.problem}")
            self.send(commands)
            self.sync_fib()
            self.write_state()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="meshemu node agent (ExaBGP API process)")
    parser.add_argument("--state", required=True, type=FsPath)
    parser.add_argument("--node", required=True)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    pid_file = args.state / "nodes" / args.node / "agent.pid"
    pid_file.write_text(f"{os.getpid()}\n")
    runtime = Runtime(args.state, args.node)
    try:
        return runtime.run()
    finally:
        runtime.write_state(force=True)  # SIGTERM included: the successor starts from here


if __name__ == "__main__":
    sys.exit(main())
