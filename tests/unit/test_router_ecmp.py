"""ECMP on the BGP routers: which paths BIRD's `merge paths on` merges into one kernel route
(`model.phases.fabric._merged`, after BIRD 2.0.12 rt_export_merged / bgp_rte_mergable), how
the plan carries it (`RouterRoute.multipath`, `FibRoute.nexthops`) and the shipped topology
that shows it (topologies/services.yaml: a Service CIDR every node advertises)."""

from __future__ import annotations

from pathlib import Path as FilePath

import pytest

from meshemu.model.bgp import Path
from meshemu.model.labplan import RouterInterface, RouterPlan, StaticRoute
from meshemu.model.load import load_topology
from meshemu.model.phases.fabric import MERGE_LIMIT, _merged
from meshemu.model.plan import LabPlan, build_plan
from meshemu.model.routes import FibRoute, NextHop

TOPOLOGIES = FilePath(__file__).resolve().parents[2] / "topologies"
PREFIXES = {("rack", 4): "10.0.0.0/24", ("far", 4): "10.9.0.0/24"}
ROUTER = RouterPlan(
    name="tor",
    netns="x",
    interfaces=(
        RouterInterface("rack", "eth1", "f1", "10.0.0.1", None, "02:00:00:00:00:01"),
        RouterInterface("far", "eth2", "f2", "10.9.0.1", None, "02:00:00:00:00:02"),
    ),
    routes=(StaticRoute("10.7.0.0/16", "10.9.0.254"),),
)


def _path(
    hop: str, as_path: tuple[int, ...] = (65001,), ebgp: bool = True, local_pref: int = 100
) -> Path:
    return Path("10.96.0.0/16", hop, as_path, local_pref, learned_from=hop, ebgp=ebgp)


def _vias(paths: list[Path]) -> list[str]:
    return [h.via for h in _merged(ROUTER, paths, PREFIXES)]


def test_equal_ebgp_paths_merge_sorted_by_gateway_whichever_is_best() -> None:
    paths = [_path("10.0.0.13"), _path("10.0.0.2"), _path("10.0.0.11", as_path=(65002,))]
    assert _vias(paths) == ["10.0.0.2", "10.0.0.11", "10.0.0.13"]
    assert {h.dev for h in _merged(ROUTER, paths, PREFIXES)} == {"eth1"}


@pytest.mark.parametrize(
    "other",
    [
        _path("10.0.0.3", as_path=(65001, 65001)),  # longer AS path
        _path("10.0.0.3", ebgp=False),  # iBGP beside an eBGP best
        _path("10.0.0.3", local_pref=200),  # another local preference
        _path("10.7.0.3"),  # IGP metric: resolved through a static route, not connected
        _path("10.8.0.3"),  # unreachable: no next hop to merge
    ],
    ids=["as-path", "ibgp", "local-pref", "igp-metric", "unreachable"],
)
def test_a_path_not_as_good_as_the_best_is_not_merged(other: Path) -> None:
    assert _vias([_path("10.0.0.2"), other]) == ["10.0.0.2"]


def test_paths_through_one_gateway_are_one_next_hop_and_the_limit_is_sixteen() -> None:
    # Two multihop next hops both resolved through 10.9.0.254: merged once (nexthop_merge).
    assert _vias([_path("10.7.0.3"), _path("10.7.0.4")]) == ["10.9.0.254"]
    many = [_path(f"10.0.0.{i}") for i in range(40, 19, -1)]
    assert _vias(many) == [f"10.0.0.{i}" for i in range(20, 20 + MERGE_LIMIT)]


@pytest.fixture(scope="module")
def services() -> LabPlan:
    return build_plan(load_topology(TOPOLOGIES / "services.yaml"))


def test_the_tor_has_an_ecmp_route_to_the_cidrs_every_node_advertises(services: LabPlan) -> None:
    tor = next(r for r in services.routers if r.name == "tor1")
    assert tor.bgp is not None
    routes = {r.prefix: r for r in tor.bgp.routes}
    for prefix, family in (("203.0.113.0/24", 4), ("2001:db8:80::/64", 6), ("10.96.0.0/16", 4)):
        nodes = [services.node(n).address(family) for n in ("node1", "node2", "node3")]
        route = routes[prefix]
        assert [h.via for h in route.multipath] == nodes
        assert [h.learned_from for h in route.multipath] == nodes
        assert route.paths == 3 and "ECMP over 3 next hops" in route.reason
    # nginx is Local: only node3 advertises its /32, one next hop.
    assert routes["203.0.113.80/32"].multipath == ()
    fib = {r.prefix: r for r in tor.bgp.fib()}
    ecmp = fib["203.0.113.0/24"]
    assert (ecmp.via, ecmp.dev, ecmp.source) == (None, None, "bgp")
    assert ecmp.text() == (
        "203.0.113.0/24 nexthop via 10.46.1.2 dev eth0 nexthop via 10.46.1.3 dev eth0 "
        "nexthop via 10.46.1.4 dev eth0"
    )
    assert fib["203.0.113.80/32"].nexthops == ()
    # The plan's JSON reads back identical, multipath included.
    assert LabPlan.from_json(services.to_json(secrets=True)).routers == services.routers


def test_fib_route_next_hops_travel_in_json_and_compare_in_any_order() -> None:
    hops = (NextHop("10.0.0.2", "eth1"), NextHop("10.0.0.3", "eth1"))
    route = FibRoute("10.96.0.0/16", "unicast", source="bgp", nexthops=hops)
    data = route.to_json()
    assert data["nexthops"] == [
        {"via": "10.0.0.2", "dev": "eth1"},
        {"via": "10.0.0.3", "dev": "eth1"},
    ]
    assert FibRoute.from_json(data) == route
    swapped = FibRoute("10.96.0.0/16", "unicast", source="bgp", nexthops=hops[::-1])
    assert swapped.key() == route.key()
    assert FibRoute("10.96.0.0/16", "unicast", source="bgp", nexthops=hops[:1]).key() != route.key()
    # A route with one next hop keeps its JSON and key exactly as before.
    plain = FibRoute("10.96.0.0/16", "unicast", "10.0.0.2", "eth1")
    assert "nexthops" not in plain.to_json()
    assert plain.key() == ("10.96.0.0/16", "unicast", "10.0.0.2", "eth1", False)
