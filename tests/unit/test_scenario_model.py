"""Scenario files: shipped ones validate; scenarios that can never hold are rejected by
`load_scenario` with a located problem and a hint, before anything is created; valid ones that
look unusual (pods made by `up: {pods: N}`, a snapshot written before it is compared) pass."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest
import yaml

from meshemu.errors import ConfigError
from meshemu.model.plan import build_plan
from meshemu.scenario.evolve import apply_step_to_topology
from meshemu.scenario.model import (
    Expectation,
    Scenario,
    Step,
    check_steps,
    is_scenario_document,
    load_scenario,
    output_path,
)

ROOT = Path(__file__).resolve().parents[2]
TOPOLOGIES = ROOT / "topologies"
FLAGSHIP = TOPOLOGIES / "flagship.yaml"  # dual-stack, IPv4 IPIP CrossSubnet, IPv6 VXLAN Cross
MESH = TOPOLOGIES / "mesh.yaml"  # one subnet, IPv4 only, no encapsulation
RR = TOPOLOGIES / "route-reflectors.yaml"  # two racks, IPIP Always, IPv6 VXLAN Always

IPV6_ONLY = {
    "name": "six",
    "subnets": {"lan": {"ipv6": "fd00:1::/64"}},
    "nodes": {"node1": {"subnet": "lan"}, "node2": {"subnet": "lan"}},
    "pools": {"v6": {"cidr": "fd80::/64"}},
}

# A dual-stack subnet where node3 uses IPv4 only.
MIXED = {
    "name": "mixed",
    "subnets": {"lan": {"ipv4": "10.0.0.0/24", "ipv6": "fd00:1::/64"}},
    "nodes": {
        "node1": {"subnet": "lan"},
        "node2": {"subnet": "lan"},
        "node3": {"subnet": "lan", "families": ["ipv4"]},
    },
    "pools": {"v4": {"cidr": "10.244.0.0/16"}, "v6": {"cidr": "fd80::/64"}},
}


def write_scenario(
    folder: Path,
    steps: list[str],
    topology: Path | str = FLAGSHIP,
    extra: str = "lab: sc-test\n",
    name: str = "test",
) -> Path:
    path = folder / "scenario.yaml"
    body = "".join(f"  {step}\n" for step in steps)
    path.write_text(f"name: {name}\n{extra}topology: {topology}\nsteps:\n{body}")
    return path


def write_topology(folder: Path, data: dict[str, object]) -> Path:
    path = folder / f"{data['name']}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def rejected(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_scenario(path)
    return str(info.value)


def assert_problem(path: Path, location: str, words: str) -> None:
    text = rejected(path)
    lines = [line for line in text.splitlines() if line.startswith(location + ":")]
    assert lines, text
    assert any(words in line for line in lines), text
    assert any("hint:" in line for line in lines), text


# -- the layers -----------------------------------------------------------------------------


def _imports(module: str) -> set[str]:
    tree = ast.parse((ROOT / (module.replace(".", "/") + ".py")).read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return found


def test_scenario_model_and_evolve_do_not_import_each_other() -> None:
    model = _imports("meshemu.scenario.model")
    evolve = _imports("meshemu.scenario.evolve")
    assert not ("meshemu.scenario.evolve" in model and "meshemu.scenario.model" in evolve)
    # The runner's names stay where it imports them from.
    assert Expectation and Scenario and Step and load_scenario and check_steps
    assert apply_step_to_topology


# -- shipped scenarios ----------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted((ROOT / "scenarios").glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_scenarios_validate(path: Path) -> None:
    scenario, topo, topo_path = load_scenario(path)
    assert scenario.steps[0].kind == "up"
    assert any(step.kind == "expect" for step in scenario.steps)
    assert topo.name == scenario.lab and topo_path.is_file()
    assert is_scenario_document(path)


# -- what the old checks already caught (kept) ---------------------------------------------

BAD = {
    "unknown node": ("- link-down: {node: node9}", "steps[1].link-down.node", "unknown node"),
    "unknown pod": (
        "- expect: {reachable: {from: node1/pod7, to: node2/pod1}}",
        "steps[1].expect.reachable.from",
        "unknown pod",
    ),
    "unknown pool": (
        "- set-pool: {pool: nope, ipipMode: Always}",
        "steps[1].set-pool.pool",
        "unknown pool",
    ),
    "unknown step kind": ("- explode: {node: node1}", "steps[1]", "explode"),
    "two kinds in a step": ("- {wait: 1, link-up: {node: node1}}", "steps[1]", "exactly one"),
    "bad path": (
        "- expect: {reachable: {from: node1/pod1, to: node2/pod1, path: teleport}}",
        "steps[1].expect.reachable.path",
        "",
    ),
    "route with neither prefix nor node": (
        "- expect: {route: {node: node1}}",
        "steps[1].expect.route",
        "prefix or to",
    ),
    "via on an absent route": (
        "- expect: {route: {node: node1, to: node2, present: false, dev: eth0}}",
        "steps[1].expect.route",
        "absent",
    ),
    "removed node used later": (
        "- remove-node: {node: node2}\n  - link-down: {node: node2}",
        "steps[2].link-down.node",
        "unknown node",
    ),
    "ipip on ipv6 pool live": (
        "- set-pool: {pool: ipv6-pool, ipipMode: Always}",
        "steps[1].set-pool",
        "IPv4-only",
    ),
    "stop-reflector on a plain node": (
        "- stop-reflector: {node: node1}",
        "steps[1].stop-reflector.node",
        "not a route reflector",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_scenarios_are_located(case: str, tmp_path: Path) -> None:
    step, location, words = BAD[case]
    path = write_scenario(tmp_path, ["- up: {}", step])
    text = rejected(path)
    assert location in text and words in text, text


def test_a_step_before_up(tmp_path: Path) -> None:
    path = write_scenario(tmp_path, ["- link-down: {node: node1}", "- up: {}"])
    assert "steps[0].link-down: the lab is not up yet" in rejected(path)


def test_unknown_topology_and_bad_yaml(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("name: s\ntopology: nowhere.yaml\nsteps:\n  - up: {}\n")
    with pytest.raises(ConfigError, match="no such file"):
        load_scenario(path)
    path.write_text("name: s\nsteps: [\n")
    with pytest.raises(ConfigError, match="malformed YAML"):
        load_scenario(path)


# -- pods: what exists at each step ---------------------------------------------------------


def test_pods_made_by_up_are_known_later(tmp_path: Path) -> None:
    path = write_scenario(
        tmp_path,
        ["- up: {pods: 5}", "- expect: {reachable: {from: node1/pod3, to: node4/pod5}}"],
    )
    scenario, _topo, _ = load_scenario(path)
    assert scenario.steps[0].argument().pods == 5


def test_up_with_fewer_pods_than_the_topology(tmp_path: Path) -> None:
    path = write_scenario(
        tmp_path,
        ["- up: {pods: 1}", "- expect: {reachable: {from: node1/pod2, to: node4/pod1}}"],
    )
    assert_problem(path, "steps[1].expect.reachable.from", "unknown pod 'node1/pod2'")


def test_up_with_no_pods_has_no_pod_to_reach(tmp_path: Path) -> None:
    path = write_scenario(
        tmp_path, ["- up: {pods: 0}", "- expect: {reachable: {from: node1/pod1, to: node2/pod1}}"]
    )
    assert_problem(path, "steps[1].expect.reachable.from", "node1 has no pods")


def test_pods_follow_add_and_remove(tmp_path: Path) -> None:
    ok = write_scenario(
        tmp_path,
        [
            "- up: {pods: 3}",
            "- add-pods: {node: node1, count: 2}",
            "- expect: {reachable: {from: node1/pod5, to: node2/pod3}}",
            "- remove-pods: {node: node1, count: 4}",
            "- expect: {reachable: {from: node1/pod1, to: node2/pod3}}",
        ],
    )
    load_scenario(ok)
    bad = write_scenario(
        tmp_path,
        [
            "- up: {pods: 3}",
            "- remove-pods: {node: node1, count: 2}",
            "- expect: {reachable: {from: node2/pod1, to: node1/pod2}}",
        ],
    )
    assert_problem(bad, "steps[2].expect.reachable.to", "unknown pod 'node1/pod2'")


def test_a_pod_reference_without_a_pod(tmp_path: Path) -> None:
    path = write_scenario(
        tmp_path, ["- up: {}", "- expect: {reachable: {from: node1, to: node2/pod1}}"]
    )
    assert_problem(path, "steps[1].expect.reachable.from", "node/pod")


# -- address families -----------------------------------------------------------------------

FAMILY_CASES = {
    "ipv6 reachable on an IPv4-only lab": (
        MESH,
        "- expect: {reachable: {from: node1/pod1, to: node2/pod1, family: ipv6}}",
        "steps[1].expect.reachable.family",
        "no IPv6",
    ),
    "ipv6 unreachable on an IPv4-only lab": (
        MESH,
        "- expect: {reachable: {from: node1/pod1, to: node2/pod1, family: ipv6, reachable: false}}",
        "steps[1].expect.reachable.family",
        "no IPv6",
    ),
    "ipv6 route prefix on an IPv4-only lab": (
        MESH,
        "- expect: {route: {node: node1, prefix: 'fd00::/64'}}",
        "steps[1].expect.route.prefix",
        "no IPv6",
    ),
    "ipv6 route to a node's blocks on an IPv4-only lab": (
        MESH,
        "- expect: {route: {node: node1, to: node2, family: ipv6}}",
        "steps[1].expect.route.family",
        "no IPv6",
    ),
    "ipv6 session on an IPv4-only lab": (
        MESH,
        "- expect: {session: {node: node1, peer: node2, family: ipv6}}",
        "steps[1].expect.session.family",
        "no IPv6",
    ),
    "ipv6 session peer address on an IPv4-only lab": (
        MESH,
        "- expect: {session: {node: node1, peer: 'fd00::1', state: down}}",
        "steps[1].expect.session.peer",
        "no IPv6",
    ),
    "ipv4 reachable on an IPv6-only lab": (
        "six",
        "- expect: {reachable: {from: node1/pod1, to: node2/pod1}}",
        "steps[1].expect.reachable.family",
        "no IPv4",
    ),
    "ipv4 route prefix on an IPv6-only lab": (
        "six",
        "- expect: {route: {node: node1, prefix: 10.0.0.0/24, family: ipv6}}",
        "steps[1].expect.route.prefix",
        "no IPv4",
    ),
    "ipv6 pod of an IPv4-only node": (
        "mixed",
        "- expect: {reachable: {from: node1/pod1, to: node3/pod1, family: ipv6}}",
        "steps[1].expect.reachable.to",
        "no IPv6 address",
    ),
    "ipv6 route on an IPv4-only node": (
        "mixed",
        "- expect: {route: {node: node3, to: node1, family: ipv6}}",
        "steps[1].expect.route.node",
        "no IPv6",
    ),
    "ipv6 blocks of an IPv4-only node": (
        "mixed",
        "- expect: {route: {node: node1, to: node3, family: ipv6}}",
        "steps[1].expect.route.to",
        "no IPv6 block",
    ),
    "ipv6 session with an IPv4-only node": (
        "mixed",
        "- expect: {session: {node: node1, peer: node3, family: ipv6}}",
        "steps[1].expect.session.peer",
        "no IPv6",
    ),
    "via a node in the prefix's other family": (
        FLAGSHIP,
        "- expect: {route: {node: node1, prefix: 'fd80:24e2:f998:72d7::/64', via: node2}}",
        "steps[1].expect.route.via",
        "family",
    ),
    "via an address of the other family": (
        FLAGSHIP,
        "- expect: {route: {node: node1, to: node2, family: ipv6, via: 10.10.1.3}}",
        "steps[1].expect.route.via",
        "IPv4",
    ),
}


def _topology_for(ref: Path | str, folder: Path) -> Path:
    if isinstance(ref, Path):
        return ref
    return write_topology(folder, IPV6_ONLY if ref == "six" else MIXED)


@pytest.mark.parametrize("case", sorted(FAMILY_CASES))
def test_expectations_in_a_family_the_lab_lacks(case: str, tmp_path: Path) -> None:
    topology, step, location, words = FAMILY_CASES[case]
    path = write_scenario(tmp_path, ["- up: {}", step], _topology_for(topology, tmp_path))
    assert_problem(path, location, words)


def test_expectations_in_the_families_the_lab_has(tmp_path: Path) -> None:
    mixed = write_topology(tmp_path, MIXED)
    path = write_scenario(
        tmp_path,
        [
            "- up: {}",
            "- expect: {reachable: {from: node1/pod1, to: node2/pod1, family: ipv6}}",
            "- expect: {reachable: {from: node1/pod1, to: node3/pod1, family: ipv4}}",
            "- expect: {route: {node: node1, to: node2, family: ipv6, via: node2}}",
            "- expect: {route: {node: node3, prefix: 10.0.0.0/24}}",
            "- expect: {session: {node: node1, peer: node2, family: ipv6}}",
            "- expect: {session: {node: node1, peer: node3}}",
        ],
        mixed,
    )
    load_scenario(path)
    six = write_topology(tmp_path, IPV6_ONLY)
    path = write_scenario(
        tmp_path,
        [
            "- up: {}",
            "- expect: {reachable: {from: node1/pod1, to: node2/pod1, family: ipv6}}",
            "- expect: {route: {node: node1, prefix: 'fd80::/122', family: ipv6}}",
            "- expect: {session: {node: node1, peer: 'fd00:1::2'}}",
        ],
        six,
    )
    load_scenario(path)


# -- paths ----------------------------------------------------------------------------------

PATH_CASES = {
    "vxlan where no pool uses VXLAN": (
        MESH,
        "{from: node1/pod1, to: node2/pod1, path: vxlan}",
        "VXLAN",
    ),
    "vxlan for IPv4 when only the IPv6 pool uses VXLAN": (
        FLAGSHIP,
        "{from: node1/pod1, to: node3/pod1, path: vxlan}",
        "VXLAN",
    ),
    "ipip where no pool uses IPIP": (
        MESH,
        "{from: node1/pod1, to: node2/pod1, path: ipip}",
        "IPIP",
    ),
    "ipip for IPv6": (
        FLAGSHIP,
        "{from: node1/pod1, to: node3/pod1, family: ipv6, path: ipip}",
        "IPIP",
    ),
    "ipip CrossSubnet inside one subnet": (
        FLAGSHIP,
        "{from: node1/pod1, to: node2/pod1, path: ipip}",
        "same subnet",
    ),
    "vxlan CrossSubnet inside one subnet": (
        FLAGSHIP,
        "{from: node1/pod1, to: node2/pod1, family: ipv6, path: vxlan}",
        "same subnet",
    ),
    "router between nodes of one subnet": (
        MESH,
        "{from: node1/pod1, to: node2/pod1, path: router}",
        "same subnet",
    ),
    "direct where the pool always encapsulates": (
        RR,
        "{from: node1/pod1, to: node2/pod1, path: direct}",
        "Always",
    ),
    "a path other than local inside one node": (
        FLAGSHIP,
        "{from: node1/pod1, to: node1/pod2, path: direct}",
        "local",
    ),
    "local between two nodes": (
        FLAGSHIP,
        "{from: node1/pod1, to: node2/pod1, path: local}",
        "local",
    ),
}


@pytest.mark.parametrize("case", sorted(PATH_CASES))
def test_paths_that_can_never_be_seen(case: str, tmp_path: Path) -> None:
    topology, reach, words = PATH_CASES[case]
    path = write_scenario(tmp_path, ["- up: {}", f"- expect: {{reachable: {reach}}}"], topology)
    assert_problem(path, "steps[1].expect.reachable.path", words)


def test_paths_follow_live_pool_changes(tmp_path: Path) -> None:
    path = write_scenario(
        tmp_path,
        [
            "- up: {}",
            "- expect: {reachable: {from: node1/pod1, to: node2/pod1, path: ipip}}",
            "- set-pool: {pool: ipv4-pool, ipipMode: CrossSubnet}",
            "- expect: {reachable: {from: node1/pod1, to: node2/pod1, path: ipip}}",
        ],
        RR,
    )
    assert_problem(path, "steps[3].expect.reachable.path", "same subnet")
    assert "steps[1]" not in rejected(path)


def test_a_path_in_an_unreachable_expectation_is_not_judged(tmp_path: Path) -> None:
    path = write_scenario(
        tmp_path,
        [
            "- up: {}",
            "- expect: {reachable: {from: node1/pod1, to: node2/pod1, path: router, "
            "reachable: false}}",
        ],
        MESH,
    )
    load_scenario(path)


def test_an_ipip_pool_on_a_lab_started_without_ipip(tmp_path: Path) -> None:
    path = write_scenario(
        tmp_path, ["- up: {}", "- add-pool: {name: t, cidr: 10.99.0.0/16, ipipMode: Always}"], MESH
    )
    assert_problem(path, "steps[1].add-pool", "without IP-in-IP")
    path = write_scenario(
        tmp_path, ["- up: {}", "- set-pool: {pool: default-ipv4, ipipMode: CrossSubnet}"], MESH
    )
    assert_problem(path, "steps[1].set-pool", "without IP-in-IP")


# -- snapshots and other files --------------------------------------------------------------


def test_a_snapshot_that_does_not_exist(tmp_path: Path) -> None:
    path = write_scenario(tmp_path, ["- up: {}", "- expect: {snapshot: {file: gone.json}}"])
    assert_problem(path, "steps[1].expect.snapshot.file", "no such file")


def test_a_snapshot_written_earlier_in_the_scenario(tmp_path: Path) -> None:
    path = write_scenario(
        tmp_path,
        [
            "- up: {}",
            "- write-snapshot: {file: snaps/base.json}",
            "- expect: {snapshot: {file: ./snaps/../snaps/base.json}}",
        ],
    )
    (tmp_path / "snaps").mkdir()
    load_scenario(path)


def test_a_snapshot_compared_before_it_is_written(tmp_path: Path) -> None:
    path = write_scenario(
        tmp_path,
        [
            "- up: {}",
            "- expect: {snapshot: {file: base.json}}",
            "- write-snapshot: {file: base.json}",
        ],
    )
    assert_problem(path, "steps[1].expect.snapshot.file", "no such file")


def test_a_snapshot_that_is_not_a_snapshot(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text("{not json")
    path = write_scenario(tmp_path, ["- up: {}", "- expect: {snapshot: {file: bad.json}}"])
    assert_problem(path, "steps[1].expect.snapshot.file", "bad.json")


@pytest.mark.timeout(20)
def test_a_snapshot_that_is_a_fifo(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.json")
    path = write_scenario(tmp_path, ["- up: {}", "- expect: {snapshot: {file: pipe.json}}"])
    assert_problem(path, "steps[1].expect.snapshot.file", "not a regular file")


OUTSIDE = {
    "absolute": "/tmp/meshemu-outside.json",
    "dot-dot": "../outside.json",
    "deep dot-dot": "sub/../../outside.json",
    "symlinked folder": "link/outside.json",
    "symlinked file": "out.json",
    "missing folder": "nowhere/x.json",
    "the folder itself": ".",
    "a folder": "sub",
    "empty": "''",
}


@pytest.mark.parametrize("case", sorted(OUTSIDE))
def test_snapshots_are_written_inside_the_scenario_folder(case: str, tmp_path: Path) -> None:
    folder = tmp_path / "scenario"
    (folder / "sub").mkdir(parents=True)
    (folder / "link").symlink_to(tmp_path)
    (folder / "out.json").symlink_to(tmp_path / "victim.json")
    path = write_scenario(folder, ["- up: {}", f"- write-snapshot: {{file: {OUTSIDE[case]}}}"])
    assert_problem(path, "steps[1].write-snapshot.file", "")
    assert not (tmp_path / "outside.json").exists() and not (tmp_path / "victim.json").exists()


def test_a_snapshot_written_inside_the_folder(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    path = write_scenario(
        tmp_path,
        ["- up: {}", "- write-snapshot: {file: sub/a.json}", "- write-snapshot: {file: b}"],
    )
    load_scenario(path)
    assert output_path(tmp_path, "sub/a.json") == (tmp_path / "sub" / "a.json").resolve()
    with pytest.raises(ConfigError):
        output_path(tmp_path, "../a.json")


# -- nodes added to a running lab -----------------------------------------------------------

ADDED = {
    "a running node's address": (
        MESH,
        "{name: node5, subnet: lan, ipv4: 10.20.0.2}",
        "steps[1].add-node.ipv4",
        "node2",
    ),
    "a router's address": (
        RR,
        "{name: node5, subnet: rack1, ipv4: 10.30.1.1}",
        "steps[1].add-node.ipv4",
        "spine",
    ),
    "a running node's IPv6 address": (
        RR,
        "{name: node5, subnet: rack1, ipv6: 'fd00:30:1::3'}",
        "steps[1].add-node.ipv6",
        "node1",
    ),
}


@pytest.mark.parametrize("case", sorted(ADDED))
def test_an_added_node_never_takes_a_running_address(case: str, tmp_path: Path) -> None:
    topology, node, location, holder = ADDED[case]
    path = write_scenario(tmp_path, ["- up: {}", f"- add-node: {node}"], topology)
    assert_problem(path, location, holder)


def test_an_added_node_may_take_a_removed_nodes_address(tmp_path: Path) -> None:
    path = write_scenario(
        tmp_path,
        [
            "- up: {}",
            "- remove-node: {node: node2}",
            "- add-node: {name: node5, subnet: lan, ipv4: 10.20.0.2}",
            "- add-node: {name: node6, subnet: lan}",
            "- expect: {session: {node: node1, peer: node6}}",
        ],
        MESH,
    )
    load_scenario(path)


# -- names ----------------------------------------------------------------------------------

LAB_NAMES = {
    "a path": "lab: ../x\n",
    "the current folder": "lab: .\n",
    "a trailing newline": 'lab: "ok\\n"\n',
    "upper case": "lab: Lab\n",
    "too long": "lab: abcdefghijklmnop\n",
    "not text": "lab: 12\n",
}


@pytest.mark.parametrize("case", sorted(LAB_NAMES))
def test_the_lab_name_is_a_lab_name(case: str, tmp_path: Path) -> None:
    path = write_scenario(tmp_path, ["- up: {}"], MESH, extra=LAB_NAMES[case])
    assert_problem(path, "lab", "lab name")


def test_a_scenario_name_that_makes_no_lab_name(tmp_path: Path) -> None:
    path = write_scenario(tmp_path, ["- up: {}"], MESH, extra="", name="'My Test'")
    assert_problem(path, "name", "lab name")
    good = write_scenario(tmp_path, ["- up: {}"], MESH, extra="", name="link-failure-long")
    _scenario, topo, _ = load_scenario(good)
    assert topo.name == "sc-link-fail"


# -- the whole lab is planned before anything is created ------------------------------------


def test_a_topology_that_cannot_be_planned(tmp_path: Path) -> None:
    small = {
        "name": "small",
        "subnets": {"lan": {"ipv4": "10.0.0.0/29"}},  # room for six nodes
        "nodes": {"node1": {"subnet": "lan"}, "node2": {"subnet": "lan"}},
        # Two blocks of four addresses: one block a node.
        "pools": {"v4": {"cidr": "10.244.0.0/29", "blockSize": 30}},
    }
    topo = write_topology(tmp_path, small | {"ipam": {"strictAffinity": True}})
    path = write_scenario(tmp_path, ["- up: {pods: 5}"], topo)
    assert_problem(path, "steps[0].up", "strict affinity")
    # At run time (a live change) Calico's CNI fails only the pods it cannot address: the
    # scenario is not refused, the live plan notes the pods that are not created.
    path = write_scenario(tmp_path, ["- up: {}", "- add-pods: {node: node1, count: 3}"], topo)
    _, live_topo, _ = load_scenario(path)
    step = Step.model_validate({"add-pods": {"node": "node1", "count": 3}})
    running = build_plan(live_topo)
    live = build_plan(apply_step_to_topology(live_topo, step, running), previous=running)
    assert [p.ipv4 for p in live.node("node1").pods] == [f"10.244.0.{i}" for i in range(4)]
    assert any(n.startswith("node1: pod5 is not created") for n in live.notes), live.notes
    topo = write_topology(tmp_path, small | {"pools": {"v4": {"cidr": "10.244.0.0/16"}}})
    add = [f"- add-node: {{name: node{i}, subnet: lan}}" for i in range(3, 8)]
    path = write_scenario(tmp_path, ["- up: {}", *add], topo)
    assert_problem(path, "steps[5].add-node", "room for 6")
    assert "steps[4]" not in rejected(path)


def test_check_steps_takes_the_scenario_and_its_topology(tmp_path: Path) -> None:
    path = write_scenario(tmp_path, ["- up: {}", "- expect: {converged: {}}"], MESH)
    scenario, topo, _ = load_scenario(path)
    assert check_steps(scenario, topo) == []
    step = Step.model_validate({"add-pods": {"node": "node1", "count": 3}})
    assert apply_step_to_topology(topo, step).nodes["node1"].pods == 5


# -- text that can never match what the lab reports ------------------------------------------

TEXT_CASES = {
    "a prefix with host bits": (
        "- expect: {route: {node: node1, prefix: 10.10.1.5/24}}",
        "steps[1].expect.route.prefix",
        "10.10.1.0/24",
    ),
    "a next hop written the long way": (
        "- expect: {route: {node: node1, to: node2, family: ipv6, via: 'fd00:10:1:0::3'}}",
        "steps[1].expect.route.via",
        "fd00:10:1::3",
    ),
    "a next hop that is a prefix": (
        "- expect: {route: {node: node1, to: node2, via: 10.10.1.0/24}}",
        "steps[1].expect.route.via",
        "neither a node nor an address",
    ),
    "a peer written the long way": (
        "- expect: {session: {node: node1, peer: 'FD00:10:1::3', family: ipv6}}",
        "steps[1].expect.session.peer",
        "fd00:10:1::3",
    ),
    "a peer that is a prefix": (
        "- expect: {session: {node: node1, peer: 10.10.1.0/24}}",
        "steps[1].expect.session.peer",
        "unknown peer",
    ),
    "a step name with a control character": (
        '- {name: "red\\e[31m", wait: 1}',
        "steps[1].name",
        "printable",
    ),
    "a step name with a newline": ('- {name: "two\\nlines", wait: 1}', "steps[1].name", ""),
}


@pytest.mark.parametrize("case", sorted(TEXT_CASES))
def test_text_that_can_never_match(case: str, tmp_path: Path) -> None:
    step, location, words = TEXT_CASES[case]
    path = write_scenario(tmp_path, ["- up: {}", step])
    text = rejected(path)
    assert any(line.startswith(location + ":") and words in line for line in text.splitlines()), (
        text
    )


def test_a_scenario_name_is_one_printable_line(tmp_path: Path) -> None:
    path = write_scenario(tmp_path, ["- up: {}"], MESH, name='"a\\x07b"')
    assert "name:" in rejected(path)
    path = write_scenario(tmp_path, ["- up: {}"], MESH, name="x" * 300)
    assert "name:" in rejected(path)


def test_long_file_names_are_shortened_in_messages(tmp_path: Path) -> None:
    long = "a" * 5000
    path = write_scenario(
        tmp_path,
        [
            "- up: {}",
            f"- write-snapshot: {{file: {long}}}",
            f"- expect: {{snapshot: {{file: {long}}}}}",
        ],
        topology=long,
    )
    text = rejected(path)
    assert text.startswith("topology:") and len(text) < 1000, text
    path = write_scenario(
        tmp_path,
        [
            "- up: {}",
            f"- write-snapshot: {{file: {long}}}",
            f"- expect: {{snapshot: {{file: {long}x}}}}",
        ],
        topology=MESH,
    )
    text = rejected(path)
    assert "steps[1].write-snapshot.file" in text and "steps[2].expect.snapshot.file" in text
    assert len(text) < 2000, text
