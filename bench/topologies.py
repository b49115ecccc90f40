"""The benchmark's labs, as topology documents: dual-stack full meshes and reflector labs.

Owns what is measured, so the figures of two runs compare: one subnet, dual-stack, 2 pods per
node, IPv4 pool with IPIP CrossSubnet (every node has its `tunl0`, as Calico's nodes do; in one
subnet no route uses it), IPv6 pool routed natively, Calico's default timers. The BIRD reference
runs the same lab with `ipipMode: Never`: meshemu's BIRD nodes do not run Felix, which programs
an encapsulating pool's routes, so `up` refuses IPIP with BIRD nodes; in one subnet both modes
give every node the same routes, the difference is the tunnel device (and its process here).
The reflector lab has the mesh off and two reflector nodes (one cluster ID) that every other
node peers with.
"""

from __future__ import annotations

from typing import Any

KINDS = ("mesh", "rr")
SPEAKERS = ("exabgp", "bird")
PODS_PER_NODE = 2


def lab_name(kind: str, nodes: int, speaker: str) -> str:
    """`benchm100e`: bench, m(esh)/r(eflectors)/f(loor), the node count, e(xabgp)/b(ird)."""
    return f"bench{kind[0]}{nodes}{speaker[0]}"


def topology(kind: str, nodes: int, speaker: str) -> dict[str, Any]:
    """The topology document of one benchmark lab (`kind` mesh | rr | floor)."""
    if kind not in (*KINDS, "floor") or speaker not in SPEAKERS:
        raise ValueError(f"unknown lab kind {kind!r} or speaker {speaker!r}")
    if not 2 <= nodes <= 1000:
        raise ValueError(f"{nodes} nodes: the benchmark runs 2 to 1000")
    members: dict[str, Any] = {}
    reflectors = 2 if kind == "rr" else 0
    for index in range(1, nodes + 1):
        node: dict[str, Any] = {"subnet": "lan", "pods": PODS_PER_NODE}
        if index <= reflectors:
            node = {
                "subnet": "lan",
                "pods": 0,
                "labels": {"route-reflector": "true"},
                "routeReflectorClusterID": "244.0.0.1",
            }
        members[f"n{index:03d}"] = node
    bgp: dict[str, Any] = {"asNumber": 64512, "nodeToNodeMeshEnabled": kind != "rr"}
    if kind == "rr":
        bgp["peers"] = {
            "to-reflectors": {
                "nodeSelector": "all()",
                "peerSelector": "route-reflector == 'true'",
            }
        }
    return {
        "name": lab_name(kind, nodes, speaker),
        "description": f"benchmark: {nodes}-node dual-stack {kind}, {speaker} speakers",
        "speaker": speaker,
        # /21: room for 1000 nodes and the gateway.
        "subnets": {"lan": {"ipv4": "10.77.0.0/21", "ipv6": "fd00:77::/64"}},
        "nodes": members,
        "pools": {
            "v4": {
                "cidr": "10.244.0.0/16",
                "ipipMode": "Never" if speaker == "bird" else "CrossSubnet",
            },
            "v6": {"cidr": "fd00:244::/64", "vxlanMode": "Never"},
        },
        "bgp": bgp,
    }
