"""`meshemu import clab`: containerlab topologies into the native model. Round trip (export,
import, plan) gives the original plan; hand-written containerlab files map by their labels;
what meshemu cannot map is exit 2 with the node, kind or link named."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from meshemu.errors import ConfigError
from meshemu.model.clab import labels as L
from meshemu.model.clab.export import export_clab
from meshemu.model.clab.imports import import_clab
from meshemu.model.load import load_topology, load_topology_text
from meshemu.model.plan import LabPlan, build_plan

TOPOLOGIES = Path(__file__).resolve().parents[2] / "topologies"
FILES = sorted(p for p in TOPOLOGIES.iterdir() if p.suffix in {".yaml", ".yml"})


def _plan_of(data: dict[str, Any]) -> LabPlan:
    text = yaml.safe_dump(data, sort_keys=False)
    return build_plan(load_topology_text(text, "imported", str(data["name"])))


def _round_trip(path: Path, fabric: str = "bridge") -> tuple[LabPlan, LabPlan]:
    topo = load_topology(path)
    plan = build_plan(topo)
    doc = yaml.safe_load(export_clab(plan, topo, fabric=fabric).files[0][1])  # type: ignore[arg-type]
    return plan, _plan_of(import_clab(doc, "lab.clab.yml"))


@pytest.mark.parametrize("fabric", ["bridge", "switch"])
@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_round_trip_gives_the_same_plan(path: Path, fabric: str) -> None:
    """Every field of the plan, session passwords included."""
    before, after = _round_trip(path, fabric)
    assert after.to_json(secrets=True) == before.to_json(secrets=True)


def test_round_trip_with_passwords_families_and_own_router_config(tmp_path: Path) -> None:
    """A router's own BIRD file is the one field that changes: its path is the exported copy
    (same text). Passwords, a node on one family of a dual-stack subnet, a node AS survive."""
    (tmp_path / "tor1.conf").write_text("# own\n")
    text = (TOPOLOGIES / "as-per-rack.yaml").read_text()
    text = text.replace("asNumber: 65101\n", "asNumber: 65101\n      config: tor1.conf\n", 1)
    text = text.replace(
        "node2: {subnet: rack1, labels: {rack: rack1}, asNumber: 65001}",
        "node2: {subnet: rack1, labels: {rack: rack1}, asNumber: 65001, families: [ipv4]}",
    )
    text = text.replace("      numAllowedLocalASNumbers: 1\n", "      password: s3cret\n", 1)
    assert text.count("s3cret") == 1 and "families: [ipv4]" in text
    (tmp_path / "lab.yaml").write_text(text)
    topo = load_topology(tmp_path / "lab.yaml")
    plan = build_plan(topo)
    exported = export_clab(plan, topo, router_configs={"tor1": "# own\n"})
    folder = tmp_path / "out"
    for relative, content in exported.files:
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        (folder / relative).write_text(content)
    doc = yaml.safe_load(exported.files[0][1])
    data = import_clab(doc, "x", base_dir=str(folder), out_dir=str(tmp_path))
    assert data["routers"]["tor1"]["bgp"]["config"] == "out/routers/tor1/bird.conf"
    assert data["nodes"]["node2"]["families"] == ["ipv4"]
    # Loaded as `load_topology` would, relative to where the imported topology is written.
    (tmp_path / "back.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    after = build_plan(load_topology(tmp_path / "back.yaml")).to_json(secrets=True)
    before = plan.to_json(secrets=True)
    own = [(r["name"], r["bgp"].pop("config_file")) for r in after["routers"] if r["bgp"]]
    assert ("tor1", str(folder / "routers/tor1/bird.conf")) in own
    for r in before["routers"]:
        if r["bgp"]:
            r["bgp"].pop("config_file")
    assert after == before
    assert any(s["password_text"] == "s3cret" for n in after["nodes"] for s in n["sessions"])


# ---------------------------------------------------------------------------------------------
# Hand-written containerlab files


HAND = """
name: handmade
topology:
  defaults:
    labels:
      meshemu.lab: '{"pools": {"p4": {"cidr": "10.99.0.0/16", "ipipMode": "CrossSubnet"}}}'
  kinds:
    linux:
      image: ghcr.io/srl-labs/bird:2.13
  groups:
    workers:
      kind: linux
      labels: {meshemu.role: node}
  nodes:
    lan1: {kind: bridge}
    r1:
      kind: linux
      labels: {meshemu.role: router, meshemu.as: 65000, meshemu.subnets: "lan1,wan"}
      exec: ["ip address add 10.1.0.1/24 dev eth1", "ip addr add 10.9.0.1/29 dev eth2"]
    r2:
      kind: linux
      labels: {meshemu.role: router}
      exec: ["ip address add 10.2.0.1/24 dev eth2"]
    w1:
      group: workers
      labels: {meshemu.as: "65001"}
      exec: ["ip -4 address add 10.1.0.11/24 dev eth1", "ip address add 10.99.0.5/32 dev cali1"]
    w2: {group: workers, exec: ["ip address add 10.1.0.12/24 dev eth1"]}
    w3: {group: workers}
    rr:
      kind: linux
      labels: {meshemu.role: route-reflector}
  links:
    - endpoints: ["r1:eth1", "lan1:p1"]
    - endpoints: ["w1:eth1", "lan1:p2"]
    - endpoints: ["w2:eth1", "lan1:p3"]
    - endpoints: ["r1:eth2", "r2:eth1"]
      ipv4: ["", "10.9.0.2/29"]
    - type: veth
      endpoints: [{node: r2, interface: eth2}, {node: w3, interface: eth1}]
    - endpoints: ["rr:eth1", "lan1:p4"]
"""


def test_hand_written_file() -> None:
    data = import_clab(yaml.safe_load(HAND), "hand.clab.yml")
    assert list(data["subnets"]) == ["lan1", "wan", "r2-w3"]
    assert data["subnets"] == {
        "lan1": {"ipv4": "10.1.0.0/24"},
        "wan": {"ipv4": "10.9.0.0/29"},
        "r2-w3": {"ipv4": "10.2.0.0/24"},
    }
    assert data["routers"]["r1"] == {
        "subnets": ["lan1", "wan"],
        "addresses": {"lan1": {"ipv4": "10.1.0.1"}, "wan": {"ipv4": "10.9.0.1"}},
        "bgp": {"asNumber": 65000},
    }
    assert data["routers"]["r2"]["subnets"] == ["wan", "r2-w3"]
    assert "bgp" not in data["routers"]["r2"]
    assert data["nodes"]["w1"] == {"subnet": "lan1", "ipv4": "10.1.0.11", "asNumber": 65001}
    assert data["nodes"]["w3"] == {"subnet": "r2-w3"}  # no address: meshemu picks one
    assert data["nodes"]["rr"]["routeReflectorClusterID"] == L.DEFAULT_CLUSTER_ID
    assert data["pools"]["p4"]["ipipMode"] == "CrossSubnet"
    plan = _plan_of(data)
    assert [n.name for n in plan.nodes] == ["w1", "w2", "w3", "rr"]
    assert plan.node("w3").ipv4 is not None and plan.node("w3").subnet == "r2-w3"


def _problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        import_clab(yaml.safe_load(text), "bad.clab.yml")
    return [str(p) for p in caught.value.problems]


def _hand(old: str, new: str) -> str:
    assert old in HAND
    return HAND.replace(old, new, 1)


def test_unmappable_kind_names_node_and_kind() -> None:
    [problem] = _problems(_hand("lan1: {kind: bridge}", "lan1: {kind: nokia_srlinux}"))
    assert problem.startswith("topology.nodes.lan1.kind: node 'lan1' is of kind 'nokia_srlinux'")
    assert "hint:" in problem and "linux" in problem


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("labels: {meshemu.role: route-reflector}", "labels: {}", "no meshemu.role label"),
        ("labels: {meshemu.role: route-reflector}", "labels: {meshemu.role: pe}", "'pe'"),
        ('"r1:eth1", "lan1:p1"', '"r1:eth1", "host:veth9"', "a link to 'host'"),
        ("- type: veth", "- type: macvlan", "a macvlan link meshemu cannot map"),
        ('"rr:eth1", "lan1:p4"', '"rr:eth1", "nowhere:p4"', "endpoint 'nowhere'"),
        ('"r1:eth2", "r2:eth1"', '"r1:eth2", "lan1:p9"', "disagree"),
        ("meshemu.as: 65000,", "meshemu.as: sixty,", "'sixty' is not an AS number"),
        ('{"pools"', '{"nodes": {}, "pools"', "holds 'nodes'"),
        ('{"pools"', "{pools", "meshemu.lab: is not JSON"),
        ("dev cali1", "dev eth1", "two IPv4 addresses"),
        ('ipv4: ["", "10.9.0.2/29"]', 'ipv4: ["", "10.8.0.2/29"]', "addresses disagree"),
    ],
)
def test_bad_files_are_located(old: str, new: str, expected: str) -> None:
    problems = _problems(_hand(old, new))
    assert any(expected in p for p in problems), problems


def test_not_a_topology() -> None:
    assert "no nodes" in _problems("name: x\ntopology: {}\n")[0]
    assert "is not a mapping" in _problems("- a\n")[0]


def test_labels_json_is_what_the_export_wrote() -> None:
    """The lab-wide label holds every top-level section but the structural ones."""
    topo = load_topology(TOPOLOGIES / "route-reflectors.yaml")
    doc = yaml.safe_load(export_clab(build_plan(topo), topo).files[0][1])
    lab = json.loads(doc["topology"]["defaults"]["labels"][L.LAB])
    assert not L.STRUCTURE & set(lab)
    assert lab["bgp"] == topo.bgp.model_dump(mode="json", by_alias=True, exclude_defaults=True)
