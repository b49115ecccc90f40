"""meshemu's plan against Calico's own rendered BIRD configuration.

Two sets of cases, one layout (input.yaml, bird.cfg, bird6.cfg, bird_ipam.cfg, bird6_ipam.cfg,
and for the project's own cases bird_aggr.cfg, bird6_aggr.cfg and a SOURCE file naming their
origin in projectcalico/calico and the node whose configuration they are):
- ../shared/calico-conformance/cases: the shared corpus (node `kube-master`);
- tests/conformance/cases: the rest of Calico's confd cases that concern peers and sessions.

For each case, the plan's sessions of the rendering node must equal the `protocol bgp` blocks of
bird.cfg + bird6.cfg attribute by attribute (kind, peer, port, AS, local AS, passive, rr client
and cluster id, password, source address, next hop self/keep, ttl security and multihop,
keepalive and graceful restart times, allow local as, the BGPFilter calls of the import and
export filters, iBGP/eBGP as `calico_export_to_bgp_peers` is told, the normal route priority);
the BGPFilter functions and `apply_communities()` at the top of bird.cfg / bird6.cfg must equal
what the model renders from the same resources; the static routes to `reachableBy` gateways in
bird_aggr.cfg / bird6_aggr.cfg must equal the sessions' `reachable_by`; each pool's
encapsulation must match `calico_kernel_programming` and the exported pools
`calico_export_to_bgp_peers` in bird_ipam.cfg / bird6_ipam.cfg. Cases without golden files
(Calico's test only counts sessions) compare the count their SOURCE states.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from meshemu.model import bgp_policy
from meshemu.model.labplan import NodePlan, PoolPlan
from meshemu.model.load import load_topology
from meshemu.model.plan import LabPlan, build_plan
from meshemu.model.sessions import Session
from meshemu.model.topology import Topology

ROOT = Path(__file__).resolve().parents[2]
CORPUS = Path(os.environ.get("MESHEMU_CONFORMANCE", ROOT.parent / "shared" / "calico-conformance"))
OWN = Path(__file__).resolve().parent / "cases"


def _cases(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


CASES = _cases(CORPUS / "cases")
OWN_CASES = _cases(OWN)
DEFAULT_NODE = "kube-master"  # the node confd's test harness renders (helpers_test.go)

KIND_BY_PREFIX = {"Mesh": "mesh", "Global": "global", "Node": "node"}
_PROTOCOL = re.compile(r"^protocol bgp (\S+) from bgp_template \{(.*?)^\}", re.M | re.S)
_TEMPLATE_AS = re.compile(r"template bgp bgp_template \{.*?local as (\d+);", re.S)
_CALL = re.compile(r"^('bgp_\S+'\((?:true|false)?\);)$")
_BIRD_MAX = bgp_policy.BIRD_INT_MAX


def _number(lines: list[str], prefix: str) -> int | None:
    """The number that ends the line starting with `prefix` (`graceful restart time 10;`)."""
    for line in lines:
        if line.startswith(prefix):
            return int(line.rstrip(";").split()[-1])
    return None


def _filter_block(body: str, which: str) -> list[str]:
    match = re.search(rf"^  {which} filter \{{\n(.*?)^  \}};", body, re.M | re.S)
    assert match, f"no {which} filter"
    return [line.strip() for line in match.group(1).splitlines()]


def bird_sessions(text: str) -> list[dict[str, Any]]:
    """The sessions Calico rendered: one dict per `protocol bgp` block."""
    template_as = _TEMPLATE_AS.search(text)
    sessions = []
    for name, body in _PROTOCOL.findall(text):
        lines = [line.split("#")[0].strip() for line in body.splitlines()]
        neighbor = next(line for line in lines if line.startswith("neighbor "))
        match = re.match(r"neighbor (\S+)(?: port (\d+))? as (\d+);", neighbor)
        assert match, neighbor
        local_as = _number(lines, "local as ")
        if local_as is None and template_as:
            local_as = int(template_as.group(1))
        cluster = next(
            (line.split()[3].rstrip(";") for line in lines if "rr cluster id" in line), None
        )
        password = next(
            (line[len('password "') : -2] for line in lines if line.startswith("password ")), None
        )
        ttl_on = "ttl security on;" in lines
        assert ttl_on or "ttl security off;" in lines, name
        multihop = _number(lines, "multihop ")
        # Calico renders `multihop;` (no hop limit) unless ttl security sets the hops.
        assert (multihop is not None) == ttl_on and ("multihop;" in lines) != ttl_on, name
        imports, exports = _filter_block(body, "import"), _filter_block(body, "export")
        internal = re.search(r"calico_export_to_bgp_peers\((true|false)\);", "\n".join(exports))
        threshold = re.search(r"bgp_local_pref > (\d+)", "\n".join(imports))
        metric = re.search(r"krt_metric = (\d+); \}", "\n".join(exports))
        assert internal and threshold and metric, name
        priority = _BIRD_MAX - int(threshold.group(1))
        assert int(metric.group(1)) == priority, name
        sessions.append(
            {
                "kind": KIND_BY_PREFIX[name.split("_")[0]],
                "peer_ip": match.group(1),
                "peer_port": int(match.group(2) or 179),
                "peer_as": int(match.group(3)),
                "local_as": local_as,
                "passive": "passive on;" in lines,
                "rr_client": "rr client;" in lines,
                "cluster_id": cluster,
                "password": password,
                "source_address": any(line.startswith("source address") for line in lines),
                "keep_next_hop": "next hop keep;" in lines,
                "next_hop_self": "next hop self;" in lines,
                "ttl_security": multihop,
                "graceful_restart_time": _number(lines, "graceful restart time "),
                "keepalive_time": _number(lines, "keepalive time "),
                "allow_local_as": _number(lines, "allow local as "),
                "import_calls": [line for line in imports if _CALL.match(line)],
                "export_calls": [line for line in exports if _CALL.match(line)],
                "internal": internal.group(1) == "true",
                "route_priority": priority,
            }
        )
    return sorted(sessions, key=lambda s: (s["peer_ip"], s["peer_port"]))


def planned_session(session: Session, topo: Topology) -> dict[str, Any]:
    """The same attributes, from the plan."""
    filters = topo.bgp.filters

    def calls(names: tuple[str, ...], direction: str) -> list[str]:
        out = []
        for name in names:
            call = bgp_policy.filter_call(filters, name, direction, session.family, session.same_as)
            assert call is not None, (name, direction)
            out.append(call)
        return out

    return {
        "kind": session.kind,
        "peer_ip": session.peer_ip,
        "peer_port": session.peer_port,
        "peer_as": session.peer_as,
        "local_as": session.local_as,
        "passive": session.passive,
        "rr_client": session.rr_client,
        "cluster_id": session.cluster_id,
        "password": session.password,
        "source_address": session.source_address,
        "keep_next_hop": session.keep_next_hop,
        "next_hop_self": session.next_hop_self,
        "ttl_security": session.ttl_security,
        "graceful_restart_time": session.graceful_restart_time,
        "keepalive_time": session.keepalive_time,
        "allow_local_as": session.allow_local_as,
        "import_calls": calls(session.import_filters, "import"),
        "export_calls": calls(session.export_filters, "export"),
        "internal": session.same_as,
        "route_priority": session.route_priority,
    }


_KERNEL_STATEMENT = re.compile(r"^  if \(net ~ (\S+)\) then \{ (.*) \}(?: # (.*))?$", re.M)
_CROSS_SUBNET = re.compile(
    r'if \(defined\(bgp_next_hop\)&&\(bgp_next_hop ~ (\S+)\)\) then krt_tunnel=""; '
    r'else krt_tunnel="tunl0"; accept;'
)


def bird_kernel_rules(text: str) -> dict[str, str]:
    """Per pool CIDR: what Calico's kernel-programming filter does with its routes (confd
    processIPPool): `felix vxlan`, `felix` (left to Felix), `bird` (BIRD writes the route),
    `bird tunl0` (through the tunnel), `bird tunl0 outside <subnet>` (IPIP CrossSubnet)."""
    body = text.split("filter calico_kernel_programming", 1)[1]
    rules = {}
    for cidr, action, comment in _KERNEL_STATEMENT.findall(body):
        if action == "reject;":
            rules[cidr] = "felix vxlan" if comment.startswith("VXLAN") else "felix"
        elif action == 'krt_tunnel="tunl0"; accept;':
            rules[cidr] = "bird tunl0"
        elif match := _CROSS_SUBNET.fullmatch(action):
            rules[cidr] = f"bird tunl0 outside {match.group(1)}"
        else:
            assert action == "accept;", action
            rules[cidr] = "bird"
    return rules


def planned_kernel_rule(pool: PoolPlan, node: NodePlan) -> str | None:
    """What the plan says of the pool's routes on `node`, as `bird_kernel_rules` reads
    Calico's filter; None where confd writes no statement (an IPv6 pool BIRD programs: the
    filter's final accept takes it)."""
    if pool.vxlan_mode != "Never":
        return "felix vxlan"
    if not pool.bird_programs:
        return "felix"
    if ":" in pool.cidr:
        return None
    if pool.ipip_mode == "Always":
        return "bird tunl0"
    if pool.ipip_mode == "CrossSubnet":
        return f"bird tunl0 outside {node.subnet_prefix(4)}"
    return "bird"


def exported_pools(text: str) -> set[str]:
    body = text.split("function calico_export_to_bgp_peers", 1)[1]
    body = body.split("filter calico_kernel_programming", 1)[0]
    return set(re.findall(r"if \(net ~ (\S+)\) then \{ accept; \}", body))


def bird_filter_functions(text: str) -> list[str]:
    """The BGPFilter section of bird.cfg: between its header and the BGP protocols."""
    body = text.split("# -------------- BGP Filters ------------------\n", 1)[1]
    body = body.split("# BGP Protocol Configurations", 1)[0]
    body = body.split("# No BGP peers configured for this node", 1)[0]
    return [line for line in body.splitlines() if line.strip()]


def bird_communities(text: str) -> list[tuple[str, tuple[str, ...]]]:
    """`apply_communities()`: per CIDR, the communities added, in order, as `a:b[:c]`."""
    # Up to the function's own closing brace (column 0); the last `if` block's brace ends it.
    body = text.split("function apply_communities ()", 1)[1].split("\n}", 1)[0] + "\n"
    out = []
    for cidr, adds in re.findall(r"if \( net ~ (\S+) \) then \{(.*?)\}\n", body, re.S):
        values = re.findall(r"bgp_(?:large_)?community\.add\(\(([\d, ]+)\)\);", adds)
        out.append((cidr, tuple(v.replace(", ", ":") for v in values)))
    # Every block is read (a parse that misses one would compare less than Calico rendered).
    assert len(out) == body.count("if ( net ~ "), body
    return out


def bird_peer_routes(text: str) -> set[tuple[str, str]]:
    """bird_aggr.cfg's static routes to BGP peers (`reachableBy`): (peer, gateway)."""
    return set(re.findall(r"route (\S+)/(?:32|128) via (\S+);", text))


def read_source(folder: Path) -> dict[str, str]:
    """A case's SOURCE file (`key: value` lines); the shared cases have none."""
    path = folder / "SOURCE"
    if not path.exists():
        return {}
    pairs = (line.split(":", 1) for line in path.read_text().splitlines() if ":" in line)
    return {key.strip(): value.strip() for key, value in pairs}


def test_the_corpus_is_here(require_shared: Callable[[Path, str], Path]) -> None:
    """Skips (or fails where MESHEMU_REQUIRE_SHARED=1) when the corpus is absent."""
    require_shared(CORPUS / "cases", "Calico conformance corpus")
    assert CASES


def test_own_cases_name_their_origin() -> None:
    """Each of the project's own cases says where in projectcalico/calico it comes from."""
    assert len(OWN_CASES) >= 45
    for case in OWN_CASES:
        source = read_source(OWN / case)
        assert source.get("repository") == "projectcalico/calico", case
        assert re.fullmatch(r"[0-9a-f]{40}", source.get("commit", "")), case
        assert source.get("input") and source.get("test") and source.get("node"), case


@pytest.mark.parametrize("case", CASES)
def test_sessions_and_tunnels_match_calico(case: str) -> None:
    check_case(CORPUS / "cases" / case)


@pytest.mark.parametrize("case", OWN_CASES)
def test_peer_and_session_cases_match_calico(case: str) -> None:
    check_case(OWN / case)


def check_case(folder: Path) -> None:
    source = read_source(folder)
    topo = load_topology(folder / "input.yaml", name="conf")
    plan = build_plan(topo)
    node_name = source.get("node", DEFAULT_NODE)
    node = plan.node(node_name)
    if not (folder / "bird.cfg").exists():
        _check_count(source, node.sessions)
        return
    _check_sessions(folder, topo, node.sessions)
    _check_policy(folder, topo, node_name)
    _check_pools(folder, plan, node)
    expected_routes = set()
    for name in ("bird_aggr.cfg", "bird6_aggr.cfg"):
        if (folder / name).exists():
            expected_routes |= bird_peer_routes((folder / name).read_text())
    if (folder / "bird_aggr.cfg").exists():
        planned = {(s.peer_ip, s.reachable_by) for s in node.sessions if s.reachable_by}
        assert planned == expected_routes

    # Fields meshemu reads but does not emulate are named, never dropped silently.
    for location, reason in plan.unsupported:
        print(f"{folder.name}: unsupported {location}: {reason}")


def _check_count(source: dict[str, str], sessions: tuple[Session, ...]) -> None:
    """Calico's test counts `protocol bgp` in bird.cfg (the IPv4 sessions)."""
    match = re.search(r"exactly (\d+) 'protocol bgp'", source.get("expect", ""))
    assert match, "a case without golden files states the count it expects"
    assert sum(1 for s in sessions if s.family == 4) == int(match.group(1))


def _check_sessions(folder: Path, topo: Topology, sessions: tuple[Session, ...]) -> None:
    expected = bird_sessions((folder / "bird.cfg").read_text()) + bird_sessions(
        (folder / "bird6.cfg").read_text()
    )
    expected.sort(key=lambda s: (s["peer_ip"], s["peer_port"]))
    planned = sorted(
        (planned_session(s, topo) for s in sessions),
        key=lambda s: (s["peer_ip"], s["peer_port"]),
    )
    assert planned == expected


def _check_policy(folder: Path, topo: Topology, node: str) -> None:
    """BGPFilter functions and communities, where the file renders them."""
    for family, name in ((4, "bird.cfg"), (6, "bird6.cfg")):
        text = (folder / name).read_text()
        if "# -------------- BGP Filters" in text:
            assert bird_filter_functions(text) == bgp_policy.bird_filter_functions(
                topo.bgp.filters, family
            ), name
        if "function apply_communities" in text:
            planned = [
                (cidr, values)
                for cidr, values in bgp_policy.community_rules(topo.bgp, node, family)
            ]
            assert bird_communities(text) == planned, name


def _check_pools(folder: Path, plan: LabPlan, node: NodePlan) -> None:
    """Who writes each pool's routes on the node (BGPConfiguration programClusterRoutes, in the
    plan as `bird_programs`) and through which device, as Calico's kernel filter says."""
    calico_rules: dict[str, str] = {}
    exported: set[str] = set()
    for part in ((folder / "bird_ipam.cfg").read_text(), (folder / "bird6_ipam.cfg").read_text()):
        calico_rules.update(bird_kernel_rules(part))
        exported |= exported_pools(part)
    planned = {pool.cidr: rule for pool in plan.pools if (rule := planned_kernel_rule(pool, node))}
    assert planned == calico_rules
    assert exported == {p.cidr for p in plan.pools if not p.disable_bgp_export and not p.disabled}
