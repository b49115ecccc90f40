"""Live changes to a running lab: faults (links, speakers, agents) and topology changes.

Owns acting on a lab that is up, for scenarios and for people at the prompt: taking a node's
link down and up, stopping, starting and restarting a node's speaker, killing an agent, and
applying a changed topology (nodes, pods, pools, BGP peers added, removed or changed) by
re-planning with the running lab's block affinities and changing only what differs. Every
namespace and process it creates is recorded in the state folder first, like `up` does.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from dataclasses import dataclass, field

from meshemu.dataplane import build
from meshemu.dataplane.netlink import in_netns, netns_exists, pids_in_netns, remove_netns
from meshemu.errors import LabError
from meshemu.lab import (
    _alive,
    _exists,
    _record_netns,
    _start_speakers,
    load_running_plan,
    save_topology,
    start_tunnels,
    write_node_configs,
)
from meshemu.model.plan import LabPlan, NodePlan, build_plan
from meshemu.model.topology import Topology
from meshemu.state import LabState, Resource


def _speaker(state: LabState, node: str) -> Resource | None:
    found = [r for r in state.resources() if r.name == f"speaker:{node}" and r.pid is not None]
    return found[-1] if found else None


def _wait_gone(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not _exists(pid):
            return True
        time.sleep(0.02)
    return False


def stop_speaker(lab: str, node: str, graceful: bool = True) -> bool:
    """Stop a node's speaker (SIGTERM: it tells its peers; SIGKILL: it just vanishes)."""
    state = LabState(lab)
    resource = _speaker(state, node)
    if resource is None or not _alive(resource):
        return False
    assert resource.pid is not None
    os.kill(resource.pid, signal.SIGTERM if graceful else signal.SIGKILL)
    if not _wait_gone(resource.pid, 5):
        os.kill(resource.pid, signal.SIGKILL)
        _wait_gone(resource.pid, 2)
    return True


def start_speaker(lab: str, node: str) -> None:
    plan = load_running_plan(lab)
    state = LabState(lab)
    resource = _speaker(state, node)
    if resource is not None and _alive(resource):
        raise LabError(f"the speaker of {node} is already running")
    _start_speakers(plan, state, [plan.node(node)])


def kill_agent(lab: str, node: str) -> int:
    """SIGKILL a node's agent; ExaBGP starts a new one, which takes over. Returns the old pid."""
    path = LabState(lab).dir / "nodes" / node / "agent.pid"
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError) as err:
        raise LabError(f"{node} has no running agent ({err})") from err
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    return pid


def set_link(lab: str, node: str, up: bool) -> None:
    plan = load_running_plan(lab)
    target = plan.node(node)
    with in_netns(target.netns) as ns:
        if up:
            ns.up(target.uplink)
        else:
            ns.down(target.uplink)
    if up:
        # Bringing the link up again drops the routes the kernel removed with it.
        with in_netns(target.netns) as ns:
            if target.gateway4:
                ns.route("add", "0.0.0.0/0", via=target.gateway4, dev=target.uplink)
            if target.gateway6:
                ns.route("add", "::/0", via=target.gateway6, dev=target.uplink)


@dataclass
class ChangeSummary:
    added_nodes: list[str] = field(default_factory=list)
    removed_nodes: list[str] = field(default_factory=list)
    restarted_speakers: list[str] = field(default_factory=list)
    restarted_agents: list[str] = field(default_factory=list)
    pods_added: int = 0
    pods_removed: int = 0

    def text(self) -> str:
        parts = []
        for label, items in (
            ("nodes added", self.added_nodes),
            ("nodes removed", self.removed_nodes),
            ("speakers restarted", self.restarted_speakers),
            ("agents restarted", self.restarted_agents),
        ):
            if items:
                parts.append(f"{label}: {', '.join(items)}")
        if self.pods_added or self.pods_removed:
            parts.append(f"pods +{self.pods_added} -{self.pods_removed}")
        return "; ".join(parts) or "nothing to change"


def _remove_node(state: LabState, node: NodePlan) -> None:
    stop_speaker(state.name, node.name)
    for netns in [p.netns for p in node.pods] + [node.netns]:
        for pid in pids_in_netns(netns):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        remove_netns(netns)


def apply_topology(lab: str, topo: Topology) -> tuple[LabPlan, ChangeSummary]:
    """Change the running lab to `topo`; returns the new plan and what was done."""
    state = LabState(lab)
    old = load_running_plan(lab)
    if topo.name != lab:
        topo = topo.model_copy(update={"name": lab})
    new = build_plan(topo, previous=old)
    summary = ChangeSummary()
    old_nodes = {n.name: n for n in old.nodes}
    new_nodes = {n.name: n for n in new.nodes}
    ipip = str(state.summary().get("ipip", "none"))
    if ipip == "none" and any(p.ipip_mode != "Never" for p in new.pools):
        raise LabError("this lab started without IP-in-IP; bring it up again to add an IPIP pool")

    for name in sorted(set(old_nodes) - set(new_nodes)):
        _remove_node(state, old_nodes[name])
        summary.removed_nodes.append(name)
    plan_json = json.loads(json.dumps(new.to_json()))
    state.write_plan(plan_json)
    save_topology(state, topo, new)
    record = _record_netns(state)

    added = [new_nodes[n] for n in new_nodes if n not in old_nodes]
    for node in added:
        build.build_node(new, node, record, ipip_kernel=ipip == "kernel")
        for pod in node.pods:
            build.build_pod(node, pod, record)
            summary.pods_added += 1
        summary.added_nodes.append(node.name)
    build.seed_neighbors(new)
    for node in new.nodes:
        if node.name in old_nodes:
            _sync_pods(old_nodes[node.name], node, record, summary)
        _sync_vxlan(new, node)
    if ipip == "userspace" and added:
        start_tunnels(new, state, [n for n in added if n.ipv4])

    restart: list[NodePlan] = []
    for node in new.nodes:
        if node.name not in old_nodes:
            continue
        _config, speaker_changed, agent_changed = write_node_configs(new, state, node, plan_json)
        if speaker_changed:
            # A changed neighbour list: restart the speaker, as Calico reloads BIRD.
            stop_speaker(lab, node.name)
            restart.append(node)
            summary.restarted_speakers.append(node.name)
        elif agent_changed:
            # Pools, blocks or VTEPs changed: a new agent takes over with the new rules.
            with contextlib.suppress(LabError):
                kill_agent(lab, node.name)
            summary.restarted_agents.append(node.name)
    if restart or added:
        _start_speakers(new, state, restart + added, plan_json)
    return new, summary


def _remove_pod(node: NodePlan, pod: build.PodPlan) -> None:
    # Delete the host side first: the kernel tears a namespace's interfaces down lazily, and
    # a pod created again at once needs its `cali` name free.
    with in_netns(node.netns) as ns:
        if ns.has_link(pod.host_ifname):
            ns.delete_link(pod.host_ifname)
    remove_netns(pod.netns)


def _sync_pods(old: NodePlan, new: NodePlan, record: build.Record, summary: ChangeSummary) -> None:
    old_pods = {p.name: p for p in old.pods}
    new_pods = {p.name: p for p in new.pods}
    for name in sorted(set(old_pods) - set(new_pods)):
        _remove_pod(old, old_pods[name])  # its veth and host routes go with it
        summary.pods_removed += 1
    for name in sorted(new_pods):
        pod = new_pods[name]
        previous = old_pods.get(name)
        if previous is not None and (previous.ipv4, previous.ipv6) == (pod.ipv4, pod.ipv6):
            continue
        if previous is not None:
            _remove_pod(old, previous)
            summary.pods_removed += 1
        if not netns_exists(pod.netns):
            build.build_pod(new, pod, record)
            summary.pods_added += 1


def _sync_vxlan(plan: LabPlan, node: NodePlan) -> None:
    """VXLAN devices for the node's VTEPs, and entries for every other node's VTEP."""
    with in_netns(node.netns) as ns:
        build.build_vxlan(plan, node, ns)
