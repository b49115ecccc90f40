"""The containerlab labels meshemu writes and reads, and the names both directions share.

Owns the vocabulary of a containerlab topology that carries a meshemu lab: the role of each
container (`meshemu.role`), its subnet(s), AS number and route reflector cluster, the rest of its
native fields as JSON (`meshemu.spec`), the lab-wide sections as JSON (`meshemu.lab`, on
`topology.defaults`), and the interface names containerlab gives lab links (`eth0` is the
management interface, so lab interfaces start at `eth1`). Nothing here decides anything.
"""

from __future__ import annotations

ROLE = "meshemu.role"
SUBNET = "meshemu.subnet"  # a node's subnet; the subnet a bridge or switch is
SUBNETS = "meshemu.subnets"  # a router's subnets, comma-separated, in interface order
AS_NUMBER = "meshemu.as"
CLUSTER_ID = "meshemu.rr-cluster-id"
SPEC = "meshemu.spec"  # JSON: the element's other native fields (non-default ones)
LAB = "meshemu.lab"  # JSON, on topology.defaults: the lab-wide native sections
# The topology's top-level fields the containers, bridges and links say; `meshemu.lab` holds
# all the others.
STRUCTURE = frozenset({"name", "subnets", "routers", "nodes", "outside"})
IPV4 = "meshemu.ipv4"  # a bridge's or switch's subnet prefix (optional on import)
IPV6 = "meshemu.ipv6"

NODE, ROUTE_REFLECTOR, ROUTER, OUTSIDE, SWITCH = (
    "node",
    "route-reflector",
    "router",
    "outside",
    "switch",
)
ROLES = (NODE, ROUTE_REFLECTOR, ROUTER, OUTSIDE, SWITCH)
# Calico's documentation's example cluster ID (Configure BGP peering, route reflectors): the
# one an imported `route-reflector` without a `meshemu.rr-cluster-id` label gets.
DEFAULT_CLUSTER_ID = "244.0.0.1"

# Kinds an imported node may have: a Linux container (by its role) or an L2 segment.
LINUX = "linux"
BRIDGE_KINDS = ("bridge", "ovs-bridge")


def lab_ifname(position: int) -> str:
    """The containerlab interface of a container's `position`-th lab link (0-based): eth1..."""
    return f"eth{position + 1}"
