"""Borrowed addresses over BGP: the borrower announces a host route for each pod address it
borrowed in a pool that exports (as Calico's BIRD exports the pod's kernel route), every
node where BIRD programs the pool writes it, routers learn it, disableBGPExport silences it,
and the agent announces what the planner originates."""

from __future__ import annotations

import json
from pathlib import Path as FsPath

import pytest

from meshemu.controlplane.agent import AgentCore
from meshemu.controlplane.events import StateEvent, UpdateEvent
from meshemu.model.agent_config import AgentConfig, agent_config_of
from meshemu.model.bgp import Path
from meshemu.model.ipam import plan_borrowed
from meshemu.model.load import load_topology, load_topology_text
from meshemu.model.plan import LabPlan, build_plan
from meshemu.model.routes import FibRoute
from meshemu.verify.observation import expected_path

TOPOLOGY = FsPath(__file__).resolve().parents[2] / "topologies" / "ipam-borrow-native.yaml"
BORROWED = "10.250.0.5/32"  # node4's pod, in node1's block 10.250.0.4/30 (see the topology)


def _plan(pool: str = "ipipMode: Never", extra: str = "") -> LabPlan:
    text = TOPOLOGY.read_text().replace("ipipMode: Never", pool) + extra
    return build_plan(load_topology_text(text, "t.yaml", "t"))


@pytest.fixture(scope="module")
def native() -> LabPlan:
    return build_plan(load_topology(TOPOLOGY))


def _host_routes(plan: LabPlan, node: str) -> list[FibRoute]:
    return [r for r in plan.node(node).fib if r.prefix == BORROWED]


def test_the_topology_borrows_as_described(native: LabPlan) -> None:
    (pod,) = native.node("node4").pods
    assert pod.ipv4 == "10.250.0.5" and native.node("node4").blocks == ()
    assert "10.250.0.4/30" in [b.cidr for b in native.node("node1").blocks]


def test_every_other_node_has_birds_host_route_to_the_borrower(native: LabPlan) -> None:
    node4 = native.node("node4")
    for name in ("node1", "node2", "node3"):
        (route,) = _host_routes(native, name)
        assert (route.type, route.via, route.dev, route.source) == (
            "unicast",
            node4.ipv4,
            "eth0",
            "bgp",
        ), name
        (entry,) = [e for e in native.node(name).rib if e.prefix == BORROWED]
        assert (entry.next_hop, entry.origin_node, entry.learned_from) == (
            node4.ipv4,
            "node4",
            node4.ipv4,
        )
    # The borrower has its pod's own route only; the block's owner keeps its blackhole beside
    # the /32, which wins by longest match.
    (own,) = _host_routes(native, "node4")
    assert own.source == "local" and own.dev == node4.pods[0].host_ifname
    assert any(
        r.prefix == "10.250.0.4/30" and r.type == "blackhole" for r in native.node("node1").fib
    )


def test_the_block_still_goes_to_its_owner(native: LabPlan) -> None:
    (block,) = [r for r in native.node("node3").fib if r.prefix == "10.250.0.4/30"]
    assert block.via == native.node("node1").ipv4 and block.source == "bgp"


def test_disable_bgp_export_removes_the_host_route() -> None:
    plan = _plan("ipipMode: Never\n    disableBGPExport: true")
    for name in ("node1", "node2", "node3"):
        assert _host_routes(plan, name) == []
        assert [e for e in plan.node(name).rib if e.prefix == BORROWED] == []


def test_felix_programmed_pool_is_still_announced_but_written_by_felix() -> None:
    # IPIP under Calico's default (FelixConfiguration EnabledIPIPOnly): BIRD still exports the
    # /32 (its export filter does not ask who programs), its kernel filter drops it; Felix's
    # route resolver writes the route.
    plan = _plan("ipipMode: Always")
    # (Here each node's tunl0 address claims a block first: node1's last pods borrow.)
    borrowed = [b for held in plan_borrowed(plan).values() for b in held]
    assert {(b.node, b.kind) for b in borrowed} == {("node1", "pod")}
    for b in borrowed:
        for other in ("node2", "node3", "node4"):
            node = plan.node(other)
            assert [e.next_hop for e in node.rib if e.prefix == b.prefix] == [
                plan.node("node1").ipv4
            ]
            (route,) = [r for r in node.fib if r.prefix == b.prefix]
            assert (route.source, route.dev) == ("felix", "tunl0")


# Appended to the topology, whose last section is `bgp`: the mesh off, every node over eBGP
# to a BIRD router on the lan.
ROUTED = """
  nodeToNodeMeshEnabled: false
  peers:
    to-tor: {nodeSelector: all(), peerRouter: tor, numAllowedLocalASNumbers: 1}
routers:
  tor:
    subnets: [lan]
    bgp: {asNumber: 65000}
"""


def test_a_router_learns_the_host_route() -> None:
    plan = _plan(extra=ROUTED)
    (router,) = plan.routers
    assert router.bgp is not None
    (route,) = [r for r in router.bgp.routes if r.prefix == BORROWED]
    assert route.next_hop == plan.node("node4").ipv4
    # Through the router, the nodes learn it too (eBGP, the node's next hop kept on the lan).
    (entry,) = [e for e in plan.node("node2").rib if e.prefix == BORROWED]
    assert entry.next_hop == plan.node("node4").ipv4


# --- the agent ------------------------------------------------------------------------------------


def _core(plan: LabPlan, node: str) -> AgentCore:
    config = agent_config_of(plan, node)
    return AgentCore(AgentConfig.from_json(json.loads(json.dumps(config.to_json()))))


def _announced(commands: list[str]) -> dict[tuple[str, str], str]:
    """(peer, prefix) -> next hop of each `neighbor P announce route X next-hop H ...`."""
    out = {}
    for command in commands:
        words = command.split()
        if words[2] == "announce":
            out[(words[1], words[4])] = words[6]
    return out


def test_the_borrowers_agent_announces_the_host_route(native: LabPlan) -> None:
    node4 = native.node("node4")
    assert agent_config_of(native, "node4").borrowed_routes == (BORROWED,)
    assert agent_config_of(native, "node1").borrowed_routes == ()
    core = _core(native, "node4")
    commands = core.start()
    for session in node4.sessions:
        commands += core.on_state(StateEvent(session.peer_ip, "", "up"))
    announced = _announced(commands)
    for session in node4.sessions:
        assert announced[(session.peer_ip, BORROWED)] == node4.ipv4
    # Its own pod route is the dataplane's: the agent writes nothing for the prefix.
    assert core.route(BORROWED) is None


def test_a_receiving_agent_writes_the_planned_route(native: LabPlan) -> None:
    node4 = native.node("node4")
    assert node4.ipv4 is not None
    core = _core(native, "node2")
    core.start()
    core.on_state(StateEvent(node4.ipv4, "", "up"))
    core.on_update(UpdateEvent(node4.ipv4, "", announced=(Path(BORROWED, node4.ipv4),)))
    route = core.route(BORROWED)
    assert route is not None
    (planned,) = _host_routes(native, "node2")
    assert (route.via, route.dev, route.source) == (planned.via, planned.dev, planned.source)


def test_disable_bgp_export_the_agent_announces_nothing() -> None:
    plan = _plan("ipipMode: Never\n    disableBGPExport: true")
    assert agent_config_of(plan, "node4").borrowed_routes == ()


def test_the_matrix_expects_the_path_of_the_host_route(native: LabPlan) -> None:
    # node4 holds no block: the path to its pod is the host route's (it was "no route").
    for name in ("node1", "node2", "node3"):
        assert expected_path(native, native.node(name), native.node("node4"), 4) == "direct"
