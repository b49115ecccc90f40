"""BIRD as a node speaker (`speaker: bird`), everything but the running lab.

The topology field (per lab, per node) and its place in the plan and the plan's JSON (older
plans read as ExaBGP), the rule refusing BIRD nodes where BIRD would program IPIP pools (located,
with a hint), Felix's route priority carried for the pod routes, finding BIRD 1.6 (`bird1_binaries`:
`$MESHEMU_BIRD1` or exit 3 with the setup command), which records are a node's current
speaker processes, and `bird_report`: what BIRD 1.6.8 said over its control socket (captured
from a lab's BIRD client of two ExaBGP route reflectors, `data/bird_node/`) in the agent's
shape, which `verify.checks` then judges like any node's.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from meshemu.controlplane.bird_tools import bird1_binaries
from meshemu.errors import ConfigError, EnvironmentProblem, LabError
from meshemu.model.load import load_topology_text
from meshemu.model.plan import LabPlan, NodePlan, build_plan
from meshemu.state import Resource, current_speakers
from meshemu.verify.bird_output import birdc_text_lines, parse_protocols, parse_routes
from meshemu.verify.checks import check_rib, check_sessions
from meshemu.verify.observe import bird_report
from meshemu.verify.results import FAIL, PASS

DATA = Path(__file__).resolve().parent / "data" / "bird_node"

MESH = """
name: birds
subnets:
  lan: {ipv4: 10.60.0.0/24, ipv6: "fd00:60::/64"}
nodes:
  node1: {subnet: lan, speaker: bird}
  node2: {subnet: lan}
pools:
  p4: {cidr: 10.244.0.0/16}
  p6: {cidr: "fd00:244::/64"}
"""

# The lab the captures in data/bird_node/ come from (node1 is the BIRD node they show).
REFLECTED = """
name: birdrr
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
  ipv6-pool: {cidr: "fd00:beef::/64"}
bgp:
  asNumber: 64512
  nodeToNodeMeshEnabled: false
  peers:
    peer-with-reflectors:
      nodeSelector: all()
      peerSelector: route-reflector == 'true'
"""


def plan_of(text: str) -> LabPlan:
    return build_plan(load_topology_text(text, "test.yaml", "test"))


def problems_of(text: str) -> list[tuple[str, str, str]]:
    with pytest.raises(ConfigError) as err:
        plan_of(text)
    return [(p.location, p.message, p.hint) for p in err.value.problems]


# -- topology and plan -------------------------------------------------------------------------


def test_speaker_is_per_node_with_the_labs_as_default() -> None:
    plan = plan_of(MESH)
    assert [(n.name, n.speaker) for n in plan.nodes] == [("node1", "bird"), ("node2", "exabgp")]
    everyone = plan_of(MESH.replace("name: birds", "name: birds\nspeaker: bird"))
    assert {n.speaker for n in everyone.nodes} == {"bird"}
    back = MESH.replace("name: birds", "name: birds\nspeaker: bird").replace(
        "speaker: bird}", "speaker: exabgp}"
    )
    assert [n.speaker for n in plan_of(back).nodes] == ["exabgp", "bird"]


def test_unknown_speaker_is_refused_at_its_field() -> None:
    problems = problems_of(MESH.replace("speaker: bird}", "speaker: gobgp}"))
    assert [p[0] for p in problems] == ["nodes.node1.speaker"]


def test_speaker_and_route_priority_travel_in_the_plan_json() -> None:
    text = MESH + "bgp: {ipv4NormalRoutePriority: 512}\n"
    plan = plan_of(text)
    data = plan.to_json(secrets=True)
    assert [n["speaker"] for n in data["nodes"]] == ["bird", "exabgp"]
    assert data["nodes"][0]["route_priority_ipv4"] == 512
    again = LabPlan.from_json(data)
    assert again == plan
    assert again.node("node1").route_priority(4) == 512
    assert again.node("node1").route_priority(6) == 1024


def test_a_plan_written_before_speakers_reads_as_exabgp() -> None:
    data = plan_of(MESH).to_json(secrets=True)
    for node in data["nodes"]:
        del node["speaker"], node["route_priority_ipv4"], node["route_priority_ipv6"]
    old = LabPlan.from_json(data)
    assert {n.speaker for n in old.nodes} == {"exabgp"}
    assert {n.route_priority(4) for n in old.nodes} == {1024}


def test_a_plan_with_an_unknown_speaker_is_a_lab_error() -> None:
    data = plan_of(MESH).to_json(secrets=True)
    data["nodes"][0]["speaker"] = "quagga"
    with pytest.raises(LabError, match=r"nodes\[0\]\.speaker"):
        LabPlan.from_json(data)


# -- the rule: BIRD 1.6 nodes only where Felix owns IPIP routes ----------------------------------

CLASSIC = "bgp: {programClusterRoutes: Enabled}\n"


def test_bird_node_beside_a_felix_owned_ipip_pool_and_a_vxlan_pool_is_fine() -> None:
    # Calico's default: Felix owns IPIP (and always VXLAN); BIRD's kernel filter only rejects.
    text = MESH.replace(
        "p4: {cidr: 10.244.0.0/16}", "p4: {cidr: 10.244.0.0/16, ipipMode: CrossSubnet}"
    ).replace('p6: {cidr: "fd00:244::/64"}', 'p6: {cidr: "fd00:244::/64", vxlanMode: Always}')
    plan = plan_of(text)
    node = plan.node("node1")
    assert node.speaker == "bird"
    assert {p.name: p.bird_programs for p in plan.pools} == {"p4": False, "p6": False}
    assert set(node.felix_programs) >= {"ipip", "vxlan"}
    # Felix's routes are in the BIRD node's plan: the route programmer writes them.
    assert {r.source for r in node.fib if r.type != "blackhole"} >= {"felix"}
    ipip_only = text.replace("name: birds", "name: birds\nbgp: {programClusterRoutes: Disabled}")
    assert plan_of(ipip_only).node("node1").speaker == "bird"


@pytest.mark.parametrize("value", ["Enabled", "EnabledIPIPOnly"])
def test_bird_owning_an_ipip_pool_on_a_bird_node_is_refused_at_its_speaker(value: str) -> None:
    problems = problems_of(
        MESH.replace(
            "p4: {cidr: 10.244.0.0/16}", "p4: {cidr: 10.244.0.0/16, ipipMode: CrossSubnet}"
        )
        + f"bgp: {{programClusterRoutes: {value}}}\n"
    )
    assert len(problems) == 1
    where, message, hint = problems[0]
    assert where == "nodes.node1.speaker"
    assert "pool p4" in message and "ipipMode CrossSubnet" in message
    assert f"programClusterRoutes {value}" in message and "krt_tunnel" in message
    assert "EnabledNoEncapOnly" in hint and "exabgp" in hint


def test_lab_wide_bird_owning_ipip_is_refused_once_at_the_labs_speaker() -> None:
    text = (
        MESH.replace("name: birds", "name: birds\nspeaker: bird")
        .replace("p4: {cidr: 10.244.0.0/16}", "p4: {cidr: 10.244.0.0/16, ipipMode: Always}")
        .replace("node2: {subnet: lan}", "node2: {subnet: lan}\n  node3: {subnet: lan}")
    ) + CLASSIC
    problems = problems_of(text)
    # node1 names its own speaker; node2 and node3 take the lab's: one problem there.
    assert [(p[0], "pool p4" in p[1], "ipipMode Always" in p[1]) for p in problems] == [
        ("nodes.node1.speaker", True, True),
        ("speaker", True, True),
    ]
    assert "the lab's nodes run BIRD" in problems[1][1]


def test_bird_owning_ipip_that_cannot_touch_a_bird_node_is_fine() -> None:
    # An IPv6-only BIRD node renders no IPv4 kernel filter; ExaBGP nodes may sit beside any
    # pool; a VXLAN pool is Felix's whatever the setting; without BGP no BIRD runs.
    ipip = MESH.replace("p4: {cidr: 10.244.0.0/16}", "p4: {cidr: 10.244.0.0/16, ipipMode: Always}")
    v6_only = ipip.replace(
        "node1: {subnet: lan, speaker: bird}",
        "node1: {subnet: lan, speaker: bird, families: [ipv6]}",
    )
    assert plan_of(v6_only + CLASSIC).node("node1").ipv4 is None
    exabgp = ipip.replace("speaker: bird", "speaker: exabgp")
    assert plan_of(exabgp + CLASSIC).node("node1").speaker == "exabgp"
    vxlan = MESH.replace(
        "p4: {cidr: 10.244.0.0/16}", "p4: {cidr: 10.244.0.0/16, vxlanMode: Always}"
    )
    assert plan_of(vxlan + CLASSIC).node("node1").speaker == "bird"
    no_bgp = "bgp: {programClusterRoutes: Enabled, enabled: false}\n"
    assert plan_of(ipip + no_bgp).node("node1").speaker == "none"  # no BIRD runs


def test_a_disabled_ipip_pool_still_counts_when_bird_owns_ipip() -> None:
    # confd renders every pool, disabled ones too: krt_tunnel would be in the file all the same.
    text = MESH.replace(
        "p4: {cidr: 10.244.0.0/16}",
        "p4: {cidr: 10.244.0.0/16}\n  p9: {cidr: 10.9.0.0/16, ipipMode: Always, disabled: true}",
    )
    assert [p[0] for p in problems_of(text + CLASSIC)] == ["nodes.node1.speaker"]
    assert plan_of(text).node("node1").speaker == "bird"


# -- finding BIRD 1.6 ----------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    bird1_binaries.cache_clear()
    yield
    bird1_binaries.cache_clear()


def _fake_birds(folder: Path, version: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("bird", "bird6"):
        path = folder / name
        path.write_text(f"#!/bin/sh\necho 'BIRD version {version}' >&2\n")
        path.chmod(0o755)
    return folder / "bird"


def test_bird1_is_found_from_the_variable_as_binary_folder_or_package_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bird = _fake_birds(tmp_path / "root" / "usr" / "sbin", "1.6.8")
    for given in (bird, bird.parent, tmp_path / "root"):
        bird1_binaries.cache_clear()
        monkeypatch.setenv("MESHEMU_BIRD1", str(given))
        found = bird1_binaries()
        assert (found.daemon(4), found.daemon(6)) == (str(bird), str(bird.with_name("bird6")))


def test_bird2_or_nothing_is_exit_3_with_the_setup_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MESHEMU_BIRD1", str(_fake_birds(tmp_path / "two", "2.0.12")))
    with pytest.raises(EnvironmentProblem, match=r"version 2.*scripts/setup\.sh"):
        bird1_binaries()
    bird1_binaries.cache_clear()
    monkeypatch.setenv("MESHEMU_BIRD1", str(tmp_path / "none"))
    with pytest.raises(EnvironmentProblem, match=r"BIRD 1\.6 is missing.*scripts/setup\.sh"):
        bird1_binaries()
    assert EnvironmentProblem.exit_code == 3


# -- the records of a node's speaker -------------------------------------------------------------


def _proc(name: str, pid: int) -> Resource:
    return Resource("process", name, pid, pid * 10, "speaker")


def test_current_speakers_keep_bird6_only_when_started_with_the_latest_speaker() -> None:
    bird = [_proc("speaker:n1", 1), _proc("speaker6:n1", 2)]
    assert current_speakers(bird) == {"n1": bird}
    # The node became an ExaBGP node: its old bird6 record is not its speaker any more.
    exabgp = _proc("speaker:n1", 3)
    assert current_speakers([*bird, exabgp]) == {"n1": [exabgp]}
    # A record without a pid (the launcher's "starting" line) is no process.
    starting = Resource("process", "speaker:n2", None, None, "speaker-starting")
    assert current_speakers([starting, _proc("speaker:n3", 4)]) == {"n3": [_proc("speaker:n3", 4)]}


# -- BIRD's word, in the agent's shape -----------------------------------------------------------


def _captured(family: int) -> tuple[Any, Any]:
    protocols = (DATA / f"rr-client-v{family}-show-protocols-all.txt").read_text()
    routes = (DATA / f"rr-client-v{family}-show-route-all.txt").read_text()
    return (
        parse_protocols(birdc_text_lines(protocols)),
        parse_routes(birdc_text_lines(routes)),
    )


@pytest.fixture(scope="module")
def reflected() -> tuple[LabPlan, NodePlan, dict[str, Any]]:
    plan = plan_of(REFLECTED)
    node = plan.node("node1")
    protocols4, routes4 = _captured(4)
    protocols6, routes6 = _captured(6)
    report = bird_report(node, [*protocols4, *protocols6], [*routes4, *routes6])
    return plan, node, report


def test_bird_sessions_in_the_agents_shape(
    reflected: tuple[LabPlan, NodePlan, dict[str, Any]],
) -> None:
    _plan, node, report = reflected
    sessions = {s["peer_ip"]: s for s in report["sessions"]}
    assert set(sessions) == {"10.61.0.1", "10.61.0.2", "fd00:61::1", "fd00:61::2"}
    assert set(sessions) == {s.peer_ip for s in node.sessions}
    assert {s["state"] for s in sessions.values()} == {"established"}
    assert sessions["10.61.0.1"]["peer_node"] == "rr1"
    assert sessions["fd00:61::2"]["protocol"] == "Node_fd00_61__2"
    assert sessions["10.61.0.1"]["prefixes_received"] == 3


def test_bird_rib_in_the_agents_shape(reflected: tuple[LabPlan, NodePlan, dict[str, Any]]) -> None:
    _plan, node, report = reflected
    best = {e["prefix"]: e for e in report["rib"] if e["best"]}
    # Learned: each other client's block once per family, from the first reflector (lowest
    # router ID); own: the blocks confd's static protocol blackholes.
    assert best["172.21.0.64/26"] == {
        "prefix": "172.21.0.64/26",
        "next_hop": "10.61.0.4",
        "learned_from": "10.61.0.1",
        "as_path": [],
        "local_pref": 2147482623,
        "originator_id": "10.61.0.4",
        "cluster_list": ["244.0.0.1"],
        "best": True,
    }
    assert best["fd00:beef::c0/122"]["next_hop"] == "fd00:61::6"
    own = {e["prefix"] for e in report["rib"] if e["learned_from"] is None}
    assert own == {b.cidr for b in node.blocks} == {"172.21.0.0/26", "fd00:beef::/122"}
    # The second reflector's copy is there, not selected; kernel-learned pod routes are not
    # BGP routes.
    alternatives = [e for e in report["rib"] if not e["best"]]
    assert {e["learned_from"] for e in alternatives} == {"10.61.0.2", "fd00:61::2"}
    assert not any(e["prefix"].endswith(("/32", "/128")) for e in report["rib"])


def test_checks_judge_a_bird_node_from_its_report(
    reflected: tuple[LabPlan, NodePlan, dict[str, Any]],
) -> None:
    plan, node, report = reflected
    only = LabPlan(**{**plan.__dict__, "nodes": (node,)})
    sessions = check_sessions(only, {node.name: report})
    assert [r.status for r in sessions] == [PASS] * 4
    assert [r.status for r in check_rib(only, {node.name: report})] == [PASS]

    # A reflected route without its CLUSTER_LIST, or a session BIRD has not established,
    # is a failure: the report carries what BIRD said, not what the plan hopes.
    broken = copy.deepcopy(report)
    for entry in broken["rib"]:
        if entry["prefix"] == "172.21.0.128/26" and entry["best"]:
            entry["cluster_list"] = []
    rib = check_rib(only, {node.name: broken})
    assert rib[0].status == FAIL and "172.21.0.128/26" in rib[0].observed
    broken["sessions"][0]["state"] = "active"
    assert FAIL in [r.status for r in check_sessions(only, {node.name: broken})]
