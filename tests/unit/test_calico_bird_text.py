"""Tests of meshemu.model.calico_bird: a node of the plan -> the BIRD 1.6 files confd writes.

The match with Calico's own rendered files is the conformance test's
(tests/conformance/test_calico_bird.py); these test what the conformance cases do not reach:
the node's own blocks, IPv6-only and session-less nodes, the hold time, the refusal of values
that would break out of their place in the file (hostile passwords, filter fields, communities),
and BIRD 1.6 reading every shipped topology's files (with `MESHEMU_BIRD1`, see the conformance
test's docstring; skipped without it).
"""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
from pathlib import Path

import pytest

from meshemu.controlplane.bird_tools import bird1_binaries
from meshemu.errors import ConfigError, EnvironmentProblem, UsageError
from meshemu.model.calico_bird import FILES, protocol_name, render_node_bird
from meshemu.model.load import load_topology, load_topology_text
from meshemu.model.plan import LabPlan, build_plan
from meshemu.model.topology import Topology

TOPOLOGIES = Path(__file__).resolve().parents[2] / "topologies"


def _bird1() -> str | None:
    """BIRD 1.6's `bird`: `$MESHEMU_BIRD1`, else the one `scripts/setup.sh` unpacks into the
    virtual environment (`controlplane.bird_tools.bird1_binaries`); None without either."""
    try:
        return bird1_binaries().bird
    except EnvironmentProblem:
        return None


BIRD1 = _bird1()

LAB = """
name: birdlab
subnets:
  dual: {ipv4: 10.1.0.0/24, ipv6: "fd00:1::/64"}
  v6only: {ipv6: "fd00:2::/64"}
routers:
  r: {subnets: [dual, v6only]}
nodes:
  a: {subnet: dual, ipv4: 10.1.0.10}
  b: {subnet: dual, ipv4: 10.1.0.11}
  six: {subnet: v6only}
pools:
  p4: {cidr: 10.244.0.0/16, blockSize: 26}
  tunnel: {cidr: 10.245.0.0/16, ipipMode: Always}
  quiet: {cidr: 10.246.0.0/16, vxlanMode: Always, disableBGPExport: true}
  p6: {cidr: "fd80::/64"}
bgp:
  asNumber: 64512
  holdTime: 30
  nodeMeshPassword: PASSWORD
  communities: [{name: gold, value: "65001:100"}]
  prefixAdvertisements: [{cidr: 10.244.0.0/16, communities: [gold, "65001:1:2"]}]
  peers:
    upstream:
      node: a
      peerIP: 192.0.2.1:1790
      asNumber: 65100
      ttlSecurity: 2
      keepaliveTime: 5s
      maxRestartTime: 90s
      filters: [only-pods]
  filters:
    only-pods:
      exportV4: [{cidr: 10.244.0.0/18, action: Accept, interface: "eth*"}]
"""


def _lab(text: str = LAB, password: str = "s3cr3t") -> tuple[Topology, LabPlan]:
    # A YAML double-quoted string reads JSON's escapes: any password arrives unchanged.
    topo = load_topology_text(text.replace("PASSWORD", json.dumps(password)), "lab.yaml", "lab")
    return topo, build_plan(topo)


def _all(topo: Topology, plan: LabPlan, node: str) -> dict[str, str]:
    files = render_node_bird(plan, node, 4, bgp=topo.bgp)
    files.update(render_node_bird(plan, node, 6, bgp=topo.bgp))
    return files


def _protocol(text: str, name: str) -> str:
    match = re.search(rf"^protocol bgp {name} from bgp_template \{{\n(.*?)^\}}", text, re.M | re.S)
    assert match, name
    return match.group(1)


def _bird_check(tmp_path: Path, files: dict[str, str]) -> None:
    """Both of BIRD 1.6's daemons read the files (`-p`: parse only); where BIRD programs IPIP
    pools, Debian's BIRD 1.6 stops exactly at confd's `krt_tunnel` (Calico's fork only)."""
    assert BIRD1 is not None
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    for family, binary in ((4, Path(BIRD1)), (6, Path(BIRD1).with_name("bird6"))):
        main = tmp_path / FILES[family][0]
        result = subprocess.run(
            [str(binary), "-p", "-c", str(main)], capture_output=True, text=True, timeout=60
        )
        ipam_name = FILES[family][2]
        ipam = files[ipam_name]
        if "krt_tunnel" in ipam:
            line = 1 + ipam[: ipam.index("krt_tunnel")].count("\n")
            assert result.returncode != 0, main.name
            assert f"{ipam_name}:{line}:" in result.stderr, result.stderr
            assert "You may set only variables" in result.stderr, result.stderr
            continue
        assert result.returncode == 0, (main.name, result.stderr)


def test_the_files_confd_writes() -> None:
    topo, plan = _lab()
    assert set(render_node_bird(plan, "a", 4, bgp=topo.bgp)) == set(FILES[4])
    assert set(render_node_bird(plan, "a", 6, bgp=topo.bgp)) == set(FILES[6])


def test_every_session_option_of_the_plan_is_written() -> None:
    topo, plan = _lab()
    text = render_node_bird(plan, "a", 4, bgp=topo.bgp)["bird.cfg"]
    body = _protocol(text, "Node_192_0_2_1_port_1790")
    assert "neighbor 192.0.2.1 port 1790 as 65100;" in body
    assert "ttl security on;" in body and "multihop 2;" in body
    assert "keepalive time 5;" in body and "graceful restart time 90;" in body
    assert "'bgp_only-pods_exportFilterV4'();" in body
    assert "calico_export_to_bgp_peers(false);" in body  # eBGP
    assert "password" not in body and "passive on;" not in body
    mesh = _protocol(text, "Mesh_10_1_0_11")
    assert 'password "s3cr3t";' in mesh and "passive on;" in mesh  # 10.1.0.11 > 10.1.0.10
    assert "calico_export_to_bgp_peers(true);" in mesh
    # The other side of the mesh session connects.
    other = render_node_bird(plan, "b", 4, bgp=topo.bgp)["bird.cfg"]
    assert "passive on;" not in _protocol(other, "Mesh_10_1_0_10")
    # The lab's hold time, once, in the template.
    assert re.findall(r"hold time \d+;", text) == ["hold time 30;"]


def test_protocols_are_in_confd_order_one_per_session() -> None:
    topo, plan = _lab()
    text = render_node_bird(plan, "a", 4, bgp=topo.bgp)["bird.cfg"]
    names = re.findall(r"^protocol bgp (\S+) ", text, re.M)
    planned = [protocol_name(s) for s in plan.node("a").sessions if s.family == 4]
    assert names == sorted(planned) and len(names) == len(planned) == 2


def test_the_node_s_own_blocks_are_blackholed_and_aggregated() -> None:
    topo, plan = _lab()
    node = plan.node("a")
    files = render_node_bird(plan, "a", 4, bgp=topo.bgp)
    blocks = [b.cidr for b in node.blocks if ":" not in b.cidr]
    assert blocks
    routes = re.findall(r"route (\S+) blackhole;", files["bird_aggr.cfg"])
    assert sorted(routes) == sorted(blocks)
    aggregated = re.findall(r"if \( net = (\S+) \) then \{ accept; \}", files["bird_aggr.cfg"])
    assert sorted(aggregated) == sorted(blocks)


def test_pools_follow_the_default_program_cluster_routes() -> None:
    topo, plan = _lab()
    ipam = render_node_bird(plan, "a", 4, bgp=topo.bgp)["bird_ipam.cfg"]
    kernel = ipam.split("filter calico_kernel_programming", 1)[1]
    assert "if (net ~ 10.244.0.0/16) then { accept; }" in kernel
    assert "if (net ~ 10.245.0.0/16) then { reject; } # Cluster routes are handled by Felix." in (
        kernel
    )
    assert "if (net ~ 10.246.0.0/16) then { reject; } # VXLAN routes" in kernel
    assert "krt_tunnel" not in ipam
    export = ipam.split("function calico_export_to_bgp_peers", 1)[1].split(
        "\nfilter calico_kernel_programming", 1
    )[0]
    assert "if (net ~ 10.246.0.0/16) then { reject; } # BGP export is disabled." in export
    assert "if (net ~ 10.246.0.0/16) then { accept; }" not in export
    assert "if (net ~ 10.245.0.0/16) then { accept; }" in export


CONFORMANCE = Path(__file__).resolve().parents[1] / "conformance"
# confd's own cases of BGPConfiguration programClusterRoutes (extra_oneshot_test.go
# TestClusterRoutesTemplates, TestFelixClusterRoutingTemplates): three wait in pending/ until
# the bundle converter carries the value (tests/conformance/PENDING.md).
CLUSTER_ROUTE_CASES = {
    "cluster_routes_default": None,
    "cluster_routes_noencap-only": "EnabledNoEncapOnly",
    "cluster_routes_enabled": "Enabled",
    "cluster_routes_ipip-only": "EnabledIPIPOnly",
    "felix_cluster_routing": "Disabled",
}


def _case_folder(case: str) -> Path:
    for kind in ("cases", "pending"):
        if (CONFORMANCE / kind / case).is_dir():
            return CONFORMANCE / kind / case
    raise AssertionError(f"conformance case {case} is neither in cases/ nor in pending/")


def _cluster_route_case(case: str) -> tuple[Path, Topology, LabPlan]:
    """The case's topology with its BGPConfiguration's programClusterRoutes set natively."""
    folder = _case_folder(case)
    text = (folder / "input.yaml").read_text()
    assert (f"programClusterRoutes: {CLUSTER_ROUTE_CASES[case]}" in text) == bool(
        CLUSTER_ROUTE_CASES[case]
    )
    topo = load_topology(folder / "input.yaml", name="conf")
    value = CLUSTER_ROUTE_CASES[case] or "EnabledNoEncapOnly"
    topo = topo.model_copy(
        update={"bgp": topo.bgp.model_copy(update={"program_cluster_routes": value})}
    )
    return folder, topo, build_plan(topo)


def _statements(text: str) -> list[str]:
    """A file's lines without the blank and whole-line comment lines (its header among them);
    a comment after a statement (`# Cluster routes are handled by Felix.`) is kept."""
    return [line.rstrip() for line in text.splitlines() if line.strip()[:1] not in ("", "#")]


@pytest.mark.parametrize("case", sorted(CLUSTER_ROUTE_CASES))
@pytest.mark.parametrize("with_bgp", [True, False], ids=["bgp", "plan-only"])
def test_confd_cluster_route_cases(case: str, with_bgp: bool) -> None:
    """bird_ipam.cfg / bird6_ipam.cfg line for line as confd rendered them for each value:
    the iBGP export reject of `tunl0` exactly when Felix owns IPIP, the kernel filter's reject,
    accept or `krt_tunnel` per pool. Without `bgp` the plan's pools (`bird_programs`) say it."""
    folder, topo, plan = _cluster_route_case(case)
    for family in (4, 6):
        files = render_node_bird(plan, "kube-master", family, bgp=topo.bgp if with_bgp else None)
        name = FILES[family][2]
        assert _statements(files[name]) == _statements((folder / name).read_text()), name


def test_only_calico_s_bird_fork_reads_krt_tunnel(tmp_path: Path) -> None:
    """BGP programClusterRoutes Enabled: BIRD writes IPIP routes with `krt_tunnel`, which
    Debian's BIRD 1.6 does not know (why model.rules refuses a BIRD node there)."""
    _, topo, plan = _cluster_route_case("cluster_routes_enabled")
    files = _all(topo, plan, "kube-master")
    assert 'krt_tunnel="tunl0"; accept;' in files["bird_ipam.cfg"]
    if not BIRD1:
        pytest.skip("BIRD 1.6 not found: run scripts/setup.sh or set MESHEMU_BIRD1")
    _bird_check(tmp_path, files)


def test_vxlan_pools_stay_felix_s_whoever_programs_the_rest() -> None:
    for value in ("Enabled", "EnabledIPIPOnly", "EnabledNoEncapOnly", "Disabled"):
        topo, plan = _lab(
            LAB.replace("  asNumber: 64512", f"  asNumber: 64512\n  programClusterRoutes: {value}")
        )
        ipam = render_node_bird(plan, "a", 4, bgp=topo.bgp)["bird_ipam.cfg"]
        assert (
            "if (net ~ 10.246.0.0/16) then { reject; } # VXLAN routes are handled by Felix." in ipam
        )
        tunl0 = '|| (ifname ~ "tunl0")' in ipam
        assert tunl0 == (value in ("Disabled", "EnabledNoEncapOnly")), value


def test_communities_are_applied_on_export() -> None:
    topo, plan = _lab()
    text = render_node_bird(plan, "a", 4, bgp=topo.bgp)["bird.cfg"]
    function = text.split("function apply_communities ()", 1)[1].split("\n}", 1)[0]
    assert "if ( net ~ 10.244.0.0/16 ) then {" in function
    assert "bgp_community.add((65001, 100));" in function
    assert "bgp_large_community.add((65001, 1, 2));" in function


def test_an_ipv6_only_node() -> None:
    topo, plan = _lab()
    files = _all(topo, plan, "six")
    assert "# IPv4 disabled on this node." in files["bird.cfg"]
    assert "protocol bgp" not in files["bird.cfg"]
    assert f"router id {plan.node('six').router_id};" in files["bird6.cfg"]
    assert "protocol bgp Mesh_fd00_1__" in files["bird6.cfg"]


def test_without_bgp_filters_a_session_that_applies_one_is_refused() -> None:
    _, plan = _lab()
    with pytest.raises(ValueError, match="BGPFilters"):
        render_node_bird(plan, "a", 4)
    # b applies none: its files render from the plan alone.
    text = render_node_bird(plan, "b", 4)["bird.cfg"]
    assert "protocol bgp Mesh_10_1_0_10" in text


def test_an_unknown_node_or_family() -> None:
    topo, plan = _lab()
    with pytest.raises(UsageError, match="no node 'z'"):
        render_node_bird(plan, "z", 4, bgp=topo.bgp)
    with pytest.raises(ValueError, match="expected 4 or 6"):
        render_node_bird(plan, "a", 5, bgp=topo.bgp)


@pytest.mark.parametrize(
    "password",
    [
        's"; } protocol bgp evil { neighbor 192.0.2.9 as 1; } #',
        "two\nlines",
        "cut\x00here",
    ],
    ids=["double-quote", "newline", "nul"],
)
def test_a_password_bird_cannot_hold_is_refused_where_it_was_written(password: str) -> None:
    # The input's rules refuse it first (model.rules.password_problem) ...
    with pytest.raises(ConfigError) as at_input:
        _lab(password=password)
    [problem] = at_input.value.problems
    assert problem.location == "bgp.nodeMeshPassword"
    assert password not in str(at_input.value)  # a secret is never repeated
    # ... and the renderer refuses it too, for a plan that did not come through them.
    topo, plan = _lab()
    node = plan.node("a")
    bad = dataclasses.replace(
        node, sessions=tuple(dataclasses.replace(x, password=password) for x in node.sessions)
    )
    plan = dataclasses.replace(plan, nodes=tuple(bad if n.name == "a" else n for n in plan.nodes))
    with pytest.raises(ConfigError) as caught:
        render_node_bird(plan, "a", 4, bgp=topo.bgp)
    assert caught.value.problems[0].location == "bgp.nodeMeshPassword"
    assert password not in str(caught.value)


def test_a_peer_password_is_located_at_its_peer() -> None:
    text = LAB.replace(
        "      filters: [only-pods]", '      filters: [only-pods]\n      password: "a\\"b"'
    )
    with pytest.raises(ConfigError) as caught:
        _lab(text)
    assert caught.value.problems[0].location == "bgp.peers.upstream.password"


@pytest.mark.parametrize("password", ["p#ss } { ; \\ 'x' é", "x" * 80])
def test_any_other_password_is_written_byte_for_byte(password: str, tmp_path: Path) -> None:
    topo, plan = _lab(password=password)
    files = _all(topo, plan, "a")
    assert f'password "{password}";' in files["bird.cfg"]
    if BIRD1:
        _bird_check(tmp_path, files)


@pytest.mark.parametrize(
    ("rule", "location"),
    [
        ('interface: "eth\\"; accept; }"', "bgp.filters.only-pods.exportV4[0].interface"),
        ('cidr: "10.0.0.0/8) || (true"', "bgp.filters.only-pods.exportV4[0].cidr"),
    ],
)
def test_a_filter_field_bird_cannot_hold_is_refused(rule: str, location: str) -> None:
    field = rule.split(":", 1)[0]
    original = {"interface": 'interface: "eth*"', "cidr": "cidr: 10.244.0.0/18"}[field]
    topo, plan = _lab(LAB.replace(original, rule, 1))
    with pytest.raises(ConfigError) as caught:
        render_node_bird(plan, "a", 4, bgp=topo.bgp)
    assert location in {p.location for p in caught.value.problems}


def test_a_community_that_is_no_community_is_refused() -> None:
    topo, plan = _lab(LAB.replace('value: "65001:100"', 'value: "1, 2)); reject; ((3"'))
    with pytest.raises(ConfigError, match="not `a:b`"):
        render_node_bird(plan, "a", 4, bgp=topo.bgp)


def _shipped() -> list[tuple[str, Topology, LabPlan, str]]:
    out = []
    for path in sorted(TOPOLOGIES.glob("*.yaml")):
        topo = load_topology(path)
        plan = build_plan(topo)
        out += [(path.stem, topo, plan, node.name) for node in plan.nodes]
    return out


SHIPPED = _shipped()


@pytest.mark.parametrize(
    ("topology", "topo", "plan", "node"), SHIPPED, ids=[f"{t}-{n}" for t, _, _, n in SHIPPED]
)
def test_every_shipped_node_renders_and_bird16_reads_it(
    topology: str, topo: Topology, plan: LabPlan, node: str, tmp_path: Path
) -> None:
    files = _all(topo, plan, node)
    me = plan.node(node)
    for family in (4, 6):
        names = re.findall(r"^protocol bgp (\S+) ", files[FILES[family][0]], re.M)
        assert sorted(names) == sorted(protocol_name(s) for s in me.sessions if s.family == family)
    if not BIRD1:
        pytest.skip("BIRD 1.6 not found: run scripts/setup.sh or set MESHEMU_BIRD1")
    _bird_check(tmp_path, files)
