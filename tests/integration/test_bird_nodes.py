"""BIRD as a node speaker beside ExaBGP: the interoperability proof (issue 8, parts 4 and 5).

Nodes with `speaker: bird` run Debian's BIRD 1.6.8 (`bird` and `bird6`, unpacked by
scripts/setup.sh) with the configuration Calico's confd renders for them. Here:
- a mixed node-to-node mesh (topologies/bird-nodes.yaml: two BIRD nodes, two ExaBGP nodes,
  dual-stack, no encapsulation) converges, `verify` passes in full (sessions, RIB, FIB, every pod
  to every pod on the wire), BIRD's own table read through `birdc` equals the plan, and a BIRD
  node whose speaker stops is withdrawn everywhere and comes back when it starts again;
- a BIRD node as client of meshemu's own (ExaBGP) route reflectors accepts the reflected routes:
  `birdc` shows each with the ORIGINATOR_ID and CLUSTER_LIST the plan expects;
- without BIRD 1.6 `up` is exit 3 with the setup command, and leaves nothing behind;
- BIRD nodes beside Felix: an IPIP CrossSubnet pool (Felix's, Calico's default) and a VXLAN
  IPv6 pool across two subnets; Felix's routes (written by the lab's route programmer, proto 80
  or the device's) are on the BIRD nodes, BIRD's kernel filter leaves them alone, `verify`
  passes in full;
- `down` leaves nothing (the fixture's leak check, and an explicit one).
Lab names start with `itb` or `birdfx` (12 characters at most).
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from meshemu.controlplane.bird_tools import bird1_binaries
from meshemu.errors import EnvironmentProblem
from meshemu.lab import down, lab_status, live, up
from meshemu.lab.converge import fib_diffs
from meshemu.model.load import load_topology, load_topology_text
from meshemu.model.plan import LabPlan, NodePlan, build_plan
from meshemu.model.topology import Topology
from meshemu.state import LabState
from meshemu.verify.bird_output import BirdRoute, birdc_text_lines, parse_routes
from meshemu.verify.run import verify_lab

from .conftest import TOPOLOGIES, lab_leftovers

pytestmark = pytest.mark.integration

REFLECTED = """
name: birdrr
description: a BIRD client and an ExaBGP client of two ExaBGP route reflectors (one cluster)
subnets:
  lan: {ipv4: 10.61.0.0/24, ipv6: "fd00:61::/64"}
nodes:
  rr1: {subnet: lan, labels: {route-reflector: "true"}, routeReflectorClusterID: 244.0.0.1, pods: 0}
  rr2: {subnet: lan, labels: {route-reflector: "true"}, routeReflectorClusterID: 244.0.0.1, pods: 0}
  node1: {subnet: lan, speaker: bird}
  node2: {subnet: lan, speaker: bird}
  node3: {subnet: lan}
  node4: {subnet: lan}
pools:
  ipv4-pool: {cidr: 172.21.0.0/16, ipipMode: Never}
  ipv6-pool: {cidr: "fd00:beef::/64", vxlanMode: Never}
bgp:
  asNumber: 64512
  nodeToNodeMeshEnabled: false
  peers:
    peer-with-reflectors:
      nodeSelector: all()
      peerSelector: route-reflector == 'true'
"""

FELIX_POOLS = """
name: birdfx
description: BIRD nodes beside Felix-owned IPIP (CrossSubnet) and VXLAN (IPv6) pools
subnets:
  rack1: {ipv4: 10.62.1.0/24, ipv6: "fd00:62:1::/64"}
  rack2: {ipv4: 10.62.2.0/24, ipv6: "fd00:62:2::/64"}
routers:
  r: {subnets: [rack1, rack2]}
nodes:
  node1: {subnet: rack1, speaker: bird}
  node2: {subnet: rack1}
  node3: {subnet: rack2, speaker: bird}
  node4: {subnet: rack2}
pools:
  ipip4: {cidr: 172.22.0.0/16, ipipMode: CrossSubnet}
  vxlan6: {cidr: "fd00:bee5::/64", vxlanMode: Always}
"""


@pytest.fixture(autouse=True)
def _bird1() -> None:
    bird1_binaries.cache_clear()
    try:
        bird1_binaries()
    except EnvironmentProblem as err:
        pytest.fail(f"BIRD 1.6 is needed here: {err}")


def bring_up(topo: Topology, path: Path) -> tuple[LabPlan, dict[str, float]]:
    plan = build_plan(topo)
    result = up(plan, topo, path, progress=print, timeout=60)
    assert result.converged, [line for d in result.diffs for line in d.describe()]
    print(f"{plan.name}: up in {result.seconds}")
    return plan, result.seconds


def birdc_routes(state: LabState, node: NodePlan, family: int) -> list[BirdRoute]:
    """BIRD's table as `birdc show route all` prints it (Debian's birdc / birdc6)."""
    bird = Path(bird1_binaries().daemon(family))
    client = bird.with_name("birdc" if family == 4 else "birdc6")
    sock = state.node_bird_socket(node.index, family)
    done = subprocess.run(
        [str(client), "-s", str(sock), "show", "route", "all"],
        capture_output=True,
        text=True,
        timeout=20,
        check=True,
    )
    return list(parse_routes(birdc_text_lines(done.stdout)))


def bird_table(state: LabState, node: NodePlan) -> dict[str, tuple[str | None, ...]]:
    """prefix -> (BGP next hop, ORIGINATOR_ID, CLUSTER_LIST) of BIRD's selected BGP routes."""
    table = {}
    for family in (4, 6):
        for r in birdc_routes(state, node, family):
            if r.selected and r.source == "BGP":
                table[r.prefix] = (r.bgp_next_hop, r.originator_id, *r.cluster_list)
    return table


def planned_table(node: NodePlan) -> dict[str, tuple[str | None, ...]]:
    return {
        e.prefix: (e.next_hop, e.originator_id, *e.cluster_list)
        for e in node.rib
        if e.learned_from is not None
    }


def verify_all(plan: LabPlan, dataplane: bool = True) -> None:
    report, _ = verify_lab(LabState(plan.name), plan, dataplane=dataplane)
    failed = [f"{r.name}: {r.observed} ({r.diagnosis})" for r in report.results if not r.ok]
    assert failed == []
    assert len(report.results) > 10


def wait_for(predicate, seconds: float, what: str) -> float:  # type: ignore[no-untyped-def]
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > seconds:
            raise AssertionError(f"timed out after {seconds}s waiting for {what}")
        time.sleep(0.1)
    return time.monotonic() - started


def test_mixed_mesh_of_bird_and_exabgp_nodes(lab_env: Path) -> None:
    path = TOPOLOGIES / "bird-nodes.yaml"
    topo = load_topology(path, name="itbmesh")
    plan, seconds = bring_up(topo, path)
    state = LabState(plan.name)
    birds = [n for n in plan.nodes if n.speaker == "bird"]
    assert [n.name for n in birds] == ["node1", "node3"]

    # Each BIRD node runs confd's configuration in two daemons, recorded and healthy.
    running = {r.name for r in state.processes() if r.pid}
    assert {"speaker:node1", "speaker6:node1", "speaker:node3", "speaker6:node3"} <= running
    for node in birds:
        config = (state.dir / "nodes" / node.name / "bird.cfg").read_text()
        assert 'include "bird_aggr.cfg";' in config and "protocol bgp Mesh_" in config
    status = lab_status(state)
    assert status.healthy, status.problems()
    assert all(n.speaker == "running" for n in status.nodes)

    verify_all(plan)
    for node in birds:
        assert bird_table(state, node) == planned_table(node)
        # Only the blocks travel: a pod route BIRD learns from the kernel stays home.
        assert not [
            r.prefix
            for r in birdc_routes(state, node, 4)
            if r.source == "BGP" and r.prefix.endswith("/32")
        ]
    print(f"itbmesh: converged {seconds.get('converged')} s after the speakers")

    # node1's BIRD stops (SIGTERM: it tells its peers): every other node forgets its blocks;
    # started again, it is back everywhere.
    node1 = plan.node("node1")
    blocks = {b.cidr for b in node1.blocks}
    assert live.stop_speaker(state, "node1")
    others = [n for n in plan.nodes if n.name != "node1"]

    def forgotten() -> bool:
        diffs = {d.node: d for d in fib_diffs(plan)}
        return all({r.prefix for r in diffs[n.name].missing} == blocks for n in others)

    took = wait_for(forgotten, 15, "node1's blocks to leave every other FIB")
    print(f"node1 stopped: its blocks left every FIB in {took:.2f} s")
    live.start_speaker(state, plan, "node1")
    took = wait_for(lambda: all(d.ok for d in fib_diffs(plan)), 30, "node1 to be back")
    print(f"node1 started again: every FIB equal the plan in {took:.2f} s")
    verify_all(plan, dataplane=False)

    result = down(plan.name, progress=print)
    assert result.processes >= 2 * len(birds) + 2
    assert lab_leftovers(plan.name, lab_env / plan.name) == []


def test_bird_node_accepts_routes_from_meshemus_reflectors(lab_env: Path, tmp_path: Path) -> None:
    path = tmp_path / "birdrr.yaml"
    path.write_text(REFLECTED)
    topo = load_topology_text(REFLECTED, str(path), "birdrr", name_override="itbrr")
    plan, _ = bring_up(topo, path)
    state = LabState(plan.name)
    verify_all(plan)
    for name in ("node1", "node2"):
        node = plan.node(name)
        table = bird_table(state, node)
        assert table == planned_table(node)
        # Every learned block came through a reflector of cluster 244.0.0.1, with its
        # originator's router ID: BIRD accepted ORIGINATOR_ID and CLUSTER_LIST.
        origin_ids = {n.router_id for n in plan.nodes if n.name != name and n.blocks}
        assert {t[1] for t in table.values()} == origin_ids
        assert {t[2:] for t in table.values()} == {("244.0.0.1",)}
        assert len(table) == 2 * len(origin_ids)  # one block per family and origin
    result = down(plan.name, progress=print)
    assert result.namespaces == 1 + len(plan.nodes) + sum(len(n.pods) for n in plan.nodes)
    assert lab_leftovers(plan.name, lab_env / plan.name) == []


def test_without_bird1_up_is_exit_3_and_leaves_nothing(
    lab_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = TOPOLOGIES / "bird-nodes.yaml"
    topo = load_topology(path, name="itbnone")
    plan = build_plan(topo)
    monkeypatch.setenv("MESHEMU_BIRD1", str(tmp_path / "no-bird-here"))
    bird1_binaries.cache_clear()
    with pytest.raises(EnvironmentProblem, match=r"scripts/setup\.sh") as err:
        up(plan, topo, path, progress=print, timeout=30)
    assert err.value.exit_code == 3
    assert not LabState(plan.name).exists
    assert lab_leftovers(plan.name, lab_env / plan.name) == []
    assert os.environ["MESHEMU_BIRD1"].endswith("no-bird-here")


def test_bird_nodes_beside_felix_owned_ipip_and_vxlan_pools(lab_env: Path, tmp_path: Path) -> None:
    path = tmp_path / "birdfx.yaml"
    path.write_text(FELIX_POOLS)
    topo = load_topology_text(FELIX_POOLS, str(path), "birdfx")
    plan = build_plan(topo)
    birds = [n for n in plan.nodes if n.speaker == "bird"]
    # Calico's defaults: Felix owns both pools, BIRD neither (it only carries the blocks).
    assert {p.name: p.bird_programs for p in plan.pools} == {"ipip4": False, "vxlan6": False}
    for node in birds:
        sources = {r.source for r in node.fib if r.type != "blackhole"}
        assert "felix" in sources and "bgp" not in sources, node.name
    plan, seconds = bring_up(topo, path)
    state = LabState(plan.name)
    for node in birds:
        ipam = (state.dir / "nodes" / node.name / "bird_ipam.cfg").read_text()
        assert (
            "if (net ~ 172.22.0.0/16) then { reject; } # Cluster routes are handled by Felix."
            in ipam
        )
        assert '(ifname ~ "tunl0")' in ipam and "krt_tunnel" not in ipam
    verify_all(plan)
    # BIRD learned every other node's blocks (its table equals the plan's RIB) but wrote none
    # of them: every cluster route on a BIRD node is Felix's, through tunl0 across racks and
    # directly within one (CrossSubnet by Node address), VXLAN for IPv6.
    assert all(d.ok for d in fib_diffs(plan)), [
        line for d in fib_diffs(plan) for line in d.describe()
    ]
    for node in birds:
        assert bird_table(state, node) == planned_table(node)
        felix = [r for r in node.fib if r.source == "felix" and r.type != "blackhole"]
        devices = {r.dev for r in felix}
        assert {"tunl0", "vxlan-v6.calico"} <= devices, devices
    print(f"birdfx: up in {seconds}")
    result = down(plan.name, progress=print)
    assert result.processes >= 2 * len(birds) + 2
    assert lab_leftovers(plan.name, lab_env / plan.name) == []
