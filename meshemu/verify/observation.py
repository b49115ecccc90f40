"""What an observation of a running lab holds, and what the plan says a probe should see (pure).

Owns the types `observe` fills and `checks` judges: per node its health (namespace, speaker,
agent, tunnel), its agent's reported state, its kernel FIB; per BGP router what its BIRD says
and its FIB; and the reachability matrix with the path each probe was seen taking. Also the
pure rules that relate them to the plan: which path a packet between two pods should take,
and which path a capture shows. No I/O here.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

from meshemu.model.plan import LabPlan, NodePlan, PodPlan
from meshemu.model.routes import FibRoute
from meshemu.verify.bird_output import BirdProtocol, BirdRoute
from meshemu.verify.outside import OutsideSeen


@dataclass(frozen=True)
class Cell:
    """One ICMP probe between two pods, with the path the plan expects."""

    source: str  # node/pod
    target: str
    family: int
    source_ip: str
    target_ip: str
    path: str  # expected: local | direct | ipip | vxlan | router | none
    rtt_ms: float | None
    error: str = ""  # why the probe could not be sent (a pod namespace gone)

    @property
    def ok(self) -> bool:
        return self.rtt_ms is not None


@dataclass(frozen=True)
class Frame:
    """One frame seen on the fabric: plain, IP-in-IP or VXLAN, with the inner addresses."""

    ifname: str
    encap: str  # plain | ipip | vxlan
    outer_src: str
    outer_dst: str
    inner_src: str | None
    inner_dst: str | None
    inner_proto: int | None


@dataclass(frozen=True)
class PathCell:
    """One probe of the matrix with what the fabric showed."""

    cell: Cell
    tcp_ok: bool | None  # None: not probed
    observed_path: str  # local | direct | router | ipip | vxlan | unseen


@dataclass(frozen=True)
class NodeHealth:
    """Whether what a node needs still exists and runs."""

    netns: bool = True
    speaker: bool = True
    agent: bool = True
    tunnel: bool | None = None  # None: the node has no user-space tunnel process
    missing_pods: tuple[str, ...] = ()
    # False: the node runs no speaker and no agent (the lab's BGP is off), none expected.
    bgp: bool = True

    @property
    def control_alive(self) -> bool:
        """Its BGP speaker and agent run, so what its agent reports is current."""
        return self.netns and self.speaker and self.agent

    def dead(self) -> list[str]:
        out = [] if self.netns else ["namespace gone"]
        out += [
            f"{what} dead"
            for what, alive in (
                ("speaker", self.speaker),
                ("agent", self.agent),
                ("tunnel", self.tunnel),
            )
            if alive is False
        ]
        out += [f"pod {p} namespace gone" for p in self.missing_pods]
        return out


@dataclass(frozen=True)
class RouterObservation:
    """A BGP router as seen: its BIRD running, what BIRD says (protocols, routes), its FIB."""

    running: bool
    protocols: tuple[BirdProtocol, ...] = ()
    routes: tuple[BirdRoute, ...] = ()
    fib: tuple[FibRoute, ...] = ()
    error: str | None = None  # why BIRD could not be read (None: it was)


@dataclass(frozen=True)
class Observation:
    agents: dict[str, dict[str, Any] | None]
    fibs: dict[str, list[FibRoute]]
    matrix: list[PathCell]
    health: dict[str, NodeHealth] = field(default_factory=dict)
    fibd: bool = True  # the lab's route programmer runs
    routers: dict[str, RouterObservation] = field(default_factory=dict)
    outside: tuple[OutsideSeen, ...] = ()  # probes to the lab's outside host, if it has one


def pods_of(plan: LabPlan) -> list[tuple[NodePlan, PodPlan]]:
    return [(n, p) for n in plan.nodes for p in n.pods]


def targets_of(pod: PodPlan, pods: list[tuple[NodePlan, PodPlan]]) -> list[str]:
    """The addresses `pod` probes: every other pod's, in the families `pod` has."""
    return [
        ip
        for _node, other in pods
        if other is not pod
        for ip in (other.ipv4 if pod.ipv4 else None, other.ipv6 if pod.ipv6 else None)
        if ip
    ]


def expected_path(plan: LabPlan, src: NodePlan, dst: NodePlan, family: int) -> str:
    """The path the plan's FIB sends a packet from a pod on `src` to one on `dst`."""
    if src.name == dst.name:
        return "local"
    block = next(
        (b.cidr for b in dst.blocks if ipaddress.ip_network(b.cidr).version == family), None
    )
    if block is None:  # no block of its own: its pods' addresses are borrowed (host routes)
        held = (p.ipv4 if family == 4 else p.ipv6 for p in dst.pods)
        block = next((f"{a}/{32 if family == 4 else 128}" for a in held if a), None)
    route: FibRoute | None = next((r for r in src.fib if r.prefix == block), None)
    if route is None:
        return "none"
    if route.dev == "tunl0":
        return "ipip"
    if route.dev and route.dev.startswith("vxlan"):
        return "vxlan"
    return "direct" if route.via == dst.address(family) else "router"


def observed_path(cell: Cell, frames: list[Frame]) -> str:
    """The path the capture shows the probe of `cell` taking."""
    if cell.path == "local":
        return "local"
    kinds = set()
    for frame in frames:
        if frame.encap in ("ipip", "vxlan"):
            if (frame.inner_src, frame.inner_dst) == (cell.source_ip, cell.target_ip):
                kinds.add(frame.encap)
        elif (frame.outer_src, frame.outer_dst) == (cell.source_ip, cell.target_ip):
            kinds.add("router" if frame.ifname.startswith("r") else "direct")
    for kind in ("ipip", "vxlan", "router", "direct"):
        if kind in kinds:
            return kind
    return "unseen"


def _entries(agent: dict[str, Any] | None, key: str, required: str) -> list[dict[str, Any]]:
    """The entries of an agent state's list `key` that are mappings with text at `required`;
    a state file of another shape (another version, a hand edit) yields nothing, never raises.
    """
    items = (agent or {}).get(key)
    if not isinstance(items, list):
        return []
    return [e for e in items if isinstance(e, dict) and isinstance(e.get(required), str)]


def reported_sessions(agent: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """peer address -> the session as the agent reported it."""
    return {e["peer_ip"]: e for e in _entries(agent, "sessions", "peer_ip")}


def reported_best_paths(agent: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """prefix -> the best path as the agent reported it (own and learned)."""
    return {e["prefix"]: e for e in _entries(agent, "rib", "prefix") if e.get("best") is True}
