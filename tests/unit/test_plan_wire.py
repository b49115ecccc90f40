"""The plan's one wire form, and the agent's configuration cut from it.

`LabPlan.to_json` keeps the field names README "What plan --json promises" lists (and adds
only); `LabPlan.from_json(plan.to_json(secrets=True))` is the identical frozen plan for every
shipped topology; passwords show as booleans unless secrets are asked for; JSON that is not a
plan (a missing field, a wrong type) is a LabError naming the field, never a KeyError. Also
`FibRoute`'s one JSON form, the one prefix order, `Sticky` and `AgentConfig` round trips, and
that an `AgentCore` built from an `AgentConfig` holds what the old dict-fed one held.
"""

from __future__ import annotations

import contextlib
import copy
import ipaddress
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshemu.controlplane.agent import AgentCore
from meshemu.errors import LabError
from meshemu.model.agent_config import AgentConfig, agent_config_of
from meshemu.model.bgp import Link, Speaker
from meshemu.model.bgp import Path as BgpPath
from meshemu.model.load import load_topology, load_topology_text
from meshemu.model.plan import LabPlan, Sticky, build_plan
from meshemu.model.routes import FibRoute, PoolRule, RouteContext, prefix_sort_key

TOPOLOGIES = Path(__file__).resolve().parents[2] / "topologies"
SHIPPED = sorted(p.name for p in TOPOLOGIES.glob("*.yaml"))

SECRETS = """
name: secrets
subnets:
  lan: {ipv4: 10.0.0.0/24, ipv6: "fd00::/64"}
nodes:
  a: {subnet: lan, labels: {rr: "yes"}, routeReflectorClusterID: 244.0.0.1}
  b: {subnet: lan, asNumber: 65001}
  c: {subnet: lan}
pools:
  p4: {cidr: 192.168.0.0/16, ipipMode: CrossSubnet}
  p6: {cidr: "fd80::/48", vxlanMode: Always}
bgp:
  nodeMeshPassword: mesh-secret
  nodeMeshMaxRestartTime: 2m
  peers:
    to-rr: {nodeSelector: "!has(rr)", peerSelector: "rr == 'yes'", password: rr-secret}
    outside: {peerIP: 10.0.0.200, asNumber: 65100, keepOriginalNextHop: true}
"""


def shipped(name: str) -> LabPlan:
    return build_plan(load_topology(TOPOLOGIES / name))


@pytest.fixture(scope="module")
def secret_plan() -> LabPlan:
    return build_plan(load_topology_text(SECRETS, "secrets.yaml", "secrets"))


# --- round trips --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_topology_reads_back_identically(name: str) -> None:
    plan = shipped(name)
    assert LabPlan.from_json(plan.to_json(secrets=True)) == plan
    # Through JSON text too (tuples become lists, and come back as tuples).
    assert LabPlan.from_json(json.loads(json.dumps(plan.to_json(secrets=True)))) == plan


def test_passwords_read_back_only_from_the_secret_form(secret_plan: LabPlan) -> None:
    with_password = [s for n in secret_plan.nodes for s in n.sessions if s.password]
    assert {s.password for s in with_password} == {"mesh-secret", "rr-secret"}
    assert LabPlan.from_json(secret_plan.to_json(secrets=True)) == secret_plan
    public = secret_plan.to_json()
    text = json.dumps(public)
    assert "mesh-secret" not in text and "rr-secret" not in text
    sessions = [s for n in public["nodes"] for s in n["sessions"]]
    assert {type(s["password"]) for s in sessions} == {bool}
    assert any(s["password"] for s in sessions) and "password_text" not in sessions[0]
    with pytest.raises(LabError, match=r"password_text: missing.*without secrets"):
        LabPlan.from_json(public)


def test_a_plan_without_passwords_reads_back_from_the_public_form() -> None:
    plan = shipped("mesh.yaml")
    assert LabPlan.from_json(plan.to_json()) == plan


# --- the contract -------------------------------------------------------------------------------

# The fields `plan --json` had before the wire form was typed: all of them stay.
OLD_NODE_FIELDS = {
    "name",
    "netns",
    "ipv4",
    "ipv6",
    "subnet",
    "mac",
    "subnet_ipv4",
    "subnet_ipv6",
    "gateway4",
    "gateway6",
    "as_number",
    "router_id",
    "cluster_id",
    "listen_port",
    "labels",
    "blocks",
    "block_pools",
    "ipip_tunnel_address",
    "vteps",
    "pods",
    "sessions",
    "expected_established",
    "rib",
    "fib",
}
OLD_SESSION_FIELDS = {
    "peer_ip",
    "peer_port",
    "peer_as",
    "local_as",
    "local_ip",
    "family",
    "kind",
    "passive",
    "rr_client",
    "cluster_id",
    "password",
    "peer_node",
    "source",
    "source_address",
    "keep_next_hop",
    "graceful_restart_time",
    "allow_local_as",
    "reason",
}
OLD_TOP_FIELDS = {
    "name",
    "description",
    "fabric_netns",
    "as_number",
    "node_to_node_mesh",
    "hold_time",
    "subnets",
    "routers",
    "pools",
    "nodes",
    "unsupported",
    "notes",
}


def test_plan_json_keeps_every_promised_and_former_field(secret_plan: LabPlan) -> None:
    data = json.loads(json.dumps(secret_plan.to_json()))
    assert set(data) >= OLD_TOP_FIELDS
    for node in data["nodes"]:
        assert set(node) >= OLD_NODE_FIELDS
        # README: name, ipv4, ipv6, subnet, blocks, sessions, fib
        assert isinstance(node["blocks"], list) and all(isinstance(b, str) for b in node["blocks"])
        for session in node["sessions"]:
            assert set(session) >= OLD_SESSION_FIELDS
            assert session["kind"] in ("mesh", "global", "node")
            assert isinstance(session["passive"], bool) and isinstance(session["rr_client"], bool)
        for route in node["fib"]:
            assert set(route) == {"prefix", "via", "dev", "onlink", "type", "source", "reason"}
            assert route["type"] in ("unicast", "blackhole")
            # A contract CI jobs may rely on: every expected route says who writes it.
            assert route["source"] in ("felix", "bgp", "local")
    rr = next(n for n in data["nodes"] if n["name"] == "a")
    assert {s["cluster_id"] for s in rr["sessions"] if s["rr_client"]} == {"244.0.0.1"}


# --- bad wire data ------------------------------------------------------------------------------


def _paths(data: object, here: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    """Every key and index path inside a JSON document."""
    out: list[tuple[object, ...]] = []
    if isinstance(data, dict):
        for key, value in data.items():
            out.append((*here, key))
            out += _paths(value, (*here, key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            out.append((*here, index))
            out += _paths(value, (*here, index))
    return out


def _parent(data: Any, path: tuple[object, ...]) -> Any:
    for part in path[:-1]:
        data = data[part]
    return data


@pytest.fixture(scope="module")
def flagship_json() -> dict[str, Any]:
    data: dict[str, Any] = shipped("flagship.yaml").to_json(secrets=True)
    return data


def test_missing_field_is_named(flagship_json: dict[str, Any]) -> None:
    data = copy.deepcopy(flagship_json)
    del data["nodes"][2]["sessions"][1]["peer_as"]
    with pytest.raises(LabError, match=r"^plan\.nodes\[2\]\.sessions\[1\]\.peer_as: missing$"):
        LabPlan.from_json(data)


def test_wrong_types_are_named(flagship_json: dict[str, Any]) -> None:
    cases: list[tuple[tuple[object, ...], object, str]] = [
        (("nodes", 0, "as_number"), "64512", "expected a whole number, found '64512'"),
        (("nodes", 0, "as_number"), True, "expected a whole number, found true"),
        (("nodes", 1, "fib", 0, "onlink"), 1, "expected true or false, found 1"),
        (("nodes", 1, "rib", 0, "as_path"), [64512, "x"], "expected a whole number"),
        (("nodes", 0, "labels"), ["a"], "expected an object, found list"),
        (("subnets",), {"a": 1}, "expected a list, found dict"),
        (("nodes", 0, "sessions", 0, "family"), "ipv5", "expected ipv4 or ipv6"),
        (("nodes", 0, "fib", 0, "type"), "local", "'local' is not one of unicast, blackhole"),
        (("nodes", 0, "vteps", 0, "family"), 5, "expected 4 or 6"),
    ]
    for path, value, message in cases:
        data = copy.deepcopy(flagship_json)
        _parent(data, path)[path[-1]] = value
        with pytest.raises(LabError) as err:
            LabPlan.from_json(data)
        where = "plan" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)
        assert str(err.value).startswith(f"{where}"), (where, str(err.value))
        assert message in str(err.value), (path, str(err.value))
    with pytest.raises(LabError, match=r"^plan: expected an object, found list$"):
        LabPlan.from_json([])


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_any_damage_is_a_lab_error(data: st.DataObject, flagship_json: dict[str, Any]) -> None:
    """Drop any field or put any JSON value anywhere: LabError, or a plan; never a
    KeyError, TypeError or ValueError."""
    damaged = copy.deepcopy(flagship_json)
    path = data.draw(st.sampled_from(_paths(damaged)))
    parent = _parent(damaged, path)
    if data.draw(st.booleans()):
        del parent[path[-1]]
    else:
        parent[path[-1]] = data.draw(
            st.one_of(
                st.none(),
                st.booleans(),
                st.integers(),
                st.text(max_size=5),
                st.lists(st.integers(), max_size=2),
                st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
            )
        )
    with contextlib.suppress(LabError):
        LabPlan.from_json(damaged)


# --- routes, prefixes, allocations --------------------------------------------------------------


def test_fib_route_json() -> None:
    route = FibRoute("10.0.0.0/26", "unicast", "10.0.1.2", "tunl0", True, "why", "felix")
    assert route.to_json() == {
        "prefix": "10.0.0.0/26",
        "via": "10.0.1.2",
        "dev": "tunl0",
        "onlink": True,
        "type": "unicast",
        "source": "felix",
        "reason": "why",
    }
    assert FibRoute.from_json(route.to_json()) == route
    # BIRD's routes carry the metric they are written with (the agents' state files).
    bird = FibRoute("10.0.0.0/26", "unicast", "10.0.1.2", "eth0", source="bgp", metric=2147483547)
    assert bird.to_json()["metric"] == 2147483547
    assert FibRoute.from_json(bird.to_json()) == bird
    # An observed route (the agents' state files) carries no reason.
    observed = {"prefix": "10.0.0.0/26", "via": None, "dev": None, "onlink": False}
    assert FibRoute.from_json({**observed, "type": "blackhole"}) == FibRoute(
        "10.0.0.0/26", "blackhole"
    )
    with pytest.raises(LabError, match=r"^route\.type: missing$"):
        FibRoute.from_json(observed)
    with pytest.raises(LabError, match=r"^fib\[3\]\.via: expected text or null, found 7$"):
        FibRoute.from_json({**observed, "type": "unicast", "via": 7}, "fib[3]")


def test_prefix_sort_key() -> None:
    prefixes = ["fd00::/64", "10.0.0.0/8", "10.0.0.0/24", "9.0.0.0/8", "10.0.1.0/24", "nonsense"]
    assert sorted(prefixes, key=prefix_sort_key) == [
        "9.0.0.0/8",
        "10.0.0.0/8",
        "10.0.0.0/24",
        "10.0.1.0/24",
        "fd00::/64",
        "nonsense",
    ]
    # By address, not by text ("10.0.0.128" sorts after "10.0.0.64").
    assert prefix_sort_key("10.0.0.64/26") < prefix_sort_key("10.0.0.128/26")


def test_sticky_round_trip_and_damage(secret_plan: LabPlan) -> None:
    sticky = Sticky.of(secret_plan)
    assert Sticky.from_json(json.loads(json.dumps(sticky.to_json()))) == sticky
    data = sticky.to_json()
    data["affinity"]["a"][0] = ["p4"]
    with pytest.raises(LabError, match=r"^allocations\.affinity\.a\[0\]: expected a pair"):
        Sticky.from_json(data)
    with pytest.raises(LabError, match=r"^allocations\.pods: missing$"):
        Sticky.from_json({"addresses": {}, "affinity": {}})


# --- the agent's configuration ------------------------------------------------------------------


@pytest.mark.parametrize("name", SHIPPED)
def test_agent_config_reads_back(name: str) -> None:
    plan = shipped(name)
    for node in plan.nodes:
        config = agent_config_of(plan, node.name)
        assert AgentConfig.from_json(json.loads(json.dumps(config.to_json()))) == config


def test_agent_config_damage_is_named(secret_plan: LabPlan) -> None:
    data = agent_config_of(secret_plan, "b").to_json()
    data["sessions"][0]["rr_client"] = "no"
    with pytest.raises(LabError, match=r"^cfg\.sessions\[0\]\.rr_client: expected true or false"):
        AgentConfig.from_json(data, "cfg")


def _old_core_state(plan_json: dict[str, Any], node_name: str) -> dict[str, Any]:
    """What `AgentCore.__init__` derived from the plan's JSON before it took an AgentConfig
    (the dict-reading code as it was), for comparison."""
    node = next(n for n in plan_json["nodes"] if n["name"] == node_name)
    links = {
        s["peer_ip"]: Link(
            s["peer_ip"],
            s["peer_as"],
            s["local_as"],
            s["rr_client"],
            s["keep_next_hop"],
            s["allow_local_as"] or 0,
        )
        for s in node["sessions"]
        if (s["peer_node"] or s["peer_router"]) is not None  # (a BGP router's BIRD: emulated)
    }
    exported = {p["name"] for p in plan_json["pools"] if not p["disable_bgp_export"]}
    own = {}
    for cidr, pool in node["block_pools"].items():
        if pool in exported:
            family = ipaddress.ip_network(cidr).version
            own[cidr] = BgpPath(prefix=cidr, next_hop=node[f"ipv{family}"])
    # (Service prefixes the node advertises: model.services, since Services came.)
    services = plan_json.get("services") or {"advertised": {}}
    for prefix in services["advertised"].get(node_name, []):
        family = ipaddress.ip_network(prefix).version
        own[prefix] = BgpPath(prefix=prefix, next_hop=node[f"ipv{family}"])
    # (Pod addresses outside its own blocks, in a pool that exports: borrowed, announced as
    # host routes since BIRD's export of them is emulated.)
    pools = [ipaddress.ip_network(p["cidr"]) for p in plan_json["pools"] if p["name"] in exported]
    blocks = [ipaddress.ip_network(b) for b in node["block_pools"]]
    for pod in node["pods"]:
        for address in (ipaddress.ip_address(a) for a in (pod["ipv4"], pod["ipv6"]) if a):
            if any(address in p for p in pools) and not any(address in b for b in blocks):
                prefix = f"{address}/{address.max_prefixlen}"
                own[prefix] = BgpPath(prefix=prefix, next_hop=node[f"ipv{address.version}"])
    vteps = {}
    for other in plan_json["nodes"]:
        for vtep in other["vteps"]:
            if other[f"ipv{vtep['family']}"]:
                vteps[other[f"ipv{vtep['family']}"]] = vtep["address"]
    return {
        "me": Speaker(
            node_name,
            node["router_id"],
            node["as_number"],
            node["cluster_id"],
            {f: node[f"ipv{f}"] for f in (4, 6) if node[f"ipv{f}"]},
        ),
        "links": links,
        "peers": {
            s["peer_ip"]: (s["peer_node"] or s["peer_router"], s["kind"])
            for s in node["sessions"]
            if (s["peer_node"] or s["peer_router"]) is not None
        },
        "router_ids": {
            n[f"ipv{f}"]: n["router_id"] for n in plan_json["nodes"] for f in (4, 6) if n[f"ipv{f}"]
        },
        "pools": [
            PoolRule(p["name"], p["cidr"], p["ipip_mode"], p["vxlan_mode"])
            for p in plan_json["pools"]
        ],
        "own": own,
        # BIRD's static blackholes reach the kernel for the pools BIRD programs only.
        "blackholes": [
            b
            for b in node["blocks"]
            if next(p for p in plan_json["pools"] if p["name"] == node["block_pools"][b])[
                "bird_programs"
            ]
        ],
        "ctx": RouteContext(
            node_subnet={f: node[f"subnet_ipv{f}"] for f in (4, 6) if node[f"subnet_ipv{f}"]},
            gateway={f: node[f"gateway{f}"] for f in (4, 6) if node[f"gateway{f}"]},
            vteps=vteps,
        ),
    }


@pytest.mark.parametrize("name", [*SHIPPED, "secrets"])
def test_agent_core_holds_what_it_held_before(name: str, secret_plan: LabPlan) -> None:
    plan = secret_plan if name == "secrets" else shipped(name)
    plan_json = json.loads(json.dumps(plan.to_json()))
    for node in plan.nodes:
        core = AgentCore(agent_config_of(plan, node.name))
        old = _old_core_state(plan_json, node.name)
        assert core.me == old["me"]
        assert core.links == old["links"]
        assert {ip: (p.peer_node, p.kind) for ip, p in core.peers.items()} == old["peers"]
        assert core.router_ids == old["router_ids"]
        assert core.pools == old["pools"]
        assert core.own == old["own"]
        assert core.blackholes == old["blackholes"]  # no one-address blocks here
        assert core.ctx == old["ctx"]
        assert core.dirty == set(old["blackholes"]) | set(old["own"])
