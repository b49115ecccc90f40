"""Every example in topologies/ validates and plans; the Calico bundle plans like a native file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from meshemu.cli import main
from meshemu.model.ipam import plan_borrowed
from meshemu.model.load import load_topology
from meshemu.model.phases.rib import exported_borrowed
from meshemu.model.plan import LabPlan, build_plan

TOPOLOGIES = Path(__file__).resolve().parents[2] / "topologies"
FILES = sorted(p for p in TOPOLOGIES.iterdir() if p.suffix in {".yaml", ".yml"})


def test_examples_exist() -> None:
    names = {p.name for p in FILES}
    assert {"flagship.yaml", "mesh.yaml", "route-reflectors.yaml", "calico-bundle.yaml"} <= names


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_example_validates(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["validate", str(path)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert out.startswith("valid: lab ")
    assert err == ""


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_example_plans(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan = build_plan(load_topology(path))
    assert plan.nodes
    bgp = all(n.speaker != "none" for n in plan.nodes)  # (a lab without BGP has no sessions)
    assert (sum(len(n.sessions) for n in plan.nodes) > 0) == bgp
    for node in plan.nodes:
        # Every node with pods blackholes exactly its own blocks.
        holes = {r.prefix for r in node.fib if r.type == "blackhole"}
        assert holes == {b.cidr for b in node.blocks}
        for route in node.fib:
            if route.type == "unicast":
                assert route.dev, route
    # Every node learns every other node's blocks (all examples are meant to work), besides
    # the Service prefixes nodes advertise; without BGP, it has a Felix route to each instead.
    services = (
        {p for held in plan.services.advertised.values() for p in held} if plan.services else set()
    )
    borrowed = {o: exported_borrowed(held, plan.pools) for o, held in plan_borrowed(plan).items()}
    for node in plan.nodes:
        learned = {r.prefix for r in node.rib if r.learned_from is not None} - services
        if not bgp:
            assert not node.rib
            learned = {r.prefix for r in node.fib if r.source == "felix"}
        others = {b.cidr for o in plan.nodes if o is not node for b in o.blocks}
        if bgp:  # and the host routes of pod addresses other nodes borrowed (BIRD exports them)
            others |= {b.prefix for o, held in borrowed.items() if o != node.name for b in held}
        assert learned == others, node.name
    # Only the notes an example shows on purpose: BGP off, and the classic (deprecated) setting.
    expected = ("BGP is off", "warning: bgp.programClusterRoutes: BIRD programs the IP-in-IP")
    assert not [n for n in plan.notes if not n.startswith(expected)], plan.notes
    code = main(["plan", str(path), "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert json.loads(out) == json.loads(json.dumps(plan.to_json()))


@pytest.fixture(scope="module")
def bundle() -> LabPlan:
    return build_plan(load_topology(TOPOLOGIES / "calico-bundle.yaml"))


def test_bundle_plan(bundle: LabPlan) -> None:
    assert bundle.name == "calico-bundl"  # file stem cut to 12 characters
    assert [n.name for n in bundle.nodes] == ["worker-a1", "worker-a2", "worker-b1"]
    # Addresses and subnets come from each Node's bgp.ipv4Address / ipv6Address.
    assert [(n.ipv4, n.ipv6) for n in bundle.nodes] == [
        ("10.40.1.11", "fd00:40:1::11"),
        ("10.40.1.12", "fd00:40:1::12"),
        ("10.40.2.11", "fd00:40:2::11"),
    ]
    assert [n.ipv4_prefix for n in bundle.nodes] == ["10.40.1.0/24"] * 2 + ["10.40.2.0/24"]
    # meshemu supplies one router between the two subnets and two pods per node.
    assert len(bundle.routers) == 1
    assert {i.subnet for i in bundle.routers[0].interfaces} == {n.subnet for n in bundle.nodes}
    assert all(len(n.pods) == 2 for n in bundle.nodes)
    assert bundle.mesh and bundle.as_number == 64512
    # Read but not emulated, listed by name.
    assert any("logSeverityScreen" in loc for loc, _ in bundle.unsupported)


def test_bundle_sessions_and_routes(bundle: LabPlan) -> None:
    a1 = bundle.node("worker-a1")
    assert len(a1.sessions) == 4  # 2 peers x 2 families
    assert {s.kind for s in a1.sessions} == {"mesh"}
    routes = {r.prefix: r for r in a1.fib}
    b1, a2 = bundle.node("worker-b1"), bundle.node("worker-a2")
    v4_b1 = next(b.cidr for b in b1.blocks if "." in b.cidr)
    v6_b1 = next(b.cidr for b in b1.blocks if ":" in b.cidr)
    v4_a2 = next(b.cidr for b in a2.blocks if "." in b.cidr)
    v6_a2 = next(b.cidr for b in a2.blocks if ":" in b.cidr)
    assert (routes[v4_b1].via, routes[v4_b1].dev, routes[v4_b1].onlink) == (
        "10.40.2.11",
        "tunl0",
        True,
    )
    assert (routes[v4_a2].via, routes[v4_a2].dev) == ("10.40.1.12", "eth0")
    assert routes[v6_b1].dev == "vxlan-v6.calico" and routes[v6_b1].onlink
    assert routes[v6_b1].via == b1.vteps[0].address
    assert (routes[v6_a2].via, routes[v6_a2].dev) == ("fd00:40:1::12", "eth0")


def test_bundle_and_native_give_the_same_plan(tmp_path: Path) -> None:
    """The same cluster written both ways plans to the same sessions and routes."""
    native = tmp_path / "native.yaml"
    native.write_text(
        """
name: calico-bundl
subnets:
  rack-a: {ipv4: 10.40.1.0/24, ipv6: 'fd00:40:1::/64'}
  rack-b: {ipv4: 10.40.2.0/24, ipv6: 'fd00:40:2::/64'}
routers:
  router: {subnets: [rack-a, rack-b]}
nodes:
  worker-a1:
    subnet: rack-a
    ipv4: 10.40.1.11
    ipv6: 'fd00:40:1::11'
    labels: {topology.kubernetes.io/zone: zone-a}
  worker-a2:
    subnet: rack-a
    ipv4: 10.40.1.12
    ipv6: 'fd00:40:1::12'
    labels: {topology.kubernetes.io/zone: zone-a}
  worker-b1:
    subnet: rack-b
    ipv4: 10.40.2.11
    ipv6: 'fd00:40:2::11'
    labels: {topology.kubernetes.io/zone: zone-b}
pools:
  default-ipv4-ippool: {cidr: 192.168.128.0/18, blockSize: 26, ipipMode: CrossSubnet,
                        natOutgoing: true}
  default-ipv6-ippool: {cidr: 'fd80:40::/64', blockSize: 122, vxlanMode: CrossSubnet}
bgp: {asNumber: 64512, nodeToNodeMeshEnabled: true}
"""
    )
    from_native = build_plan(load_topology(native))
    from_bundle = build_plan(load_topology(TOPOLOGIES / "calico-bundle.yaml"))
    assert len(from_native.nodes) == len(from_bundle.nodes)
    for a, b in zip(from_native.nodes, from_bundle.nodes, strict=True):
        assert (a.name, a.ipv4, a.ipv6) == (b.name, b.ipv4, b.ipv6)
        assert [b_.cidr for b_ in a.blocks] == [b_.cidr for b_ in b.blocks]
        assert a.sessions == b.sessions
        assert [r.key() for r in a.fib] == [r.key() for r in b.fib]


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_pods_option(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    default = build_plan(load_topology(path))
    three = build_plan(load_topology(path, pods_per_node=3))
    assert all(len(n.pods) == 3 for n in three.nodes)
    assert [len(n.pods) for n in default.nodes] != [3] * len(default.nodes)
    code = main(["plan", str(path), "--json", "--pods", "3"])
    out, _ = capsys.readouterr()
    assert code == 0
    assert [len(n["pods"]) for n in json.loads(out)["nodes"]] == [3] * len(three.nodes)


def test_bundle_default_two_pods_and_option(capsys: pytest.CaptureFixture[str]) -> None:
    path = str(TOPOLOGIES / "calico-bundle.yaml")
    code = main(["validate", path])
    out, _ = capsys.readouterr()
    assert code == 0 and "6 pods" in out
    code = main(["validate", path, "--pods", "3"])
    out, _ = capsys.readouterr()
    assert code == 0 and "9 pods" in out
