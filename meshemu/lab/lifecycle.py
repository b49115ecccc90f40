"""Lab lifecycle: up (plan -> running, converged lab), down, and recovery of a lost record.

Owns the phases of `up` (preflight, state folder, dataplane, tunnels, speakers behind the start
gate, convergence) and `down` (stop the recorded processes, remove the recorded namespaces, drop
the state folder). A failure or Ctrl-C during `up` brings down what was created. `down` acts
only on what the state folder lists, is idempotent, and works when processes were killed.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from meshemu import process
from meshemu.controlplane.bird_tools import bird1_binaries, bird_binary
from meshemu.dataplane import build, nat, policy, services
from meshemu.dataplane.netlink import netns_exists, pids_in_namespaces, remove_netns
from meshemu.errors import LabError
from meshemu.lab import responders, routers, supervise
from meshemu.lab.converge import wait_converged
from meshemu.lab.preflight import preflight
from meshemu.model.plan import LabPlan
from meshemu.model.topology import Topology
from meshemu.state import LabState, LabSummary, Resource
from meshemu.verify.fib import FibDiff

Progress = Callable[[str], None]


@dataclass
class UpResult:
    name: str
    converged: bool
    seconds: dict[str, float] = field(default_factory=dict)
    diffs: list[FibDiff] = field(default_factory=list)
    ipip: str = ""


@dataclass
class DownResult:
    name: str
    processes: int = 0
    namespaces: int = 0
    seconds: float = 0.0
    existed: bool = True


def record_netns(state: LabState) -> build.Record:
    def record(name: str) -> None:
        state.record(Resource("netns", name))

    return record


def up(
    plan: LabPlan,
    topo: Topology,
    topology_file: Path,
    progress: Progress,
    timeout: float | None = None,
) -> UpResult:
    """Build the lab and wait until it converges; on any failure remove what was created."""
    state = LabState(plan.name)
    ipip = preflight(plan)
    if routers.bgp_routers(plan):
        bird_binary()  # exit 3 with the setup command when BIRD 2 is missing
        routers.check_user_configs(plan)
        routers.check_socket_room(state, plan)
    if any(n.speaker == "bird" for n in plan.nodes):
        bird1_binaries()  # exit 3 with the setup command when BIRD 1.6 is missing
        supervise.check_bird_socket_room(state, plan)
    state.create()
    # Recorded so that a `down` arriving while this `up` still builds stops it first.
    me = os.getpid()
    state.record(Resource("process", "up", me, process.start_time(me), "up"))
    result = UpResult(plan.name, False, ipip=ipip)
    try:
        _build(plan, topo, topology_file, state, ipip, progress, result, timeout)
    except BaseException:
        progress("up failed: removing what was created")
        down(plan.name, progress=lambda _m: None)
        raise
    return result


class _Clock:
    def __init__(self, result: UpResult, progress: Progress) -> None:
        self.result, self.progress = result, progress
        self.started = self.last = time.monotonic()

    def phase(self, name: str, detail: str) -> None:
        now = time.monotonic()
        self.result.seconds[name] = round(now - self.last, 3)
        self.progress(f"  {name:<12} {now - self.last:6.2f}s  {detail}")
        self.last = now

    def total(self) -> None:
        self.result.seconds["total"] = round(time.monotonic() - self.started, 3)


def _build(
    plan: LabPlan,
    topo: Topology,
    topology_file: Path,
    state: LabState,
    ipip: str,
    progress: Progress,
    result: UpResult,
    timeout: float | None,
) -> None:
    clock = _Clock(result, progress)
    summary = LabSummary(plan.name, str(topology_file.resolve()), "creating", ipip, time.time())
    state.write_summary(summary)
    state.write_plan(plan)
    state.write_topology(topo, plan)
    _build_dataplane(plan, state, ipip, clock)
    _start_processes(plan, state, ipip, clock)
    limit = timeout if timeout is not None else 30 + 0.5 * len(plan.nodes)
    result.diffs = wait_converged(plan, state, limit)
    result.converged = not result.diffs
    good = len(plan.nodes) - len(result.diffs)
    clock.phase(
        "converged" if result.converged else "timeout",
        f"{good}/{len(plan.nodes)} nodes' kernel FIB equal the plan",
    )
    clock.total()
    state.write_summary(
        LabSummary(
            plan.name,
            summary.topology,
            "up",
            ipip,
            summary.created,
            result.converged,
            dict(result.seconds),
        )
    )


def _build_dataplane(plan: LabPlan, state: LabState, ipip: str, clock: _Clock) -> None:
    record = record_netns(state)
    build.build_nodes(plan, record, ipip_kernel=ipip == "kernel")
    clock.phase(
        "nodes",
        f"{len(plan.nodes)} node and {len(plan.routers)} router namespaces, "
        f"{len(plan.subnets)} subnets",
    )
    pods = build.build_pods(plan, record)
    clock.phase("pods", f"{pods} pods with cali interfaces")
    if nat.build_outside(plan, record) | bool(nat.apply_nat(plan)):
        clock.phase("nat", "outside host and natOutgoing rules (nftables)")
    if policy.apply_policy(plan):
        clock.phase("policy", "network policy rules per workload interface (nftables)")
    if services.apply_services(plan):
        clock.phase("services", "kube-proxy rules for the Services (nftables)")


def _start_processes(plan: LabPlan, state: LabState, ipip: str, clock: _Clock) -> None:
    if ipip == "userspace":
        count = supervise.start_tunnels(state, [n for n in plan.nodes if n.ipv4])
        clock.phase(
            "tunnels", f"{count} user-space tunl0 (TUN + raw IP-in-IP socket; no ipip module)"
        )
    elif ipip == "kernel":
        clock.progress("  tunnels      kernel ipip tunl0")
    supervise.start_fibd(state, plan)
    sockets = responders.sync_responder(state, plan)
    if sockets:
        clock.phase("responder", f"{sockets} pod ports answered (TCP and UDP, one process)")
    count = routers.start_routers(state, plan)
    if count:
        clock.phase("routers", f"{count} BIRD 2 routers started, control sockets open")
    supervise.start_speakers(plan, state, list(plan.nodes))
    supervise.wait_listening(state, list(plan.nodes), 30 + 0.5 * len(plan.nodes))
    supervise.open_gate(state)
    birds = sum(1 for n in plan.nodes if n.speaker == "bird")
    exabgp = sum(1 for n in plan.nodes if n.speaker == "exabgp")
    kinds = f"{exabgp} ExaBGP speakers"
    kinds += f", {birds} BIRD nodes" if birds else ""
    kinds += (
        f", {len(plan.nodes) - exabgp - birds} nodes without BGP"
        if exabgp + birds < len(plan.nodes)
        else ""
    )
    clock.phase("speakers", f"{kinds} listening; start gate opened")


def down(name: str, progress: Progress) -> DownResult:
    """Remove exactly what the lab's state folder lists; safe to run again."""
    started = time.monotonic()
    state = LabState(name)
    result = DownResult(name)
    if not state.dir.is_dir():
        result.existed = False
        return result
    if _stop_builder(state, progress) and not state.dir.exists():
        result.seconds = round(time.monotonic() - started, 3)
        return result
    resources = state.resources()
    namespaces = [r.name for r in resources if r.kind == "netns"]
    # Stop processes: the recorded ones (checked by start time, so a reused pid is spared),
    # then anything still running inside one of the lab's recorded namespaces.
    victims = {
        r.pid
        for r in resources
        if r.kind == "process"
        and r.role != "up"
        and r.pid
        and process.same_process(r.pid, r.start_time)
    }
    victims.update(pids_in_namespaces(namespaces))
    victims.discard(os.getpid())
    # No grace: everything they could tidy (sockets, state files, routes, devices) goes with
    # the state folder and the namespaces, and a graceful stop is no use to a lab that is going
    # (measured: a 100-node ExaBGP mesh's speakers, each closing 198 sessions and ending its
    # agent on SIGTERM, took the whole 3 s grace; down 5.9 s).
    process.stop(victims, grace=0.0)
    result.processes = sum(1 for r in resources if r.kind == "process" and r.pid)
    for netns in reversed(namespaces):
        if remove_netns(netns):
            result.namespaces += 1
    _remove_state_dir(state.dir)
    result.seconds = round(time.monotonic() - started, 3)
    progress(
        f"lab {name} down: {result.processes} processes stopped, {result.namespaces} namespaces "
        f"removed in {result.seconds:.2f}s"
    )
    return result


def _stop_builder(state: LabState, progress: Progress) -> bool:
    """An `up` still building this lab is stopped first, and removes what it made itself, so
    the two never race over the same namespaces. True when there was one."""
    builder = next(
        (r for r in state.processes("up") if r.pid != os.getpid()),
        None,
    )
    if builder is None or builder.pid is None:
        return False
    if not process.same_process(builder.pid, builder.start_time):
        return False
    progress(f"lab {state.name}: stopping the `meshemu up` still building it (pid {builder.pid})")
    process.send(builder.pid, signal.SIGTERM)
    deadline = time.monotonic() + 20
    while process.same_process(builder.pid, builder.start_time) and time.monotonic() < deadline:
        time.sleep(0.05)
    return True


def _remove_state_dir(path: Path) -> None:
    """The state folder holds only files meshemu wrote; remove it bottom-up. A symlink in it is
    removed as a link and never followed (os.walk with followlinks=False lists a link to a
    folder among the folders, but does not descend into it)."""
    for folder, subfolders, files in os.walk(path, topdown=False, followlinks=False):
        here = Path(folder)
        for name in files:
            (here / name).unlink(missing_ok=True)
        for name in subfolders:
            entry = here / name
            if entry.is_symlink():
                entry.unlink()
            else:
                entry.rmdir()
    path.rmdir()


def recover_state(plan: LabPlan) -> int:
    """Rebuild the record of a lab whose state folder was lost, from its plan's namespaces.

    Only namespaces the plan names (so the lab's own) are recorded; `down` then stops what runs
    inside them and removes them; every process of a lab runs in one of its namespaces (the
    route programmer in the fabric's), so nothing is left running. Returns how many namespaces
    were found.
    """
    state = LabState(plan.name)
    if state.exists:
        raise LabError(f"lab {plan.name!r} still has its state folder: use `meshemu down`")
    state.create()
    expected = [plan.fabric_netns, *(r.netns for r in plan.routers)]
    for node in plan.nodes:
        expected += [node.netns, *(p.netns for p in node.pods)]
    found = 0
    for name in expected:
        if netns_exists(name):
            state.record(Resource("netns", name))
            found += 1
    state.write_summary(LabSummary(plan.name, phase="recovered"))
    return found
