"""Healing a running lab: restart what died, rebuild what is gone, re-program routes.

Owns `meshemu repair`: from the lab's own record and plan (nothing found by name), it rebuilds
node and pod namespaces that were deleted, restarts the route programmer, user-space tunnels,
the routers' BIRD daemons, speakers and agents that died, asks every live agent to program its
whole FIB again (a route deleted by hand comes back), then waits until every FIB equals the
plan. The fabric and router
namespaces are not rebuilt here: without them every link is gone, and `down` then `up` is the
honest repair.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from meshemu import process
from meshemu.controlplane import agent_control
from meshemu.dataplane import build
from meshemu.dataplane.netlink import in_netns, netns_exists
from meshemu.errors import LabError
from meshemu.lab import routers, supervise
from meshemu.lab.converge import wait_converged
from meshemu.lab.lifecycle import record_netns
from meshemu.lab.live import remove_pod
from meshemu.lab.preflight import require_root
from meshemu.model.plan import LabPlan, NodePlan
from meshemu.state import LabState
from meshemu.verify.fib import FibDiff

Progress = Callable[[str], None]


@dataclass
class RepairResult:
    name: str
    actions: list[str] = field(default_factory=list)
    diffs: list[FibDiff] = field(default_factory=list)

    @property
    def converged(self) -> bool:
        return not self.diffs

    def text(self) -> str:
        done = "; ".join(self.actions) if self.actions else "nothing was dead or gone"
        verdict = (
            "every FIB equals the plan"
            if self.converged
            else "NOT converged: "
            + "; ".join(line for d in self.diffs for line in d.describe()[:3])
        )
        return f"lab {self.name} repaired: {done}; {verdict}"


def repair(state: LabState, progress: Progress, timeout: float | None = None) -> RepairResult:
    require_root("repair")
    plan = state.plan()
    ipip = state.summary().ipip
    missing = [
        ns for ns in [plan.fabric_netns, *(r.netns for r in plan.routers)] if not netns_exists(ns)
    ]
    if missing:
        raise LabError(
            f"lab {state.name}: {', '.join(missing)} is gone, and with it every link of the "
            f"fabric: bring the lab down and up again (`meshemu down {state.name}`)"
        )
    result = RepairResult(state.name)
    rebuilt = _rebuild_nodes(state, plan, ipip, result)
    _rebuild_pods(state, plan, rebuilt, result)
    _restart_processes(state, plan, ipip, rebuilt, result)
    supervise.wake_felix(state)  # rebuilt nodes and removed routes get Felix's routes again
    for action in result.actions:
        progress(f"  {action}")
    limit = timeout if timeout is not None else 30 + 0.5 * len(plan.nodes)
    result.diffs = wait_converged(plan, state, limit)
    return result


def _stop_node_processes(state: LabState, node: NodePlan) -> None:
    """A node whose namespace was deleted lives on while its processes run in it."""
    pids = {
        r.pid
        for name in (f"speaker:{node.name}", f"speaker6:{node.name}", f"tunnel:{node.name}")
        if (r := state.process(name)) is not None
        and process.same_process(r.pid, r.start_time)
        and r.pid is not None
    }
    process.stop(pids, grace=1.0)  # the agent is a thread of the speaker


def _rebuild_nodes(state: LabState, plan: LabPlan, ipip: str, result: RepairResult) -> set[str]:
    gone = [n for n in plan.nodes if not netns_exists(n.netns)]
    record = record_netns(state)
    for node in gone:
        _stop_node_processes(state, node)
        with in_netns(plan.fabric_netns) as fabric:
            if fabric.has_link(node.fabric_ifname):
                fabric.delete_link(node.fabric_ifname)  # takes the orphaned uplink with it
        for pod in node.pods:
            if netns_exists(pod.netns):
                remove_pod(node, pod)
        build.build_node(plan, node, record, ipip_kernel=ipip == "kernel")
        for pod in node.pods:
            build.build_pod(node, pod, record)
        result.actions.append(f"{node.name}: namespace rebuilt with its {len(node.pods)} pods")
    if gone:
        build.seed_neighbors(plan)
    return {n.name for n in gone}


def _rebuild_pods(state: LabState, plan: LabPlan, skip: set[str], result: RepairResult) -> None:
    record = record_netns(state)
    for node in plan.nodes:
        if node.name in skip:
            continue
        for pod in node.pods:
            if not netns_exists(pod.netns):
                remove_pod(node, pod)  # the host side of its veth may linger
                build.build_pod(node, pod, record)
                result.actions.append(f"{node.name}/{pod.name}: namespace rebuilt")


def _restart_processes(
    state: LabState, plan: LabPlan, ipip: str, rebuilt: set[str], result: RepairResult
) -> None:
    if not state.running("fibd"):
        supervise.start_fibd(state, plan)
        result.actions.append("route programmer restarted")
    if ipip == "userspace":
        dead = [n for n in plan.nodes if n.ipv4 and not state.running(f"tunnel:{n.name}")]
        if dead:
            supervise.start_tunnels(state, dead)
            result.actions.append("tunnel restarted: " + ", ".join(n.name for n in dead))
    dead_routers = routers.restart_dead(state, plan)
    if dead_routers:
        result.actions.append("BIRD restarted: " + ", ".join(dead_routers))
    restart = []
    for node in plan.nodes:
        if node.speaker == "none":
            continue  # BGP off: nothing runs on the node but Felix's part of the programmer
        speaker = supervise.speaker_running(state, node.name)
        if node.speaker == "bird":
            # No agent: BIRD's kernel protocol programs the FIB, and puts back a route deleted
            # by hand at its next scan (`scan time 2`). Only a dead daemon needs a restart
            # (the node's other one is stopped and both start again).
            if not speaker:
                restart.append(node)
            continue
        if speaker and not agent_control.running(state.dir, node.name):
            supervise.stop_speaker(state, node.name)  # its agent is gone for good
            speaker = False
        if not speaker:
            restart.append(node)
        else:
            # A live agent programs its whole FIB again (a route deleted by hand comes back).
            agent_control.tell(state.dir, node.name, agent_control.REPROGRAM)
    if restart:
        supervise.start_speakers(plan, state, restart)
        result.actions.append("speaker restarted: " + ", ".join(n.name for n in restart))
