"""The commented starter topology `meshemu init` writes (pure: text only).

Owns the text a new user edits first: every section of the native topology with a comment
saying what it is and which Calico field it stands for. A unit test plans it, so it always
plans cleanly.
"""

from __future__ import annotations

STARTER_TOPOLOGY = """\
# A meshemu lab: a Calico-networked Kubernetes cluster emulated on this machine.
# Check it:  meshemu validate {file}
# Read it:   meshemu plan {file}        (every session and route, with why)
# Draw it:   meshemu graph {file} -o {name}.svg
# Run it:    meshemu up {file}          (root; then `meshemu verify`, `meshemu down {name}`)
name: {name}
description: two racks, IPv4 and IPv6, IP-in-IP (IPv4) and VXLAN (IPv6) only across racks

# L2 segments (racks). A node's subnet is the prefix of its Calico Node bgp.ipv4Address /
# bgp.ipv6Address: CrossSubnet encapsulation tunnels only to nodes outside it.
subnets:
  rack1:
    ipv4: 10.20.1.0/24
    ipv6: fd00:20:1::/64
  rack2:
    ipv4: 10.20.2.0/24
    ipv6: fd00:20:2::/64

# Routers join subnets. Without a `bgp:` section a router only forwards (it knows no pod
# routes); with one it runs BIRD 2 and peers (see README, "The BGP fabric").
routers:
  gateway:
    subnets: [rack1, rack2]

# Kubernetes nodes: one network namespace each, with a BGP speaker. Addresses are handed out
# from the subnet unless you fix them (`ipv4: 10.20.1.10`). Also: labels, asNumber,
# routeReflectorClusterID (makes the node a route reflector), speaker: bird.
nodes:
  node1: {{subnet: rack1, labels: {{rack: rack1}}}}
  node2: {{subnet: rack1, labels: {{rack: rack1}}}}
  node3: {{subnet: rack2, labels: {{rack: rack2}}, pods: 1}}   # pods per node (default 2)

# Calico IPPools: blocks of blockSize are claimed per node (IPAM) and announced over BGP.
# ipipMode / vxlanMode: Always | CrossSubnet | Never (IPv6 has no IP-in-IP in Calico).
pools:
  ipv4-pool:
    cidr: 192.168.0.0/16
    blockSize: 26
    ipipMode: CrossSubnet
    natOutgoing: true
  ipv6-pool:
    cidr: fd80:20::/64
    vxlanMode: CrossSubnet

# Calico BGPConfiguration (and BGPPeers under `peers:`).
bgp:
  asNumber: 64512
  nodeToNodeMeshEnabled: true   # the full iBGP mesh; turn off when you use route reflectors
  # meshemu's own BGP hold time for the lab (seconds; Calico's BIRD uses 240): a short one
  # makes a lost link visible within seconds.
  holdTime: 9
"""


def starter_topology(name: str, file: str) -> str:
    """The starter text for lab `name`, its comments naming `file` in the commands."""
    return STARTER_TOPOLOGY.format(name=name, file=file)
