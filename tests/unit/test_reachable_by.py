"""Calico's `reachableBy`: a static route to the peer via the gateway, as confd renders it."""

from __future__ import annotations

from meshemu.model.labplan import StaticRoute
from meshemu.model.load import load_topology_text
from meshemu.model.plan import build_plan

LAB = """
name: rb
subnets:
  lan: {ipv4: 10.20.0.0/24, ipv6: "fd00:20::/64"}
routers:
  gw: {subnets: [lan]}
nodes:
  a: {subnet: lan}
  b: {subnet: lan}
pools:
  p4: {cidr: 10.244.0.0/16}
bgp:
  peers:
    upstream:
      node: a
      peerIP: 192.0.2.50
      asNumber: 65000
      reachableBy: GATEWAY
    upstream6:
      node: a
      peerIP: "2001:db8::50"
      asNumber: 65000
      reachableBy: "fd00:20::1"
"""


def _plan(gateway: str):  # type: ignore[no-untyped-def]
    return build_plan(load_topology_text(LAB.replace("GATEWAY", gateway), "rb.yaml", "rb"))


def test_a_node_gets_a_host_route_to_each_reachable_by_peer_via_its_gateway() -> None:
    plan = _plan("10.20.0.1")
    assert plan.node("a").reachable_by_routes() == (
        StaticRoute("192.0.2.50/32", "10.20.0.1"),
        StaticRoute("2001:db8::50/128", "fd00:20::1"),
    )
    assert plan.node("b").reachable_by_routes() == ()  # the BGPPeers name node a only


def test_a_gateway_off_the_nodes_subnet_gives_no_route() -> None:
    """BIRD could not use a gateway it has no interface towards either."""
    plan = _plan("10.99.0.1")
    assert plan.node("a").reachable_by_routes() == (StaticRoute("2001:db8::50/128", "fd00:20::1"),)
