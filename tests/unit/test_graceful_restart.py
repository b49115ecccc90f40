"""Graceful restart (RFC 4724) across the agent's pieces: the OPENs and session ends as ExaBGP
reports them (`controlplane.events`), the agent's stale routes under any sequence of events
(a property test against a model kept here), and a stop for a configuration change, which asks
the agent to withdraw before ExaBGP stops (`lab.supervise.stop_speaker`).

The agent's single behaviours are in test_agent_core.py; the rendered capability in
test_render.py; a lab restarting a node's speaker within and beyond its restart time in
scenarios/graceful-restart.yaml.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path as FsPath
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshemu import process
from meshemu.controlplane import agent_control
from meshemu.controlplane.agent import AgentCore
from meshemu.controlplane.events import (
    LOCAL_SHUTDOWN,
    SILENT_CLOSE,
    GracefulRestart,
    OpenEvent,
    OtherEvent,
    StateEvent,
    UpdateEvent,
    down_kind,
    parse_message,
)
from meshemu.lab import supervise
from meshemu.model.agent_config import AgentConfig, agent_config_of
from meshemu.model.bgp import Link, Path, Speaker, accept, best_path, export, received
from meshemu.model.load import load_topology_text
from meshemu.model.plan import build_plan
from meshemu.model.routes import FibRoute, PoolRule, RouteContext, route_for
from meshemu.state import LabState, Resource

# --- the OPENs and the ends of sessions, as ExaBGP 5.0 writes them -------------------------------


def _exabgp_open_json(direction: str, restart_flag: int, families: list[tuple[str, int]]) -> str:
    """The JSON line ExaBGP's encoder writes for an OPEN carrying this capability, sent (as
    ExaBGP builds it) or received (as ExaBGP parses it off the wire)."""
    from exabgp.bgp.message import Message
    from exabgp.bgp.message.direction import Direction
    from exabgp.bgp.message.open import ASN, HoldTime, Open, RouterID, Version
    from exabgp.bgp.message.open.capability.capabilities import Capabilities
    from exabgp.bgp.message.open.capability.capability import Capability
    from exabgp.bgp.message.open.capability.graceful import Graceful
    from exabgp.bgp.neighbor import Neighbor
    from exabgp.protocol.family import AFI, SAFI
    from exabgp.protocol.ip import IP
    from exabgp.reactor.api.response.json import JSON

    capabilities = Capabilities()
    capabilities[Capability.CODE.GRACEFUL_RESTART] = Graceful().set(
        restart_flag, 45, [(AFI.fromString(a), SAFI.unicast, flag) for a, flag in families]
    )
    message = Open(Version(4), ASN(64512), HoldTime(9), RouterID("10.0.0.2"), capabilities)
    if direction == "receive":
        raw = message.message()
        message = Message.unpack(Message.CODE.OPEN, raw[19:], Direction.IN, None)
    neighbor = Neighbor()
    neighbor["local-address"] = IP.create("10.0.0.1")
    neighbor["peer-address"] = IP.create("10.0.0.2")
    neighbor["local-as"], neighbor["peer-as"] = ASN(64512), ASN(64512)
    neighbor["router-id"] = RouterID("10.0.0.1")
    line: str = JSON("5.0").open(neighbor, direction, message, None, b"", b"")
    return line


@pytest.mark.parametrize("direction", ["receive", "send"])
def test_an_open_gives_the_graceful_restart_capability_bit_by_bit(direction: str) -> None:
    """ExaBGP labels the two bits crosswise ("restart" for a family's Forwarding State bit,
    "forwarding" for the Restart State bit): the parser reads the bits, checked here against
    ExaBGP's own encoder."""
    line = _exabgp_open_json(direction, 0x8, [("ipv4", 0x80), ("ipv6", 0x00)])
    event = parse_message(line)
    assert event == OpenEvent(
        "10.0.0.2", "10.0.0.1", direction, GracefulRestart(45, True, ((4, True), (6, False)))
    )
    plain = parse_message(_exabgp_open_json(direction, 0, [("ipv4", 0x80)]))
    assert isinstance(plain, OpenEvent) and plain.graceful_restart is not None
    assert plain.graceful_restart.restarting is False
    assert plain.graceful_restart.forwarding(4) and not plain.graceful_restart.lists(6)


def _open_line(open_body: object, direction: str = "receive") -> str:
    return json.dumps(
        {
            "type": "open",
            "neighbor": {
                "address": {"local": "10.0.0.1", "peer": "10.0.0.2"},
                "direction": direction,
                "open": open_body,
            },
        }
    )


def test_an_open_without_the_capability_has_none() -> None:
    event = parse_message(_open_line({"capabilities": {"2": {"name": "route-refresh"}}}))
    assert event == OpenEvent("10.0.0.2", "10.0.0.1", "receive", None)


@pytest.mark.parametrize(
    "body",
    [
        {"capabilities": {"64": {"time": 4096}}},
        {"capabilities": {"64": {"time": "soon"}}},
        {"capabilities": {"64": {"time": True}}},
        {"capabilities": {"64": {"time": 5, "address-family-flags": {"ipv4/unicast": "x"}}}},
        {"capabilities": {"64": {"time": 5, "restart-flags": 5}}},
        {"capabilities": {"64": []}},
        {"capabilities": []},
        [],
    ],
)
def test_an_open_of_another_shape_is_named_not_trusted(body: object) -> None:
    event = parse_message(_open_line(body))
    assert isinstance(event, OtherEvent) and event.kind == "open" and event.problem


def test_an_open_of_neither_direction_is_named() -> None:
    event = parse_message(_open_line({"capabilities": {}}, direction="sideways"))
    assert isinstance(event, OtherEvent) and "direction" in event.problem


def test_the_capability_record_round_trips_and_refuses_other_shapes() -> None:
    capability = GracefulRestart(4095, True, ((4, True), (6, False)))
    assert GracefulRestart.from_json(json.loads(json.dumps(capability.to_json()))) == capability
    for bad in (None, 5, {"time": 4096, "restarting": False, "families": []}, {"time": 5}):
        assert GracefulRestart.from_json(bad) is None


def test_how_a_session_ended_is_told_by_exabgps_reason() -> None:
    assert down_kind(LOCAL_SHUTDOWN) == "shutdown"
    assert down_kind(SILENT_CLOSE) == "silent"
    for reason in ("notification received (6,2)", "notification sent (4,0)", "", "process problem"):
        assert down_kind(reason) == "final"


def test_exabgp_still_gives_those_reasons() -> None:
    """The reasons are ExaBGP 5.0's text (exabgp/reactor/peer.py): a new ExaBGP that words them
    otherwise would turn every restart into a withdrawal, silently; this says so first."""
    import exabgp.reactor.peer as peer_module

    source = FsPath(peer_module.__file__).read_text()
    assert "self._stop('shutting down')" in source
    assert "self._close(f'stop, message [{message}]')" in source
    assert "self._reset('closing connection', network)" in source


# --- any sequence of events: the agent's routes follow the rules of graceful restart -------------

TOPOLOGY = """
name: grprop
subnets:
  lan: {ipv4: 10.8.0.0/24}
nodes:
  rr1: {subnet: lan, labels: {rr: "yes"}, routeReflectorClusterID: 244.0.0.1, pods: 1}
  rr2: {subnet: lan, labels: {rr: "yes"}, routeReflectorClusterID: 244.0.0.1}
  c1: {subnet: lan}
  c2: {subnet: lan}
pools:
  v4: {cidr: 10.249.0.0/16, ipipMode: Never}
bgp:
  nodeToNodeMeshEnabled: false
  peers:
    to-rr: {nodeSelector: all(), peerSelector: "rr == 'yes'"}
"""
PLAN = build_plan(load_topology_text(TOPOLOGY, "grprop.yaml", "grprop"))
NODE = PLAN.node("rr1")
PEERS = [s.peer_ip for s in NODE.sessions if s.peer_node is not None]
PREFIXES = sorted({b.cidr for n in PLAN.nodes for b in n.blocks} | {"10.99.0.0/24"})
HOPS = sorted(a for n in PLAN.nodes if (a := n.ipv4) is not None)
RESTART = 30  # every session's restart time, both ways
START = 1000.0


@dataclass(frozen=True)
class Announce:
    peer: str
    prefix: str
    next_hop: str


@dataclass(frozen=True)
class Withdraw:
    peer: str
    prefix: str


@dataclass(frozen=True)
class Up:
    """The session comes up with the OPENs of both sides (the peer's Forwarding State bit)."""

    peer: str
    forwarding: bool


@dataclass(frozen=True)
class Silent:
    """The peer's TCP session ends without a NOTIFICATION."""

    peer: str


@dataclass(frozen=True)
class Final:
    """A NOTIFICATION, the hold timer: the session ends for good."""

    peer: str


@dataclass(frozen=True)
class EndOfRib:
    peer: str


@dataclass(frozen=True)
class Tick:
    seconds: float


@dataclass(frozen=True)
class AgentRestart:
    pass


@dataclass(frozen=True)
class SpeakerRestart:
    """This node's ExaBGP stops (every session down, "shutting down") and a new one starts."""


Event = Announce | Withdraw | Up | Silent | Final | EndOfRib | Tick | AgentRestart | SpeakerRestart

# Two of rr1's peers (a client and the other reflector) and two prefixes (another node's block
# and one of no pool) talk: few enough that a sequence often restarts a session that has
# routes, and comes back to it.
PEER = st.sampled_from([PLAN.node("c1").ipv4 or "", PLAN.node("rr2").ipv4 or ""])
PREFIX = st.sampled_from([next(b.cidr for b in PLAN.node("c1").blocks), "10.99.0.0/24"])
EVENT: st.SearchStrategy[Event] = st.one_of(
    st.builds(Announce, PEER, PREFIX, st.sampled_from(HOPS)),
    st.builds(Announce, PEER, PREFIX, st.sampled_from(HOPS)),
    st.builds(Withdraw, PEER, PREFIX),
    st.builds(Up, PEER, st.booleans()),
    st.builds(Silent, PEER),
    st.builds(Silent, PEER),
    st.builds(Final, PEER),
    st.builds(EndOfRib, PEER),
    st.builds(Tick, st.sampled_from([1.0, 10.0, 29.0, 31.0])),
    st.just(AgentRestart()),
    st.just(SpeakerRestart()),
)


@dataclass
class Model:
    """rr1 as the rules say, without the agent's code: the Adj-RIB-In with stale marks."""

    now: float = START
    adj_in: dict[str, dict[str, Path]] = field(default_factory=lambda: {p: {} for p in PEERS})
    up: set[str] = field(default_factory=set)
    # The peer's Forwarding State bit, once an OPEN of it was seen (with the capability).
    forwarding: dict[str, bool] = field(default_factory=dict)
    # peer -> (stale prefixes, until, the peer restarted)
    stale: dict[str, tuple[set[str], float, bool]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.me = Speaker(
            NODE.name, NODE.router_id, NODE.as_number, NODE.cluster_id, {4: NODE.ipv4 or ""}
        )
        self.links = {
            s.peer_ip: Link(s.peer_ip, s.peer_as, s.local_as, s.rr_client, s.keep_next_hop, 0)
            for s in NODE.sessions
            if s.peer_node is not None
        }
        self.router_id = {n.ipv4: n.router_id for n in PLAN.nodes if n.ipv4}
        self.own = {b.cidr: Path(b.cidr, NODE.ipv4 or "") for b in NODE.blocks}

    def drop(self, peer: str, prefixes: set[str]) -> None:
        for prefix in prefixes:
            self.adj_in[peer].pop(prefix, None)

    def drop_stale(self, peer: str) -> None:
        if peer in self.stale:
            self.drop(peer, self.stale.pop(peer)[0])

    def apply(self, event: Event) -> None:
        if isinstance(event, Announce | Withdraw):
            self.up.add(event.peer)  # updates come on established sessions only
            if isinstance(event, Announce):
                stored = received(
                    Path(event.prefix, event.next_hop),
                    self.links[event.peer],
                    self.router_id[event.peer],
                )
                if accept(stored, self.me, self.links[event.peer]):
                    self.adj_in[event.peer][event.prefix] = stored
                else:
                    self.adj_in[event.peer].pop(event.prefix, None)
            else:
                self.adj_in[event.peer].pop(event.prefix, None)
            if event.peer in self.stale:
                prefixes, until, restarted = self.stale[event.peer]
                prefixes = prefixes - {event.prefix}
                if prefixes:
                    self.stale[event.peer] = (prefixes, until, restarted)
                else:
                    del self.stale[event.peer]
        elif isinstance(event, Up):
            self.up.add(event.peer)
            self.forwarding[event.peer] = event.forwarding
            if event.peer in self.stale:
                prefixes, _, restarted = self.stale[event.peer]
                if restarted and not event.forwarding:
                    self.drop_stale(event.peer)
                else:
                    self.stale[event.peer] = (prefixes, self.now + RESTART, restarted)
        elif isinstance(event, Silent | Final):
            if event.peer not in self.up:
                return  # never established: nothing of it to take away
            self.up.discard(event.peer)
            if isinstance(event, Silent) and event.peer in self.forwarding:
                earlier = self.stale.get(event.peer)
                if earlier is not None and earlier[2]:
                    self.drop_stale(event.peer)
                if self.adj_in[event.peer]:
                    self.stale[event.peer] = (
                        set(self.adj_in[event.peer]),
                        self.now + RESTART,
                        True,
                    )
            else:
                self.adj_in[event.peer] = {}
                self.stale.pop(event.peer, None)
        elif isinstance(event, EndOfRib):
            self.up.add(event.peer)
            self.drop_stale(event.peer)
        elif isinstance(event, Tick):
            self.now += event.seconds
            for peer in [p for p, (_, until, _) in self.stale.items() if until <= self.now]:
                self.drop_stale(peer)
        elif isinstance(event, SpeakerRestart):
            for peer in PEERS:
                # Shut down with the sessions that were up (this node's restart time: 30 s once
                # its OPEN was seen, BIRD's 120 s before), then all taken over as stale.
                ours = RESTART if peer in self.forwarding else 120
                if peer in self.up and self.adj_in[peer]:
                    self.stale[peer] = (set(self.adj_in[peer]), self.now + ours, False)
                if self.adj_in[peer]:
                    until = self.now + ours
                    if peer in self.stale:
                        until = min(until, self.stale[peer][1])
                    self.stale[peer] = (set(self.adj_in[peer]), until, False)
            self.up.clear()

    def route(self, prefix: str) -> FibRoute | None:
        if prefix in self.own:
            return FibRoute(prefix, "blackhole", source="local")
        candidates = [rib[prefix] for rib in self.adj_in.values() if prefix in rib]
        chosen = best_path(candidates)
        if chosen is None:
            return None
        rules = [PoolRule(p.name, p.cidr, p.ipip_mode, p.vxlan_mode) for p in PLAN.pools]
        context = RouteContext({4: NODE.ipv4_prefix or ""}, {}, {})
        # BIRD's metric for a BGP route (confd's SetMetricForBGPRoutes).
        route = route_for(prefix, chosen.next_hop, rules, context)
        return dataclasses.replace(route, metric=2147483647 - chosen.local_pref)

    def told(self) -> dict[tuple[str, str], Path]:
        out = {}
        for prefix in PREFIXES:
            candidates = [rib[prefix] for rib in self.adj_in.values() if prefix in rib]
            if prefix in self.own:
                candidates.append(self.own[prefix])
            chosen = best_path(candidates)
            for peer, link in self.links.items():
                sent = export(chosen, self.me, link) if chosen is not None else None
                if sent is not None:
                    out[(peer, prefix)] = sent
        return out


def _core() -> AgentCore:
    config = agent_config_of(PLAN, NODE.name)
    return AgentCore(AgentConfig.from_json(json.loads(json.dumps(config.to_json()))))


class Harness:
    """The core driven as the runtime drives it, with the clock of the model."""

    def __init__(self) -> None:
        self.core = _core()
        self.told: dict[tuple[str, str], Path] = {}
        self.hear(self.core.start())

    def hear(self, commands: list[str]) -> None:
        for command in commands:
            words = command.split()
            if words[2] == "withdraw":
                self.told.pop((words[1], words[4]), None)
                continue
            fields: dict[str, Any] = {}
            i = 7
            while i < len(words):
                if words[i] == "cluster-list":
                    end = words.index("]", i)
                    fields["cluster_list"] = tuple(words[i + 2 : end])
                    i = end + 1
                elif words[i] == "as-path":
                    end = words.index("]", i)
                    fields["as_path"] = tuple(int(w) for w in words[i + 2 : end])
                    i = end + 1
                else:
                    key = {"local-preference": "local_pref", "originator-id": "originator_id"}
                    value = words[i + 1]
                    fields[key[words[i]]] = int(value) if words[i] == "local-preference" else value
                    i += 2
            self.told[(words[1], words[4])] = Path(words[4], words[6], **fields)

    def apply(self, event: Event, now: float) -> None:
        core = self.core
        capability = GracefulRestart(RESTART, False, ((4, True),))
        if isinstance(event, Announce):
            path = Path(event.prefix, event.next_hop)
            self.hear(core.on_update(UpdateEvent(event.peer, "", announced=(path,)), now=now))
        elif isinstance(event, Withdraw):
            self.hear(core.on_update(UpdateEvent(event.peer, "", withdrawn=(event.prefix,)), now))
        elif isinstance(event, Up):
            theirs = GracefulRestart(RESTART, True, ((4, event.forwarding),))
            core.on_open(OpenEvent(event.peer, "", "send", capability))
            core.on_open(OpenEvent(event.peer, "", "receive", theirs))
            self.hear(core.on_state(StateEvent(event.peer, "", "up"), now=now))
        elif isinstance(event, Silent | Final):
            reason = SILENT_CLOSE if isinstance(event, Silent) else "notification received (6,2)"
            self.hear(core.on_state(StateEvent(event.peer, "", "down", reason), now=now))
        elif isinstance(event, EndOfRib):
            self.hear(core.on_update(UpdateEvent(event.peer, "", end_of_rib=True), now=now))
        elif isinstance(event, Tick):
            self.hear(core.expire(now))
        elif isinstance(event, AgentRestart):
            self.restart(now, speaker=False)
        else:
            for peer in PEERS:
                self.hear(core.on_state(StateEvent(peer, "", "down", LOCAL_SHUTDOWN), now=now))
            self.restart(now, speaker=True)

    def restart(self, now: float, speaker: bool) -> None:
        state = json.loads(json.dumps(self.core.snapshot()))
        state["updated"] = now
        self.core = _core()
        self.core.restore(state, speaker_restarted=speaker, now=now)
        if speaker:
            self.told = {}  # a new ExaBGP holds nothing: start() announces it all again
        self.hear(self.core.start())


def _check(harness: Harness, model: Model, step: str) -> None:
    for prefix in PREFIXES:
        assert harness.core.route(prefix) == model.route(prefix), f"{step}: {prefix}"
    assert harness.told == model.told(), step
    snapshot = harness.core.snapshot()
    rib = {(e["learned_from"], e["prefix"]) for e in snapshot["rib"] if e["learned_from"]}
    assert rib == {(p, prefix) for p, paths in model.adj_in.items() for prefix in paths}, step
    stale = {p: (set(s["prefixes"]), s["until"]) for p, s in snapshot["stale"].items()}
    assert stale == {p: (s[0], s[1]) for p, s in model.stale.items()}, step
    assert all(
        e["stale"] == (e["prefix"] in stale.get(e["learned_from"], ((), 0))[0])
        for e in snapshot["rib"]
        if e["learned_from"]
    ), step


@settings(max_examples=500, deadline=None, database=None)
@given(st.lists(EVENT, min_size=10, max_size=50))
def test_the_agents_routes_follow_graceful_restart_whatever_happens(sequence: list[Event]) -> None:
    harness, model = Harness(), Model()
    _check(harness, model, "after start")
    for index, event in enumerate(sequence):
        model.apply(event)
        harness.apply(event, model.now)
        _check(harness, model, f"after event {index}: {event}")


def test_the_property_sees_routes_kept_and_dropped() -> None:
    """A hand-made sequence: a peer restarts and comes back, another never does."""
    c1, c2 = PLAN.node("c1").ipv4, PLAN.node("c2").ipv4
    assert c1 is not None and c2 is not None
    block_c1 = next(b.cidr for b in PLAN.node("c1").blocks)
    sequence: list[Event] = [
        Up(c1, True),
        Up(c2, True),
        Announce(c1, block_c1, c1),
        Announce(c2, "10.99.0.0/24", c2),
        Silent(c1),
        Silent(c2),
        Tick(10.0),
        Up(c1, True),
        EndOfRib(c1),
        Tick(29.0),
    ]
    harness, model = Harness(), Model()
    for event in sequence:
        model.apply(event)
        harness.apply(event, model.now)
        _check(harness, model, str(event))
    assert model.route(block_c1) is None  # not sent again before its End-of-RIB
    assert model.route("10.99.0.0/24") is None  # c2 never came back
    assert ipaddress.ip_network(block_c1).version == 4


# --- a stop for a configuration change: the agent withdraws before ExaBGP stops ------------------

FAKE_AGENT = """
import json, os, select, sys, time
from pathlib import Path
from meshemu.controlplane import agent_control
record, log = Path(sys.argv[1]), sys.argv[2]
control = agent_control.open_for_agent(record.parent)
with open(record, "w") as f:
    json.dump({"pid": os.getpid(), "stopping": None}, f)
while True:
    select.select([control], [], [])
    if agent_control.CEASE in os.read(control, 64):
        with open(log, "a") as f:
            f.write(f"agent CEASE {time.time()}\\n")
        time.sleep(0.2)  # ExaBGP acknowledging the withdrawals
        with open(str(record) + ".tmp", "w") as f:
            json.dump({"pid": os.getpid(), "stopping": "withdrawn"}, f)
        os.replace(str(record) + ".tmp", record)
"""
FAKE_SPEAKER = """
import signal, sys, time
log = sys.argv[1]
def term(*_):
    with open(log, "a") as f:
        f.write(f"speaker SIGTERM {time.time()}\\n")
    sys.exit(0)
signal.signal(signal.SIGTERM, term)
print("ready", flush=True)
while True:
    time.sleep(0.05)
"""


def _fake_lab(
    tmp_path: FsPath,
) -> tuple[LabState, subprocess.Popen[bytes], subprocess.Popen[bytes], FsPath]:
    state = LabState("sc-grfake", root=tmp_path)
    state.dir.mkdir(parents=True)
    node_dir = state.node_dir("node1")
    log = tmp_path / "signals.log"
    # An agent holds the node's control FIFO open, as `state.agent_running` checks.
    agent = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(FAKE_AGENT), str(node_dir / "agent.json"), str(log)]
    )
    speaker = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(FAKE_SPEAKER), str(log)], stdout=subprocess.PIPE
    )
    assert speaker.stdout is not None and speaker.stdout.readline() == b"ready\n"
    state.record(
        Resource(
            "process", "speaker:node1", speaker.pid, process.start_time(speaker.pid), "speaker"
        )
    )
    deadline = time.monotonic() + 10
    while not (node_dir / "agent.json").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    return state, agent, speaker, log


@pytest.mark.parametrize("withdraw", [True, False])
def test_a_stop_for_a_configuration_change_lets_the_agent_withdraw_first(
    tmp_path: FsPath, withdraw: bool
) -> None:
    state, agent, speaker, log = _fake_lab(tmp_path)
    try:
        assert agent_control.running(state.dir, "node1")
        assert supervise.stop_speaker(state, "node1", withdraw=withdraw)
        assert speaker.wait(5) == 0
        lines = log.read_text().splitlines()
        if withdraw:
            assert [line.split()[0] for line in lines] == ["agent", "speaker"]
            asked, stopped = (float(line.split()[-1]) for line in lines)
            # ExaBGP is stopped after the agent's record says the withdrawals were taken.
            assert stopped - asked >= 0.2 + supervise.CEASE_FLUSH - 0.05
        else:
            assert [line.split()[0] for line in lines] == ["speaker"]
    finally:
        for child in (agent, speaker):
            if child.poll() is None:
                os.kill(child.pid, signal.SIGKILL)
                child.wait()
