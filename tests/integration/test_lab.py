"""The running lab end to end: real namespaces, ExaBGP speakers, agents, routes and packets."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from meshemu.dataplane.netlink import read_fib
from meshemu.errors import EnvironmentProblem
from meshemu.lab import down, lab_status, up
from meshemu.lab.converge import fib_diffs as check_convergence
from meshemu.lab.live import kill_agent
from meshemu.lab.status import NodeStatus
from meshemu.model.load import load_topology
from meshemu.model.plan import LabPlan, build_plan
from meshemu.model.topology import Topology
from meshemu.state import LabState
from meshemu.verify.observation import Frame
from meshemu.verify.probe import capture, reachability_matrix

from .conftest import TOPOLOGIES, lab_leftovers

pytestmark = pytest.mark.integration


# Calico renders `graceful restart` on every session (BIRD's 120 s): a killed speaker's peers keep
# its routes that long. Tests of what happens after a kill give the lab a short restart time.
RESTART = "3s"


def _topology(topology: str, name: str, restart: str | None) -> Topology:
    topo = load_topology(TOPOLOGIES / topology, name=name)
    if restart is None:
        return topo
    peers = {
        peer: spec.model_copy(update={"max_restart_time": restart})
        for peer, spec in topo.bgp.peers.items()
    }
    bgp = topo.bgp.model_copy(update={"node_mesh_max_restart_time": restart, "peers": peers})
    return topo.model_copy(update={"bgp": bgp})


def plan_for(topology: str, name: str, restart: str | None = None) -> LabPlan:
    return build_plan(_topology(topology, name, restart))


def bring_up(plan: LabPlan, topology: str, restart: str | None = None) -> None:
    path = TOPOLOGIES / topology
    topo = _topology(topology, plan.name, restart)
    result = up(plan, topo, path, progress=print, timeout=float(os.environ.get("IT_TIMEOUT", 60)))
    if not result.converged:
        state = LabState(plan.name)
        for node in plan.nodes:
            print(node.name, json.dumps(state.agent_state(node.name), indent=None)[:3000])
            log = state.dir / "nodes" / node.name / "exabgp.log"
            print("\n".join(log.read_text().splitlines()[-15:]))
    assert result.converged, [line for d in result.diffs for line in d.describe()]


def established(plan: LabPlan) -> dict[str, list[str]]:
    """Per node, the planned lab-internal sessions that are not Established."""
    status = lab_status(LabState(plan.name))
    return {
        n.name: [s.peer_ip for s in n.sessions if s.peer_node and s.state != "established"]
        for n in status.nodes
    }


def node_status(plan: LabPlan, node: str) -> NodeStatus:
    return next(n for n in lab_status(LabState(plan.name)).nodes if n.name == node)


def wait_for(predicate, timeout: float, what: str) -> float:  # type: ignore[no-untyped-def]
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)
    return time.monotonic() - start


def speaker_pid(plan: LabPlan, node: str) -> int:
    pids = [
        r.pid
        for r in LabState(plan.name).resources()
        if r.name == f"speaker:{node}" and r.pid is not None
    ]
    assert pids, f"no speaker recorded for {node}"
    return pids[-1]


def test_flagship_dual_stack_converges_and_every_pod_reaches_every_pod(lab_env: Path) -> None:
    plan = plan_for("flagship.yaml", "it-flag")
    bring_up(plan, "flagship.yaml")

    assert all(not bad for bad in established(plan).values()), established(plan)
    assert all(d.ok for d in check_convergence(plan))

    frames: list[Frame] = []
    sniffer = threading.Thread(target=lambda: frames.extend(capture(plan.fabric_netns, 3.0)))
    sniffer.start()
    time.sleep(0.5)
    cells = reachability_matrix(plan)
    sniffer.join()

    pods = sum(len(n.pods) for n in plan.nodes)
    assert len(cells) == 2 * pods * (pods - 1)
    assert [c for c in cells if not c.ok] == []
    # The planned path per cell: IPIP only across subnets for IPv4, VXLAN across for IPv6.
    paths = Counter((c.family, c.path) for c in cells)
    assert set(paths) == {
        (4, "local"),
        (4, "direct"),
        (4, "ipip"),
        (6, "local"),
        (6, "direct"),
        (6, "vxlan"),
    }

    subnet_of = {a: n.subnet for n in plan.nodes for a in (n.ipv4, n.ipv6) if a}
    pod_ips = {a for n in plan.nodes for p in n.pods for a in (p.ipv4, p.ipv6) if a}
    ipip = [f for f in frames if f.encap == "ipip"]
    vxlan = [f for f in frames if f.encap == "vxlan"]
    assert ipip and vxlan
    for frame in ipip:
        # Outer: node to node across subnets; inner: the pod packet (ICMP).
        assert subnet_of[frame.outer_src] != subnet_of[frame.outer_dst], frame
        assert frame.inner_src in pod_ips and frame.inner_dst in pod_ips, frame
        assert ":" not in frame.outer_src
    for frame in vxlan:
        assert subnet_of[frame.outer_src] != subnet_of[frame.outer_dst], frame
        assert ":" in frame.inner_src  # IPv6 pods ride VXLAN
    # Inside a subnet pod packets travel plain, node to node, with the pod addresses outside.
    plain_pod = [
        f
        for f in frames
        if f.encap == "plain" and f.outer_src in pod_ips and f.outer_dst in pod_ips
    ]
    assert plain_pod
    assert all(
        not (f.encap == "ipip" and subnet_of[f.outer_src] == subnet_of[f.outer_dst]) for f in frames
    )

    result = down(plan.name, progress=print)
    assert result.namespaces == 1 + len(plan.routers) + len(plan.nodes) + pods
    assert lab_leftovers(plan.name, lab_env / plan.name) == []
    assert down(plan.name, progress=print).existed is False  # idempotent


def test_route_reflectors_converge_and_survive_losing_one_reflector(lab_env: Path) -> None:
    plan = plan_for("route-reflectors.yaml", "it-rr", RESTART)
    bring_up(plan, "route-reflectors.yaml", RESTART)
    assert all(not bad for bad in established(plan).values())
    assert all(c.ok for c in reachability_matrix(plan))

    os.kill(speaker_pid(plan, "rr1"), signal.SIGKILL)
    wait_for(
        lambda: node_status(plan, "rr1").speaker == "dead",
        5,
        "status to report rr1's speaker dead",
    )
    # Clients keep every client route through rr2 (only rr1's own tunnel-address blocks go),
    # and every pod still reaches every pod.
    time.sleep(1.0)
    rr1_blocks = {b.cidr for b in plan.node("rr1").blocks}

    def clients_keep_routes() -> bool:
        for diff in check_convergence(plan):
            if diff.node == "rr1":
                continue
            if diff.unexpected or diff.wrong:
                return False
            if {r.prefix for r in diff.missing} - rr1_blocks:
                return False
        return True

    wait_for(clients_keep_routes, 15, "client FIBs to keep every client route via rr2")
    assert all(c.ok for c in reachability_matrix(plan))
    rr1_ip = plan.node("rr1").ipv4

    def nothing_from_rr1() -> bool:
        node1 = json.loads((LabState(plan.name).dir / "nodes" / "node1" / "agent.json").read_text())
        return all(r["learned_from"] != rr1_ip for r in node1["rib"])

    # rr1's paths stay stale for its restart time (graceful restart), then go.
    wait_for(nothing_from_rr1, 15, "node1 to drop what rr1 sent once its restart time passed")


def test_killing_a_speaker_withdraws_its_blocks_everywhere(lab_env: Path) -> None:
    """Its peers keep its blocks for the restart time (graceful restart, as Calico's BIRD),
    then withdraw them everywhere."""
    plan = plan_for("mesh.yaml", "it-kill", RESTART)
    bring_up(plan, "mesh.yaml", RESTART)
    victim = plan.node("node2")
    os.kill(speaker_pid(plan, "node2"), signal.SIGKILL)

    def withdrawn() -> bool:
        for node in plan.nodes:
            if node.name == victim.name:
                continue
            with_routes = {r.prefix for r in _observed(node)}
            if any(b.cidr in with_routes for b in victim.blocks):
                return False
        return True

    seconds = wait_for(withdrawn, 15, "node2's blocks to leave every other FIB")
    print(f"withdrawn everywhere after {seconds:.2f}s")
    assert seconds >= 2.0, "kept for the restart time (3 s), not dropped at once"
    assert node_status(plan, "node2").speaker == "dead"


def _observed(node):  # type: ignore[no-untyped-def]
    return read_fib(node.netns)


def test_two_labs_side_by_side(lab_env: Path) -> None:
    first, second = plan_for("mesh.yaml", "it-a"), plan_for("mesh.yaml", "it-b")
    bring_up(first, "mesh.yaml")
    bring_up(second, "mesh.yaml")
    assert all(c.ok for c in reachability_matrix(first))
    assert all(c.ok for c in reachability_matrix(second))
    down(first.name, progress=print)
    assert all(d.ok for d in check_convergence(second))


def test_down_after_every_process_was_killed(lab_env: Path) -> None:
    plan = plan_for("mesh.yaml", "it-crash")
    bring_up(plan, "mesh.yaml")
    for node in plan.nodes:
        os.kill(speaker_pid(plan, node.name), signal.SIGKILL)
    result = down(plan.name, progress=print)
    assert result.namespaces == 1 + len(plan.nodes) + sum(len(n.pods) for n in plan.nodes)
    assert lab_leftovers(plan.name, lab_env / plan.name) == []


def test_failure_during_up_removes_what_was_created(
    lab_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from meshemu.dataplane import build

    plan = plan_for("flagship.yaml", "it-fail")
    calls = {"n": 0}
    real = build.build_pod

    def failing(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("injected failure while creating pods")
        return real(*args, **kwargs)

    monkeypatch.setattr(build, "build_pod", failing)
    with pytest.raises(RuntimeError, match="injected"):
        path = TOPOLOGIES / "flagship.yaml"
        up(plan, load_topology(path, name=plan.name), path, progress=print)
    assert lab_leftovers(plan.name, lab_env / plan.name) == []
    assert not (lab_env / plan.name).exists()


def test_not_root_is_exit_3(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(EnvironmentProblem, match="root"):
        path = TOPOLOGIES / "mesh.yaml"
        up(plan_for("mesh.yaml", "it-user"), load_topology(path), path, progress=print)


def test_cli_up_status_routes_exec_down(lab_env: Path) -> None:
    env = dict(os.environ)
    cli = [sys.executable, "-m", "meshemu.cli"]
    topo = str(TOPOLOGIES / "flagship.yaml")
    run = subprocess.run(
        [*cli, "up", topo, "--name", "it-cli"], env=env, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "converged" in run.stdout
    status = subprocess.run(
        [*cli, "status", "it-cli", "--json"], env=env, capture_output=True, text=True
    )
    assert status.returncode == 0, status.stderr
    data = json.loads(status.stdout)
    assert {n["name"] for n in data["nodes"]} == {"node1", "node2", "node3", "node4"}
    for node in data["nodes"]:
        assert {"name", "netns", "ipv4", "ipv6", "sessions", "pods"} <= set(node)
        assert all(s["state"] == "established" for s in node["sessions"])
        assert all({"name", "netns", "ipv4", "ipv6"} <= set(p) for p in node["pods"])
    text = subprocess.run([*cli, "status", "it-cli"], env=env, capture_output=True, text=True)
    assert "node-to-node mesh" in text.stdout and "Established" in text.stdout
    routes = subprocess.run(
        [*cli, "routes", "node1", "--lab", "it-cli", "--json"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert routes.returncode == 0, routes.stdout
    assert all(r["matches_plan"] for r in json.loads(routes.stdout)["routes"])
    shown = subprocess.run(
        [
            *cli,
            "exec",
            "node1/pod1",
            "--lab",
            "it-cli",
            "--",
            sys.executable,
            "-c",
            "import socket; print(socket.if_nameindex())",
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    assert shown.returncode == 0 and "eth0" in shown.stdout
    gone = subprocess.run([*cli, "down", "it-cli"], env=env, capture_output=True, text=True)
    assert gone.returncode == 0 and "namespaces removed" in gone.stdout
    again = subprocess.run([*cli, "down", "it-cli"], env=env, capture_output=True, text=True)
    assert again.returncode == 0 and "nothing to do" in again.stdout


def test_ipip_tunnel_carries_a_tcp_transfer_and_survives_a_flood(lab_env: Path) -> None:
    from meshemu.verify.probe import flood, ping_all, tcp_transfer

    plan = plan_for("flagship.yaml", "it-load")
    bring_up(plan, "flagship.yaml")
    source, target = plan.node("node1").pods[0], plan.node("node3").pods[0]
    assert source.ipv4 and target.ipv4
    size = 5 * 1024 * 1024
    received, seconds = tcp_transfer(source.netns, target.netns, target.ipv4, size)
    print(f"5 MiB through IP-in-IP in {seconds:.2f}s")
    assert received == size
    replies = flood(source.netns, target.ipv4, 2000)
    print(f"flood: {replies}/2000 replies")
    assert replies > 1000
    from meshemu.verify.probe import in_child

    after = in_child(source.netns, ping_all, [target.ipv4])
    assert isinstance(after, dict) and after[target.ipv4] is not None


def test_md5_password_sessions(lab_env: Path, tmp_path: Path) -> None:
    text = (
        (TOPOLOGIES / "mesh.yaml")
        .read_text()
        .replace("\n  asNumber: 64512\n", "\n  asNumber: 64512\n  nodeMeshPassword: s3cret-key\n")
    )
    assert "nodeMeshPassword" in text
    topo = tmp_path / "md5.yaml"
    topo.write_text(text)
    loaded = load_topology(topo, name="it-md5")
    plan = build_plan(loaded)
    assert all(s.password == "s3cret-key" for n in plan.nodes for s in n.sessions)
    config = None
    result = up(plan, loaded, topo, progress=print, timeout=30)
    assert result.converged
    config = (LabState(plan.name).dir / "nodes" / "node1" / "exabgp.conf").read_text()
    assert "md5-password 's3cret-key';" in config
    assert all(not bad for bad in established(plan).values())


def test_killed_agent_is_restarted_and_keeps_the_fib(lab_env: Path) -> None:
    plan = plan_for("mesh.yaml", "it-agent", RESTART)
    bring_up(plan, "mesh.yaml", RESTART)
    state = LabState(plan.name)
    node_dir = state.dir / "nodes" / "node1"
    old_start = json.loads((node_dir / "agent.json").read_text())["started"]
    kill_agent(state, "node1")

    def restarted() -> bool:
        try:
            start = json.loads((node_dir / "agent.json").read_text())["started"]
        except (OSError, ValueError, KeyError):
            return False
        return start != old_start and node_status(plan, "node1").agent == "running"

    wait_for(restarted, 10, "ExaBGP to restart node1's agent")
    assert all(d.ok for d in check_convergence(plan))
    agent = json.loads((node_dir / "agent.json").read_text())
    assert any("agent restarted" in e for e in agent["errors"])
    # The new agent still acts on changes: node2's speaker dies, node1 withdraws its blocks.
    os.kill(speaker_pid(plan, "node2"), signal.SIGKILL)
    node2_blocks = {b.cidr for b in plan.node("node2").blocks}
    wait_for(
        lambda: not node2_blocks & {r.prefix for r in _observed(plan.node("node1"))},
        15,
        "node1 to withdraw node2's blocks",
    )


def test_a_reachable_by_peer_gets_its_static_route(lab_env: Path, tmp_path: Path) -> None:
    """Calico's reachableBy: the node's kernel has `<peer>/32 via <gateway>`, as BIRD installs
    it from confd's configuration; nothing is sent there (the peer is outside the lab)."""
    text = (TOPOLOGIES / "mesh.yaml").read_text() + (
        "  peers:\n    upstream:\n      node: node1\n      peerIP: 192.0.2.50\n"
        "      asNumber: 65000\n      reachableBy: 10.20.0.3\n"
    )
    path = tmp_path / "rb.yaml"
    path.write_text(text)
    topo = load_topology(path, name="it-rb")
    plan = build_plan(topo)
    assert up(plan, topo, path, progress=print, timeout=60).converged
    try:
        routes = {r.prefix: r for r in read_fib(plan.node("node1").netns)}
        assert routes["192.0.2.50/32"].via == "10.20.0.3"
        assert "192.0.2.50/32" not in {r.prefix for r in read_fib(plan.node("node2").netns)}
    finally:
        down(plan.name, progress=print)
    assert lab_leftovers(plan.name, lab_env / plan.name) == []
