"""Lab lifecycle: up (plan -> running, converged lab), down, and what `status` reads.

Owns the phases of `up` (preflight, state folder, dataplane, tunnels, speakers behind the start
gate, convergence) and `down` (stop the recorded processes, remove the recorded namespaces, drop
the state folder). A failure or Ctrl-C during `up` brings down what was created. `down` acts
only on what the state folder lists, is idempotent, and works when processes were killed.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from meshemu.dataplane import build
from meshemu.dataplane.netlink import (
    in_netns,
    missing_link_kinds,
    netns_exists,
    pids_in_netns,
    remove_netns,
)
from meshemu.errors import DataplaneError, EnvironmentProblem, LabError, SpeakerError
from meshemu.model import names
from meshemu.model.plan import LabPlan, NodePlan
from meshemu.model.render import render_exabgp
from meshemu.model.routes import FibRoute
from meshemu.model.topology import Topology
from meshemu.state import LabState, Resource, process_start_time, write_json_atomic
from meshemu.verify.fib import FibDiff, compare_fib

Progress = Callable[[str], None]
# The interpreter of meshemu's own processes, named the same way whichever entry point (the
# `meshemu` script, `python -m meshemu.cli`, a test runner) started the lab, so that a
# rendered configuration only changes when its content does.
PYTHON = (
    str(Path(sys.prefix) / "bin" / "python3")
    if (Path(sys.prefix) / "bin" / "python3").exists()
    else sys.executable
)
GATE_FILE = "start-gate"


@dataclass
class UpResult:
    name: str
    converged: bool
    seconds: dict[str, float] = field(default_factory=dict)
    diffs: list[FibDiff] = field(default_factory=list)
    ipip: str = ""


def preflight(plan: LabPlan) -> str:
    """Check this machine can run the lab; returns the IPIP implementation to use."""
    if os.geteuid() != 0:
        raise EnvironmentProblem(
            "meshemu up needs root (network namespaces, veths, routes): run it with sudo or as root"
        )
    needs_ipip = any(p.ipip_mode != "Never" for p in plan.pools)
    needs_vxlan = any(p.vxlan_mode != "Never" for p in plan.pools)
    kinds = ["veth", "bridge"] + (["vxlan"] if needs_vxlan else [])
    missing = missing_link_kinds(kinds)
    if missing:
        raise EnvironmentProblem(
            f"this kernel cannot create {', '.join(missing)} interfaces, which the lab needs "
            "(load the module with modprobe, or use a kernel that has it)"
        )
    ipip = "none"
    if needs_ipip:
        from meshemu.dataplane.ipip_tun import kernel_has_ipip

        if kernel_has_ipip():
            ipip = "kernel"
        elif Path("/dev/net/tun").exists():
            ipip = "userspace"
        else:
            raise EnvironmentProblem(
                "this kernel has no ipip module and no /dev/net/tun: IP-in-IP pools cannot be "
                "emulated here (load the ipip or tun module, or use vxlanMode)"
            )
    return ipip


def _record_netns(state: LabState) -> Callable[[str], None]:
    def record(name: str) -> None:
        state.record(Resource("netns", name))

    return record


def _start_tunnel(state: LabState, node: NodePlan) -> subprocess.Popen[bytes]:
    node_dir = state.node_dir(node.name)
    assert node.ipv4 is not None
    log = open(node_dir / "tunnel.log", "ab")  # noqa: SIM115 (handed to the child)
    proc = subprocess.Popen(
        [
            PYTHON,
            "-m",
            "meshemu.dataplane.ipip_tun",
            "--netns",
            node.netns,
            "--local",
            node.ipv4,
            "--ready-file",
            str(node_dir / "tunnel.ready"),
            "--stats-file",
            str(node_dir / "tunnel.json"),
        ],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    log.close()
    state.record(
        Resource("process", f"tunnel:{node.name}", proc.pid, process_start_time(proc.pid), "tunnel")
    )
    return proc


def start_tunnels(plan: LabPlan, state: LabState, nodes: list[NodePlan]) -> int:
    """User-space tunl0 for these nodes; waits until each is up and addressed."""
    tunnels = [(n, _start_tunnel(state, n)) for n in nodes]
    deadline = time.monotonic() + 20
    for node, proc in tunnels:
        ready = state.node_dir(node.name) / "tunnel.ready"
        while not ready.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise DataplaneError(
                    f"user-space tunl0 of {node.name} did not start; see "
                    f"{state.node_dir(node.name) / 'tunnel.log'}"
                )
            time.sleep(0.02)
        if node.ipip_tunnel_address:
            with in_netns(node.netns) as ns:
                ns.add_address(names.IPIP_DEVICE, node.ipip_tunnel_address, 32)
    return len(tunnels)


def _listening(netns: str, port: int) -> bool:
    """Is a TCP socket listening on `port` inside `netns`? (/proc/net shows the caller's ns.)"""
    from pyroute2 import netns as pr_netns

    hexport = f":{port:04X}"
    pr_netns.pushns(netns)
    try:
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            try:
                lines = Path(table).read_text().splitlines()[1:]
            except OSError:
                continue
            for line in lines:
                fields = line.split()
                if fields[1].endswith(hexport) and fields[3] == "0A":
                    return True
    finally:
        pr_netns.popns()
    return False


def observe_fib(node: NodePlan) -> list[FibRoute]:
    with in_netns(node.netns) as ns:
        return ns.routes()


def check_convergence(plan: LabPlan) -> list[FibDiff]:
    pools = [p.cidr for p in plan.pools]
    return [compare_fib(n.name, n.fib, observe_fib(n), pools) for n in plan.nodes]


TOPOLOGY_FILE = "topology.json"


STICKY_FILE = "allocations.json"


def save_topology(state: LabState, topo: Topology, plan: LabPlan | None = None) -> None:
    """The lab's effective topology (after live changes) and what its plan has handed out
    (addresses, blocks, pod IPs), from which its plan is rebuilt exactly."""
    from meshemu.model.plan import Sticky

    write_json_atomic(state.dir / TOPOLOGY_FILE, topo.model_dump(mode="json", by_alias=True))
    if plan is not None:
        write_json_atomic(state.dir / STICKY_FILE, Sticky.of(plan).to_json())


def up(
    plan: LabPlan,
    topology: Path,
    progress: Progress,
    timeout: float | None = None,
    topo: Topology | None = None,
) -> UpResult:
    state = LabState(plan.name)
    ipip = preflight(plan)
    state.create()
    # Recorded so that a `down` arriving while this `up` still builds stops it first.
    state.record(Resource("process", "up", os.getpid(), process_start_time(os.getpid()), "up"))
    result = UpResult(plan.name, False, ipip=ipip)
    if topo is not None:
        save_topology(state, topo, plan)
    try:
        _up(plan, topology, state, ipip, progress, result, timeout)
    except BaseException:
        progress("up failed: removing what was created")
        down(plan.name, progress=lambda _m: None)
        raise
    return result


def _phase(result: UpResult, name: str, start: float, progress: Progress, detail: str) -> float:
    now = time.monotonic()
    result.seconds[name] = round(now - start, 3)
    progress(f"  {name:<12} {now - start:6.2f}s  {detail}")
    return now


def _up(
    plan: LabPlan,
    topology: Path,
    state: LabState,
    ipip: str,
    progress: Progress,
    result: UpResult,
    timeout: float | None,
) -> None:
    started = time.monotonic()
    state.write_summary(
        {
            "name": plan.name,
            "topology": str(topology.resolve()),
            "phase": "creating",
            "ipip": ipip,
            "created": time.time(),
        }
    )
    plan_json = json.loads(json.dumps(plan.to_json()))
    state.write_plan(plan_json)
    record = _record_netns(state)
    t = time.monotonic()
    build.build_fabric(plan, record)
    build.build_routers(plan, record)
    for node in plan.nodes:
        build.build_node(plan, node, record, ipip_kernel=ipip == "kernel")
    build.seed_neighbors(plan)
    t = _phase(
        result,
        "nodes",
        t,
        progress,
        f"{len(plan.nodes)} node and {len(plan.routers)} router namespaces, "
        f"{len(plan.subnets)} subnets",
    )
    pods = 0
    for node in plan.nodes:
        for pod in node.pods:
            build.build_pod(node, pod, record)
            pods += 1
    t = _phase(result, "pods", t, progress, f"{pods} pods with cali interfaces")

    if ipip == "userspace":
        count = start_tunnels(plan, state, [n for n in plan.nodes if n.ipv4])
        t = _phase(
            result,
            "tunnels",
            t,
            progress,
            f"{count} user-space tunl0 (TUN + raw IP-in-IP socket; no ipip module)",
        )
    elif ipip == "kernel":
        progress("  tunnels      kernel ipip tunl0")

    _start_fibd(state)
    _start_speakers(plan, state, plan_json=plan_json)
    gate = state.dir / GATE_FILE
    deadline = time.monotonic() + 30 + 0.5 * len(plan.nodes)
    waiting = [n for n in plan.nodes if any(s.peer_node for s in n.sessions)]
    while waiting:
        waiting = [n for n in waiting if not _listening(n.netns, n.listen_port)]
        if waiting and time.monotonic() > deadline:
            raise SpeakerError(
                "speakers not listening: "
                + ", ".join(n.name for n in waiting)
                + f" (see {state.dir}/nodes/<node>/exabgp.log)"
            )
        if waiting:
            time.sleep(0.05)
    gate.write_text("open\n")
    t = _phase(
        result,
        "speakers",
        t,
        progress,
        f"{len(plan.nodes)} ExaBGP speakers listening; start gate opened",
    )

    limit = timeout if timeout is not None else 30 + 0.5 * len(plan.nodes)
    deadline = time.monotonic() + limit
    pools = [p.cidr for p in plan.pools]
    pending = list(plan.nodes)
    # Poll only the nodes not converged yet (reading 50 kernels ten times a second would
    # steal the CPU the speakers need), then confirm every node once more at the end.
    while True:
        pending = [n for n in pending if not compare_fib(n.name, n.fib, observe_fib(n), pools).ok]
        if not pending:
            diffs = check_convergence(plan)
            if all(d.ok for d in diffs):
                result.converged = True
                break
            pending = [n for n, d in zip(plan.nodes, diffs, strict=True) if not d.ok]
        if time.monotonic() > deadline:
            diffs = check_convergence(plan)
            result.diffs = [d for d in diffs if not d.ok]
            break
        time.sleep(0.1 if len(plan.nodes) <= 10 else 0.25)
    if result.converged:
        # The FIB is the proof; also wait (within the same deadline) until every agent has
        # written its sessions as Established, so `status` right after `up` agrees.
        while not _sessions_reported(plan, state) and time.monotonic() < deadline:
            time.sleep(0.05)
    good = sum(d.ok for d in diffs)
    t = _phase(
        result,
        "converged" if result.converged else "timeout",
        t,
        progress,
        f"{good}/{len(plan.nodes)} nodes' kernel FIB equal the plan",
    )
    result.seconds["total"] = round(time.monotonic() - started, 3)
    summary = state.summary()
    summary.update({"phase": "up", "up_seconds": result.seconds, "converged": result.converged})
    state.write_summary(summary)


def _sessions_reported(plan: LabPlan, state: LabState) -> bool:
    for node in plan.nodes:
        agent = state.agent_state(node.name) or {}
        seen = {s["peer_ip"] for s in agent.get("sessions", []) if s["state"] == "established"}
        if not set(node.expected_up) <= seen:
            return False
    return True


def _start_fibd(state: LabState) -> None:
    """The lab's route programmer, which applies every agent's kernel-route changes."""
    log = open(state.dir / "fibd.log", "ab")  # noqa: SIM115 (handed to the child)
    proc = subprocess.Popen(
        [PYTHON, "-m", "meshemu.dataplane.fibd", "--state", str(state.dir)],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    log.close()
    state.record(Resource("process", "fibd", proc.pid, process_start_time(proc.pid), "fibd"))
    deadline = time.monotonic() + 15
    while not (state.dir / "fibd.ready").exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SpeakerError(f"the route programmer did not start; see {state.dir / 'fibd.log'}")
        time.sleep(0.02)


def write_node_configs(
    plan: LabPlan, state: LabState, node: NodePlan, plan_json: dict[str, Any] | None = None
) -> tuple[Path, bool, bool]:
    """Write a node's ExaBGP config and agent config; say which of the two changed."""
    from meshemu.controlplane.agent import AGENT_CONFIG, agent_config

    node_dir = state.node_dir(node.name)
    agent = [
        PYTHON,
        "-m",
        "meshemu.controlplane.agent",
        "--state",
        str(state.dir),
        "--node",
        node.name,
    ]
    config = node_dir / "exabgp.conf"
    text = render_exabgp(plan, node, agent)
    speaker_changed = not config.exists() or config.read_text() != text
    if speaker_changed:
        config.write_text(text)
    agent_file = node_dir / AGENT_CONFIG
    if plan_json is None:
        plan_json = json.loads(json.dumps(plan.to_json()))
    slice_ = agent_config(plan_json, node.name)
    agent_changed = not agent_file.exists() or json.loads(agent_file.read_text()) != slice_
    if agent_changed:
        write_json_atomic(agent_file, slice_)
    return config, speaker_changed, agent_changed


def _start_speakers(
    plan: LabPlan,
    state: LabState,
    only: list[NodePlan] | None = None,
    plan_json: dict[str, Any] | None = None,
) -> None:
    """Write every node's ExaBGP config, then let the slim launcher fork the speakers."""
    from meshemu.controlplane.launcher import LAUNCH_FILE
    from meshemu.controlplane.speaker import exabgp_environment

    if plan_json is None:
        plan_json = json.loads(json.dumps(plan.to_json()))
    nodes = []
    for node in only if only is not None else plan.nodes:
        node_dir = state.node_dir(node.name)
        config, _speaker_changed, _agent_changed = write_node_configs(plan, state, node, plan_json)
        bind = [a for a in (node.ipv4, node.ipv6) if a]
        nodes.append(
            {
                "name": node.name,
                "netns": node.netns,
                "config": str(config),
                "output": str(node_dir / "exabgp.out"),
                "env": exabgp_environment(bind, node.listen_port, node_dir / "exabgp.log", {}),
            }
        )
    write_json_atomic(
        state.dir / LAUNCH_FILE,
        {"lab": plan.name, "gate": str(state.dir / GATE_FILE), "nodes": nodes},
    )
    run = subprocess.run(
        [PYTHON, "-m", "meshemu.controlplane.launcher", "--state", str(state.dir)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if run.returncode != 0:
        raise SpeakerError(f"starting the speakers failed: {run.stderr.strip()[-2000:]}")


def _alive(resource: Resource) -> bool:
    """The recorded process still runs (same pid *and* start time, and not a zombie)."""
    return (
        resource.pid is not None
        and resource.start_time is not None
        and process_start_time(resource.pid) == resource.start_time
        and _exists(resource.pid)
    )


@dataclass
class DownResult:
    name: str
    processes: int = 0
    namespaces: int = 0
    seconds: float = 0.0
    existed: bool = True


def down(name: str, progress: Progress) -> DownResult:
    """Remove exactly what the lab's state folder lists; safe to run again."""
    started = time.monotonic()
    state = LabState(name)
    result = DownResult(name)
    if not state.dir.exists():
        result.existed = False
        return result
    resources = state.resources()
    builder = next((r for r in resources if r.role == "up" and r.pid != os.getpid()), None)
    if builder is not None and _alive(builder):
        # `up` is still building this lab: stop it and let it remove what it made, so the two
        # never race over the same namespaces.
        assert builder.pid is not None
        progress(f"lab {name}: stopping the `meshemu up` still building it (pid {builder.pid})")
        _signal(builder.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        while _alive(builder) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not state.dir.exists():
            result.seconds = round(time.monotonic() - started, 3)
            return result
        resources = state.resources()
    namespaces = [r.name for r in resources if r.kind == "netns"]
    # Stop processes: the recorded ones (checked by start time, so a reused pid is spared),
    # then anything still running inside one of the lab's recorded namespaces.
    victims: set[int] = {
        r.pid for r in resources if r.kind == "process" and r.role != "up" and _alive(r) and r.pid
    }
    for netns in namespaces:
        victims.update(pids_in_netns(netns))
    victims.discard(os.getpid())
    for pid in victims:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + 3
    while victims and time.monotonic() < deadline:
        victims = {pid for pid in victims if _exists(pid)}
        if victims:
            time.sleep(0.02)
    for pid in victims:
        _signal(pid, signal.SIGKILL)
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


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie child of ours counts as gone.
    try:
        return "State:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False


def _remove_state_dir(path: Path) -> None:
    """The state folder holds only files meshemu wrote; remove it bottom-up."""
    for child in sorted(path.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if child.is_dir() and not child.is_symlink():
            child.rmdir()
        else:
            child.unlink(missing_ok=True)
    path.rmdir()


def recover_state(plan: LabPlan) -> int:
    """Rebuild the record of a lab whose state folder was lost, from its plan's namespaces.

    Only namespaces the plan names (so the lab's own) are recorded; `down` then stops what runs
    inside them and removes them. Returns how many were found.
    """
    state = LabState(plan.name)
    if state.exists:
        raise LabError(f"lab {plan.name!r} still has its state folder: use `meshemu down`")
    state.dir.mkdir(parents=True, exist_ok=True)
    expected = [plan.fabric_netns, *(r.netns for r in plan.routers)]
    for node in plan.nodes:
        expected += [node.netns, *(p.netns for p in node.pods)]
    found = 0
    for name in expected:
        if netns_exists(name):
            state.record(Resource("netns", name))
            found += 1
    state.write_summary({"name": plan.name, "phase": "recovered"})
    return found


def lab_status(name: str) -> dict[str, Any]:
    """What `meshemu status` shows: per node its sessions, processes and pods."""
    state = LabState(name)
    if not state.exists:
        raise LabError(f"no lab named {name!r} is up (see `meshemu status --all`)")
    plan = state.plan()
    summary = state.summary()
    resources = state.resources()
    alive = {r.name: _alive(r) for r in resources if r.kind == "process" and r.pid}
    nodes = []
    for node in plan["nodes"]:
        agent = state.agent_state(node["name"]) or {}
        agent_pid = _read_pid(state.dir / "nodes" / node["name"] / "agent.pid")
        observed = {s["peer_ip"]: s for s in agent.get("sessions", [])}
        speaker_alive = alive.get(f"speaker:{node['name']}", False)
        sessions = []
        for s in node["sessions"]:
            seen = observed.get(s["peer_ip"], {})
            if s["peer_node"] is None:
                state_text, info = "not emulated", "external peer"
            elif not speaker_alive:
                state_text, info = "down", "speaker not running"
            else:
                state_text = seen.get("state", "idle")
                info = seen.get("info", "")
            sessions.append(
                {
                    "peer_ip": s["peer_ip"],
                    "peer_node": s["peer_node"],
                    "kind": s["kind"],
                    "family": s["family"],
                    "state": state_text,
                    "since": seen.get("since"),
                    "info": info,
                }
            )
        nodes.append(
            {
                "name": node["name"],
                "netns": node["netns"],
                "ipv4": node["ipv4"],
                "ipv6": node["ipv6"],
                "subnet": node["subnet"],
                "speaker": "running" if speaker_alive else "dead",
                "agent": "running" if agent_pid and _exists(agent_pid) else "dead",
                "sessions": sessions,
                "pods": [
                    {"name": p["name"], "netns": p["netns"], "ipv4": p["ipv4"], "ipv6": p["ipv6"]}
                    for p in node["pods"]
                ],
                "agent_errors": agent.get("errors", []),
            }
        )
    tunnels = {r.name.split(":", 1)[1]: _alive(r) for r in resources if r.role == "tunnel"}
    return {
        "name": name,
        "phase": summary.get("phase"),
        "ipip": summary.get("ipip"),
        "up_seconds": summary.get("up_seconds"),
        "topology": summary.get("topology"),
        "state_dir": str(state.dir),
        "tunnels": tunnels,
        "nodes": nodes,
    }


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def load_running_topology(name: str) -> Topology:
    """The effective topology of a running lab (as saved by `up` and live changes)."""
    from meshemu.model.load import load_topology

    state = LabState(name)
    summary = state.summary()
    if not summary:
        raise LabError(f"no lab named {name!r} is up")
    saved = state.dir / TOPOLOGY_FILE
    if saved.exists():
        return Topology.model_validate(json.loads(saved.read_text()))
    return load_topology(Path(summary["topology"]), name=name)


def load_running_plan(name: str) -> LabPlan:
    """Rebuild the LabPlan of a running lab from its effective topology."""
    from meshemu.model.plan import Sticky, build_plan

    state = LabState(name)
    saved = state.dir / STICKY_FILE
    sticky = Sticky.from_json(json.loads(saved.read_text())) if saved.exists() else None
    plan = build_plan(load_running_topology(name), sticky=sticky)
    if json.loads(json.dumps(plan.to_json())) != state.plan():
        raise LabError(
            f"lab {name!r}: the saved plan and the saved topology and allocations disagree; "
            "the state folder was edited or is from another meshemu version"
        )
    return plan


def netns_of(name: str, target: str) -> str:
    """`NODE` or `NODE/POD` -> its namespace in lab `name`."""
    state = LabState(name)
    plan = state.plan()
    node_name, _, pod_name = target.partition("/")
    for node in plan["nodes"]:
        if node["name"] != node_name:
            continue
        if not pod_name:
            return str(node["netns"])
        for pod in node["pods"]:
            if pod["name"] == pod_name:
                return str(pod["netns"])
        raise LabError(
            f"node {node_name} has no pod {pod_name!r} "
            f"(pods: {', '.join(p['name'] for p in node['pods'])})"
        )
    for router in plan["routers"]:
        if router["name"] == node_name and not pod_name:
            return str(router["netns"])
    raise LabError(f"lab {name} has no node {node_name!r}")
