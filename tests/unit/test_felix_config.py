"""Who programs cluster routes, from the inputs: FelixConfiguration, BGPConfiguration's
programClusterRoutes and the operator's Installation in a bundle (model.calico_felix), the
ownership rule of model.cluster_routes for every value pair and pool kind, its warnings in the
plan and in `validate`, and a lab without BGP planned with no sessions and no RIB."""

from __future__ import annotations

import json
from itertools import product
from pathlib import Path

import pytest

from meshemu.cli import main
from meshemu.errors import ConfigError
from meshemu.model import cluster_routes
from meshemu.model.calico_felix import ROUTING_MODES
from meshemu.model.calico_resources import FELIX_NOT_EMULATED
from meshemu.model.load import load_topology_text
from meshemu.model.plan import build_plan
from meshemu.model.routes import PoolKind
from meshemu.model.topology import Topology

TOPOLOGIES = Path(__file__).resolve().parents[2] / "topologies"
VALUES = ("Enabled", "Disabled", "EnabledIPIPOnly", "EnabledNoEncapOnly")

NODES = """
apiVersion: projectcalico.org/v3
kind: NodeList
items:
  - metadata: {name: worker-1}
    spec: {bgp: {ipv4Address: 10.70.1.11/24}}
  - metadata: {name: worker-2}
    spec: {bgp: {ipv4Address: 10.70.1.12/24}}
"""
POOL = """
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: p}
spec: {cidr: 192.168.0.0/16, ipipMode: %s, vxlanMode: %s}
"""


def bundle(*docs: str, pool: tuple[str, str] | None = ("Always", "Never")) -> Topology:
    parts = [NODES, *([] if pool is None else [POOL % pool]), *docs]
    return load_topology_text("\n---\n".join(parts), "bundle.yaml", "fx")


def problems(*docs: str, pool: tuple[str, str] | None = ("Always", "Never")) -> list[str]:
    with pytest.raises(ConfigError) as err:
        bundle(*docs, pool=pool)
    return [f"{p.location}: {p.message} | {p.hint}" for p in err.value.problems]


def felix(name: str, spec: str) -> str:
    return resource("FelixConfiguration", name, spec)


def bgpconfig(name: str, spec: str) -> str:
    return resource("BGPConfiguration", name, spec)


def resource(kind: str, name: str, spec: str) -> str:
    head = f"apiVersion: projectcalico.org/v3\nkind: {kind}\n"
    return head + f"metadata: {{name: {name}}}\nspec: {spec}\n"


def installation(network: str, spec_extra: str = "") -> str:
    return (
        "apiVersion: operator.tigera.io/v1\nkind: Installation\nmetadata: {name: default}\n"
        f"spec: {{calicoNetwork: {network}{spec_extra}}}\n"
    )


# --- FelixConfiguration --------------------------------------------------------------------------


def test_default_felixconfiguration_is_the_labs_felix() -> None:
    topo = bundle(
        felix(
            "default",
            "{programClusterRoutes: Enabled, ipipEnabled: false, vxlanEnabled: true, "
            "routeSyncDisabled: false}",
        )
    )
    assert topo.felix.program_cluster_routes == "Enabled"
    assert topo.felix.ipip_enabled is False and topo.felix.vxlan_enabled is True
    assert not topo.felix.route_sync_disabled
    assert all(n.felix is None for n in topo.nodes.values())


def test_without_felixconfiguration_calicos_v333_defaults_hold() -> None:
    topo = bundle()
    assert topo.felix.program_cluster_routes == "EnabledIPIPOnly"
    assert topo.bgp.program_cluster_routes == "EnabledNoEncapOnly" and topo.bgp.enabled


def test_a_nodes_felixconfiguration_overrides_default_field_by_field() -> None:
    topo = bundle(
        felix("default", "{programClusterRoutes: Disabled, vxlanEnabled: false}"),
        felix("node.worker-2", "{routeSyncDisabled: true}"),
    )
    (one, two) = (topo.nodes[n] for n in sorted(topo.nodes))
    assert one.felix is None
    assert two.felix is not None
    assert two.felix.program_cluster_routes == "Disabled"  # from default
    assert two.felix.vxlan_enabled is False and two.felix.route_sync_disabled
    assert cluster_routes.felix_programs(topo, sorted(topo.nodes)[1]) == ()


def test_a_value_outside_the_crd_enum_is_refused_where_written() -> None:
    found = problems(felix("default", "{programClusterRoutes: Always}"))
    assert len(found) == 1
    assert found[0].startswith("FelixConfiguration/default.spec.programClusterRoutes: ")
    assert "EnabledNoEncapOnly" in found[0]
    found = problems(bgpconfig("default", "{programClusterRoutes: enabled}"))
    assert found[0].startswith("BGPConfiguration/default.spec.programClusterRoutes: ")


def test_a_felixconfiguration_for_an_unknown_node_is_refused_with_the_nodes_as_hint() -> None:
    found = problems(felix("node.ghost", "{programClusterRoutes: Enabled}"))
    assert found == [
        "FelixConfiguration/node.ghost.metadata.name: FelixConfiguration node.ghost configures "
        "unknown node 'ghost' | name it node.<name> after a Node resource of the bundle "
        "(worker-1, worker-2), or default for every node"
    ]


def test_a_felixconfiguration_named_neither_default_nor_for_a_node_is_refused() -> None:
    found = problems(felix("global", "{}"))
    assert len(found) == 1 and "is neither 'default' nor 'node.<node>'" in found[0]


def test_an_unknown_felix_field_is_refused_and_every_api_field_is_listed_not_emulated() -> None:
    assert len(FELIX_NOT_EMULATED) + 4 == 188  # felixconfig.go's FelixConfigurationSpec
    found = problems(felix("default", "{bpfEnabeld: true}"))
    assert found[0].startswith("FelixConfiguration/default.spec.bpfEnabeld: ")
    spec = ", ".join(f"{name}: 1" for name in FELIX_NOT_EMULATED)
    topo = bundle(felix("default", f"{{{spec}, programClusterRoutes: Enabled}}"))
    listed = dict(topo.unsupported)
    for name in FELIX_NOT_EMULATED:
        assert f"FelixConfiguration/default.spec.{name}" in listed, name
    assert "FelixConfiguration/default.spec.programClusterRoutes" not in listed
    assert "WireGuard" in listed["FelixConfiguration/default.spec.wireguardEnabled"]
    assert "BPF" in listed["FelixConfiguration/default.spec.bpfEnabled"]


# --- BGPConfiguration ---------------------------------------------------------------------------


def test_default_bgpconfigurations_program_cluster_routes_is_emulated() -> None:
    topo = bundle(bgpconfig("default", "{programClusterRoutes: Enabled}"))
    assert topo.bgp.program_cluster_routes == "Enabled"
    assert not [loc for loc, _ in topo.unsupported if "programClusterRoutes" in loc]


def test_a_nodes_bgpconfiguration_program_cluster_routes_is_listed_as_confd_ignores_it() -> None:
    topo = bundle(bgpconfig("node.worker-1", "{programClusterRoutes: Disabled}"))
    assert topo.bgp.program_cluster_routes == "EnabledNoEncapOnly"
    listed = dict(topo.unsupported)
    assert (
        "only the default BGPConfiguration's is read"
        in (listed["BGPConfiguration/node.worker-1.spec.programClusterRoutes"])
    )


# --- Installation -------------------------------------------------------------------------------


def test_installation_bgp_disabled_is_a_lab_without_bgp() -> None:
    topo = bundle(
        installation("{bgp: Disabled, ipPools: [{cidr: 10.244.0.0/16, encapsulation: VXLAN}]}"),
        pool=None,
    )
    assert not topo.bgp.enabled
    assert not [loc for loc, _ in topo.unsupported if "calicoNetwork.bgp" in loc]


def test_installation_bgp_defaults_as_the_operator_defaults_it() -> None:
    assert bundle(installation("{}"), pool=None).bgp.enabled
    vxlan = "{ipPools: [{cidr: 10.244.0.0/16, encapsulation: VXLAN}]}"
    assert not bundle(installation(vxlan, ", kubernetesProvider: EKS"), pool=None).bgp.enabled


@pytest.mark.parametrize("mode", sorted(ROUTING_MODES))
def test_cluster_routing_mode_writes_the_operators_pair(mode: str) -> None:
    topo = bundle(
        installation(f"{{clusterRoutingMode: {mode}}}"),
        felix("default", "{programClusterRoutes: EnabledNoEncapOnly}"),
        pool=None,
    )
    felix_value, bgp_value = {
        "BIRD": ("Disabled", "Enabled"),
        "Felix": ("Enabled", "Disabled"),
        "FelixIPIPOnly": ("EnabledIPIPOnly", "EnabledNoEncapOnly"),
    }[mode]
    assert topo.felix.program_cluster_routes == felix_value
    assert topo.bgp.program_cluster_routes == bgp_value
    replaced = dict(topo.unsupported).get("FelixConfiguration/default.spec.programClusterRoutes")
    assert (replaced is not None) == (felix_value != "EnabledNoEncapOnly")


def test_a_cluster_routing_mode_outside_the_enum_is_refused() -> None:
    found = problems(installation("{clusterRoutingMode: Bird}"), pool=None)
    assert found[0].startswith("Installation/default.spec.calicoNetwork.clusterRoutingMode: ")


IPIP_REFUSED = "with BIRD cluster routing mode, IPIP encapsulation requires that BGP is enabled"
NONE_REFUSED = "with BIRD cluster routing mode, unencapsulated IP pools require that BGP is enabled"


@pytest.mark.parametrize(
    ("mode", "encapsulation", "refusal"),
    [
        (None, "IPIP", None),  # unset: FelixIPIPOnly, Felix owns IPIP
        (None, None, None),  # an IPv4 pool defaults to IPIP
        (None, "None", NONE_REFUSED),
        (None, "VXLAN", None),
        ("BIRD", "IPIPCrossSubnet", IPIP_REFUSED),
        ("BIRD", "None", NONE_REFUSED),
        ("BIRD", "VXLANCrossSubnet", None),
        ("FelixIPIPOnly", "None", NONE_REFUSED),
        ("Felix", "None", None),
        ("Felix", "IPIP", None),
    ],
)
def test_the_operator_refuses_pools_bird_would_program_without_bgp(
    mode: str | None, encapsulation: str | None, refusal: str | None
) -> None:
    pool = "{cidr: 10.244.0.0/16" + (f", encapsulation: {encapsulation}" if encapsulation else "")
    network = "{bgp: Disabled, " + (f"clusterRoutingMode: {mode}, " if mode else "")
    doc = installation(network + f"ipPools: [{pool}}}]}}")
    if refusal is None:
        assert not bundle(doc, pool=None).bgp.enabled
        return
    (found,) = problems(doc, pool=None)
    where = "Installation/default.spec.calicoNetwork.ipPools[0]"
    assert found.startswith(f"{where}{'.encapsulation' if encapsulation else ''}: {refusal}")
    # With BGP on, the same pool is accepted.
    assert bundle(doc.replace("bgp: Disabled", "bgp: Enabled"), pool=None).bgp.enabled


# --- the ownership matrix -----------------------------------------------------------------------

KINDS: dict[PoolKind, tuple[str, str]] = {
    "vxlan": ("Never", "Always"),
    "ipip": ("Always", "Never"),
    "none": ("Never", "Never"),
}


def native(felix_value: str, bgp_value: str, extra: str = "", node_felix: str = "") -> Topology:
    text = f"""
name: own
subnets: {{r: {{ipv4: 10.71.0.0/24}}}}
nodes:
  n1: {{subnet: r}}
  n2: {{subnet: r{node_felix}}}
felix: {{programClusterRoutes: {felix_value}{extra}}}
bgp: {{programClusterRoutes: {bgp_value}}}
"""
    return load_topology_text(text, "own.yaml", "own")


def expected_owners(felix_value: str, bgp_value: str, kind: PoolKind) -> set[str]:
    """Calico's table (cluster-routes.md section 4), written out independently of the code."""
    if kind == "vxlan":
        return {"felix"}
    on = {"ipip": ("Enabled", "EnabledIPIPOnly"), "none": ("Enabled", "EnabledNoEncapOnly")}
    return {who for who, value in (("felix", felix_value), ("bgp", bgp_value)) if value in on[kind]}


@pytest.mark.parametrize(("felix_value", "bgp_value"), list(product(VALUES, VALUES)))
def test_every_value_pair_gives_calicos_owners_for_every_pool_kind(
    felix_value: str, bgp_value: str
) -> None:
    topo = native(felix_value, bgp_value)
    rule = cluster_routes.ownership(topo, "n1")
    for kind in KINDS:
        assert set(rule.owners(kind)) == expected_owners(felix_value, bgp_value, kind), kind
    assert set(cluster_routes.felix_programs(topo, "n1")) == {
        k for k in KINDS if "felix" in expected_owners(felix_value, bgp_value, k)
    }


def test_a_nodes_own_felix_settings_decide_on_that_node_only() -> None:
    topo = native(
        "EnabledIPIPOnly",
        "EnabledNoEncapOnly",
        node_felix=", felix: {programClusterRoutes: Enabled}",
    )
    assert cluster_routes.ownership(topo, "n1").owners("none") == {"bgp"}
    assert cluster_routes.ownership(topo, "n2").owners("none") == {"felix", "bgp"}


def test_ipip_and_vxlan_managers_off_and_route_sync_disabled() -> None:
    off = native("Enabled", "Disabled", extra=", ipipEnabled: false, vxlanEnabled: false")
    rule = cluster_routes.ownership(off, "n1")
    assert rule.owners("ipip") == set() and rule.owners("vxlan") == set()
    assert rule.owners("none") == {"felix"}
    nosync = cluster_routes.ownership(
        native("Enabled", "Disabled", extra=", routeSyncDisabled: true"), "n1"
    )
    assert all(nosync.owners(k) == set() for k in KINDS)


def test_bgp_off_leaves_only_felix() -> None:
    topo = native("Disabled", "Enabled").model_copy(
        update={"bgp": native("Disabled", "Enabled").bgp.model_copy(update={"enabled": False})}
    )
    rule = cluster_routes.ownership(topo, "n1")
    assert rule.owners("ipip") == set() and rule.owners("none") == set()
    assert rule.owners("vxlan") == {"felix"}


# --- warnings in the plan and in validate --------------------------------------------------------


def plan_text(felix_value: str, bgp_value: str, mode: PoolKind, enabled: bool = True) -> str:
    ipip, vxlan = KINDS[mode]
    return f"""
name: warn
subnets: {{r: {{ipv4: 10.72.0.0/24}}}}
nodes: {{n1: {{subnet: r}}, n2: {{subnet: r}}}}
pools: {{p: {{cidr: 192.168.0.0/16, ipipMode: {ipip}, vxlanMode: {vxlan}}}}}
felix: {{programClusterRoutes: {felix_value}}}
bgp: {{programClusterRoutes: {bgp_value}, enabled: {str(enabled).lower()}}}
"""


def validate(tmp_path: Path, text: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    path = tmp_path / "t.yaml"
    path.write_text(text)
    code = main(["validate", str(path)])
    return code, capsys.readouterr().out


def test_neither_component_is_a_warning_that_names_the_consequence(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = validate(tmp_path, plan_text("EnabledIPIPOnly", "Disabled", "none"), capsys)
    assert code == 0
    assert "  warning: pools.p: no component programs the routes of pool p on every node" in out
    assert "pods are unreachable from other nodes" in out
    code = main(["validate", "--json", str(tmp_path / "t.yaml")])
    data = json.loads(capsys.readouterr().out)
    assert code == 0 and data["valid"]
    assert [w.split(":")[0] for w in data["warnings"]] == ["pools.p"]


def test_both_components_is_a_warning_that_they_fight(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = validate(tmp_path, plan_text("Enabled", "Enabled", "none"), capsys)
    assert code == 0
    assert "warning: pools.p: both Felix and BIRD program the routes of pool p" in out
    assert "fight" in out


def test_consistent_settings_give_no_warning() -> None:
    cases: list[tuple[str, str, PoolKind]] = [
        ("EnabledIPIPOnly", "EnabledNoEncapOnly", "ipip"),
        ("EnabledIPIPOnly", "EnabledNoEncapOnly", "none"),
        ("Enabled", "Disabled", "none"),
        ("Disabled", "Disabled", "vxlan"),
    ]
    for felix_value, bgp_value, mode in cases:
        plan = build_plan(load_topology_text(plan_text(felix_value, bgp_value, mode), "t", "t"))
        assert not [n for n in plan.notes if n.startswith("warning:")], (felix_value, bgp_value)


def test_an_unencapsulated_pool_without_bgp_has_no_programmer(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = validate(
        tmp_path, plan_text("EnabledIPIPOnly", "EnabledNoEncapOnly", "none", enabled=False), capsys
    )
    assert code == 0
    assert "BGP disabled, for an unencapsulated pool" in out
    assert "note: BGP is off" in out


# --- a lab without BGP, planned -----------------------------------------------------------------


def test_the_shipped_bundle_without_bgp_plans_felix_routes_and_no_bgp() -> None:
    text = (TOPOLOGIES / "calico-vxlan-nobgp.yaml").read_text()
    plan = build_plan(load_topology_text(text, "calico-vxlan-nobgp.yaml", "nobgp"))
    assert plan.nodes and all(n.speaker == "none" for n in plan.nodes)
    assert all(not n.sessions and not n.expected_up and not n.rib for n in plan.nodes)
    for node in plan.nodes:
        remote = {b.cidr for o in plan.nodes if o is not node for b in o.blocks}
        felix_routes = {r.prefix for r in node.fib if r.source == "felix"}
        assert felix_routes == remote, node.name
        assert not [r for r in node.fib if r.source == "bgp"]
        assert node.felix_programs and "vxlan" in node.felix_programs
    assert any(n.startswith("BGP is off") for n in plan.notes)
    assert not [n for n in plan.notes if "learns no routes" in n]
    data = plan.to_json()
    assert {n["speaker"] for n in data["nodes"]} == {"none"}
    assert json.loads(json.dumps(data)) == type(plan).from_json(data).to_json()


def test_the_same_lab_with_bgp_has_sessions() -> None:
    text = (TOPOLOGIES / "calico-vxlan-nobgp.yaml").read_text()
    plan = build_plan(
        load_topology_text(text.replace("bgp: Disabled", "bgp: Enabled"), "x.yaml", "withbgp")
    )
    assert all(n.speaker == "exabgp" and n.sessions and n.rib for n in plan.nodes)
