"""`meshemu export clab`: every shipped lab as a containerlab topology that containerlab's
schema accepts, with the plan's addresses and Felix's routes, and BIRD files that BIRD parses
(the command itself: test_clab_cli.py)."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from meshemu.model.bird_router import render_router_config
from meshemu.model.calico_bird import render_node_bird
from meshemu.model.clab import labels as L
from meshemu.model.clab.export import READY, ClabExport, export_clab
from meshemu.model.load import load_topology
from meshemu.model.plan import LabPlan, build_plan
from meshemu.model.topology import Topology

ROOT = Path(__file__).resolve().parents[2]
TOPOLOGIES = ROOT / "topologies"
# As tests/conftest.py finds ../shared (MESHEMU_SHARED may point elsewhere).
SCHEMA = (
    Path(os.environ.get("MESHEMU_SHARED", ROOT.parent / "shared")) / "schemas" / "clab.schema.json"
)
FILES = sorted(p for p in TOPOLOGIES.iterdir() if p.suffix in {".yaml", ".yml"})


def _lab(path: Path) -> tuple[LabPlan, Topology]:
    topo = load_topology(path)
    return build_plan(topo), topo


def _doc(result: ClabExport) -> dict[str, Any]:
    name, text = result.files[0]
    assert name == result.topology_file
    data: dict[str, Any] = yaml.safe_load(text)
    return data


@pytest.fixture
def validator(require_shared: Callable[[Path, str], Path]) -> jsonschema.Draft7Validator:
    path = require_shared(SCHEMA, "containerlab schema")
    return jsonschema.Draft7Validator(json.loads(path.read_text()))


@pytest.mark.parametrize("fabric", ["bridge", "switch"])
@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_every_shipped_lab_validates(
    path: Path, fabric: str, validator: jsonschema.Draft7Validator
) -> None:
    plan, topo = _lab(path)
    doc = _doc(export_clab(plan, topo, fabric=fabric))  # type: ignore[arg-type]
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(doc)]
    assert errors == []
    assert doc["name"] == plan.name
    assert set(doc["topology"]["nodes"]) >= {n.name for n in plan.nodes}


def test_the_schema_check_can_fail(validator: jsonschema.Draft7Validator) -> None:
    """The validator is containerlab's: what containerlab refuses, it refuses too."""
    doc = _doc(export_clab(*_lab(TOPOLOGIES / "mesh.yaml")))
    assert list(validator.iter_errors(doc)) == []
    for field, value in (("kind", "calico"), ("labels", {"meshemu.role": ""}), ("bogus", 1)):
        broken = json.loads(json.dumps(doc))
        broken["topology"]["nodes"]["node1"][field] = value
        assert list(validator.iter_errors(broken)), field


def test_subnets_as_bridges_or_links() -> None:
    """as-per-rack: two racks of three members (bridges), two uplinks of two (links)."""
    plan, topo = _lab(TOPOLOGIES / "as-per-rack.yaml")
    result = export_clab(plan, topo)
    doc = _doc(result)
    nodes, links = doc["topology"]["nodes"], doc["topology"]["links"]
    bridges = {k: v for k, v in nodes.items() if v["kind"] == "bridge"}
    assert {v["labels"][L.SUBNET] for v in bridges.values()} == {"rack1", "rack2"}
    assert result.bridges == tuple(bridges)
    assert all(len(b) <= 15 for b in result.bridges)  # host interface names
    direct = [
        ln["endpoints"]
        for ln in links
        if not any(e.split(":")[0] in bridges for e in ln["endpoints"])
    ]
    assert direct == [["tor1:eth2", "spine:eth1"], ["tor2:eth2", "spine:eth2"]]
    script = dict(result.files)["bridges.sh"]
    assert all(b in script for b in result.bridges)


def test_switch_fabric_has_point_to_point_links_only() -> None:
    """clabernetes refuses bridge nodes: with --fabric switch every link joins containers."""
    plan, topo = _lab(TOPOLOGIES / "flagship.yaml")
    result = export_clab(plan, topo, fabric="switch")
    nodes = _doc(result)["topology"]["nodes"]
    assert all(n["kind"] == "linux" for n in nodes.values())
    switches = [n for n in nodes.values() if n["labels"][L.ROLE] == L.SWITCH]
    assert [s["labels"][L.SUBNET] for s in switches] == ["rack1", "rack2"]
    # rack1: spine, node1, node2 on the switch's eth1..eth3, bridged by br0.
    assert "ip link set eth3 master br0" in switches[0]["exec"]
    assert result.bridges == ()
    assert "bridges.sh" not in dict(result.files)


def test_addresses_routes_and_pods_are_the_plans() -> None:
    plan, topo = _lab(TOPOLOGIES / "flagship.yaml")
    nodes = _doc(export_clab(plan, topo))["topology"]["nodes"]
    node1 = plan.node("node1")
    exec_ = nodes["node1"]["exec"]
    assert f"ip address add {node1.ipv4}/24 dev eth1" in exec_
    assert f"ip -6 address add {node1.ipv6}/64 dev eth1 nodad" in exec_
    assert f"ip route replace default via {node1.gateway4} dev eth1" in exec_
    assert exec_[-1] == f"touch {READY}"
    for pod in node1.pods:
        assert f"ip address add {pod.ipv4}/32 dev {pod.host_ifname}" in exec_
    # Felix's routes: IPIP CrossSubnet across racks, direct inside; VXLAN for IPv6.
    for route in node1.fib:
        if route.dev in ("tunl0", "vxlan-v6.calico"):
            assert f"{route.prefix} via {route.via} dev {route.dev} onlink" in " ".join(exec_)
    assert any("vxlan-v6.calico type vxlan id 4096 dstport 4789" in c for c in exec_)
    assert f"ip address add {node1.ipip_tunnel_address}/32 dev tunl0" in exec_
    spine = plan.routers[0]
    for i, iface in enumerate(spine.interfaces):
        assert f"ip address add {iface.ipv4}/24 dev eth{i + 1}" in nodes["spine"]["exec"]


def test_no_felix_routes_for_unencapsulated_pools() -> None:
    """as-per-rack's pools do not encapsulate: BIRD programs their routes, Felix none."""
    plan, topo = _lab(TOPOLOGIES / "as-per-rack.yaml")
    nodes = _doc(export_clab(plan, topo))["topology"]["nodes"]
    for node in plan.nodes:
        text = " ".join(nodes[node.name]["exec"])
        assert "tunl0" not in text and "vxlan" not in text
        assert not any(block.cidr in text for block in node.blocks)


def test_bird_files_are_the_renderers() -> None:
    plan, topo = _lab(TOPOLOGIES / "as-per-rack.yaml")
    result = export_clab(plan, topo)
    files = dict(result.files)
    nodes = _doc(result)["topology"]["nodes"]
    for router in plan.routers:
        assert files[f"routers/{router.name}/bird.conf"] == render_router_config(
            router, plan.hold_time
        )
        assert nodes[router.name]["binds"] == [
            f"./routers/{router.name}/bird.conf:/etc/bird.conf:ro"
        ]
    for node in plan.nodes:
        for family in (4, 6):
            for name, text in render_node_bird(plan, node.name, family, bgp=topo.bgp).items():
                assert files[f"nodes/{node.name}/{name}"] == text
                bind = f"./nodes/{node.name}/{name}:/etc/calico/confd/config/{name}:ro"
                assert bind in nodes[node.name]["binds"]
        # calico-node's command line, after the exec commands' marker.
        assert "exec bird6 -s /var/run/calico/bird6.ctl -d" in nodes[node.name]["cmd"]
        assert nodes[node.name]["cmd"].startswith(f"-c 'until [ -e {READY} ]")


def test_exported_bird_files_parse(tmp_path: Path) -> None:
    """BIRD itself reads what the containers mount (includes resolve beside bird.cfg)."""
    from meshemu.controlplane.bird_tools import bird1_binaries, bird_binary
    from meshemu.errors import EnvironmentProblem

    try:
        bird1, bird2 = bird1_binaries(), bird_binary()
    except EnvironmentProblem as err:
        pytest.skip(str(err))
    plan, topo = _lab(TOPOLOGIES / "as-per-rack-ibgp.yaml")
    for relative, text in export_clab(plan, topo).files:
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text(text)
    checks = [(bird2, p) for p in tmp_path.glob("routers/*/bird.conf")]
    checks += [(bird1.bird, p) for p in tmp_path.glob("nodes/*/bird.cfg")]
    checks += [(bird1.bird6, p) for p in tmp_path.glob("nodes/*/bird6.cfg")]
    assert len(checks) == len(plan.routers) + 2 * len(plan.nodes)
    for binary, path in checks:
        done = subprocess.run([binary, "-p", "-c", str(path)], capture_output=True, text=True)
        assert done.returncode == 0, f"{path}: {done.stderr}"


def test_own_router_configuration_is_copied(tmp_path: Path) -> None:
    own = "# my own BIRD\nrouter id 10.0.0.1;\n"
    (tmp_path / "tor.conf").write_text(own)
    text = (TOPOLOGIES / "as-per-rack.yaml").read_text()
    text = text.replace("asNumber: 65101\n", "asNumber: 65101\n      config: tor.conf\n", 1)
    (tmp_path / "lab.yaml").write_text(text)
    plan, topo = _lab(tmp_path / "lab.yaml")
    result = export_clab(plan, topo, router_configs={"tor1": own})
    assert dict(result.files)["routers/tor1/bird.conf"] == own
    spec = json.loads(_doc(result)["topology"]["nodes"]["tor1"]["labels"][L.SPEC])
    assert spec["bgp"]["config"] == "routers/tor1/bird.conf"


def test_file_paths_stay_inside_the_folder() -> None:
    for path in FILES:
        for relative, _ in export_clab(*_lab(path)).files:
            assert not Path(relative).is_absolute() and ".." not in Path(relative).parts
