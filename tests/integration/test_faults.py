"""Faults meshemu must survive: what dies or vanishes is named by `status` and `verify`, healed
by `repair`, and cleaned up by `down` (also when the state folder itself was lost)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from meshemu.dataplane.netlink import in_netns, netns_exists
from meshemu.lab import down, lab_status, up
from meshemu.model.load import load_topology
from meshemu.model.plan import LabPlan, build_plan
from meshemu.state import LabState
from meshemu.verify.observe import fresh_agent_states, observe_health

from .conftest import TOPOLOGIES, lab_leftovers

pytestmark = pytest.mark.integration
CLI = [sys.executable, "-m", "meshemu.cli"]


def bring_up(topology: str, name: str) -> LabPlan:
    path = TOPOLOGIES / topology
    topo = load_topology(path, name=name)
    plan = build_plan(topo)
    result = up(plan, topo, path, progress=print, timeout=60)
    assert result.converged, [line for d in result.diffs for line in d.describe()]
    return plan


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=300)


def recorded_pid(lab: str, name: str) -> int:
    resource = LabState(lab).process(name)
    assert resource is not None and resource.pid is not None, name
    return resource.pid


def test_verify_reads_agent_states_written_after_it_asked(lab_env: Path) -> None:
    """Agents throttle their state writes; verify asks each to write first (no stale RIB)."""
    plan = bring_up("mesh.yaml", "it-fresh")
    state = LabState(plan.name)
    time.sleep(1.0)  # every agent idle: none would write again on its own
    asked = time.time()
    agents = fresh_agent_states(state, plan, observe_health(state, plan))
    for node in plan.nodes:
        agent = agents[node.name]
        assert agent is not None and agent["updated"] >= asked, node.name


def test_dead_tunnel_and_route_programmer_are_named_and_repaired(lab_env: Path) -> None:
    plan = bring_up("flagship.yaml", "it-heal")
    os.kill(recorded_pid(plan.name, "tunnel:node2"), signal.SIGKILL)
    os.kill(recorded_pid(plan.name, "fibd"), signal.SIGKILL)
    time.sleep(0.5)
    status = cli("status", plan.name)
    assert status.returncode == 1, status.stdout
    # One user-space tunnel process serves every node's tunl0: killing it kills them all.
    assert "node2: tunnel dead" in status.stdout and "fibd) dead" in status.stdout
    assert "node4: tunnel dead" in status.stdout
    verify = cli("verify", plan.name, "--no-dataplane")
    assert verify.returncode == 1
    assert "tunnel dead" in verify.stdout and "route programmer" in verify.stdout
    repaired = cli("repair", plan.name)
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert "tunnel restarted: node1, node2, node3, node4" in repaired.stdout
    assert "route programmer restarted" in repaired.stdout
    assert cli("status", plan.name).returncode == 0
    again = cli("verify", plan.name)
    assert again.returncode == 0, again.stdout[-3000:]


def test_a_deleted_node_namespace_is_reported_not_recreated_then_rebuilt(lab_env: Path) -> None:
    plan = bring_up("mesh.yaml", "it-gone")
    node2 = plan.node("node2")
    subprocess.run(["ip", "netns", "delete", node2.netns], check=True)
    subprocess.run(["ip", "netns", "delete", plan.node("node3").pods[0].netns], check=True)
    verify = cli("verify", plan.name)
    assert verify.returncode == 1, verify.stdout
    assert "Traceback" not in verify.stderr
    assert "namespace gone" in verify.stdout and "node3: pod pod1 namespace gone" in verify.stdout
    assert not netns_exists(node2.netns)  # verify created nothing
    repaired = cli("repair", plan.name)
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert "node2: namespace rebuilt" in repaired.stdout
    assert netns_exists(node2.netns)
    healed = cli("verify", plan.name)
    assert healed.returncode == 0, healed.stdout[-3000:]


def test_repair_programs_a_route_deleted_by_hand(lab_env: Path) -> None:
    plan = bring_up("mesh.yaml", "it-route")
    node1 = plan.node("node1")
    learned = next(r for r in node1.fib if r.via is not None)
    with in_netns(node1.netns) as ns:
        ns.route("del", learned.prefix)
    assert cli("routes", "node1", "--lab", plan.name).returncode == 1
    repaired = cli("repair", plan.name)
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert cli("routes", "node1", "--lab", plan.name).returncode == 0


def test_dead_speaker_is_restarted_by_repair(lab_env: Path) -> None:
    plan = bring_up("mesh.yaml", "it-spk")
    os.kill(recorded_pid(plan.name, "speaker:node4"), signal.SIGKILL)
    time.sleep(0.3)
    status = lab_status(LabState(plan.name))
    assert "node4: speaker dead" in status.problems()
    repaired = cli("repair", plan.name)
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert "speaker restarted: node4" in repaired.stdout
    assert lab_status(LabState(plan.name)).healthy


def test_down_recover_after_the_state_folder_was_lost(lab_env: Path) -> None:
    plan = bring_up("flagship.yaml", "it-lost")
    state = LabState(plan.name)
    summary = json.loads((state.dir / "lab.json").read_text())
    shutil.rmtree(state.dir)
    gone = cli("down", plan.name, "--recover", summary["topology"])
    assert gone.returncode == 0, gone.stdout + gone.stderr
    deadline = time.monotonic() + 5
    while lab_leftovers(plan.name, state.dir) and time.monotonic() < deadline:
        time.sleep(0.1)
    # The route programmer included: it runs in the lab's fabric namespace.
    assert lab_leftovers(plan.name, state.dir) == []
    assert not state.dir.exists()
    down(plan.name, progress=print)
