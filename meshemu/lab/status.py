"""What `meshemu status` shows: per node its sessions, its processes (alive or dead), its pods.

Owns reading a running lab's health from its state folder and the kernel's namespace list:
the plan (typed), each agent's reported sessions, and whether each recorded process (route
programmer, speakers, agents, tunnels) still runs and each namespace still exists. It names
what is dead; it changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from meshemu.dataplane.netlink import netns_exists
from meshemu.model.plan import LabPlan, NodePlan
from meshemu.state import LabState
from meshemu.verify.observation import reported_sessions

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
    netns_present: bool
    speaker: str
    agent: str
    tunnel: str  # running | dead | none (no user-space tunnel for this node)
    sessions: tuple[SessionStatus, ...]
    pods: tuple[PodStatus, ...]
    agent_errors: tuple[str, ...]

    def problems(self) -> list[str]:
        """What is dead or missing on this node, in words."""
        out = [] if self.netns_present else [f"{self.name}: namespace {self.netns} is gone"]
        out += [
            f"{self.name}: {what} dead"
            for what, value in (
                ("speaker", self.speaker),
                ("agent", self.agent),
                ("tunnel", self.tunnel),
            )
            if value == DEAD
        ]
        out += [
            f"{self.name}/{p.name}: namespace {p.netns} is gone" for p in self.pods if not p.present
        ]
        return out

    def to_json(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["sessions"] = [s.to_json() for s in self.sessions]
        data["pods"] = [p.to_json() for p in self.pods]
        data["agent_errors"] = list(self.agent_errors)
        return data


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

    def problems(self) -> list[str]:
        out = [] if self.fibd == RUNNING else ["route programmer (fibd) dead"]
        return out + [p for n in self.nodes for p in n.problems()]

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
        }


def _word(alive: bool) -> str:
    return RUNNING if alive else DEAD


def node_status(state: LabState, plan: LabPlan, node: NodePlan, ipip: str) -> NodeStatus:
    agent = state.agent_state(node.name)
    reported = reported_sessions(agent)
    speaker_alive = state.running(f"speaker:{node.name}")
    agent_alive = speaker_alive and state.agent_pid(node.name) is not None
    sessions = []
    for s in node.sessions:
        seen = reported.get(s.peer_ip, {})
        if s.peer_node is None:
            word, info = "not emulated", "external peer"
        elif not speaker_alive:
            word, info = "down", "speaker not running"
        elif not agent_alive:
            word, info = "unknown", "agent not running"
        else:
            word, info = str(seen.get("state", "idle")), str(seen.get("info", ""))
        since = seen.get("since") if speaker_alive else None
        sessions.append(
            SessionStatus(
                s.peer_ip,
                s.peer_node,
                s.kind,
                f"ipv{s.family}",
                word,
                since if isinstance(since, (int, float)) else None,
                info,
            )
        )
    has_tunnel = ipip == "userspace" and node.ipv4 is not None
    return NodeStatus(
        name=node.name,
        netns=node.netns,
        ipv4=node.ipv4,
        ipv6=node.ipv6,
        subnet=node.subnet,
        netns_present=netns_exists(node.netns),
        speaker=_word(speaker_alive),
        agent=_word(agent_alive),
        tunnel=_word(state.running(f"tunnel:{node.name}")) if has_tunnel else NONE,
        sessions=tuple(sessions),
        pods=tuple(
            PodStatus(p.name, p.netns, p.ipv4, p.ipv6, netns_exists(p.netns)) for p in node.pods
        ),
        agent_errors=tuple(str(e) for e in _errors(agent))[-5:],
    )


def lab_status(state: LabState) -> LabStatus:
    plan = state.plan()
    summary = state.summary()
    return LabStatus(
        name=state.name,
        phase=summary.phase,
        ipip=summary.ipip,
        up_seconds=dict(summary.up_seconds),
        topology=summary.topology,
        state_dir=str(state.dir),
        fibd=_word(state.running("fibd")),
        nodes=tuple(node_status(state, plan, n, summary.ipip) for n in plan.nodes),
    )


def _errors(agent: dict[str, Any] | None) -> list[object]:
    errors = (agent or {}).get("errors")
    return errors if isinstance(errors, list) else []
