"""Tests of `meshemu explain`: the pure explanation (model.explain), its observed side
(verify.explain) and the command's arguments (cli.insight_cmds), on the shipped topologies and
small inline ones whose every session and route is known by hand.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest

from meshemu.cli import insight_cmds
from meshemu.errors import ConfigError
from meshemu.model.explain import Explanation, Reason, explain_node
from meshemu.model.load import load_topology, load_topology_text
from meshemu.model.plan import LabPlan, build_plan
from meshemu.model.routes import FibRoute
from meshemu.model.topology import Topology
from meshemu.report.explain_text import render_explanation
from meshemu.verify.explain import observed_explanation
from meshemu.verify.observation import NodeHealth, Observation

TOPOLOGIES = Path(__file__).resolve().parents[2] / "topologies"

# Two subnets, an unencapsulated pool (across subnets: through a router that knows no pod
# routes), a global peerIP BGPPeer from every node to node3's address, and node4 with a
# BGPPeer whose AS is wrong (a session that stays down).
FABRIC = """
name: expl
subnets:
  a: {ipv4: 10.7.1.0/24}
  b: {ipv4: 10.7.2.0/24}
routers:
  r: {subnets: [a, b]}
nodes:
  node1: {subnet: a, labels: {rack: a}}
  node2: {subnet: a}
  node3: {subnet: b}
  node4: {subnet: b}
pools:
  p4: {cidr: 10.250.0.0/16, ipipMode: Never}
bgp:
  nodeToNodeMeshEnabled: false
  peers:
    to-node3: {peerIP: 10.7.2.2}
    rack-a: {nodeSelector: "rack == 'a'", peerIP: 10.7.1.3}
    wrong-as: {node: node4, peerIP: 10.7.1.2, asNumber: 65009}
"""


def _load(text: str) -> tuple[Topology, LabPlan]:
    topo = load_topology_text(text, "expl.yaml", "expl")
    return topo, build_plan(topo)


@pytest.fixture(scope="module")
def flagship() -> tuple[Topology, LabPlan]:
    topo = load_topology(TOPOLOGIES / "flagship.yaml")
    return topo, build_plan(topo)


@pytest.fixture(scope="module")
def rr() -> tuple[Topology, LabPlan]:
    topo = load_topology(TOPOLOGIES / "route-reflectors.yaml")
    return topo, build_plan(topo)


@pytest.fixture(scope="module")
def fabric() -> tuple[Topology, LabPlan]:
    return _load(FABRIC)


def _fields(reasons: tuple[Reason, ...]) -> dict[str, str]:
    return {r.field: r.value for r in reasons if r.field}


def _texts(reasons: tuple[Reason, ...]) -> str:
    return " | ".join(r.text for r in reasons)


# -- sessions ------------------------------------------------------------------------------------


def test_mesh_sessions_name_the_mesh_setting_and_the_passive_rule(
    flagship: tuple[Topology, LabPlan],
) -> None:
    topo, plan = flagship
    ex = explain_node(topo, plan, "node3")
    node = plan.node("node3")
    assert len(ex.sessions) == len(node.sessions) == 6
    for why, session in zip(ex.sessions, node.sessions, strict=True):
        assert why.rule == "mesh" and why.kind == "mesh"
        fields = _fields(why.reasons)
        assert fields["BGPConfiguration default spec.nodeToNodeMeshEnabled"] == "true"
        # Passive exactly when the peer's address is higher as text (Calico's rule).
        assert ("passive" in _texts(why.reasons)) == (session.peer_ip > session.local_ip)
        assert why.comes_up


def test_reflector_clients_and_reverse_peerings(rr: tuple[Topology, LabPlan]) -> None:
    topo, plan = rr
    client = explain_node(topo, plan, "node1")
    assert {s.peer_name for s in client.sessions} == {"rr1", "rr2"}
    for why in client.sessions:
        assert why.rule == "peerSelector"
        fields = _fields(why.reasons)
        assert fields["BGPPeer peer-with-reflectors spec.peerSelector"] == (
            "route-reflector == 'true'"
        )
        assert f"Node {why.peer_name} spec.bgp.routeReflectorClusterID" in fields
    reflector = explain_node(topo, plan, "rr1")
    to_clients = [s for s in reflector.sessions if s.peer_name and s.peer_name.startswith("node")]
    assert len(to_clients) == 8  # four clients, two families
    for why in to_clients:
        # rr1 is selected by the peerSelector: its side is Calico's automatic reverse peering,
        # and the client is its route-reflector client.
        assert why.rule == "reverse"
        fields = _fields(why.reasons)
        assert fields["BGPPeer peer-with-reflectors spec.reversePeering"].startswith("Auto")
        assert fields["Node rr1 spec.bgp.routeReflectorClusterID"] == "244.0.0.1"
        assert "route-reflector client" in why.summary
    # rr1 to rr2: the forward peering (rr1 is in the nodeSelector's scope and rr2 selected),
    # both in one cluster: not clients of each other.
    peer = [s for s in reflector.sessions if s.peer_name == "rr2"]
    assert peer and all(s.rule == "peerSelector" for s in peer)
    assert all("not clients of each other" in _texts(s.reasons) for s in peer)
    facts = _fields(reflector.facts)
    assert facts["Node rr1 spec.bgp.routeReflectorClusterID"] == "244.0.0.1"


def test_global_and_selected_peer_ip_sessions_and_one_that_stays_down(
    fabric: tuple[Topology, LabPlan],
) -> None:
    topo, plan = fabric
    ex = explain_node(topo, plan, "node1")
    by_peer = {s.peer_name: s for s in ex.sessions}
    to3 = by_peer["node3"]
    assert (to3.kind, to3.rule, to3.source) == ("global", "peerIP", "to-node3")
    assert _fields(to3.reasons)["BGPPeer to-node3 spec.peerIP"] == "10.7.2.2"
    assert _fields(to3.reasons)["BGPPeer to-node3 spec.nodeSelector"] == "(unset)"
    to2 = by_peer["node2"]
    assert (to2.kind, to2.rule) == ("node", "peerIP")
    assert _fields(to2.reasons)["BGPPeer rack-a spec.nodeSelector"] == "rack == 'a'"
    # node4's BGPPeer says node1 is AS 65009: node1 has no session back, nothing comes up.
    down = explain_node(topo, plan, "node4", "node1")
    assert len(down.sessions) == 1
    why = down.sessions[0]
    assert not why.comes_up and "stays down" in why.summary
    assert _fields(why.reasons)["BGPPeer wrong-as spec.asNumber"] == "65009"
    assert "not expected up" in _texts(why.reasons)


def test_no_session_says_why_and_where_the_routes_come_from(
    rr: tuple[Topology, LabPlan],
) -> None:
    topo, plan = rr
    ex = explain_node(topo, plan, "node1", "node3")
    assert ex.sessions == ()
    assert [r.path for r in ex.routes] == ["ipip", "vxlan"]
    (absent,) = ex.absent
    assert absent.field == "BGPConfiguration default spec.nodeToNodeMeshEnabled"
    assert absent.value == "false"
    assert "learns node3's blocks, from rr1" in absent.text


# -- routes --------------------------------------------------------------------------------------


def test_cross_subnet_routes_say_the_mode_and_the_subnet_test(
    flagship: tuple[Topology, LabPlan],
) -> None:
    topo, plan = flagship
    node2 = plan.node("node2").blocks[0].cidr
    node3 = plan.node("node3").blocks[0].cidr
    same = explain_node(topo, plan, "node1", node2).routes
    other = explain_node(topo, plan, "node1", node3).routes
    assert [r.path for r in same] == ["direct"] and [r.path for r in other] == ["ipip"]
    for why, where in ((same[0], "inside"), (other[0], "outside")):
        fields = _fields(why.reasons)
        assert fields["IPPool ipv4-pool spec.ipipMode"] == "CrossSubnet"
        assert fields["Node node1 spec.bgp.ipv4Address"] == "10.10.1.2/24"
        assert f"is {where} this node's subnet 10.10.1.0/24" in _texts(why.reasons)
    # IPv6: VXLAN CrossSubnet to node3's VTEP.
    v6 = next(b.cidr for b in plan.node("node3").blocks if ":" in b.cidr)
    (vx,) = explain_node(topo, plan, "node1", v6).routes
    assert vx.path == "vxlan"
    assert _fields(vx.reasons)["IPPool ipv6-pool spec.vxlanMode"] == "CrossSubnet"
    assert "node3's VTEP" in _texts(vx.reasons)


def test_unencapsulated_across_subnets_goes_to_a_router_that_knows_no_pod_routes(
    fabric: tuple[Topology, LabPlan],
) -> None:
    topo, plan = fabric
    block = plan.node("node3").blocks[0].cidr
    (why,) = explain_node(topo, plan, "node1", block).routes
    assert why.path == "router"
    assert _fields(why.reasons)["IPPool p4 spec.ipipMode / spec.vxlanMode"] == "Never"
    assert "knows no pod routes" in _texts(why.reasons)


def test_own_blocks_and_pods(flagship: tuple[Topology, LabPlan]) -> None:
    topo, plan = flagship
    node = plan.node("node1")
    ex = explain_node(topo, plan, "node1", "node1/pod1")
    pod = node.pods[0]
    assert [r.prefix for r in ex.routes] == [f"{pod.ipv4}/32", f"{pod.ipv6}/128"]
    assert all(r.path == "local" for r in ex.routes)
    full = explain_node(topo, plan, "node1")
    holes = [r for r in full.routes if r.path == "blackhole"]
    assert {r.prefix for r in holes} == {b.cidr for b in node.blocks}
    assert _fields(holes[0].reasons)["IPPool ipv4-pool spec.blockSize"] == "26"


def test_targets_address_prefix_and_unknowns(flagship: tuple[Topology, LabPlan]) -> None:
    topo, plan = flagship
    node3 = plan.node("node3")
    # A peer's address: that session only.
    ex = explain_node(topo, plan, "node1", node3.ipv4)
    assert [s.peer_ip for s in ex.sessions] == [node3.ipv4] and ex.routes == ()
    # A pod's address: the route the kernel picks for it (the block, longest match).
    pod_ip = node3.pods[1].ipv4
    ex = explain_node(topo, plan, "node1", pod_ip)
    assert [r.prefix for r in ex.routes] == [node3.blocks[0].cidr]
    # An address outside every pool: nothing, and why.
    ex = explain_node(topo, plan, "node1", "198.51.100.7")
    assert ex.routes == () and "in no IP pool" in ex.absent[0].text
    for bad in ("nonsense", "node9/pod1", "node3/pod9"):
        with pytest.raises(ConfigError) as err:
            explain_node(topo, plan, "node1", bad)
        assert err.value.problems[0].location == "TARGET"
    with pytest.raises(ConfigError):
        explain_node(topo, plan, "node9")


def test_json_and_text_forms(rr: tuple[Topology, LabPlan]) -> None:
    topo, plan = rr
    ex = explain_node(topo, plan, "node1")
    data = json.loads(json.dumps(ex.to_json()))
    assert Explanation.from_json(data, "explanation") == ex
    assert data["node"] == "node1" and data["observed"] is False
    assert {s["rule"] for s in data["sessions"]} == {"peerSelector"}
    assert all(r["field"] or r["text"] for s in data["sessions"] for r in s["reasons"])
    text = render_explanation(ex)
    assert "[BGPPeer peer-with-reflectors spec.peerSelector = route-reflector == 'true']" in text
    assert "IP-in-IP through tunl0" in text


# -- a running lab's view ------------------------------------------------------------------------


def _agent(plan: LabPlan, node: str, idle: str | None = None) -> dict[str, Any]:
    me = plan.node(node)
    return {
        "sessions": [
            {
                "peer_ip": s.peer_ip,
                "state": "idle" if s.peer_ip == idle else "established",
                "info": "Connect" if s.peer_ip == idle else "",
            }
            for s in me.sessions
        ],
        "rib": [
            {
                "prefix": e.prefix,
                "next_hop": e.next_hop,
                "learned_from": e.learned_from,
                "originator_id": e.originator_id,
                "cluster_list": list(e.cluster_list),
                "best": True,
            }
            for e in me.rib
            if e.learned_from is not None and e.next_hop != idle
        ],
    }


def test_observed_differences_name_the_session_and_the_route(
    flagship: tuple[Topology, LabPlan],
) -> None:
    topo, plan = flagship
    node2 = plan.node("node2")
    agents: dict[str, dict[str, Any] | None] = {n.name: _agent(plan, n.name) for n in plan.nodes}
    fibs = {n.name: list(n.fib) for n in plan.nodes}
    healthy = Observation(agents, fibs, [], {n.name: NodeHealth() for n in plan.nodes})
    ex = observed_explanation(explain_node(topo, plan, "node1"), plan, healthy)
    assert ex.observed and ex.differences == ()
    assert {s.observed for s in ex.sessions} == {"established"}
    assert {r.observed for r in ex.routes} == {"as planned"}
    assert "matches the plan" in render_explanation(ex)
    # node1 lost its session with node2 and the kernel route to node2's block.
    lost = node2.blocks[0].cidr
    agents["node1"] = _agent(plan, "node1", idle=node2.ipv4)
    fibs["node1"] = [r for r in plan.node("node1").fib if r.prefix != lost]
    broken = Observation(agents, fibs, [], {n.name: NodeHealth() for n in plan.nodes})
    ex = observed_explanation(explain_node(topo, plan, "node1"), plan, broken)
    states = {s.peer_ip: s.observed for s in ex.sessions}
    assert states[node2.ipv4] == "idle (Connect)"
    routes = {r.prefix: r.observed for r in ex.routes}
    assert routes[lost] == "missing from the kernel"
    text = "\n".join(ex.differences)
    assert f"session node1 -> {node2.ipv4}" in text
    assert f"node1: missing {lost}" in text
    # A wrong route is shown as the kernel has it.
    wrong = FibRoute(lost, "unicast", node2.ipv4, "tunl0", True)
    fibs["node1"] = [*fibs["node1"], wrong]
    ex = observed_explanation(
        explain_node(topo, plan, "node1", lost),
        plan,
        Observation(agents, fibs, [], {n.name: NodeHealth() for n in plan.nodes}),
    )
    assert ex.routes[0].observed == f"the kernel has '{wrong.text()}'"


# -- the command ---------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="meshemu")
    insight_cmds.add_commands(parser.add_subparsers(dest="command", required=True))
    return parser


def test_cli_explains_a_file_in_either_order(capsys: pytest.CaptureFixture[str]) -> None:
    path = str(TOPOLOGIES / "flagship.yaml")
    for argv in (
        ["explain", "node1", "node3", path, "--json"],
        ["explain", "node1", path, "node3", "--json"],
        ["explain", "node1", "node3", "--file", path, "--json"],
    ):
        args = _parser().parse_args(argv)
        assert args.func(args) == 0
        data = json.loads(capsys.readouterr().out)
        assert data["target"] == "node3"
        assert {s["peer_name"] for s in data["sessions"]} == {"node3"}


def test_cli_refuses_ambiguous_arguments() -> None:
    path = str(TOPOLOGIES / "flagship.yaml")
    for argv in (
        ["explain", "node1", "node2", "node3", path],
        ["explain", "node1", path, path],
        ["explain", "node1", path, "--lab", "x"],
    ):
        args = _parser().parse_args(argv)
        with pytest.raises(ConfigError):
            args.func(args)


def test_explanation_is_frozen_data(flagship: tuple[Topology, LabPlan]) -> None:
    topo, plan = flagship
    ex = explain_node(topo, plan, "node2")
    assert isinstance(ex, Explanation)
    assert ex == explain_node(topo, plan, "node2")
