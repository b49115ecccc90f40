"""What `meshemu graph` draws, as data: the lab's elements, its BGP sessions, its data paths,
and where each element sits (pure: no matplotlib, no kernel, no files).

Owns turning a plan (and, for a running lab, the session states `meshemu status` reads) into a
`TopologyGraph`:
- elements: subnets (the groups), routers, nodes (route reflectors with their cluster ID),
  external BGP peers, and optionally pods;
- one session edge per pair of BGP speakers (families folded together), from the plan's node
  and router sessions (`model.labplan`), with a state: on a running lab from the observed
  states (`lab.status`), else "planned" (or "not expected up" where the plan says the session
  cannot come up, a password mismatch for example);
- one path edge per pair of nodes and family: the way a pod's packet goes, read from the
  plan's FIB by `verify.observation.expected_path` (IPIP, VXLAN, direct, via a router);
- positions from networkx (`multipartite_layout`): nodes on the bottom row ordered by subnet,
  each router and transit subnet on the row of its distance from the nodes' subnets, ordered
  by the mean position of what it joins; pods on a row below their nodes.
Rendering (colours, shapes, files) is `report.graph`'s job.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import networkx as nx

from meshemu.verify.observation import expected_path

if TYPE_CHECKING:
    from meshemu.lab.status import LabStatus
    from meshemu.model.plan import LabPlan

# Session states an edge can have, in the order "worse first" when sides or families differ.
DOWN, PARTIAL, ESTABLISHED = "down", "partly established", "established"
PLANNED, NOT_EXPECTED, EXTERNAL = "planned", "not expected up", "external"
SESSION_STATES = (DOWN, PARTIAL, ESTABLISHED, PLANNED, NOT_EXPECTED, EXTERNAL)
# The paths a pod's packet can take between two nodes (`verify.observation.expected_path`).
PATHS = ("ipip", "vxlan", "direct", "router", "none")
ELEMENT_KINDS = ("subnet", "node", "router", "peer", "pod")


@dataclass(frozen=True)
class Element:
    """A vertex of the picture. `key` is unique ("node:node1", "subnet:rack1", ...)."""

    key: str
    kind: str  # one of ELEMENT_KINDS
    name: str
    detail: str  # addresses, AS: the second line of its label
    subnet: str | None = None  # the group it is drawn in (nodes, pods)
    cluster_id: str | None = None  # a route reflector's cluster
    reflected_by: tuple[str, ...] = ()  # clusters whose reflectors have this as a client


@dataclass(frozen=True)
class SessionEdge:
    """The BGP sessions between two speakers (both families), as one edge."""

    a: str
    b: str
    families: tuple[int, ...]
    state: str  # one of SESSION_STATES
    kinds: tuple[str, ...]  # mesh | global | node | router
    reflector: str | None  # the side that reflects routes to the other (its RR client)
    observed: tuple[str, ...] = ()  # the raw states seen, "node1 ipv4: established", ...


@dataclass(frozen=True)
class PathEdge:
    """How pods of node `a` reach pods of node `b` in one family, and back."""

    a: str
    b: str
    family: int
    forward: str  # one of PATHS, a -> b
    back: str  # b -> a

    @property
    def kind(self) -> str:
        """One word for the pair: the path, or "a->b / b->a" when the ways differ."""
        return self.forward if self.forward == self.back else f"{self.forward}/{self.back}"


@dataclass(frozen=True)
class TopologyGraph:
    name: str
    description: str
    running: bool
    elements: tuple[Element, ...]
    links: tuple[tuple[str, str], ...]  # (element, subnet): an interface on that segment
    sessions: tuple[SessionEdge, ...]
    paths: tuple[PathEdge, ...]
    positions: dict[str, tuple[float, float]] = field(default_factory=dict)

    def element(self, key: str) -> Element:
        return next(e for e in self.elements if e.key == key)

    def members(self, subnet: str) -> list[str]:
        """The keys drawn inside a subnet's group: its nodes and their pods."""
        return [e.key for e in self.elements if e.subnet == subnet]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "running": self.running,
            "elements": [
                e.__dict__ | {"reflected_by": list(e.reflected_by)} for e in self.elements
            ],
            "links": [list(link) for link in self.links],
            "sessions": [
                s.__dict__
                | {
                    "families": list(s.families),
                    "kinds": list(s.kinds),
                    "observed": list(s.observed),
                }
                for s in self.sessions
            ],
            "paths": [p.__dict__ for p in self.paths],
            "positions": {k: list(v) for k, v in self.positions.items()},
        }


SessionStates = Mapping[tuple[str, str], str]  # (node or router, peer address) -> state


def session_states(status: LabStatus) -> dict[tuple[str, str], str]:
    """The observed state of every session of a running lab, as `meshemu status` reads it."""
    out = {(n.name, s.peer_ip): s.state for n in status.nodes for s in n.sessions}
    out.update({(r.name, s.peer_ip): s.state for r in status.routers for s in r.sessions})
    return out


def build_graph(
    plan: LabPlan, states: SessionStates | None = None, pods: bool = False
) -> TopologyGraph:
    """The picture's data for `plan`; `states` (observed, from a running lab) colour the
    sessions, without them the sessions are the plan's."""
    elements = _elements(plan, pods)
    sessions = _sessions(plan, states)
    known = {e.key for e in elements}
    # External peers (a BGPPeer to an address no lab element has) become elements too.
    peers = sorted({k for s in sessions for k in (s.a, s.b) if k not in known})
    elements += [Element(k, "peer", k.split(":", 1)[1], "outside the lab") for k in peers]
    links = [("node:" + n.name, "subnet:" + n.subnet) for n in plan.nodes]
    links += [
        ("router:" + r.name, "subnet:" + i.subnet) for r in plan.routers for i in r.interfaces
    ]
    graph = TopologyGraph(
        name=plan.name,
        description=plan.description.splitlines()[0] if plan.description else "",
        running=states is not None,
        elements=tuple(elements),
        links=tuple(links),
        sessions=tuple(sessions),
        paths=tuple(_paths(plan)),
    )
    return TopologyGraph(**{**graph.__dict__, "positions": layout(graph)})


def _addresses(*values: str | None) -> str:
    return ", ".join(v for v in values if v)


def _elements(plan: LabPlan, pods: bool) -> list[Element]:
    clients: dict[str, set[str]] = {}
    for node in plan.nodes:
        for s in node.sessions:
            if s.rr_client and s.peer_node is not None and node.cluster_id is not None:
                clients.setdefault(s.peer_node, set()).add(node.cluster_id)
    for router in plan.routers:
        if router.bgp is not None and router.bgp.cluster_id is not None:
            for rs in router.bgp.sessions:
                if rs.rr_client and rs.peer_kind == "node":
                    clients.setdefault(rs.peer_name, set()).add(router.bgp.cluster_id)
    out = [
        Element("subnet:" + s.name, "subnet", s.name, _addresses(s.ipv4, s.ipv6))
        for s in plan.subnets
    ]
    for r in plan.routers:
        detail = f"AS {r.bgp.as_number}" if r.bgp is not None else "no BGP"
        out.append(
            Element(
                "router:" + r.name,
                "router",
                r.name,
                detail,
                cluster_id=r.bgp.cluster_id if r.bgp is not None else None,
            )
        )
    for n in plan.nodes:
        out.append(
            Element(
                "node:" + n.name,
                "node",
                n.name,
                _addresses(n.ipv4, n.ipv6) + f"; AS {n.as_number}",
                subnet=n.subnet,
                cluster_id=n.cluster_id,
                reflected_by=tuple(sorted(clients.get(n.name, ()))),
            )
        )
        if pods:
            out += [
                Element(
                    f"pod:{n.name}/{p.name}",
                    "pod",
                    p.name,
                    _addresses(p.ipv4, p.ipv6),
                    subnet=n.subnet,
                )
                for p in n.pods
            ]
    return out


@dataclass
class _Pair:
    families: set[int] = field(default_factory=set)
    words: list[str] = field(default_factory=list)  # observed states
    seen: list[str] = field(default_factory=list)
    expected: bool = False
    external: bool = False
    kinds: set[str] = field(default_factory=set)
    reflector: str | None = None


def _sessions(plan: LabPlan, states: SessionStates | None) -> list[SessionEdge]:
    pairs: dict[tuple[str, str], _Pair] = {}

    def add(
        owner: str, peer: str, family: int, peer_ip: str, expected: bool, emulated: bool
    ) -> _Pair:
        pair = pairs.setdefault((min(owner, peer), max(owner, peer)), _Pair())
        pair.families.add(family)
        pair.expected |= expected
        pair.external |= not emulated
        if states is not None and emulated:
            name = owner.split(":", 1)[1]
            word = states.get((name, peer_ip), "unknown")
            pair.words.append(word)
            pair.seen.append(f"{name} ipv{family} {peer_ip}: {word}")
        return pair

    for node in plan.nodes:
        for s in node.sessions:
            if s.peer_node is not None:
                peer = "node:" + s.peer_node
            elif s.peer_router is not None:
                peer = "router:" + s.peer_router
            else:
                peer = "peer:" + s.peer_ip
            pair = add(
                "node:" + node.name,
                peer,
                s.family,
                s.peer_ip,
                s.peer_ip in node.expected_up,
                s.emulated,
            )
            pair.kinds.add(s.kind)
            if s.rr_client:
                pair.reflector = "node:" + node.name
    for router in plan.routers:
        if router.bgp is None:
            continue
        for rs in router.bgp.sessions:
            pair = add(
                "router:" + router.name,
                f"{rs.peer_kind}:{rs.peer_name}",
                rs.family,
                rs.peer_ip,
                rs.peer_ip in router.bgp.expected_up,
                True,
            )
            pair.kinds.add("router")
            if rs.rr_client:
                pair.reflector = "router:" + router.name
    return [
        SessionEdge(
            a,
            b,
            tuple(sorted(p.families)),
            _state(p, running=states is not None),
            tuple(sorted(p.kinds)),
            p.reflector,
            tuple(p.seen),
        )
        for (a, b), p in sorted(pairs.items())
    ]


def _state(pair: _Pair, running: bool) -> str:
    if pair.external:
        return EXTERNAL
    if not running:
        return PLANNED if pair.expected else NOT_EXPECTED
    up = [w == "established" for w in pair.words]
    if up and all(up):
        return ESTABLISHED
    return PARTIAL if any(up) else DOWN


def _paths(plan: LabPlan) -> list[PathEdge]:
    out = []
    nodes = list(plan.nodes)
    for i, a in enumerate(nodes):
        for b in nodes[i + 1 :]:
            for family in (4, 6):
                if not _has_block(a, family) or not _has_block(b, family):
                    continue  # no pod of this family on one side: nothing travels
                out.append(
                    PathEdge(
                        "node:" + a.name,
                        "node:" + b.name,
                        family,
                        expected_path(plan, a, b, family),
                        expected_path(plan, b, a, family),
                    )
                )
    return out


def _has_block(node: Any, family: int) -> bool:
    return any((":" in b.cidr) == (family == 6) for b in node.blocks)


def layout(graph: TopologyGraph) -> dict[str, tuple[float, float]]:
    """Rows from networkx's multipartite layout (see the module docstring); the x order within
    a row is the barycenter of what each element joins, which keeps leaves under their spines."""
    fabric = nx.Graph()
    fabric.add_edges_from(graph.links)
    node_subnets = [f"subnet:{e.subnet}" for e in graph.elements if e.kind == "node"]
    for e in graph.elements:
        fabric.add_node(e.key)
    for s in graph.sessions:  # an external peer hangs off what it peers with
        if graph.element(s.a).kind == "peer" or graph.element(s.b).kind == "peer":
            fabric.add_edge(s.a, s.b)
    depth: dict[str, int] = dict(nx.multi_source_dijkstra_path_length(fabric, set(node_subnets)))
    rows: dict[str, int] = {}
    order: list[str] = []
    # Row 1: the nodes, grouped by subnet in the plan's subnet order; row 0: their pods.
    for subnet in dict.fromkeys(node_subnets):
        for key in graph.members(subnet.split(":", 1)[1]):
            rows[key] = 0 if key.startswith("pod:") else 1
            order.append(key)
    x_of = {k: float(i) for i, k in enumerate(k for k in order if rows[k] == 1)}
    for subnet in dict.fromkeys(node_subnets):
        members = [x_of[m] for m in graph.members(subnet.split(":", 1)[1]) if m in x_of]
        x_of[subnet] = sum(members) / len(members)
    rest = [e.key for e in graph.elements if e.key not in rows and e.key not in node_subnets]
    unreachable = max(depth.values(), default=0) + 1
    for key in sorted(rest, key=lambda k: depth.get(k, unreachable)):
        joined = [x_of[n] for n in fabric.neighbors(key) if n in x_of]
        x_of[key] = sum(joined) / len(joined) if joined else float(len(x_of))
    for key in sorted(rest, key=lambda k: (depth.get(k, unreachable), x_of[k])):
        rows[key] = 1 + depth.get(key, unreachable)
        order.append(key)
    placed = nx.Graph()
    placed.add_nodes_from(order)
    subsets: dict[int, list[str]] = {}
    for key in order:
        subsets.setdefault(rows[key], []).append(key)
    raw = nx.multipartite_layout(placed, subset_key=subsets, align="horizontal")
    positions = {k: (float(v[0]), float(v[1])) for k, v in raw.items()}
    # A node stands above the middle of its pods (the pods' row is the wider one).
    for e in graph.elements:
        pods = [positions[p.key][0] for p in graph.elements if p.key.startswith(f"pod:{e.name}/")]
        if e.kind == "node" and pods:
            positions[e.key] = (sum(pods) / len(pods), positions[e.key][1])
    # A node subnet's group is drawn around its nodes; its anchor (where routers attach) is
    # just above them, at the middle of the group.
    for subnet in dict.fromkeys(node_subnets):
        xs = [positions[m][0] for m in graph.members(subnet.split(":", 1)[1]) if m in positions]
        ys = [positions[m][1] for m in graph.members(subnet.split(":", 1)[1]) if m in positions]
        positions[subnet] = (sum(xs) / len(xs), max(ys))
    return positions


def describe_sessions(edges: Iterable[SessionEdge]) -> dict[str, int]:
    """How many session edges are in each state (the legend's counts)."""
    counts: dict[str, int] = {}
    for edge in edges:
        counts[edge.state] = counts.get(edge.state, 0) + 1
    return counts
