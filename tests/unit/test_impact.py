"""Tests of `meshemu impact`: the pure difference of two plans (model.impact) on pairs of inputs
whose differences are known by hand (tests/data/impact/), the plan's reachability, the protect
spec, the renderings, the prediction check of `--run` (verify.impact_check) on hand-made
observations, and the command's exit codes.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest

from meshemu.cli import insight_cmds
from meshemu.errors import ConfigError
from meshemu.model.impact import (
    Impact,
    impact,
    parse_protect,
    parse_protect_pairs,
    pod_reachability,
)
from meshemu.model.load import load_topology
from meshemu.model.plan import LabPlan, build_plan
from meshemu.model.topology import Topology
from meshemu.report.impact_text import render_impact_markdown, render_impact_text
from meshemu.verify.impact_check import check_prediction
from meshemu.verify.observation import Cell, NodeHealth, Observation, PathCell

DATA = Path(__file__).resolve().parents[1] / "data" / "impact"
TOPOLOGIES = Path(__file__).resolve().parents[2] / "topologies"


def _input(name: str) -> tuple[Topology, LabPlan]:
    topo = load_topology(DATA / f"{name}.yaml")
    return topo, build_plan(topo)


def _impact(old: str, new: str, protect: dict[str, Any] | None = None) -> Impact:
    old_topo, old_plan = _input(old)
    new_topo, new_plan = _input(new)
    spec = parse_protect(protect, old_plan) if protect is not None else None
    return impact(old_topo, old_plan, new_topo, new_plan, old, new, protect=spec)


def _sessions(result: Impact) -> set[tuple[str, str, str]]:
    return {(n.node, s.change, s.peer) for n in result.nodes for s in n.sessions}


def _routes(result: Impact) -> set[tuple[str, str, str, str, str]]:
    return {
        (n.node, r.change, r.prefix, r.old_path, r.new_path) for n in result.nodes for r in n.routes
    }


def _pairs(result: Impact) -> set[tuple[str, str, str, str, str]]:
    return {(p.source, p.target, p.change, p.old_path, p.new_path) for p in result.pairs}


def _block(plan: LabPlan, node: str) -> str:
    return plan.node(node).blocks[0].cidr


# -- pairs of inputs with known differences ------------------------------------------------------


def test_nothing_changes_between_an_input_and_itself() -> None:
    result = _impact("racks-crosssubnet", "racks-crosssubnet")
    assert not result.changed and result.inputs == ()
    assert result.reachable_old == result.reachable_new == result.total_old == 6
    assert "no session, route or pod pair changes" in render_impact_text(result)


def test_ipip_always_to_cross_subnet_only_the_same_rack_leaves_the_tunnel() -> None:
    result = _impact("racks-always", "racks-crosssubnet")
    _, plan = _input("racks-crosssubnet")
    assert result.inputs == ("pools.pods4.ipipMode: Always -> CrossSubnet",)
    assert _sessions(result) == set()
    assert _routes(result) == {
        ("node1", "path", _block(plan, "node2"), "ipip", "direct"),
        ("node2", "path", _block(plan, "node1"), "ipip", "direct"),
    }
    assert _pairs(result) == {
        ("node1/pod1", "node2/pod1", "path", "ipip", "direct"),
        ("node2/pod1", "node1/pod1", "path", "ipip", "direct"),
    }
    assert result.reachable_new == result.reachable_old == 6


def test_ipip_always_to_never_loses_every_pair_across_racks() -> None:
    result = _impact("racks-always", "racks-never")
    assert {(p.source, p.target) for p in result.pairs if p.change == "lost"} == {
        ("node1/pod1", "node3/pod1"),
        ("node2/pod1", "node3/pod1"),
        ("node3/pod1", "node1/pod1"),
        ("node3/pod1", "node2/pod1"),
    }
    lost = next(p for p in result.pairs if p.change == "lost")
    assert "router spine has no route" in lost.why and "plain router" in lost.why
    # Across racks the routes now point at the router (the same prefixes: 'path').
    _, plan = _input("racks-never")
    routes = _routes(result)
    assert ("node3", "path", _block(plan, "node1"), "ipip", "router") in routes
    assert result.reachable_new == 2


def test_mesh_to_reflectors_changes_sessions_and_nothing_else() -> None:
    result = _impact("mesh", "reflectors")
    assert "bgp.nodeToNodeMeshEnabled: true -> false" in result.inputs
    assert "bgp.peers.to-reflector: added" in result.inputs
    removed = {(node, peer) for node, change, peer in _sessions(result) if change == "removed"}
    clients = ("node2", "node3", "node4")
    assert removed == {(a, b) for a in clients for b in clients if a != b}
    changed = {(node, peer) for node, change, peer in _sessions(result) if change == "changed"}
    assert changed == {("node1", c) for c in clients} | {(c, "node1") for c in clients}
    on_reflector = next(
        s for n in result.nodes if n.node == "node1" for s in n.sessions if s.peer == "node2"
    )
    assert "kind: mesh -> node" in on_reflector.what
    assert "rr_client: false -> true" in on_reflector.what
    assert "automatic reverse peering" in on_reflector.new_reason
    assert _routes(result) == set() and result.pairs == ()


def test_a_removed_bgppeer_cuts_its_node_off() -> None:
    result = _impact("peers", "peer-removed")
    assert result.inputs == ("bgp.peers.group-b: removed",)
    assert _sessions(result) == {("node4", "removed", "rr1"), ("rr1", "removed", "node4")}
    _, plan = _input("peers")
    assert {(n, c, p) for n, c, p, _, _ in _routes(result)} == {
        ("rr1", "removed", _block(plan, "node4")),
        ("node2", "removed", _block(plan, "node4")),
        ("node3", "removed", _block(plan, "node4")),
        ("node4", "removed", _block(plan, "node2")),
        ("node4", "removed", _block(plan, "node3")),
    }
    assert {(p.source, p.target, p.change) for p in result.pairs} == {
        ("node2/pod1", "node4/pod1", "lost"),
        ("node3/pod1", "node4/pod1", "lost"),
        ("node4/pod1", "node2/pod1", "lost"),
        ("node4/pod1", "node3/pod1", "lost"),
    }


def test_a_disabled_pool_moves_the_blocks_and_the_pods_off_the_tunnel() -> None:
    result = _impact("pools", "pool-disabled")
    assert result.inputs == ("pools.pool-a.disabled: false -> true",)
    routes = _routes(result)
    assert all(p.startswith("10.68.") for _, c, p, _, _ in routes if c == "removed")
    assert all(p.startswith("10.69.") for _, c, p, _, _ in routes if c == "added")
    assert {c for _, c, _, _, _ in routes} == {"added", "removed"}
    assert len(result.pairs) == 6
    assert {(p.change, p.old_path, p.new_path) for p in result.pairs} == {
        ("path", "ipip", "direct")
    }


# -- reachability --------------------------------------------------------------------------------


def test_reachability_through_bgp_routers_and_both_ways() -> None:
    plan = build_plan(load_topology(TOPOLOGIES / "as-per-rack.yaml"))
    reach = pod_reachability(plan)
    assert reach and all(r.ok for r in reach.values())
    paths = {r.path for r in reach.values()}
    assert "router" in paths  # across racks, through the ToRs and the spine
    assert "direct" in paths or "local" in paths


# -- protect -------------------------------------------------------------------------------------


def test_protected_pairs_nodes_and_prefixes() -> None:
    _, plan = _input("racks-always")
    ok = _impact("racks-always", "racks-never", {"pairs": [{"from": "node1", "to": "node2"}]})
    assert ok.breaches == () and ok.protected == 1
    broken = _impact(
        "racks-always",
        "racks-never",
        {"pairs": [{"from": "node1/pod1", "to": "node3", "family": "ipv4"}]},
    )
    assert [(b.source, b.target) for b in broken.breaches] == [("node1/pod1", "node3/pod1")]
    assert "router spine" in broken.breaches[0].why
    by_node = _impact("racks-always", "racks-never", {"nodes": ["node3"]})
    assert len(by_node.breaches) == 4 and by_node.protected == 4
    pod1 = plan.node("node1").pods[0].ipv4
    by_prefix = _impact("racks-always", "racks-never", {"prefixes": [f"{pod1}/32"]})
    assert [(b.source, b.target) for b in by_prefix.breaches] == [("node3/pod1", "node1/pod1")]
    # An IPv6 rule in an IPv4-only lab protects nothing.
    none = _impact(
        "racks-always",
        "racks-never",
        {"pairs": [{"from": "node1", "to": "node3", "family": "ipv6"}]},
    )
    assert none.breaches == () and none.protected == 0


@pytest.mark.parametrize(
    ("data", "location"),
    [
        ([], "protect"),
        ({}, "protect"),
        ({"pair": []}, "protect.pair"),
        ({"pairs": [{"from": "node9", "to": "node1"}]}, "protect.pairs[0].from"),
        ({"pairs": [{"from": "node1", "to": "node1/pod7"}]}, "protect.pairs[0].to"),
        (
            {"pairs": [{"from": "node1", "to": "node2", "family": "ipv5"}]},
            "protect.pairs[0].family",
        ),
        ({"pairs": [{"from": "node1", "to": "node2", "via": "x"}]}, "protect.pairs[0].via"),
        ({"pairs": ["node1:node2"]}, "protect.pairs[0]"),
        ({"nodes": ["node1", 7]}, "protect.nodes[1]"),
        ({"nodes": "node1"}, "protect.nodes"),
        ({"prefixes": ["10.0.0.0/33"]}, "protect.prefixes[0]"),
        ({"prefixes": [10]}, "protect.prefixes[0]"),
    ],
)
def test_bad_protect_specs_are_located(data: Any, location: str) -> None:
    _, plan = _input("racks-always")
    with pytest.raises(ConfigError) as err:
        parse_protect(data, plan)
    assert location in [p.location for p in err.value.problems]


def test_protect_pairs_on_the_command_line() -> None:
    assert parse_protect_pairs(["node1/pod1:node3", "node1:node2:ipv4"]) == [
        {"from": "node1/pod1", "to": "node3"},
        {"from": "node1", "to": "node2", "family": "ipv4"},
    ]
    for bad in ("node1", "node1:", ":node2", "a:b:c:d"):
        with pytest.raises(ConfigError):
            parse_protect_pairs([bad])


# -- renderings ----------------------------------------------------------------------------------


def test_text_json_and_markdown() -> None:
    result = _impact("racks-always", "racks-never", {"nodes": ["node3"]})
    data = json.loads(json.dumps(result.to_json()))
    assert data["summary"]["pairs_lost"] == 4 and data["summary"]["pairs_path"] == 2
    assert data["protected"]["ok"] is False and len(data["protected"]["breaches"]) == 4
    assert data["reachable"] == {
        "old": {"pairs": 6, "reachable": 6},
        "new": {"pairs": 6, "reachable": 2},
    }
    text = render_impact_text(result)
    assert "protected: BREAKS 4 of 4" in text
    assert "pools.pods4.ipipMode: Always -> Never" in text
    markdown = render_impact_markdown(result)
    assert markdown.startswith("### meshemu impact: `racks-always` → `racks-never`")
    assert "❌" in markdown and "<details>" in markdown
    assert "| pod pairs reachable | 0 | 4 | 2 | |" in markdown
    fine = render_impact_markdown(
        _impact("racks-always", "racks-crosssubnet", {"nodes": ["node3"]})
    )
    assert "✅" in fine and "❌" not in fine


# -- the prediction against (hand-made) observations --------------------------------------------


def _observed(
    plan: LabPlan, result: Impact, side: str, flip: tuple[str, str] | None = None
) -> Observation:
    """What a lab showing exactly the plan would show: each session Established when planned,
    the planned FIB, every probe as the prediction says (one pair flipped, when asked)."""
    reach = result.old_reach if side == "old" else result.new_reach
    agents: dict[str, dict[str, Any] | None] = {
        n.name: {
            "sessions": [
                {
                    "peer_ip": s.peer_ip,
                    "state": "established" if s.peer_ip in n.expected_up else "idle",
                }
                for s in n.sessions
            ]
        }
        for n in plan.nodes
    }
    cells = []
    for (src, dst, family), r in reach.items():
        ok = r.ok != ((src, dst) == flip)
        cell = Cell(src, dst, family, "", "", r.path, 0.1 if ok else None)
        cells.append(PathCell(cell, ok, r.path if ok else "unseen"))
    fibs = {n.name: list(n.fib) for n in plan.nodes}
    return Observation(agents, fibs, cells, {n.name: NodeHealth() for n in plan.nodes})


def test_prediction_check_confirms_a_faithful_lab_and_catches_a_wrong_one() -> None:
    old_topo, old_plan = _input("racks-always")
    new_topo, new_plan = _input("racks-never")
    result = impact(old_topo, old_plan, new_topo, new_plan)
    labs = {
        "old": (old_plan, _observed(old_plan, result, "old")),
        "new": (new_plan, _observed(new_plan, result, "new")),
    }
    checks = check_prediction(result, labs)
    assert checks and all(c.ok for c in checks), [c for c in checks if not c.ok]
    # route checks for every changed route on both sides, pair checks for every changed pair
    names = [c.name for c in checks]
    assert sum(" route " in n for n in names) == 2 * sum(len(n.routes) for n in result.nodes)
    assert sum(n.startswith("new: ipv4 ") for n in names) == len(result.pairs)
    # The new lab reaches node3 although the plan says it cannot: caught twice (the pair, and
    # the every-pair check).
    labs["new"] = (new_plan, _observed(new_plan, result, "new", flip=("node1/pod1", "node3/pod1")))
    bad = [c for c in check_prediction(result, labs) if not c.ok]
    assert {c.name for c in bad} == {
        "new: ipv4 node1/pod1 -> node3/pod1 (lost)",
        "new: every pod pair as the plan expects",
    }
    # A route the kernel does not have is caught too.
    node1 = new_plan.node("node1")
    changed = next(r.prefix for n in result.nodes if n.node == "node1" for r in n.routes)
    observation = _observed(new_plan, result, "new")
    observation.fibs["node1"] = [r for r in node1.fib if r.prefix != changed]
    labs["new"] = (new_plan, observation)
    bad = [c for c in check_prediction(result, labs) if not c.ok]
    assert [c.observed for c in bad] == ["absent"]
    assert "--run: " in render_impact_text(result, check_prediction(result, labs))


# -- the command ---------------------------------------------------------------------------------


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="meshemu")
    insight_cmds.add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


def test_cli_exit_codes_and_formats(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old, new = str(DATA / "racks-always.yaml"), str(DATA / "racks-never.yaml")
    assert _run(["impact", old, new]) == 0  # nothing protected: a report, not a verdict
    capsys.readouterr()
    protect = tmp_path / "protect.yaml"
    protect.write_text("pairs:\n  - {from: node1, to: node3}\n")
    assert _run(["impact", old, new, "--protect", str(protect), "--format", "json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["protected"]["ok"] is False
    assert _run(["impact", old, new, "--protect-pairs", "node1:node2", "--format", "markdown"]) == 0
    assert "✅" in capsys.readouterr().out
    # Both: the file's pairs and the command line's.
    assert (
        _run(["impact", old, new, "--protect", str(protect), "--protect-pairs", "node1:node2"]) == 1
    )
    protect.write_text("pairs:\n  - {from: node7, to: node3}\n")
    with pytest.raises(ConfigError):
        _run(["impact", old, new, "--protect", str(protect)])
    with pytest.raises(ConfigError):
        _run(["impact", old, new, "--protect", str(tmp_path / "missing.yaml")])
    for text in ("- node1\n", "just text\n"):  # a list, a string: no mapping
        protect.write_text(text)
        with pytest.raises(ConfigError) as refused:
            _run(["impact", old, new, "--protect", str(protect)])
        assert [(p.location, p.message) for p in refused.value.problems] == [
            (str(protect), "expected a mapping with pairs, nodes and/or prefixes")
        ], text
    with pytest.raises(ConfigError):
        _run(["impact", old, str(tmp_path / "missing.yaml")])
    with pytest.raises(ConfigError):
        _run(["impact", old, new, "--run", "--lab-prefix", "much-too-long"])


def test_lab_names_change_no_route() -> None:
    """`--run` names each side's lab apart; the pods' `cali` interfaces (a hash of the lab's
    name) differ then, and are no change."""
    path = DATA / "racks-always.yaml"
    old_topo = load_topology(path, name="impact-o1")
    new_topo = load_topology(path, name="impact-n1")
    result = impact(old_topo, build_plan(old_topo), new_topo, build_plan(new_topo))
    assert not result.changed
