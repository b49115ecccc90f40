"""The per-node agent: ExaBGP's API process, playing calico-node's route programming.

Owns, for one node: announcing the node's blocks with itself as next hop; the Adj-RIB-In per
peer; best-path selection, route reflection and the sessions' BGPFilters (the rules in
`model.bgp`, shared with the planner: a session's import filter on what its peer sends, its
export filter on what goes to the peer); programming the node's kernel FIB exactly as
`model.routes` decides (blackholes for its own blocks, direct / tunl0 / VXLAN routes for
learned ones), withdrawing when a peer withdraws or its session drops; graceful restart
(RFC 4724, as BIRD with Calico's `graceful restart;` does it, see below); and writing its
observed sessions, RIB and FIB as JSON into the lab's state folder, atomically, on every change.

Graceful restart. Every session advertises the capability (`model.render`), with the
Forwarding State bit: the node keeps forwarding while its speaker restarts.
- This node's speaker stops (SIGTERM: ExaBGP reports every session down "shutting down", then
  ends the agent; or it dies): the agent leaves its kernel routes as they are, and the next
  agent, under the new speaker, takes over the learned routes as stale. Each peer's stale
  routes go once that peer's session is back and it has sent End-of-RIB (those it did not
  send again), or when this node's restart time passes without it.
- A peer's session ends without a NOTIFICATION (its speaker restarting; BIRD does the same,
  `bgp_handle_graceful_restart` in proto/bgp/bgp.c of BIRD 2.0.12) and its OPEN listed the
  family: its routes stay, stale, for the restart time its OPEN gave; when it comes back
  without the Forwarding State bit they go at once, else at its End-of-RIB (those it did not
  send again). A NOTIFICATION, a hold timer expiry or a peer without the capability ends the
  session as before: its routes are withdrawn at once.
- A stop for a configuration change is no restart (Calico's BIRD reconfigures with a Cease):
  `supervise.withdraw_first` asks the agent first (CEASE), which withdraws everything it
  announced and forgets what it learned before ExaBGP closes the sessions (ExaBGP 5.0 closes
  a session that negotiated graceful restart without a NOTIFICATION whatever the reason, so
  the withdrawals are what tell the peers).
- ExaBGP sends no End-of-RIB of its own (`manual-eor`): the agent sends it when a session
  comes up, after what it announced, so a peer never takes the node's routes for all it has
  because the new agent was still starting.

`AgentCore` is pure (events in, commands and desired routes out) so it is unit-tested without
ExaBGP or root; `Runtime` is the thin runtime around it (ExaBGP's pipe, the route programmer's
socket, the control FIFO, the state file). In a lab it runs as a thread of the node's ExaBGP
process (`controlplane.agent_thread`): one process per node. ExaBGP's configuration names it as
`python -m meshemu.controlplane.agent --state DIR --node NAME`, which also runs it as a process
of its own (`main`), as any ExaBGP API program runs.
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

from meshemu.controlplane import agent_control
from meshemu.controlplane.events import (
    GracefulRestart,
    OpenEvent,
    OtherEvent,
    RecordedPath,
    StateEvent,
    UpdateEvent,
    announce_command,
    coalesce_commands,
    down_kind,
    end_of_rib_command,
    parse_message,
    path_from_json,
    path_to_json,
    withdraw_command,
)
from meshemu.errors import MeshemuError
from meshemu.model.agent_config import AgentConfig
from meshemu.model.bgp import (
    Link,
    Path,
    accept,
    best_path,
    export,
    imported,
    prefix_family,
    received,
    stays_off_ibgp,
)
from meshemu.model.routes import (
    BIRD_METRIC_BASE,
    PROTO_BIRD,
    FibRoute,
    pool_of,
    prefix_sort_key,
    route_for,
)

# BIRD's restart time when none is configured (`gr_time = 120`, proto/bgp/config.Y), which
# Calico's `graceful restart;` keeps: what a restarted agent waits for when its predecessor
# recorded no OPEN of the session.
DEFAULT_RESTART_TIME = 120


@dataclass
class PeerState:
    peer_ip: str
    peer_node: str | None
    kind: str
    state: str = "idle"
    since: float = field(default_factory=time.time)
    reason: str = ""
    received: int = 0
    # The graceful restart capability of the established session's OPENs: the peer's
    # (`theirs`) and this node's (`ours`; `ours_known` False: no OPEN of ours seen yet, so the
    # rendered configuration's, which always advertises one but for a restart time of 0).
    theirs: GracefulRestart | None = None
    ours: GracefulRestart | None = None
    ours_known: bool = False
    # The OPENs of the session being set up, by direction, until it is established.
    opening: dict[str, GracefulRestart | None] = field(default_factory=dict)

    @property
    def family(self) -> int:
        return 6 if ":" in self.peer_ip else 4

    def our_restart_time(self) -> int | None:
        """How long this node's peers keep its routes when its speaker restarts; None: they
        do not (it advertised no graceful restart)."""
        if not self.ours_known:
            return DEFAULT_RESTART_TIME
        return self.ours.time if self.ours is not None else None


@dataclass(frozen=True)
class Stale:
    """A peer's routes kept from an earlier session (RFC 4724): until the peer sends them again,
    until its End-of-RIB, or until `until` (Unix time). `peer_restarted`: the peer's speaker
    restarted (this node is the Receiving Speaker); False: this node's did."""

    prefixes: frozenset[str]
    until: float
    peer_restarted: bool


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
        for prefix in config.service_routes:  # Service addresses (confd's static routes)
            family = ipaddress.ip_network(prefix).version
            self.own[prefix] = Path(prefix=prefix, next_hop=config.address(family) or "")
        # Borrowed pod addresses: their host routes, as the borrower's BIRD exports the pods'
        # kernel routes (model.phases.rib.exported_borrowed); the pod route itself is local.
        for prefix in config.borrowed_routes:
            family = ipaddress.ip_network(prefix).version
            self.own[prefix] = Path(prefix=prefix, next_hop=config.address(family) or "")
        self.service_cidrs = [ipaddress.ip_network(c) for c in config.service_cidrs]
        self.blackholes = list(config.blackholes())
        self.not_programmed = config.unprogrammed_pools()
        self.ctx = config.route_context()
        self.adj_in: dict[str, dict[str, Path]] = {peer: {} for peer in self.links}
        self.adj_out: dict[str, dict[str, Path]] = {peer: {} for peer in self.links}
        self.ebgp_peers = {peer for peer, link in self.links.items() if link.ebgp}
        self.peers_by_family: dict[int, list[str]] = {
            family: [p for p in self.links if ipaddress.ip_address(p).version == family]
            for family in (4, 6)
        }
        self.best: dict[str, Path] = dict(self.own)
        # Prefixes whose kernel route may need changing since the runtime last looked.
        self.dirty: set[str] = set(self.blackholes) | set(self.own)
        self.stale: dict[str, Stale] = {}
        # The speaker is stopping for a configuration change (`cease`): nothing more is
        # learned or sent.
        self.ceased = False

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
            for peer in self._export_peers(prefix, path):
                link = self.links[peer]
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

    def _export_peers(self, prefix: str, path: Path | None) -> list[str]:
        """The peers whose Adj-RIB-Out of `prefix` may change: those of its family (a
        session carries one), and of those, for a path that goes to no iBGP peer
        (`stays_off_ibgp`: a mesh node's learned routes) or none, only the eBGP peers and
        the peers that still hold the prefix. `export` for every peer was a third of a
        100-node mesh agent's CPU, nearly all of it deciding "not to this iBGP peer"."""
        peers = self.peers_by_family[prefix_family(prefix)]
        if path is not None and not stays_off_ibgp(path, self.me):
            return peers
        return [p for p in peers if p in self.ebgp_peers or prefix in self.adj_out[p]]

    def restore(
        self, previous: object, speaker_restarted: bool = False, now: float | None = None
    ) -> None:
        """Take over what a previous agent of this node recorded: the Adj-RIB-In, what it sent
        each peer, the sessions' states and graceful restart capabilities, and its stale routes.

        The agent alone restarted (`speaker_restarted` False): ExaBGP restarts a dead API
        process but replays nothing to it; the sessions stayed up, so what the last agent
        learned is still what the peers advertise. A route refresh asked of every peer
        afterwards (see `refresh_commands`) corrects anything missed.
        The speaker restarted too (a new ExaBGP): its sessions are new, and what the last agent
        learned is kept as stale (RFC 4724's Restarting Speaker: the forwarding state was
        preserved), for the restart time this node advertised, counted from when the last agent
        stopped (its record's `updated`), or until each peer's End-of-RIB; routes of a session
        that advertised no graceful restart go at once.
        What it sent is kept as `RecordedPath`s, so `start` withdraws what this agent no longer
        wants and announces the rest again. The record is `snapshot`'s form; anything else in
        it (another version, a cut file, a hand edit) is ignored, entry by entry, never raised.
        """
        now = time.time() if now is None else now
        state = previous if isinstance(previous, dict) else {}
        self._restore_rib(state.get("rib"))
        self._restore_adj_out(state.get("adj_out"))
        self._restore_sessions(state.get("sessions"))
        self._restore_stale(state.get("stale"))
        if speaker_restarted:
            stopped = state.get("updated")
            if isinstance(stopped, bool) or not isinstance(stopped, int | float):
                stopped = now
            self._speaker_restarted(min(max(float(stopped), 0.0), now), now)
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

    def _restore_stale(self, entries: object) -> None:
        for peer_ip, entry in (entries if isinstance(entries, dict) else {}).items():
            rib = self.adj_in.get(peer_ip) if isinstance(peer_ip, str) else None
            if rib is None or not isinstance(entry, dict):
                continue
            prefixes, until = entry.get("prefixes"), entry.get("until")
            peer_restarted = entry.get("peer_restarted")
            if (
                not isinstance(prefixes, list)
                or isinstance(until, bool)
                or not isinstance(until, int | float)
                or not 0 <= until < 1e12
                or not isinstance(peer_restarted, bool)
            ):
                continue
            kept = frozenset(p for p in prefixes if isinstance(p, str) and p in rib)
            if kept:
                self.stale[peer_ip] = Stale(kept, float(until), peer_restarted)

    def _speaker_restarted(self, stopped: float, now: float) -> None:
        """The sessions are gone with the old speaker; every learned route is stale."""
        for peer_ip, peer in self.peers.items():
            peer.state, peer.since, peer.reason = "idle", now, ""
            rib = self.adj_in.get(peer_ip)
            if not rib:
                continue
            restart_time = peer.our_restart_time()
            if restart_time is None:
                # No graceful restart advertised: the peers dropped this node's routes at
                # once, and this node keeps none of theirs.
                self.adj_in[peer_ip] = {}
                self.stale.pop(peer_ip, None)
            else:
                until = stopped + restart_time
                earlier = self.stale.get(peer_ip)
                if earlier is not None:
                    until = min(until, earlier.until)
                self.stale[peer_ip] = Stale(frozenset(rib), until, peer_restarted=False)
            peer.received = len(self.adj_in[peer_ip])

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
            self._restore_capabilities(peer, session.get("graceful_restart"))

    @staticmethod
    def _restore_capabilities(peer: PeerState, recorded: object) -> None:
        if not isinstance(recorded, dict):
            return
        peer.theirs = GracefulRestart.from_json(recorded.get("received"))
        if "sent" in recorded:
            sent = recorded["sent"]
            ours = GracefulRestart.from_json(sent)
            if sent is None or ours is not None:
                peer.ours, peer.ours_known = ours, True

    def refresh_commands(self) -> list[str]:
        """Ask every established peer to send its routes again (BGP route refresh)."""
        out = []
        for peer_ip, peer in self.peers.items():
            if peer.state == "up":
                family = "ipv6" if ":" in peer_ip else "ipv4"
                out.append(f"neighbor {peer_ip} announce route-refresh {family} unicast")
        return out

    def end_of_rib_commands(self) -> list[str]:
        """End-of-RIB to every established peer (after a takeover: the predecessor may have
        died before it sent one; a second one changes nothing)."""
        return [end_of_rib_command(ip) for ip, peer in self.peers.items() if peer.state == "up"]

    def start(self) -> list[str]:
        """Announce the node's own blocks to every peer (ExaBGP sends them once established).

        After a takeover this also withdraws what the previous agent announced and this one
        no longer wants (a pool or block removed by a live change).
        """
        announced = {prefix for paths in self.adj_out.values() for prefix in paths}
        return self._exports(set(self.own) | announced | set(self.best))

    def on_open(self, event: OpenEvent) -> None:
        """An OPEN of a session being set up: its capabilities count once it is established."""
        peer = self.peers.get(event.peer)
        if peer is not None and event.direction in ("receive", "send"):
            peer.opening[event.direction] = event.graceful_restart

    def on_state(self, event: StateEvent, now: float | None = None) -> list[str]:
        now = time.time() if now is None else now
        peer = self.peers.get(event.peer)
        if peer is None or self.ceased:
            return []
        was_up = peer.state == "up"
        if event.state != peer.state:
            peer.state, peer.since, peer.reason = event.state, now, event.reason
        if event.state == "up":
            return self._session_up(peer, now)
        if event.state == "down" and was_up:
            # (A connection that never got established brought nothing to take away: what is
            # in the Adj-RIB-In then is an earlier session's, stale, with its own deadline.)
            return self._session_down(peer, event.reason, now)
        return []

    def _session_up(self, peer: PeerState, now: float) -> list[str]:
        opening, peer.opening = peer.opening, {}
        if "receive" in opening:
            peer.theirs = opening["receive"]
        if "send" in opening:
            peer.ours, peer.ours_known = opening["send"], True
        commands = []
        stale = self.stale.get(peer.peer_ip)
        if stale is not None:
            if stale.peer_restarted and not (
                peer.theirs is not None and peer.theirs.forwarding(peer.family)
            ):
                # The peer did not keep forwarding while it restarted: what it sent before is
                # no path any more (BIRD: "Channels where regular graceful restart failed",
                # bgp_conn_enter_established_state).
                commands += self._drop_stale(peer.peer_ip)
            else:
                # Until its End-of-RIB; BIRD 2.0.12 waits for it with no timer, this agent
                # gives it the restart time again (RFC 4724's optional stale path timer), so
                # that nothing is kept for ever from a peer that never sends one.
                wait = self._restart_time(peer, stale.peer_restarted)
                self.stale[peer.peer_ip] = replace(stale, until=now + (wait or 0))
        return commands

    @staticmethod
    def _restart_time(peer: PeerState, peer_restarted: bool) -> int | None:
        if peer_restarted:
            return peer.theirs.time if peer.theirs is not None else None
        return peer.our_restart_time()

    def _session_down(self, peer: PeerState, reason: str, now: float) -> list[str]:
        ip, kind = peer.peer_ip, down_kind(reason)
        if kind == "shutdown":
            # This node's speaker is stopping: its routes stay (the forwarding state is kept
            # for the next agent, see `restore`), unless it advertised no graceful restart.
            restart_time = peer.our_restart_time()
            if restart_time:
                return self._keep_stale(ip, now + restart_time, peer_restarted=False)
        elif kind == "silent":
            # The peer went without a NOTIFICATION: a restart, if both sides advertised the
            # capability and the peer's listed the family (BIRD: gr_ready = local gr_aware &&
            # remote gr_able, bgp_conn_enter_established_state).
            theirs = peer.theirs
            if (
                theirs is not None
                and theirs.lists(peer.family)
                and theirs.time > 0
                and peer.our_restart_time() is not None
            ):
                return self._keep_stale(ip, now + theirs.time, peer_restarted=True)
        return self._flush(ip)

    def _keep_stale(self, peer_ip: str, until: float, peer_restarted: bool) -> list[str]:
        commands = []
        earlier = self.stale.get(peer_ip)
        if earlier is not None and earlier.peer_restarted and peer_restarted:
            # A restart before this one was not over: what it left stale and the peer did not
            # send again goes, the rest is stale now (BIRD's BGP_GRS_ACTIVE case of
            # bgp_handle_graceful_restart: rt_refresh_end, then rt_refresh_begin).
            commands = self._drop_stale(peer_ip)
        rib = self.adj_in.get(peer_ip, {})
        if rib:
            self.stale[peer_ip] = Stale(frozenset(rib), until, peer_restarted)
        return commands

    def _flush(self, peer_ip: str) -> list[str]:
        """Everything the peer sent goes (its session ended for good)."""
        self.stale.pop(peer_ip, None)
        if not self.adj_in.get(peer_ip):
            return []
        lost = list(self.adj_in[peer_ip])
        self.adj_in[peer_ip] = {}
        self.peers[peer_ip].received = 0
        return self._exports(self._recompute(lost))

    def _drop_stale(self, peer_ip: str) -> list[str]:
        """The peer's routes still stale go (it has sent everything, or its time is up)."""
        stale = self.stale.pop(peer_ip, None)
        if stale is None:
            return []
        rib = self.adj_in[peer_ip]
        lost = [prefix for prefix in sorted(stale.prefixes) if rib.pop(prefix, None) is not None]
        self.peers[peer_ip].received = len(rib)
        return self._exports(self._recompute(lost))

    def expire(self, now: float | None = None) -> list[str]:
        """The stale routes whose time is up go."""
        now = time.time() if now is None else now
        commands = []
        for peer_ip, stale in sorted(self.stale.items()):
            if stale.until <= now:
                commands += self._drop_stale(peer_ip)
        return commands

    def next_expiry(self) -> float | None:
        """When `expire` next has something to do (Unix time), or None."""
        return min((s.until for s in self.stale.values()), default=None)

    def cease(self) -> list[str]:
        """The speaker is about to stop for a configuration change, which is no restart: every
        peer is told to forget what it was sent, and what was learned is forgotten (its kernel
        routes go), as when BIRD ends a session with a Cease. Nothing is learned or sent
        afterwards: the next agent starts from an empty Adj-RIB-In."""
        self.ceased = True
        commands = []
        for peer_ip, sent in sorted(self.adj_out.items()):
            commands += [withdraw_command(peer_ip, path) for _, path in sorted(sent.items())]
            sent.clear()
        learned = {prefix for rib in self.adj_in.values() for prefix in rib}
        for peer_ip in self.adj_in:
            self.adj_in[peer_ip] = {}
            self.peers[peer_ip].received = 0
        self.stale.clear()
        self._recompute(learned)  # (what it changes was withdrawn above)
        return commands

    def on_update(self, event: UpdateEvent, now: float | None = None) -> list[str]:
        link = self.links.get(event.peer)
        if link is None or self.ceased:
            return []
        peer = self.peers[event.peer]
        if peer.state != "up":
            # ExaBGP passes on updates of established sessions only (an `up` this agent did
            # not see: it started after it).
            peer.state, peer.since, peer.reason = "up", time.time() if now is None else now, ""
        if event.end_of_rib:
            # Everything the peer has is sent: what it did not send again is gone (RFC 4724).
            return self._drop_stale(event.peer)
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
        stale = self.stale.get(event.peer)
        if stale is not None:
            # Sent again (or withdrawn): no longer stale.
            left = stale.prefixes - touched - set(event.withdrawn)
            if left:
                self.stale[event.peer] = replace(stale, prefixes=frozenset(left))
            else:
                del self.stale[event.peer]
        peer.received = len(rib)
        return self._exports(self._recompute(touched))

    def route(self, prefix: str) -> FibRoute | None:
        """The kernel route BIRD would write for `prefix` now, or None for no route: its own
        blackholes, and its best learned paths that pass the kernel filter (not in a pool
        Felix owns), at metric 2^31-1 minus the path's local preference, as Calico's
        `SetMetricForBGPRoutes` sets it (confd bgp_processor.go:242-252)."""
        if prefix in self.blackholes:
            return FibRoute(prefix, "blackhole", source="local")
        path = self.best.get(prefix)
        if path is None or path.learned_from is None:
            return None
        if self.not_programmed and pool_of(prefix, self.not_programmed) is not None:
            return None
        if self.service_cidrs and any(
            net.version == c.version and net.subnet_of(c)  # type: ignore[arg-type]
            for net in [ipaddress.ip_network(prefix)]
            for c in self.service_cidrs
        ):
            return None  # (confd's kernel filter: Service addresses are kube-proxy's)
        route = route_for(prefix, path.next_hop, self.pools, self.ctx)
        return replace(route, metric=BIRD_METRIC_BASE - path.local_pref)

    def snapshot(self) -> dict[str, Any]:
        rib = []
        for peer, paths in sorted(self.adj_in.items()):
            stale = self.stale.get(peer)
            for prefix, path in sorted(paths.items()):
                entry = _path_json(path, self.best.get(prefix) == path, peer)
                entry["stale"] = stale is not None and prefix in stale.prefixes
                rib.append(entry)
        for prefix, path in sorted(self.own.items()):
            entry = _path_json(path, self.best.get(prefix) == path, None)
            entry["stale"] = False
            rib.append(entry)
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
                    "graceful_restart": _capabilities_json(p),
                }
                for p in self.peers.values()
            ],
            "rib": rib,
            # Routes kept from an earlier session (`restore` reads it back).
            "stale": {
                peer: {
                    "prefixes": sorted(s.prefixes),
                    "until": s.until,
                    "peer_restarted": s.peer_restarted,
                }
                for peer, s in sorted(self.stale.items())
            },
            "ceased": self.ceased,
            # What was sent each peer, with the attributes a withdrawal or a comparison needs
            # (`restore` reads it back).
            "adj_out": {
                peer: [path_to_json(path) for _, path in sorted(paths.items())]
                for peer, paths in sorted(self.adj_out.items())
            },
        }


AGENT_CONFIG = "agent-config.json"  # in the node's state folder: `AgentConfig.to_json()`


def _capabilities_json(peer: PeerState) -> dict[str, Any]:
    """The graceful restart capabilities of the peer's last established session (`sent`
    absent: none of this node's OPENs seen)."""
    out: dict[str, Any] = {"received": peer.theirs.to_json() if peer.theirs else None}
    if peer.ours_known:
        out["sent"] = peer.ours.to_json() if peer.ours else None
    return out


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


# How an agent's `run` ended.
ENDED_EOF = "eof"  # ExaBGP closed the pipe: it is stopping
ENDED_RESTART = "restart"  # the lab asked for a successor (a new agent configuration)
ENDED_CRASH = "crash"  # the lab asked for a crash (a fault): nothing more is written


class SpeakerPipe:
    """ExaBGP's pipes with the agent, both non-blocking: lines read whole, commands queued.

    The part of a line read so far and the commands ExaBGP has not taken yet stay here, so an
    agent's successor on the same pipes gets the rest. The agent never waits for ExaBGP to
    read: ExaBGP's own writes to the agent block while the agent's pipe is full, so an agent
    blocked on its writes while ExaBGP is blocked on its own would hang both (a reflector sends
    every client's routes to every other client: measured, a 60-node reflector lab hung so,
    its reflectors with 116 of 118 sessions never reported up).
    """

    def __init__(self, from_speaker: int, to_speaker: int) -> None:
        self.fd_in, self.fd_out = from_speaker, to_speaker
        self.pending = b""
        self.outbox = bytearray()
        os.set_blocking(from_speaker, False)
        os.set_blocking(to_speaker, False)

    def read(self) -> list[bytes] | None:
        """The complete lines that arrived; None when ExaBGP closed the pipe."""
        try:
            chunk = os.read(self.fd_in, 65536)
        except BlockingIOError:
            return []
        if not chunk:
            return None
        *lines, self.pending = (self.pending + chunk).split(b"\n")
        return lines

    def queue(self, data: bytes) -> None:
        self.outbox += data
        self.flush()

    def flush(self) -> None:
        """Write what the pipe takes now; the rest when it is writable again."""
        if not self.outbox:
            return
        try:
            written = os.write(self.fd_out, self.outbox)
        except BlockingIOError:
            return
        del self.outbox[:written]


class Runtime:
    """ExaBGP's pipe both ways, FIB changes through the lab's route programmer, the lab's
    requests through the control FIFO (`agent_control`), the state file.

    The agent holds no netlink library of its own: it sends route changes to the lab's `fibd`
    over a unix socket (see `dataplane.fibd`), which keeps every node's agent small.
    `speaker_pid` is the ExaBGP process the agent serves (its own when it is a thread of it,
    its parent when it is a process): another one than its predecessor's means the speaker
    restarted too.
    """

    # The state file is written when the agent has heard nothing from ExaBGP for
    # `state_interval`, and whenever the lab asks (WRITE_STATE: `verify`, `status`, `up`'s
    # wait, scenarios), never while updates stream in. A write costs time that grows with the
    # RIB (a reflector of 200 clients holds tens of thousands of paths): written every quarter
    # second while they converged, at most a tenth of each agent's time, 200 clients behind
    # reflectors used 214 s of CPU to come up instead of 177 s, and more when that tenth was
    # counted in CPU instead of wall time.
    STATE_INTERVAL = 0.25  # seconds of quiet before the state is written, at least
    # ... and at least this many times as long as the last write took.
    STATE_COST_FACTOR = 10.0

    def __init__(self, state_dir: FsPath, node: str, speaker_pid: int | None = None) -> None:
        import json

        self.node_dir = state_dir / "nodes" / node
        self.speaker_pid = os.getppid() if speaker_pid is None else speaker_pid
        self.pipe: SpeakerPipe | None = None  # set by `run`
        path = self.node_dir / AGENT_CONFIG
        self.core = AgentCore(AgentConfig.from_json(json.loads(path.read_text()), str(path)))
        self.restarted = False
        self.speaker_restarted = False
        # A stop for a configuration change (CEASE, see `cease`): None, "withdrawing" while
        # ExaBGP has not acknowledged every withdrawal, then "withdrawn".
        self.stopping: str | None = None
        self.acks_awaited = 0
        self.netns = self.core.config.netns
        self.out_file = state_dir / "nodes" / node / "agent.json"
        self.fibd_path = state_dir / "fib.sock"
        self.fibd: socket.socket | None = None
        self.programmed: dict[str, FibRoute] = {}
        self.reprogram: set[str] = set()  # prefixes to program again even if recorded as done
        self.errors: list[str] = []
        self.started = time.time()
        self.state_interval = self.STATE_INTERVAL
        self.state_pending = True
        self._take_over()

    def _take_over(self) -> None:
        """A previous agent of this node left its state: continue from it."""
        import json

        try:
            previous = json.loads(self.out_file.read_text())
        except (OSError, ValueError, RecursionError):
            return
        if not isinstance(previous, dict):
            return
        self.restarted = True
        # Another ExaBGP than the predecessor's means the speaker restarted as well.
        speaker = previous.get("speaker_pid")
        self.speaker_restarted = (
            isinstance(speaker, int)
            and not isinstance(speaker, bool)
            and speaker != self.speaker_pid
        )
        self.core.restore(previous, speaker_restarted=self.speaker_restarted)
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
            f"{time.strftime('%H:%M:%S')} agent restarted (previous pid {previous.get('pid')})"
            + (
                ", under a new speaker: the routes it learned are kept as stale"
                if self.speaker_restarted
                else ""
            ),
        ]

    def send(self, commands: list[str]) -> int:
        """Queue commands for ExaBGP, those that differ only in their peer joined
        (`coalesce_commands`); how many lines ExaBGP will answer (once `enable-ack` is on)."""
        lines = coalesce_commands(commands)
        if lines and self.pipe is not None:
            self.pipe.queue("".join(line + "\n" for line in lines).encode())
        return len(lines)

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
                # Protocol and metric too: the kernel deletes the first route of the prefix
                # that matches, which must never be Felix's.
                request = {
                    "netns": self.netns,
                    "op": "del",
                    "prefix": prefix,
                    "type": current.type,
                    "via": current.via,
                    "dev": current.dev,
                    "proto": PROTO_BIRD,
                    "metric": current.metric,
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
                    "proto": PROTO_BIRD,
                    "metric": wanted.metric,
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

    def write_state(self) -> None:
        from meshemu.state import write_json_atomic

        now = time.time()
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
                "speaker_pid": self.speaker_pid,
                "stopping": self.stopping,
            }
        )
        write_json_atomic(self.out_file, data, compact=True)
        self.state_pending = False
        took = time.time() - now
        self.state_interval = max(self.STATE_INTERVAL, self.STATE_COST_FACTOR * took)

    def on_control(self, control: int) -> str | None:
        """The lab's requests (`agent_control`): WRITE_STATE (`verify` asks before it reads,
        so it never reads a state older than the last update), REPROGRAM (program the whole
        FIB again: `repair`, a route deleted by hand comes back), CEASE (the speaker is about
        to stop for a configuration change, see `cease`), RESTART and CRASH (returned: the
        agent ends and a successor takes over)."""
        try:
            received = os.read(control, 64)
        except BlockingIOError:
            return None
        if agent_control.CRASH in received:
            return ENDED_CRASH
        if agent_control.CEASE in received:
            self.cease()
        if agent_control.REPROGRAM in received:
            self.reprogram = set(self.programmed) | set(self.core.best) | set(self.core.blackholes)
            self.core.dirty |= self.reprogram
            self.sync_fib()
        self.write_state()
        return ENDED_RESTART if agent_control.RESTART in received else None

    def cease(self) -> None:
        """Withdraw everything from every peer and forget what was learned (`AgentCore.cease`),
        then say so in the state file once ExaBGP has taken every withdrawal (`stopping`:
        "withdrawn"), which `supervise.withdraw_first` waits for before ExaBGP is stopped: ExaBGP
        would otherwise close the sessions without a NOTIFICATION, which its peers take for a
        restart. ExaBGP answers each command after it is processed once `enable-ack` is sent
        (the lab runs it with acknowledgements off), in order."""
        if self.core.ceased:
            return
        self.stopping = "withdrawing"
        self.acks_awaited = self.send(["enable-ack", *self.core.cease()])
        self.sync_fib()
        self.write_state()

    def on_answer(self, line: str) -> None:
        """A line that is no JSON message: ExaBGP's `done` or `error` after a command, while
        `cease` waits for them (none come otherwise)."""
        if self.acks_awaited and line.strip() in ("done", "error"):
            self.acks_awaited -= 1
            if not self.acks_awaited:
                self.stopping = "withdrawn"
                self.write_state()

    def expire(self) -> None:
        """Stale routes whose time is up go (see `AgentCore.expire`)."""
        expiry = self.core.next_expiry()
        if expiry is not None and expiry <= time.time():
            self.send(self.core.expire())
            self.sync_fib()
            self.state_pending = True

    def _timeout(self) -> float | None:
        # Wake up to retry failed routes (tunl0 restarting), to flush a pending state, and when
        # stale routes are due.
        timeout = 1.0 if self.core.dirty else self.state_interval if self.state_pending else None
        expiry = self.core.next_expiry()
        if expiry is not None:
            due = max(0.0, expiry - time.time()) + 0.01
            timeout = due if timeout is None else min(timeout, due)
        return timeout

    def run(self, pipe: SpeakerPipe, control: int) -> str:
        """Serve until ExaBGP closes the pipe (`ENDED_EOF`) or the lab asks for a restart or a
        crash (`ENDED_RESTART`, `ENDED_CRASH`). `control` is the FIFO's fd."""
        self.pipe = pipe
        self.send(self.core.start())
        if self.restarted and not self.speaker_restarted:
            self.send(self.core.refresh_commands() + self.core.end_of_rib_commands())
        self.sync_fib()
        self.write_state()
        selector = selectors.DefaultSelector()
        selector.register(pipe.fd_in, selectors.EVENT_READ)
        selector.register(control, selectors.EVENT_READ)
        writing = False
        while True:
            self.expire()
            if bool(pipe.outbox) != writing:
                writing = bool(pipe.outbox)
                if writing:
                    selector.register(pipe.fd_out, selectors.EVENT_WRITE)
                else:
                    selector.unregister(pipe.fd_out)
            ready = selector.select(self._timeout())
            if any(key.fd == pipe.fd_out for key, _ in ready):
                pipe.flush()
                ready = [(key, events) for key, events in ready if key.fd != pipe.fd_out]
                if not ready:
                    continue
            if not ready:
                self.sync_fib()
                self.write_state()
                continue
            if any(key.fileobj == control for key, _ in ready):
                ended = self.on_control(control)
                if ended is not None:
                    return ended
                if all(key.fileobj == control for key, _ in ready):
                    continue
            lines = pipe.read()
            if lines is None:
                return ENDED_EOF  # ExaBGP closed the pipe: it is shutting down
            self.on_lines(lines)

    def on_lines(self, lines: list[bytes]) -> None:
        """ExaBGP's messages: the sessions' states, OPENs and UPDATEs, answers to commands."""
        commands: list[str] = []
        for raw in lines:
            line = raw.decode(errors="replace")
            event = parse_message(line)
            if event is None:
                self.on_answer(line)
            elif isinstance(event, OpenEvent):
                self.core.on_open(event)
            elif isinstance(event, StateEvent):
                commands += self.core.on_state(event)
                if event.state == "up" and event.peer in self.core.peers:
                    # ExaBGP sends no End-of-RIB by itself (`manual-eor`): everything this
                    # agent announced to the peer was written before, so it goes first.
                    commands.append(end_of_rib_command(event.peer))
                self.state_pending = True
            elif isinstance(event, UpdateEvent):
                commands += self.core.on_update(event)
            elif isinstance(event, OtherEvent) and event.problem:
                self._error(f"ignored a message from ExaBGP: {event.problem}")
        self.send(commands)
        self.sync_fib()
        self.state_pending = True


def command_parser() -> argparse.ArgumentParser:
    """The agent's command line, as the node's ExaBGP configuration names it."""
    parser = argparse.ArgumentParser(description="meshemu node agent (ExaBGP API process)")
    parser.add_argument("--state", required=True, type=FsPath)
    parser.add_argument("--node", required=True)
    return parser


def serve(state_dir: FsPath, node: str, io: tuple[int, int], speaker_pid: int) -> None:
    """Run the node's agent on ExaBGP's pipe `io` (from it, to it) until ExaBGP closes it.
    A restart or a crash the lab asks for ends one agent and starts its successor on the same
    pipe, which loses nothing ExaBGP sent in between; the successor takes over from the state
    file (`Runtime._take_over`), which a crash leaves as it was (a crash writes nothing)."""
    pipe = SpeakerPipe(*io)
    control = agent_control.open_for_agent(state_dir / "nodes" / node)
    try:
        while True:
            runtime = Runtime(state_dir, node, speaker_pid)
            ended = ENDED_CRASH
            try:
                ended = runtime.run(pipe, control)
            finally:
                if ended != ENDED_CRASH:
                    runtime.write_state()
            if ended == ENDED_EOF:
                return
    finally:
        os.close(control)


def main(argv: list[str] | None = None) -> int:
    """The agent as a process of its own (ExaBGP started it): stdin, stdout, SIGTERM."""
    args = command_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    serve(args.state, args.node, (sys.stdin.fileno(), sys.stdout.fileno()), os.getppid())
    return 0


if __name__ == "__main__":
    sys.exit(main())
