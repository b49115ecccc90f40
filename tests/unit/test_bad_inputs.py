"""Bad inputs through the real CLI: exit 2, one located message per problem, never a traceback.

Every case is run through both `meshemu validate` and `meshemu plan`; each must exit 2, print
nothing on stdout (no half-built plan), name the location of the problem on stderr, and leave
nothing behind but the input file.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from meshemu.cli import main

# A valid native topology; each case below breaks one thing in a copy of it.
BASE: dict[str, Any] = {
    "name": "bad",
    "subnets": {
        "rack1": {"ipv4": "10.0.1.0/24", "ipv6": "fd00:1::/64"},
        "rack2": {"ipv4": "10.0.2.0/24", "ipv6": "fd00:2::/64"},
    },
    "routers": {"spine": {"subnets": ["rack1", "rack2"]}},
    "nodes": {
        "node1": {"subnet": "rack1"},
        "node2": {"subnet": "rack1"},
        "node3": {"subnet": "rack2"},
    },
    "pools": {
        "v4": {"cidr": "192.168.0.0/16", "ipipMode": "CrossSubnet"},
        "v6": {"cidr": "fd80::/64", "vxlanMode": "CrossSubnet"},
    },
    "bgp": {"asNumber": 64512, "nodeToNodeMeshEnabled": True},
}

# A valid Calico bundle; bundle cases append or replace documents.
BUNDLE_NODES = """\
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: worker-a}
spec:
  bgp: {ipv4Address: 10.40.1.11/24, ipv6Address: 'fd00:40:1::11/64'}
---
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: worker-b}
spec:
  bgp: {ipv4Address: 10.40.2.11/24}
"""

TUTORIAL_MANIFEST = """\
kind: CalicoNetwork
ipPools:
- cidr: fd80:24e2:f998:72d7::/64
  ipipMode: CrossSubnet
  natOutgoing: Enabled
"""


def native(edit: Callable[[dict[str, Any]], object]) -> str:
    data = copy.deepcopy(BASE)
    edit(data)
    return yaml.safe_dump(data, sort_keys=False)


def bundle(*extra: str) -> str:
    return BUNDLE_NODES + "".join(f"---\n{doc}" for doc in extra)


def setp(path: str, value: object) -> Callable[[dict[str, Any]], None]:
    """An edit that sets a dotted path (creating mappings on the way)."""

    def edit(data: dict[str, Any]) -> None:
        *parents, last = path.split("|")
        target = data
        for key in parents:
            target = target.setdefault(key, {})
        target[last] = value

    return edit


def delp(path: str) -> Callable[[dict[str, Any]], None]:
    def edit(data: dict[str, Any]) -> None:
        *parents, last = path.split("|")
        target = data
        for key in parents:
            target = target[key]
        del target[last]

    return edit


def edits(*fns: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
    def edit(data: dict[str, Any]) -> None:
        for fn in fns:
            fn(data)

    return edit


def rename_node(new: str) -> Callable[[dict[str, Any]], None]:
    def edit(data: dict[str, Any]) -> None:
        data["nodes"][new] = data["nodes"].pop("node2")

    return edit


def peer(**spec: object) -> Callable[[dict[str, Any]], None]:
    return setp("bgp|peers|p1", dict(spec))


# (id, file text, extra CLI args, substrings that must all appear in stderr)
CASES: list[Any] = [
    # --- the file itself ---
    pytest.param(
        "name: t\nsubnets: [rack1\nnodes: {}\n",
        [],
        ["malformed YAML", "bad.yaml:"],
        id="yaml-unclosed",
    ),
    pytest.param(
        "name: t\nnodes:\n\tnode1: {}\n",
        [],
        ["malformed YAML", "bad.yaml:3:"],
        id="yaml-tab-indent",
    ),
    pytest.param("", [], ["bad.yaml", "is empty"], id="empty-file"),
    pytest.param("# only a comment\n", [], ["bad.yaml", "is empty"], id="comment-only"),
    pytest.param("- a\n- b\n", [], ["bad.yaml", "is not a mapping"], id="top-level-list"),
    pytest.param(
        "name: a\n---\nname: b\n", [], ["bad.yaml", "several YAML documents"], id="two-documents"
    ),
    # --- wrong types ---
    pytest.param(
        native(setp("nodes|node1|pods", "many")),
        [],
        ["nodes.node1.pods", "integer"],
        id="pods-text",
    ),
    pytest.param(
        native(setp("nodes|node1|pods", 251)), [], ["nodes.node1.pods"], id="pods-out-of-range"
    ),
    pytest.param(
        native(setp("subnets|rack1|ipv4", "10.0.1.300/24")),
        [],
        ["subnets.rack1.ipv4"],
        id="subnet-not-a-prefix",
    ),
    pytest.param(
        native(setp("bgp|nodeToNodeMeshEnabled", "maybe")),
        [],
        ["bgp.nodeToNodeMeshEnabled", "true or false"],
        id="mesh-not-bool",
    ),
    pytest.param(
        native(setp("routers|spine|subnets", "rack1")),
        [],
        ["routers.spine.subnets", "list"],
        id="router-subnets-not-list",
    ),
    pytest.param(
        native(setp("nodes", ["node1", "node2"])), [], ["nodes", "dictionary"], id="nodes-is-list"
    ),
    pytest.param(
        native(setp("pools|v4|ipipMode", "Sometimes")),
        [],
        ["pools.v4.ipipMode", "Always", "CrossSubnet", "Never"],
        id="ipip-mode-unknown",
    ),
    pytest.param(
        native(delp("nodes|node1|subnet")),
        [],
        ["nodes.node1.subnet", "required"],
        id="node-no-subnet",
    ),
    # --- unknown keys ---
    pytest.param(
        native(setp("colour", "red")), [], ["colour: unknown field"], id="unknown-top-key"
    ),
    pytest.param(
        native(setp("nodes|node1|colour", "red")),
        [],
        ["nodes.node1.colour: unknown field"],
        id="unknown-node-key",
    ),
    pytest.param(
        native(setp("pools|v4|ipipmode", "Always")),
        [],
        ["pools.v4.ipipmode: unknown field"],
        id="unknown-pool-key",
    ),
    pytest.param(
        native(peer(peerIP="10.0.1.50", asNumber=65000, peerAS=65000)),
        [],
        ["bgp.peers.p1.peerAS: unknown field"],
        id="unknown-peer-key",
    ),
    pytest.param(
        bundle(
            "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: p4}\n"
            "spec: {cidr: 192.168.0.0/16, ipipmode: Always}\n"
        ),
        [],
        ["IPPool/p4.spec.ipipmode: unknown field"],
        id="unknown-calico-spec-key",
    ),
    pytest.param(
        bundle(
            "apiVersion: projectcalico.org/v3\nkind: BGPConfiguration\nmetadata: {name: default}\n"
            "spec: {nodeToNodeMesh: false}\n"
        ),
        [],
        ["BGPConfiguration/default.spec.nodeToNodeMesh: unknown field"],
        id="unknown-bgpconfig-key",
    ),
    pytest.param(
        bundle(
            "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: p4}\n"
            "spec: {cidr: 192.168.0.0/16}\nspecs: {}\n"
        ),
        [],
        ["IPPool/p4.specs: unknown field"],
        id="unknown-calico-top-key",
    ),
    # --- references ---
    pytest.param(
        native(setp("nodes|node3|subnet", "rack9")),
        [],
        ["nodes.node3.subnet: unknown subnet 'rack9'", "known subnets: rack1, rack2"],
        id="unknown-subnet-ref",
    ),
    pytest.param(
        native(setp("routers|spine|subnets", ["rack1", "rack9"])),
        [],
        ["routers.spine.subnets[1]: unknown subnet 'rack9'"],
        id="router-unknown-subnet",
    ),
    pytest.param(
        native(peer(node="node9", peerIP="10.0.1.50", asNumber=65000)),
        [],
        ["bgp.peers.p1.node: unknown node 'node9'"],
        id="peer-unknown-node",
    ),
    pytest.param(
        native(setp("routers|node1", {"subnets": ["rack1"]})),
        [],
        ["routers.node1", "both a node and a router"],
        id="node-router-name-clash",
    ),
    pytest.param(
        native(delp("routers")),
        [],
        ["routers: no router joins the node subnets rack1 | rack2", "add a router"],
        id="subnets-not-joined",
    ),
    # --- overlaps ---
    pytest.param(
        native(setp("subnets|rack2|ipv4", "10.0.1.128/25")),
        [],
        ["subnets.rack2.ipv4", "overlaps subnet 10.0.1.0/24"],
        id="overlapping-subnets",
    ),
    pytest.param(
        native(setp("pools|v4b", {"cidr": "192.168.10.0/24", "blockSize": 26})),
        [],
        ["pools.v4b.cidr", "overlaps pool 192.168.0.0/16"],
        id="overlapping-pools",
    ),
    pytest.param(
        native(setp("pools|v4|cidr", "10.0.0.0/16")),
        [],
        ["pools.v4.cidr", "overlaps subnet rack1"],
        id="pool-overlaps-subnet",
    ),
    pytest.param(
        native(setp("pools|v6|cidr", "fd00:1::/64")),
        [],
        ["pools.v6.cidr", "overlaps subnet rack1"],
        id="v6-pool-overlaps-subnet",
    ),
    # --- Calico's pool rules ---
    pytest.param(
        native(setp("pools|v6", {"cidr": "fd80::/64", "ipipMode": "CrossSubnet"})),
        [],
        ["pools.v6.ipipMode", "IPv4-only", "vxlanMode"],
        id="ipip-on-ipv6-native",
    ),
    pytest.param(
        bundle(
            "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: v6pool}\n"
            "spec: {cidr: 'fd80::/64', ipipMode: Always}\n"
        ),
        [],
        ["IPPool/v6pool.spec.ipipMode", "IPv4-only", "vxlanMode"],
        id="ipip-on-ipv6-calico-ippool",
    ),
    pytest.param(
        native(setp("pools|v4|vxlanMode", "Always")),
        [],
        ["pools.v4:", "ipipMode CrossSubnet and vxlanMode Always are both on"],
        id="ipip-and-vxlan",
    ),
    pytest.param(
        native(setp("pools|v4|blockSize", 33)),
        [],
        ["pools.v4.blockSize", "outside 20-32"],
        id="blocksize-v4-too-big",
    ),
    pytest.param(
        native(setp("pools|v4|blockSize", 19)),
        [],
        ["pools.v4.blockSize", "outside 20-32"],
        id="blocksize-v4-too-small",
    ),
    pytest.param(
        native(setp("pools|v6|blockSize", 115)),
        [],
        ["pools.v6.blockSize", "outside 116-128"],
        id="blocksize-v6-too-small",
    ),
    pytest.param(
        native(setp("pools|v6|blockSize", 26)),
        [],
        ["pools.v6.blockSize", "outside 116-128"],
        id="blocksize-v6-given-v4-size",
    ),
    pytest.param(
        native(setp("pools|v4|cidr", "192.168.0.1/16")),
        [],
        ["pools.v4.cidr", "host bits", "192.168.0.0/16"],
        id="pool-host-bits",
    ),
    pytest.param(
        native(setp("pools|v4|cidr", "not-a-cidr")),
        [],
        ["pools.v4.cidr", "not an IPv4 or IPv6 CIDR"],
        id="pool-cidr-garbage",
    ),
    pytest.param(
        native(setp("pools|v4|cidr", "192.168.0.0/28")),
        [],
        ["pools.v4.cidr", "smaller than one block (/26)"],
        id="pool-smaller-than-block",
    ),
    pytest.param(
        native(
            edits(
                setp("pools|v4", {"cidr": "192.168.0.0/26", "blockSize": 26}),
                setp("ipam|strictAffinity", True),
            )
        ),
        [],
        ["pools.v4", "(node2: 2, node3: 2)", "strict affinity enabled", "strictAffinity: false"],
        id="pool-too-small-for-nodes",
    ),
    pytest.param(
        native(
            edits(
                setp("pools|v4", {"cidr": "192.168.0.0/26", "blockSize": 29}),
                setp("nodes|node1|pods", 100),
                setp("ipam|strictAffinity", True),
            )
        ),
        [],
        ["pools.v4", "left for 40 pod(s) (node1: 36, node2: 2, node3: 2)", "a larger pool cidr"],
        id="pool-too-small-many-pods",
    ),
    pytest.param(
        native(setp("pools|v4|nodeSelector", "has(")),
        [],
        ["pools.v4.nodeSelector", "invalid selector"],
        id="selector-unclosed-has",
    ),
    # --- BGP peers ---
    pytest.param(
        native(peer(node="node1", nodeSelector="all()", peerIP="10.0.1.50", asNumber=65000)),
        [],
        ["bgp.peers.p1: sets both node and nodeSelector"],
        id="peer-node-and-nodeselector",
    ),
    pytest.param(
        native(peer(peerIP="10.0.1.50", peerSelector="has(rr)", asNumber=65000)),
        [],
        ["bgp.peers.p1: sets both peerIP and peerSelector"],
        id="peer-ip-and-peerselector",
    ),
    pytest.param(
        native(peer(nodeSelector="all()")),
        [],
        ["bgp.peers.p1: sets neither peerIP nor peerSelector"],
        id="peer-neither",
    ),
    pytest.param(
        native(peer(peerIP="10.0.1.999", asNumber=65000)),
        [],
        ["bgp.peers.p1.peerIP", "not an IP address"],
        id="peer-ip-garbage",
    ),
    pytest.param(
        native(peer(peerIP="10.0.9.9")),
        [],
        ["bgp.peers.p1.asNumber", "no asNumber"],
        id="external-peer-without-as",
    ),
    pytest.param(
        native(peer(nodeSelector="rack = 'a'", peerSelector="has(rr)")),
        [],
        ["bgp.peers.p1.nodeSelector", "invalid selector"],
        id="selector-single-equals",
    ),
    pytest.param(
        native(peer(nodeSelector="all()", peerSelector="rr == true")),
        [],
        ["bgp.peers.p1.peerSelector", "invalid selector"],
        id="selector-unquoted-value",
    ),
    pytest.param(
        native(peer(nodeSelector="all()", peerSelector="zone in {'a', 'b'")),
        [],
        ["bgp.peers.p1.peerSelector", "invalid selector"],
        id="selector-unclosed-set",
    ),
    pytest.param(
        native(peer(nodeSelector="&& has(a)", peerSelector="has(rr)")),
        [],
        ["bgp.peers.p1.nodeSelector", "invalid selector"],
        id="selector-leading-and",
    ),
    pytest.param(
        native(peer(nodeSelector="has(a) ||", peerSelector="has(rr)")),
        [],
        ["bgp.peers.p1.nodeSelector", "invalid selector"],
        id="selector-trailing-or",
    ),
    pytest.param(
        native(setp("nodes|node1|routeReflectorClusterID", "rr-cluster-1")),
        [],
        ["nodes.node1.routeReflectorClusterID", "not in IPv4 address form"],
        id="cluster-id-text",
    ),
    pytest.param(
        native(setp("nodes|node1|routeReflectorClusterID", "1.2.3")),
        [],
        ["nodes.node1.routeReflectorClusterID", "not in IPv4 address form"],
        id="cluster-id-three-octets",
    ),
    pytest.param(native(setp("bgp|asNumber", 0)), [], ["bgp.asNumber"], id="as-zero"),
    pytest.param(
        native(setp("nodes|node1|asNumber", 4294967296)),
        [],
        ["nodes.node1.asNumber", "4294967295"],
        id="as-too-big",
    ),
    pytest.param(
        native(peer(peerIP="10.0.9.9", asNumber=-5)),
        [],
        ["bgp.peers.p1.asNumber"],
        id="peer-as-negative",
    ),
    # --- names that are not DNS labels / could break a shell or an interface name ---
    pytest.param(
        native(rename_node("node;rm -rf")),
        [],
        ["nodes.node;rm -rf", "not a DNS label"],
        id="name-shell",
    ),
    pytest.param(
        native(rename_node("Node1")), [], ["nodes.Node1", "not a DNS label"], id="name-uppercase"
    ),
    pytest.param(native(rename_node("a b")), [], ["nodes.a b", "not a DNS label"], id="name-space"),
    pytest.param(
        native(rename_node("../x")), [], ["nodes.../x", "not a DNS label"], id="name-dotdot"
    ),
    pytest.param(
        native(rename_node("-node")), [], ["nodes.-node", "not a DNS label"], id="name-leading-dash"
    ),
    pytest.param(
        native(rename_node("n" * 64)), [], [f"nodes.{'n' * 64}", "not a DNS label"], id="name-64"
    ),
    pytest.param(
        native(
            edits(
                setp("subnets|$(reboot)", {"ipv4": "10.0.3.0/24"}),
                setp("nodes|node3|subnet", "$(reboot)"),
            )
        ),
        [],
        ["subnets.$(reboot)", "not a DNS label"],
        id="subnet-name-shell",
    ),
    pytest.param(
        native(peer(**{"peerIP": "10.0.9.9", "asNumber": 65000})).replace("p1:", "'peer`id`':"),
        [],
        ["bgp.peers.peer`id`", "not a DNS label"],
        id="peer-name-backtick",
    ),
    pytest.param(
        native(setp("name", "averyverylonglabname")),
        [],
        ["name:", "longer than 12 characters"],
        id="lab-name-too-long",
    ),
    pytest.param(
        native(setp("name", "lab/x")), [], ["name:", "not a DNS label"], id="lab-name-slash"
    ),
    pytest.param(
        native(lambda d: None), ["--name", "a;b"], ["name:", "not a DNS label"], id="cli-name-shell"
    ),
    pytest.param(
        native(setp("nodes|node1|labels", {"zone": "a b"})),
        [],
        ["nodes.node1.labels.zone", "not a Kubernetes label value"],
        id="label-value-space",
    ),
    # --- addresses ---
    pytest.param(
        native(setp("nodes|node1|ipv4", "10.0.2.10")),
        [],
        ["nodes.node1.ipv4", "not a host address of subnet rack1"],
        id="fixed-address-outside-subnet",
    ),
    pytest.param(
        native(setp("nodes|node1|ipv4", "10.0.1.0")),
        [],
        ["nodes.node1.ipv4", "not a host address of subnet rack1"],
        id="fixed-address-network-address",
    ),
    pytest.param(
        native(edits(setp("nodes|node1|ipv4", "10.0.1.10"), setp("nodes|node2|ipv4", "10.0.1.10"))),
        [],
        ["nodes.node2.ipv4", "10.0.1.10 is also nodes.node1"],
        id="duplicate-node-address",
    ),
    pytest.param(
        native(setp("nodes|node3|ipv6", "fd00:1::10")),
        [],
        ["nodes.node3.ipv6", "not a host address of subnet rack2"],
        id="fixed-v6-address-outside-subnet",
    ),
    pytest.param(
        native(setp("subnets|rack2|ipv4", "10.0.2.0/30")),
        [],
        ["subnets.rack2.ipv4", "too small"],
        id="subnet-too-small",
    ),
    pytest.param(
        native(setp("subnets|rack2", {})),
        [],
        ["subnets.rack2", "neither ipv4 nor ipv6"],
        id="subnet-empty",
    ),
    pytest.param(
        native(setp("subnets|rack2|ipv4", "169.254.0.0/24")),
        [],
        ["subnets.rack2.ipv4", "link-local"],
        id="subnet-link-local",
    ),
    # --- Calico bundles ---
    pytest.param(
        "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: p4}\n"
        "spec: {cidr: 192.168.0.0/16}\n",
        [],
        ["bundle: has no projectcalico.org/v3 Node resources", "calicoctl get nodes"],
        id="calico-bundle-without-nodes",
    ),
    pytest.param(
        TUTORIAL_MANIFEST,
        [],
        [
            "document 1 (kind CalicoNetwork)",
            "calicoNetwork is a field of the operator's Installation",
            "kind: Installation",
            "document 1.ipPools[0]",
            "IPv4-only",
            "VXLANCrossSubnet",
            "encapsulation: None (native routing)",
        ],
        id="tutorial-calico-network",
    ),
    pytest.param(
        "apiVersion: operator.tigera.io/v1\nkind: Installation\nmetadata: {name: default}\n"
        "spec:\n  calicoNetwork:\n    ipPools:\n    - cidr: fd80:24e2:f998:72d7::/64\n"
        "      encapsulation: IPIPCrossSubnet\n",
        [],
        ["Installation/default.spec.calicoNetwork.ipPools[0]", "IPv4-only", "VXLANCrossSubnet"],
        id="installation-ipv6-ipip",
    ),
    pytest.param(
        "apiVersion: operator.tigera.io/v1\nkind: Installation\nmetadata: {name: default}\n"
        "spec:\n  calicoNetwork:\n    ipPools:\n    - cidr: 192.168.0.0/16\n"
        "      encapsulation: GRE\n",
        [],
        ["Installation/default.spec.calicoNetwork.ipPools[0].encapsulation"],
        id="installation-unknown-encapsulation",
    ),
    pytest.param(
        bundle(
            "apiVersion: projectcalico.org/v3\nkind: Node\nmetadata: {name: worker-c}\nspec: {}\n"
        ),
        [],
        ["Node/worker-c.spec.bgp", "has no ipv4Address or ipv6Address"],
        id="calico-node-without-bgp",
    ),
    pytest.param(
        bundle(
            "apiVersion: projectcalico.org/v3\nkind: Node\nmetadata: {name: worker-c}\n"
            "spec: {bgp: {ipv4Address: 10.40.3.11}}\n"
        ),
        [],
        ["Node/worker-c.spec.bgp.ipv4Address", "has no prefix length"],
        id="calico-node-address-no-prefix",
    ),
    pytest.param(
        bundle(
            "apiVersion: projectcalico.org/v3\nkind: Node\nmetadata: {name: worker-c}\n"
            "spec: {bgp: {ipv4Address: 'fd00:3::1/64'}}\n"
        ),
        [],
        ["Node/worker-c.spec.bgp.ipv4Address", "wrong family"],
        id="calico-node-address-wrong-family",
    ),
    pytest.param(
        bundle(
            "apiVersion: projectcalico.org/v1\nkind: IPPool\nmetadata: {name: p4}\n"
            "spec: {cidr: 192.168.0.0/16}\n"
        ),
        [],
        ["document 3.apiVersion", "projectcalico.org/v3"],
        id="calico-wrong-apiversion",
    ),
    pytest.param(
        bundle("apiVersion: projectcalico.org/v3\nkind: HostEndpoint\nmetadata: {name: x}\n"),
        [],
        ["document 3.kind", "unsupported kind 'HostEndpoint'"],
        id="calico-unknown-kind",
    ),
    pytest.param(
        bundle(
            "apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata: {name: bad-peer}\n"
            "spec: {node: worker-a, nodeSelector: all(), peerIP: 10.40.9.9, asNumber: 65000}\n"
        ),
        [],
        ["BGPPeer/bad-peer.spec", "both node and nodeSelector"],
        id="calico-peer-node-and-selector",
    ),
    pytest.param(
        bundle(
            "apiVersion: projectcalico.org/v3\nkind: Node\nmetadata: {name: worker-c}\n"
            "spec: {bgp: {ipv4Address: 10.40.3.11/24, routeReflectorClusterID: cluster-1}}\n"
        ),
        [],
        ["Node/worker-c.spec.bgp.routeReflectorClusterID", "not in IPv4 address form"],
        id="calico-cluster-id-text",
    ),
    pytest.param(
        bundle(
            "apiVersion: projectcalico.org/v3\nkind: BGPConfiguration\nmetadata: {name: default}\n"
            "spec: {asNumber: 4294967296}\n"
        ),
        [],
        ["BGPConfiguration/default.spec.asNumber"],
        id="calico-as-too-big",
    ),
    pytest.param(
        bundle(
            "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: p4}\n"
            "spec: {cidr: 192.168.0.0/16, blockSize: 33}\n"
        ),
        [],
        ["IPPool/p4.spec.blockSize", "outside 20-32"],
        id="calico-blocksize",
    ),
    # --- hostile inputs (issue 7); tests/unit/test_hostile_inputs.py has the full set ---
    pytest.param(
        native(lambda d: None).replace("  node2:", "  node1:\n    subnet: rack2\n  node2:"),
        [],
        ["bad.yaml:", "'node1' appears twice", "line "],
        id="duplicate-node-key",
    ),
    pytest.param(
        "name: x\ndescription: " + "[" * 300 + "]" * 300 + "\n",
        [],
        ["bad.yaml:2:", "nested more than 64 levels deep"],
        id="yaml-nested-300-deep",
    ),
    pytest.param(
        native(setp("pools|v4|nodeSelector", "(" * 300 + "all()" + ")" * 300)),
        [],
        ["pools.v4.nodeSelector", "nested more than 64 deep"],
        id="selector-nested-300-deep",
    ),
    pytest.param(
        native(setp("nodes|node1|pods", True)),
        [],
        ["nodes.node1.pods", "whole number"],
        id="pods-true",
    ),
    pytest.param(
        native(setp("subnets|rack2|ipv4", "224.0.2.0/24")),
        [],
        ["subnets.rack2.ipv4", "multicast"],
        id="subnet-multicast",
    ),
    pytest.param(
        native(setp("pools|v4|cidr", "127.0.0.0/16")),
        [],
        ["pools.v4.cidr", "loopback"],
        id="pool-loopback",
    ),
    pytest.param(
        native(setp("nodes|node1|ipv6", "::ffff:10.0.1.10")),
        [],
        ["nodes.node1.ipv6", "IPv4-mapped"],
        id="node-ipv4-mapped",
    ),
    pytest.param(
        native(setp("routers|spine|subnets", ["rack1", "rack2", "rack1"])),
        [],
        ["routers.spine.subnets[2]", "lists subnet 'rack1' again"],
        id="router-subnet-twice",
    ),
    pytest.param(
        native(
            edits(
                setp("subnets|rack2", {"ipv4": "10.0.2.0/24"}),
                setp("nodes|node3|families", ["ipv6"]),
            )
        ),
        [],
        ["nodes.node3.families", "no address at all"],
        id="node-without-address",
    ),
    pytest.param(
        native(rename_node("node2\n")),
        [],
        ["nodes.'node2\\n'", "not a DNS label"],
        id="name-trailing-newline",
    ),
    pytest.param(
        bundle(
            "apiVersion: projectcalico.org/v3\nkind: BGPConfiguration\nmetadata: {name: default}\n"
            "spec: {asNumber: 65001}\n",
            "apiVersion: projectcalico.org/v3\nkind: BGPConfiguration\nmetadata: {name: default}\n"
            "spec: {asNumber: 65002}\n",
        ),
        [],
        ["BGPConfiguration/default", "defined twice", "document 3", "document 4"],
        id="calico-two-default-bgpconfigs",
    ),
    pytest.param(
        bundle("apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ndata: {password: '!!!!'}\n"),
        [],
        ["Secret/s.data.password", "not base64"],
        id="calico-secret-bad-base64",
    ),
    pytest.param(
        bundle("apiVersion: projectcalico.org/v3\nkind: [Node]\n"),
        [],
        ["document 3.kind", "is a list, not text"],
        id="calico-kind-list",
    ),
    pytest.param(
        bundle("apiVersion: projectcalico.org/v3\nkind: IPPoolList\nitems: 5\n"),
        [],
        ["document 3.items", "not a list"],
        id="calico-items-number",
    ),
]


def run_cli(capsys: pytest.CaptureFixture[str], args: list[str]) -> tuple[int, str, str]:
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(("text", "extra", "expected"), CASES)
@pytest.mark.parametrize("command", ["validate", "plan"])
def test_bad_input_exit_2_located(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    command: str,
    text: str,
    extra: list[str],
    expected: list[str],
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    code, out, err = run_cli(capsys, [command, str(path), *extra])
    assert code == 2, err
    assert out == "", "a bad input must not print a (half-built) plan"
    assert "Traceback" not in err
    assert "problem" in err.splitlines()[0]
    for needle in expected:
        assert needle in err, f"{needle!r} missing from:\n{err}"
    # Every problem line names a location ("<where>: <message>").
    for line in err.splitlines()[1:]:
        assert line.startswith("  ") and ": " in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml"]


def test_case_ids_are_distinct() -> None:
    ids = [case.id for case in CASES]
    texts = [(case.values[0], tuple(case.values[1])) for case in CASES]
    assert len(set(ids)) == len(ids)
    assert len(set(texts)) == len(texts), "two cases feed the same input"
    assert len(CASES) >= 35


def test_many_problems_reported_at_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = native(
        edits(
            setp("nodes|node3|subnet", "rack9"),
            setp("pools|v6|ipipMode", "Always"),
            setp("pools|v4|blockSize", 40),
            setp("nodes|node1|routeReflectorClusterID", "nope"),
            peer(peerIP="10.0.1.50", peerSelector="has(rr)"),
        )
    )
    path = tmp_path / "many.yaml"
    path.write_text(text)
    code, out, err = run_cli(capsys, ["validate", str(path)])
    assert code == 2
    assert out == ""
    for location in (
        "nodes.node3.subnet",
        "pools.v6.ipipMode",
        "pools.v4.blockSize",
        "nodes.node1.routeReflectorClusterID",
        "bgp.peers.p1",
    ):
        assert f"  {location}: " in err, f"{location} missing from:\n{err}"
    problems = err.splitlines()[1:]
    assert err.splitlines()[0] == f"{len(problems)} problems found:"
    assert len(problems) >= 5


def test_many_schema_problems_reported_at_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = native(
        edits(
            setp("colour", "red"),
            setp("nodes|node1|pods", "many"),
            setp("pools|v4|ipipmode", "Always"),
        )
    )
    path = tmp_path / "many.yaml"
    path.write_text(text)
    code, _out, err = run_cli(capsys, ["plan", str(path)])
    assert code == 2
    assert err.splitlines()[0] == "3 problems found:"
    for location in ("colour", "nodes.node1.pods", "pools.v4.ipipmode"):
        assert f"  {location}: " in err


def test_tutorial_manifest_explains_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The manifest from the Calico IPv6 tutorial: say what is wrong and what to write."""
    path = tmp_path / "tutorial.yaml"
    path.write_text(TUTORIAL_MANIFEST)
    code, out, err = run_cli(capsys, ["validate", str(path)])
    assert code == 2
    assert out == ""
    lines = err.splitlines()[1:]
    kind_line = next(line for line in lines if "CalicoNetwork is not a resource kind" in line)
    assert "operator.tigera.io/v1" in kind_line
    assert "spec.calicoNetwork.ipPools" in kind_line
    ipip_line = next(line for line in lines if "IPv4-only" in line)
    assert "fd80:24e2:f998:72d7::/64" in ipip_line
    assert "VXLAN" in ipip_line and "native routing" in ipip_line
    field_line = next(
        line for line in lines if line.strip().startswith("document 1.ipPools[0].ipipMode")
    )
    assert "encapsulation" in field_line


def test_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, ["validate", str(tmp_path / "nope.yaml")])
    assert code == 2
    assert out == ""
    assert "nope.yaml: cannot read" in err
    assert "Traceback" not in err


def test_pods_option_out_of_range(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text(native(lambda d: None))
    with pytest.raises(SystemExit) as exc:
        main(["plan", str(path), "--pods", "999"])
    assert exc.value.code == 2
    assert "--pods must be between 0 and 250" in capsys.readouterr().err


def test_base_is_valid(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The cases fail because of their one edit, not because the base is broken."""
    for name, text in (("base.yaml", native(lambda d: None)), ("bundle.yaml", bundle())):
        path = tmp_path / name
        path.write_text(text)
        code, out, err = run_cli(capsys, ["validate", str(path)])
        assert code == 0, err
        assert out.startswith("valid: lab ")
