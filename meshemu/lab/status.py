"""What `meshemu status` shows: per node its sessions, its processes (alive or dead), its pods.

Owns shaping a running lab's status from its state folder and the health `verify.observe` reads:
the plan (typed), each agent's reported sessions, and whether each recorded process (route
programmer, speakers, agents, tunnels) still runs and each namespace still exists. It names
what is dead; it changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from meshemu.model.plan import NodePlan, RouterPlan
from meshemu.state import LabState
from meshemu.verify.observation import NodeHealth, RouterObservation, reported_sessions
from meshemu.verify.observe import (
    fresh_agent_states,
    node_state,
    observe_health,
    observe_router,
)

RUNNING, DEAD, NONE = "running", "dead", "none"


@dataclass(frozen=True)
class SessionStatus:
    peer_ip: str
    peer_node: str | None
    kind: str
    family: str
    state: str  # established | idle | connect | ... | down | not emulated
    since: float | None
    info: str

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class PodStatus:
    name: str
    netns: str
    ipv4: str | None
    ipv6: str | None
    present: bool

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class NodeStatus:
    name: str
    netns: str
    ipv4: str | None
    ipv6: str | None
    subnet: str
    health: NodeHealth
    sessions: tuple[SessionStatus, ...]
    pods: tuple[PodStatus, ...]
    agent_errors: tuple[str, ...]

    @property
    def speaker(self) -> str:
        """running | dead | none (the lab's BGP is off: the node runs no speaker)."""
        return _word(self.health.speaker) if self.health.bgp else NONE

    @property
    def agent(self) -> str:
        return _word(self.health.agent) if self.health.bgp else NONE

    @property
    def tunnel(self) -> str:
        """running | dead | none (the node has no user-space tunnel)."""
        return NONE if self.health.tunnel is None else _word(self.health.tunnel)

    def problems(self) -> list[str]:
        """What is dead or gone on this node, in words."""
        return [f"{self.name}: {what}" for what in self.health.dead()]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "netns": self.netns,
            "ipv4": self.ipv4,
            "ipv6": self.ipv6,
            "subnet": self.subnet,
            "netns_present": self.health.netns,
            "speaker": self.speaker,
            "agent": self.agent,
            "tunnel": self.tunnel,
            "sessions": [s.to_json() for s in self.sessions],
            "pods": [p.to_json() for p in self.pods],
            "agent_errors": list(self.agent_errors),
        }


@dataclass(frozen=True)
class RouterStatus:
    """A BGP router: its BIRD (running or dead, which configuration) and BIRD's sessions."""

    name: str
    netns: str
    bird: str  # running | dead
    config: str  # "rendered by meshemu" or the user's file
    socket: str  # its control socket: `birdc -s <socket> show route` reads it
    sessions: tuple[SessionStatus, ...]
    error: str | None  # why BIRD could not be read while running

    def problems(self) -> list[str]:
        if self.bird != RUNNING:
            return [f"{self.name}: BIRD dead"]
        return [f"{self.name}: BIRD does not answer ({self.error})"] if self.error else []

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "netns": self.netns,
            "bird": self.bird,
            "config": self.config,
            "socket": self.socket,
            "sessions": [s.to_json() for s in self.sessions],
            "error": self.error,
        }


@dataclass(frozen=True)
class LabStatus:
    name: str
    phase: str
    ipip: str
    up_seconds: dict[str, float]
    topology: str
    state_dir: str
    fibd: str
    nodes: tuple[NodeStatus, ...]
    routers: tuple[RouterStatus, ...] = ()
    # The plan's word on pods IPAM could not address (not created) and tunnels without an
    # address: Calico's reason for each (model.phases.allocation).
    ipam_notes: tuple[str, ...] = ()

    def problems(self) -> list[str]:
        out = [] if self.fibd == RUNNING else ["route programmer (fibd) dead"]
        out += [p for n in self.nodes for p in n.problems()]
        return out + [p for r in self.routers for p in r.problems()]

    @property
    def healthy(self) -> bool:
        return not self.problems()

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "phase": self.phase,
            "ipip": self.ipip,
            "up_seconds": dict(self.up_seconds),
            "topology": self.topology,
            "state_dir": self.state_dir,
            "fibd": self.fibd,
            "healthy": self.healthy,
            "problems": self.problems(),
            "nodes": [n.to_json() for n in self.nodes],
            "routers": [r.to_json() for r in self.routers],
            "not_created": list(self.ipam_notes),
        }


def _word(alive: bool) -> str:
    return RUNNING if alive else DEAD


def node_status(node: NodePlan, health: NodeHealth, agent: dict[str, Any] | None) -> NodeStatus:
    """`agent`: an ExaBGP node's agent state, or what a BIRD node's BIRD says (same shape)."""
    reported = reported_sessions(agent)
    sessions = []
    for s in node.sessions:
        seen = reported.get(s.peer_ip, {})
        if not s.emulated:
            word, info = "not emulated", "external peer"
        elif not health.speaker:
            word, info = "down", "speaker not running"
        elif not health.agent:
            word, info = "unknown", "agent not running"
        else:
            word, info = str(seen.get("state", "idle")), str(seen.get("info", ""))
        since = seen.get("since") if health.speaker else None
        sessions.append(
            SessionStatus(
                s.peer_ip,
                s.peer_name,
                s.kind,
                f"ipv{s.family}",
                word,
                since if isinstance(since, (int, float)) else None,
                info,
            )
        )
    return NodeStatus(
        name=node.name,
        netns=node.netns,
        ipv4=node.ipv4,
        ipv6=node.ipv6,
        subnet=node.subnet,
        health=health,
        sessions=tuple(sessions),
        pods=tuple(
            PodStatus(p.name, p.netns, p.ipv4, p.ipv6, p.name not in health.missing_pods)
            for p in node.pods
        ),
        agent_errors=tuple(str(e) for e in _errors(agent))[-5:],
    )


def lab_status(state: LabState) -> LabStatus:
    plan = state.plan()
    summary = state.summary()
    health = observe_health(state, plan)
    # As they are now; a node with no live agent: what its agent last wrote.
    states = fresh_agent_states(state, plan, health)
    for node in plan.nodes:
        states[node.name] = states[node.name] or node_state(state, node)
    return LabStatus(
        name=state.name,
        phase=summary.phase,
        ipip=summary.ipip,
        up_seconds=dict(summary.up_seconds),
        topology=summary.topology,
        state_dir=str(state.dir),
        fibd=_word(state.running("fibd")),
        nodes=tuple(node_status(n, health[n.name], states[n.name]) for n in plan.nodes),
        routers=tuple(
            router_status(router, observe_router(state, index, router), state.bird_socket(index))
            for index, router in enumerate(plan.routers)
            if router.bgp is not None
        ),
        ipam_notes=tuple(n for n in plan.notes if any(m in n for m in IPAM_NOTE_MARKS)),
    )


# The allocation pass's notes (model/phases/allocation.py `_node_ipam`).
IPAM_NOTE_MARKS = ("Calico's IPAM gives it no", "tunnel address (IPv")


def router_status(router: RouterPlan, seen: RouterObservation, socket: Path) -> RouterStatus:
    """A router's BIRD and each planned session as BIRD reports it (by neighbor address)."""
    assert router.bgp is not None
    by_neighbor = {p.neighbor_address: p for p in seen.protocols if p.proto == "BGP"}
    sessions = []
    for s in router.bgp.sessions:
        protocol = by_neighbor.get(s.peer_ip)
        if not seen.running:
            word, info = "down", "BIRD not running"
        elif protocol is None:
            word, info = "unknown", seen.error or "no such session in BIRD"
        else:
            word = (protocol.bgp_state or protocol.state).lower()
            info = protocol.last_error or ""
        sessions.append(
            SessionStatus(s.peer_ip, s.peer_name, s.peer_kind, f"ipv{s.family}", word, None, info)
        )
    return RouterStatus(
        name=router.name,
        netns=router.netns,
        bird=_word(seen.running),
        config=router.bgp.config_file or "rendered by meshemu",
        socket=str(socket),
        sessions=tuple(sessions),
        error=seen.error,
    )


def _errors(agent: dict[str, Any] | None) -> list[object]:
    errors = (agent or {}).get("errors")
    return errors if isinstance(errors, list) else []
