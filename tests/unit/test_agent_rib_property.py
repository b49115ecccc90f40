"""Property test of the agent's RIB (hypothesis): whatever BGP throws at a node, its FIB follows.

Any sequence of announcements, withdrawals, session losses and agent restarts (a new core that
takes over the last state file) leaves, for every prefix the node has seen:
- the route the core wants (`route`) equal to the route derived from the best path of its
  Adj-RIB-In, computed here independently with `model.bgp` (`received`, `accept`,
  `best_path`) and `model.routes.route_for`; no route where no candidate is left; a blackhole
  for the node's own blocks whatever the peers say;
- the routes a runtime would have programmed (it sends only the prefixes the core marks dirty,
  and keeps the kernel's routes across a restart) equal to the same;
- what each peer was last told equal to `export` of the best path (or nothing);
- the state file's RIB equal to the Adj-RIB-In.
The topology: two racks, a route reflector in each (one cluster) and a client in each,
dual-stack, IPIP and VXLAN CrossSubnet pools, and a node of another AS peering with both
reflectors over eBGP; the node under test is a reflector, a client or the eBGP node.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from meshemu.controlplane.agent import AgentCore
from meshemu.controlplane.events import StateEvent, UpdateEvent
from meshemu.model.agent_config import AgentConfig, agent_config_of
from meshemu.model.bgp import Link, Path, Speaker, accept, best_path, export, received
from meshemu.model.load import load_topology_text
from meshemu.model.plan import LabPlan, NodePlan, build_plan
from meshemu.model.routes import FibRoute, PoolRule, RouteContext, pool_of, route_for


def make_core(plan: LabPlan, node_name: str) -> AgentCore:
    """The one place a core is built: from the node's typed agent configuration, as the lab
    writes it and the agent reads it (through its JSON form)."""
    config = agent_config_of(plan, node_name)
    return AgentCore(AgentConfig.from_json(json.loads(json.dumps(config.to_json()))))


TOPOLOGY = """
name: prop
subnets:
  rack1: {ipv4: 10.7.1.0/24, ipv6: "fd00:7:1::/64"}
  rack2: {ipv4: 10.7.2.0/24, ipv6: "fd00:7:2::/64"}
routers:
  spine: {subnets: [rack1, rack2]}
nodes:
  rr1: {subnet: rack1, labels: {rr: "yes"}, routeReflectorClusterID: 244.0.0.1, pods: 1}
  rr2: {subnet: rack2, labels: {rr: "yes"}, routeReflectorClusterID: 244.0.0.1, pods: 1}
  c1: {subnet: rack1}
  c2: {subnet: rack2}
  edge: {subnet: rack2, asNumber: 65010}
pools:
  v4: {cidr: 10.248.0.0/16, ipipMode: CrossSubnet}
  v6: {cidr: "fd80:7::/64", vxlanMode: CrossSubnet}
# BIRD writes the IPv4 (IP-in-IP) routes, as before Calico v3.33; the VXLAN ones are Felix's.
felix: {programClusterRoutes: Disabled}
bgp:
  programClusterRoutes: Enabled
  nodeToNodeMeshEnabled: false
  peers:
    to-rr: {nodeSelector: all(), peerSelector: "rr == 'yes'"}
"""
PLAN = build_plan(load_topology_text(TOPOLOGY, "prop.yaml", "prop"))
CLUSTER = "244.0.0.1"
OUTSIDE = {4: "10.99.0.0/24", 6: "fd99::/64"}  # in no pool
STRAY_HOP = {4: "10.7.3.5", 6: "fd00:7:3::5"}  # no node there


def _family(address_or_prefix: str) -> int:
    return ipaddress.ip_network(address_or_prefix, strict=False).version


# Every node's blocks, and a prefix in no pool, per family: what the peers talk about.
PREFIXES = {
    f: sorted({b.cidr for n in PLAN.nodes for b in n.blocks if _family(b.cidr) == f} | {OUTSIDE[f]})
    for f in (4, 6)
}
NEXT_HOPS = {
    f: sorted({a for n in PLAN.nodes if (a := n.address(f)) is not None} | {STRAY_HOP[f]})
    for f in (4, 6)
}
ROUTER_IDS = sorted({n.router_id for n in PLAN.nodes} | {"10.7.3.5"})


# --- events --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Announce:
    peer: str
    path: Path


@dataclass(frozen=True)
class Withdraw:
    peer: str
    prefix: str


@dataclass(frozen=True)
class Down:
    peer: str


@dataclass(frozen=True)
class Up:
    peer: str


@dataclass(frozen=True)
class Restart:
    pass


Event = Announce | Withdraw | Down | Up | Restart


def _peers(node: NodePlan) -> list[str]:
    return [s.peer_ip for s in node.sessions if s.peer_node is not None]


@st.composite
def announcements(draw: st.DrawFn, node: NodePlan) -> Announce:
    peer = draw(st.sampled_from(_peers(node)))
    family = _family(peer)
    reflected = draw(st.booleans())
    path = Path(
        prefix=draw(st.sampled_from(PREFIXES[family])),
        next_hop=draw(st.sampled_from(NEXT_HOPS[family])),
        as_path=tuple(draw(st.lists(st.sampled_from([64512, 65010, 65002]), max_size=2))),
        local_pref=draw(st.sampled_from([50, 100, 100, 200])),
        # Reflected routes carry an originator (sometimes this node: a loop) and a cluster
        # list (sometimes with this node's cluster: a loop).
        originator_id=draw(st.sampled_from(ROUTER_IDS)) if reflected else None,
        cluster_list=tuple(
            draw(st.lists(st.sampled_from([CLUSTER, "244.0.0.2", "244.0.0.3"]), max_size=2))
        )
        if reflected
        else (),
    )
    return Announce(peer, path)


def events(node: NodePlan) -> st.SearchStrategy[list[Event]]:
    peers = st.sampled_from(_peers(node))
    withdrawals = st.builds(
        Withdraw,
        peers,
        st.sampled_from(PREFIXES[4] + PREFIXES[6]),
    )
    one: st.SearchStrategy[Event] = st.one_of(
        announcements(node),
        announcements(node),
        announcements(node),
        withdrawals,
        st.builds(Down, peers),
        st.builds(Up, peers),
        st.just(Restart()),
    )
    return st.lists(one, max_size=40)


# --- the independent model -----------------------------------------------------------------------


def _speaker(node: NodePlan) -> Speaker:
    addresses = {f: a for f in (4, 6) if (a := node.address(f)) is not None}
    return Speaker(node.name, node.router_id, node.as_number, node.cluster_id, addresses)


def _links(node: NodePlan) -> dict[str, Link]:
    return {
        s.peer_ip: Link(
            s.peer_ip, s.peer_as, s.local_as, s.rr_client, s.keep_next_hop, s.allow_local_as or 0
        )
        for s in node.sessions
        if s.peer_node is not None
    }


def _context(node: NodePlan) -> tuple[list[PoolRule], RouteContext]:
    pools = [p.route_rule() for p in PLAN.pools]
    vteps = {}
    for other in PLAN.nodes:
        for vtep in other.vteps:
            address = other.address(vtep.family)
            if address is not None:
                vteps[address] = vtep.address
    ctx = RouteContext(
        node_subnet={f: p for f, p in ((4, node.ipv4_prefix), (6, node.ipv6_prefix)) if p},
        gateway={f: g for f, g in ((4, node.gateway4), (6, node.gateway6)) if g},
        vteps=vteps,
    )
    return pools, ctx


@dataclass
class Model:
    """The node as the rules say it should be, kept without the core's code."""

    node: NodePlan
    adj_in: dict[str, dict[str, Path]] = field(default_factory=dict)
    seen: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.me = _speaker(self.node)
        self.links = _links(self.node)
        self.adj_in = {peer: {} for peer in self.links}
        self.router_id = {
            a: n.router_id for n in PLAN.nodes for a in (n.ipv4, n.ipv6) if a is not None
        }
        self.pools, self.ctx = _context(self.node)
        # BIRD's kernel filter: only its pools' routes and blackholes reach the kernel.
        self.felix_pools = [p.route_rule() for p in PLAN.pools if not p.bird_programs]
        programs = {p.name for p in PLAN.pools if p.bird_programs}
        self.blocks = {b.cidr for b in self.node.blocks if b.pool in programs}
        exported = {p.name for p in PLAN.pools if not p.disable_bgp_export}
        self.own = {
            b.cidr: Path(b.cidr, self.node.address(_family(b.cidr)) or "")
            for b in self.node.blocks
            if b.pool in exported
        }
        self.seen = {b.cidr for b in self.node.blocks}

    def apply(self, event: Event) -> None:
        if isinstance(event, Announce):
            link = self.links[event.peer]
            stored = received(event.path, link, self.router_id[event.peer])
            self.seen.add(stored.prefix)
            if accept(stored, self.me, link):
                self.adj_in[event.peer][stored.prefix] = stored
            else:
                self.adj_in[event.peer].pop(stored.prefix, None)
        elif isinstance(event, Withdraw):
            self.seen.add(event.prefix)
            self.adj_in[event.peer].pop(event.prefix, None)
        elif isinstance(event, Down):
            self.adj_in[event.peer] = {}

    def best(self, prefix: str) -> Path | None:
        candidates = [rib[prefix] for rib in self.adj_in.values() if prefix in rib]
        if prefix in self.own:
            candidates.append(self.own[prefix])
        return best_path(candidates)

    def route(self, prefix: str) -> FibRoute | None:
        if prefix in self.blocks:
            return FibRoute(prefix, "blackhole", source="local")
        chosen = self.best(prefix)
        if chosen is None or pool_of(prefix, self.felix_pools) is not None:
            return None
        assert chosen.learned_from is not None
        return route_for(prefix, chosen.next_hop, self.pools, self.ctx)

    def fib(self) -> dict[str, tuple[object, ...]]:
        return {p: r.key() for p in sorted(self.seen) if (r := self.route(p)) is not None}

    def exports(self) -> dict[tuple[str, str], Path]:
        out = {}
        for prefix in self.seen:
            chosen = self.best(prefix)
            if chosen is None:
                continue
            for peer, link in self.links.items():
                sent = export(chosen, self.me, link)
                if sent is not None:
                    out[(peer, prefix)] = sent
        return out

    def rib(self) -> set[tuple[object, ...]]:
        return {
            (peer, p.prefix, p.next_hop, p.as_path, p.local_pref, p.originator_id, p.cluster_list)
            for peer, paths in self.adj_in.items()
            for p in paths.values()
        }


# --- driving the core like the runtime does ------------------------------------------------------


class Harness:
    """One core (replaced on restart), the routes a runtime would have programmed, and what
    each peer has been told."""

    def __init__(self, node: NodePlan) -> None:
        self.node = node
        self.core = make_core(PLAN, node.name)
        self.programmed: dict[str, FibRoute] = {}
        self.told: dict[tuple[str, str], Path] = {}
        self.hear(self.core.start())
        self.sync()

    def hear(self, commands: list[str]) -> None:
        for command in commands:
            words = command.split()
            peer, action, prefix = words[1], words[2], words[4]
            if action == "withdraw":
                self.told.pop((peer, prefix), None)
            else:
                self.told[(peer, prefix)] = _path_of(words)

    def sync(self) -> None:
        """`Runtime.sync_fib` with a route programmer that always succeeds."""
        dirty = getattr(self.core, "dirty", None)
        if dirty is None:
            return
        for prefix in sorted(dirty):
            wanted = self.core.route(prefix)
            if wanted is None:
                self.programmed.pop(prefix, None)
            else:
                self.programmed[prefix] = wanted
        dirty.clear()

    def apply(self, event: Event) -> None:
        core = self.core
        if isinstance(event, Announce):
            self.hear(core.on_update(UpdateEvent(event.peer, "", announced=(event.path,))))
        elif isinstance(event, Withdraw):
            self.hear(core.on_update(UpdateEvent(event.peer, "", withdrawn=(event.prefix,))))
        elif isinstance(event, Down):
            self.hear(core.on_state(StateEvent(event.peer, "", "down", "test")))
        elif isinstance(event, Up):
            self.hear(core.on_state(StateEvent(event.peer, "", "up")))
        else:
            self.restart()
        self.sync()

    def restart(self) -> None:
        """What `Runtime._take_over` and `run` do with the last state file."""
        state = json.loads(json.dumps(self.core.snapshot()))
        self.core = make_core(PLAN, self.node.name)
        self.core.restore(state)
        dirty = getattr(self.core, "dirty", None)
        if dirty is not None:
            dirty |= set(self.programmed)  # the kernel kept the predecessor's routes
        self.hear(self.core.start())

    def fib(self, prefixes: set[str]) -> dict[str, tuple[object, ...]]:
        return {p: r.key() for p in sorted(prefixes) if (r := self.core.route(p)) is not None}

    def rib(self) -> set[tuple[object, ...]]:
        return {
            (
                r["learned_from"],
                r["prefix"],
                r["next_hop"],
                tuple(r["as_path"]),
                r["local_pref"],
                r["originator_id"],
                tuple(r["cluster_list"]),
            )
            for r in self.core.snapshot()["rib"]
            if r["learned_from"] is not None
        }


def _path_of(words: list[str]) -> Path:
    """The path of an `announce route` command (the attributes `announce_command` writes)."""
    fields: dict[str, Any] = {}
    i = 7
    while i < len(words):
        if words[i] in ("as-path", "cluster-list"):
            end = words.index("]", i)
            values = words[i + 2 : end]
            if words[i] == "as-path":
                fields["as_path"] = tuple(int(v) for v in values)
            else:
                fields["cluster_list"] = tuple(values)
            i = end + 1
        else:
            key = {"local-preference": "local_pref", "originator-id": "originator_id"}[words[i]]
            fields[key] = int(words[i + 1]) if key == "local_pref" else words[i + 1]
            i += 2
    return Path(prefix=words[4], next_hop=words[6], **fields)


def _check(harness: Harness, model: Model, step: str) -> None:
    wanted = model.fib()
    assert harness.fib(model.seen) == wanted, step
    if getattr(harness.core, "dirty", None) is not None:
        assert {p: r.key() for p, r in harness.programmed.items()} == wanted, step
    assert harness.told == model.exports(), step
    assert harness.rib() == model.rib(), step
    for prefix in model.blocks:
        assert harness.core.route(prefix) == FibRoute(prefix, "blackhole", source="local"), step


def _run(node: NodePlan, sequence: list[Event]) -> None:
    harness, model = Harness(node), Model(node)
    _check(harness, model, "after start")
    for index, event in enumerate(sequence):
        harness.apply(event)
        model.apply(event)
        _check(harness, model, f"after event {index}: {event}")


REFLECTOR, CLIENT, EDGE = PLAN.node("rr1"), PLAN.node("c2"), PLAN.node("edge")


@settings(max_examples=300, deadline=None, database=None)
@given(events(REFLECTOR))
def test_a_reflectors_fib_follows_its_rib(sequence: list[Event]) -> None:
    _run(REFLECTOR, sequence)


@settings(max_examples=200, deadline=None, database=None)
@given(events(CLIENT))
def test_a_clients_fib_follows_its_rib(sequence: list[Event]) -> None:
    _run(CLIENT, sequence)


@settings(max_examples=200, deadline=None, database=None)
@given(events(EDGE))
def test_an_ebgp_nodes_fib_follows_its_rib(sequence: list[Event]) -> None:
    _run(EDGE, sequence)


def test_the_topology_has_what_the_property_needs() -> None:
    """A reflector with clients and a non-client, both families, pools in both, own blocks."""
    assert REFLECTOR.cluster_id == CLUSTER and CLIENT.cluster_id is None
    clients = {s.peer_node for s in REFLECTOR.sessions if s.rr_client}
    others = {s.peer_node for s in REFLECTOR.sessions if not s.rr_client}
    # Calico never makes an eBGP peer a reflector client (confd bgp_processor.go,
    # buildPeerFromData): edge is an eBGP non-client, which the property still exercises.
    assert clients == {"c1", "c2"} and others == {"rr2", "edge"}
    ebgp = {s.peer_node for s in REFLECTOR.sessions if s.peer_as != s.local_as}
    assert ebgp == {"edge"}
    assert {s.peer_node for s in EDGE.sessions} == {"rr1", "rr2"}
    assert all(s.peer_as != s.local_as for s in EDGE.sessions)
    assert {_family(p) for p in _peers(REFLECTOR)} == {4, 6}
    assert REFLECTOR.blocks and CLIENT.blocks
    assert all(len(PREFIXES[f]) >= 3 for f in (4, 6))


def test_the_model_is_not_trivial() -> None:
    """A hand-made sequence: reflection, a loop drop, a session loss and a restart."""
    block = next(b.cidr for b in PLAN.node("c1").blocks if ":" not in b.cidr)
    c1 = PLAN.node("c1").ipv4
    assert c1 is not None
    sequence: list[Event] = [
        Announce(c1, Path(block, c1)),
        Announce("10.7.2.2", Path(OUTSIDE[4], "10.7.2.3", originator_id="10.7.2.3")),
        Announce("10.7.2.2", Path(OUTSIDE[4], "10.7.2.3", cluster_list=(CLUSTER,))),
        Restart(),
        Down(c1),
    ]
    harness, model = Harness(REFLECTOR), Model(REFLECTOR)
    for event in sequence[:2]:
        harness.apply(event)
        model.apply(event)
    assert block in model.fib() and OUTSIDE[4] in model.fib()
    assert any(peer != c1 and prefix == block for peer, prefix in harness.told)
    _run(REFLECTOR, sequence)
