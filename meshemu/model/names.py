"""Deterministic names of every namespace and interface a lab creates.

Owns the naming scheme, so that two labs never collide and `down` can name what `up` made.
All of a lab's interfaces live inside the lab's own namespaces (nothing in the host's
namespace), and every namespace name carries the lab name: `meshemu.<lab>` for the fabric
(bridges), `meshemu.<lab>.<node>` for nodes and routers, `meshemu.<lab>.<node>.<pod>` for pods.
Dots cannot appear in lab, node or pod names (DNS labels), so these names never clash.
Interface names are at most 15 characters (the kernel's IFNAMSIZ - 1).
"""

from __future__ import annotations

import hashlib
import re

NETNS_PREFIX = "meshemu"
IFNAME_MAX = 15
UPLINK = "eth0"
POD_IFNAME = "eth0"
IPIP_DEVICE = "tunl0"
VXLAN_DEVICE = {4: "vxlan.calico", 6: "vxlan-v6.calico"}
VXLAN_VNI = {4: 4096, 6: 4096}
VXLAN_PORT = 4789

# A lab name becomes a folder under the state root, the prefix of every namespace and an
# argument of every process the lab starts: a short DNS label and nothing else. `fullmatch`,
# not `match` with `$`, which would accept a name ending in a newline.
LAB_NAME_MAX = 12
_DNS_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")


def lab_name_error(name: object) -> str | None:
    """Why `name` cannot be a lab name, or None when it can."""
    if not isinstance(name, str) or not _DNS_LABEL.fullmatch(name):
        return (
            f"lab name {name!r} is not a DNS label: use lower-case letters, digits and '-', "
            "starting and ending with a letter or digit"
        )
    if len(name) > LAB_NAME_MAX:
        return (
            f"lab name {name!r} is longer than {LAB_NAME_MAX} characters; it prefixes every "
            "namespace and interface of the lab, so keep it short"
        )
    return None


def fabric_netns(lab: str) -> str:
    return f"{NETNS_PREFIX}.{lab}"


def node_netns(lab: str, node: str) -> str:
    return f"{NETNS_PREFIX}.{lab}.{node}"


def pod_netns(lab: str, node: str, pod: str) -> str:
    return f"{NETNS_PREFIX}.{lab}.{node}.{pod}"


def lab_owns_netns(lab: str, netns: str) -> bool:
    """True for the lab's fabric namespace and every namespace under it."""
    base = fabric_netns(lab)
    return netns == base or netns.startswith(base + ".")


def pod_host_ifname(lab: str, node: str, pod: str) -> str:
    """Calico's `cali` + 11 hex digits of a hash of the workload, unique per lab."""
    digest = hashlib.sha1(f"{lab}.{node}.{pod}".encode()).hexdigest()
    return f"cali{digest[:11]}"


def bridge_ifname(subnet_index: int) -> str:
    return f"br{subnet_index}"


def fabric_port_ifname(kind: str, index: int, subnet_index: int = 0) -> str:
    """The fabric-side end of a node's (`n`) or router's (`r`) link into a subnet's bridge."""
    name = f"{kind}{index}" if kind == "n" else f"{kind}{index}s{subnet_index}"
    assert len(name) <= IFNAME_MAX
    return name


def router_ifname(subnet_index: int) -> str:
    return f"eth{subnet_index}"


def mac_address(lab: str, owner: str) -> str:
    """A stable, locally administered unicast MAC for an interface the lab creates."""
    digest = hashlib.sha1(f"{lab}.{owner}".encode()).digest()
    return ":".join(f"{b:02x}" for b in (0x02, *digest[:5]))
