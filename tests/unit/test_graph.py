"""`meshemu graph`: the picture's data from real plans (sessions, reflectors, paths, layout),
the rendering to SVG and PNG, and its bad inputs (no lab running, unwritable output, nothing
half-written)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest

from meshemu.errors import UsageError
from meshemu.model.load import load_topology, load_topology_text
from meshemu.model.plan import LabPlan, build_plan
from meshemu.report import figures
from meshemu.report import graph as graph_render
from meshemu.report.graph_data import (
    DOWN,
    ESTABLISHED,
    EXTERNAL,
    NOT_EXPECTED,
    PARTIAL,
    PLANNED,
    build_graph,
)
from meshemu.state import LabState, LabSummary

TOPOLOGIES = Path(__file__).resolve().parents[2] / "topologies"


def plan_of(name: str) -> LabPlan:
    return build_plan(load_topology(TOPOLOGIES / f"{name}.yaml"))


def paths_by_pair(plan: LabPlan) -> dict[tuple[str, str, int], str]:
    return {(p.a, p.b, p.family): p.kind for p in build_graph(plan).paths}


def test_flagship_sessions_and_paths_follow_the_plan() -> None:
    plan = plan_of("flagship")
    graph = build_graph(plan)
    assert not graph.running
    # A full mesh of 4 nodes: 6 pairs, each with an IPv4 and an IPv6 session, none external.
    assert len(graph.sessions) == 6
    assert {s.families for s in graph.sessions} == {(4, 6)}
    assert {s.state for s in graph.sessions} == {PLANNED}
    assert {s.kinds for s in graph.sessions} == {("mesh",)}
    paths = paths_by_pair(plan)
    # CrossSubnet: direct inside a rack; IPIP (IPv4) and VXLAN (IPv6) across racks.
    assert paths[("node:node1", "node:node2", 4)] == "direct"
    assert paths[("node:node1", "node:node2", 6)] == "direct"
    assert paths[("node:node1", "node:node3", 4)] == "ipip"
    assert paths[("node:node1", "node:node3", 6)] == "vxlan"
    assert paths[("node:node3", "node:node4", 4)] == "direct"
    assert len(paths) == 12


def test_route_reflectors_and_their_clients() -> None:
    graph = build_graph(plan_of("route-reflectors"))
    rrs = {e.name: e.cluster_id for e in graph.elements if e.kind == "node" and e.cluster_id}
    assert rrs == {"rr1": "244.0.0.1", "rr2": "244.0.0.1"}
    clients = {e.name: e.reflected_by for e in graph.elements if e.reflected_by}
    assert clients == {f"node{i}": ("244.0.0.1",) for i in range(1, 5)}
    reflected = [s for s in graph.sessions if s.reflector]
    assert len(reflected) == 8
    assert all(s.reflector in ("node:rr1", "node:rr2") for s in reflected)
    # The reflectors peer with each other (same cluster: not each other's clients).
    between = next(s for s in graph.sessions if {s.a, s.b} == {"node:rr1", "node:rr2"})
    assert between.reflector is None
    # IPIP Always / VXLAN Always: every pair tunnels, inside a rack too.
    kinds = {(p.family, p.kind) for p in graph.paths}
    assert kinds == {(4, "ipip"), (6, "vxlan")}


def test_fabric_sessions_and_paths_through_routers() -> None:
    plan = plan_of("leaf-spine")
    graph = build_graph(plan)
    routers = {e.name for e in graph.elements if e.kind == "router"}
    assert routers == {"leaf1a", "leaf1b", "leaf2a", "leaf2b", "spine1", "spine2"}
    node_router = [s for s in graph.sessions if s.a.startswith("node:")]
    router_router = [s for s in graph.sessions if s.a.startswith("router:") and "router:" in s.b]
    assert len(node_router) == 8 and len(router_router) == 8
    paths = paths_by_pair(plan)
    assert paths[("node:node1", "node:node3", 4)] == "router"
    assert paths[("node:node1", "node:node2", 6)] == "direct"


def test_layout_rows_and_groups() -> None:
    graph = build_graph(plan_of("leaf-spine"), pods=True)
    pos = graph.positions
    assert set(pos) >= {e.key for e in graph.elements}
    node_y = pos["node:node1"][1]
    assert all(pos[e.key][1] < node_y for e in graph.elements if e.kind == "pod")
    leaf_y, spine_y = pos["router:leaf1a"][1], pos["router:spine1"][1]
    transit_y = pos["subnet:l1a-s1"][1]
    assert node_y < leaf_y < transit_y < spine_y
    # A node stands over the middle of its pods; a rack's nodes stay together.
    pods = [pos[e.key][0] for e in graph.elements if e.key.startswith("pod:node1/")]
    assert pos["node:node1"][0] == pytest.approx(sum(pods) / len(pods))
    order = sorted((e for e in graph.elements if e.kind == "node"), key=lambda e: pos[e.key][0])
    assert [e.subnet for e in order] == ["rack1", "rack1", "rack2", "rack2"]
    assert graph.members("rack1") == [
        "node:node1",
        "pod:node1/pod1",
        "pod:node1/pod2",
        "node:node2",
        "pod:node2/pod1",
        "pod:node2/pod2",
    ]


def test_observed_states_colour_the_sessions() -> None:
    plan = plan_of("flagship")
    states: dict[tuple[str, str], str] = {}
    for node in plan.nodes:
        for s in node.sessions:
            states[(node.name, s.peer_ip)] = "established"
    node2 = plan.node("node2")
    states[("node1", node2.ipv6 or "")] = "idle"  # one family of one side down
    for s in plan.node("node4").sessions:  # node4's speaker gone: nothing up towards it
        states[("node4", s.peer_ip)] = "down"
        peer = plan.node(s.peer_node or "")
        states[(peer.name, plan.node("node4").address(s.family) or "")] = "active"
    graph = build_graph(plan, states)
    assert graph.running
    by_pair = {(s.a, s.b): s for s in graph.sessions}
    assert by_pair[("node:node1", "node:node2")].state == PARTIAL
    assert by_pair[("node:node1", "node:node3")].state == ESTABLISHED
    assert by_pair[("node:node3", "node:node4")].state == DOWN
    assert "node1 ipv6 fd00:10:1::3: idle" in by_pair[("node:node1", "node:node2")].observed


PEER_TOPOLOGY = """
name: ext
subnets: {rack1: {ipv4: 10.70.1.0/24}}
nodes: {node1: {subnet: rack1}, node2: {subnet: rack1}}
pools: {p4: {cidr: 192.168.0.0/16}}
bgp:
  asNumber: 64512
  peers:
    upstream: {peerIP: 10.70.1.200, asNumber: 65000}
"""


def test_external_peer_is_an_element_of_its_own() -> None:
    plan = build_plan(load_topology_text(PEER_TOPOLOGY, "ext.yaml", "ext"))
    graph = build_graph(plan, {})
    peer = next(e for e in graph.elements if e.kind == "peer")
    assert peer.name == "10.70.1.200"
    external = [s for s in graph.sessions if "peer:10.70.1.200" in (s.a, s.b)]
    assert len(external) == 2 and {s.state for s in external} == {EXTERNAL}
    assert peer.key in graph.positions


def test_a_session_the_plan_never_expects_up_is_marked() -> None:
    # A BGPPeer on node1 to node2 in the wrong AS (mesh off): node2 has no session back
    # (Calico adds no reverse peering to an AS that is not the node's), so it never comes up.
    text = """
name: oneway
subnets: {rack1: {ipv4: 10.70.1.0/24}}
nodes: {node1: {subnet: rack1, ipv4: 10.70.1.2}, node2: {subnet: rack1, ipv4: 10.70.1.3}}
pools: {p4: {cidr: 192.168.0.0/16}}
bgp:
  asNumber: 64512
  nodeToNodeMeshEnabled: false
  peers:
    oneway: {node: node1, peerIP: 10.70.1.3, asNumber: 64999}
"""
    plan = build_plan(load_topology_text(text, "oneway.yaml", "oneway"))
    (edge,) = build_graph(plan).sessions
    assert (edge.a, edge.b, edge.state, edge.kinds) == (
        "node:node1",
        "node:node2",
        NOT_EXPECTED,
        ("node",),
    )


@pytest.mark.parametrize("suffix", [".svg", ".png"])
def test_render_writes_a_whole_picture(tmp_path: Path, suffix: str) -> None:
    out = tmp_path / f"lab{suffix}"
    graph_render.render_graph(build_graph(plan_of("route-reflectors"), pods=True), out)
    data = out.read_bytes()
    if suffix == ".png":
        assert data.startswith(b"\x89PNG\r\n\x1a\n")
    else:
        root = ElementTree.fromstring(data)
        assert root.tag.endswith("svg")
        assert b"rr1" in data and b"RR cluster 244.0.0.1" in data
    assert os.listdir(tmp_path) == [out.name]


def test_render_failure_leaves_nothing_half_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "lab.svg"
    out.write_text("the old picture")

    def broken(*_args: Any, **_kwargs: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(figures.FigureCanvasAgg, "print_figure", broken)
    with pytest.raises(UsageError, match="No space left"):
        graph_render.render_graph(build_graph(plan_of("flagship")), out)
    assert out.read_text() == "the old picture"
    assert os.listdir(tmp_path) == ["lab.svg"]


def test_cli_graph_of_a_file(tmp_path: Path, cli: Any) -> None:
    out = tmp_path / "flagship.svg"
    code, stdout, err = cli("graph", str(TOPOLOGIES / "flagship.yaml"), "-o", str(out), "--json")
    assert code == 0, err
    data = json.loads(stdout)
    assert data["running"] is False and data["output"] == str(out)
    assert len(data["sessions"]) == 6
    assert out.stat().st_size > 1000


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nolab", "-o", "{tmp}/x.svg"], "no lab named 'nolab' is up"),
        (["-o", "{tmp}/x.svg"], "no lab is up"),
        (["{topo}", "-o", "{tmp}/missing/x.svg"], "cannot write"),
        (["{topo}", "-o", "{tmp}/x.pdf"], ".svg or .png"),
        (["{topo}", "-o", "{tmp}"], ".svg or .png"),
        (["{tmp}/none.yaml", "-o", "{tmp}/x.svg"], "cannot read"),
        (["bad/../name", "-o", "{tmp}/x.svg"], "cannot read"),
    ],
)
def test_cli_graph_bad_input_is_exit_2(
    tmp_path: Path,
    cli: Any,
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    message: str,
) -> None:
    monkeypatch.setenv("MESHEMU_STATE_DIR", str(tmp_path / "state"))
    topo = str(TOPOLOGIES / "flagship.yaml")
    argv = [a.format(tmp=tmp_path, topo=topo) for a in args]
    code, _out, err = cli("graph", *argv)
    assert code == 2
    assert message in err
    assert "Traceback" not in err
    assert not list(tmp_path.glob("*.svg")) and not list(tmp_path.glob(".*tmp"))


def test_cli_graph_of_a_lab_that_is_not_running(
    tmp_path: Path, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MESHEMU_STATE_DIR", str(tmp_path / "state"))
    state = LabState("halfway")
    state.create()
    state.write_summary(LabSummary("halfway", "/x/flagship.yaml", phase="recovered"))
    code, _out, err = cli("graph", "halfway", "-o", str(tmp_path / "x.svg"))
    assert code == 2
    assert "lab halfway is not running" in err and "/x/flagship.yaml" in err
    assert not (tmp_path / "x.svg").exists()
