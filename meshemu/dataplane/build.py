"""Builds a lab's dataplane from the plan: namespaces, fabric, routers, nodes, tunnels, pods.

Owns the order and content of the kernel objects of a lab, through `dataplane.netlink` only.
Every namespace is recorded in the state folder before it is created, so a failure at any point
leaves a state `down` can clean. Processes (user-space tunnels) are started by `lab`.
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Callable

from meshemu.dataplane.netlink import (
    RTPROT_BOOT,
    NetnsHandle,
    batch,
    create_netns,
    in_netns,
    netns_exists,
    write_sysctls,
)
from meshemu.errors import DataplaneError
from meshemu.model import names
from meshemu.model.plan import LabPlan, NodePlan, PodPlan

__all__ = ["PodPlan", "Record"]

# Calico's pod plumbing: the host side of every pod veth has this MAC, the pod's IPv4 default
# route goes to 169.254.1.1 (answered by proxy ARP), and its IPv6 default route goes to the
# host side's link-local address, which this MAC yields (EUI-64).
CALI_MAC = "ee:ee:ee:ee:ee:ee"
POD_GATEWAY4 = "169.254.1.1"
POD_GATEWAY6 = "fe80::ecee:eeff:feee:eeee"

ROUTER_SYSCTLS = {
    "net.ipv4.ip_forward": "1",
    "net.ipv6.conf.all.forwarding": "1",
    "net.ipv6.conf.default.accept_dad": "0",
    "net.ipv6.conf.all.accept_dad": "0",
    "net.ipv4.conf.all.rp_filter": "0",
    "net.ipv4.conf.default.rp_filter": "0",
}
POD_SYSCTLS = {
    "net.ipv6.conf.default.accept_dad": "0",
    "net.ipv6.conf.all.accept_dad": "0",
}

Record = Callable[[str], None]


def _prefixlen(prefix: str | None) -> int:
    assert prefix is not None
    return ipaddress.ip_network(prefix).prefixlen


def new_netns(name: str, record: Record, sysctls: dict[str, str]) -> None:
    if netns_exists(name):
        # Checked before recording: a namespace this lab did not create is never its to remove.
        raise DataplaneError(
            f"namespace {name} already exists: a lab with this name is up or was not brought "
            "down (`meshemu down NAME`, or `meshemu down --recover TOPOLOGY` if its state "
            "folder is lost)"
        )
    record(name)
    create_netns(name)
    with batch(name, lambda _lo: 1) as changes:  # the loopback is always interface 1
        changes.up("lo")
    if sysctls:
        write_sysctls(name, sysctls)


def build_nodes(plan: LabPlan, record: Record, ipip_kernel: bool) -> None:
    """The fabric, the routers and every node with its links (no pods)."""
    build_fabric(plan, record)
    build_routers(plan, record)
    for node in plan.nodes:
        build_node(plan, node, record, ipip_kernel=ipip_kernel)
    seed_neighbors(plan)


def build_pods(plan: LabPlan, record: Record) -> int:
    """Every node's pods; returns how many."""
    count = 0
    for node in plan.nodes:
        if not node.pods:
            continue
        with in_netns(node.netns) as host:  # one handle for all of the node's pods
            for pod in node.pods:
                build_pod(node, pod, record, host)
                count += 1
    return count


def build_fabric(plan: LabPlan, record: Record) -> None:
    new_netns(plan.fabric_netns, record, {})
    with in_netns(plan.fabric_netns) as fabric:
        for subnet in plan.subnets:
            fabric.add_bridge(subnet.bridge)


def build_routers(plan: LabPlan, record: Record) -> None:
    bridges = {s.name: s.bridge for s in plan.subnets}
    for router in plan.routers:
        new_netns(router.netns, record, ROUTER_SYSCTLS)
        with in_netns(plan.fabric_netns) as fabric:
            for iface in router.interfaces:
                fabric.add_veth(
                    iface.fabric_ifname,
                    router.netns,
                    iface.ifname,
                    master=bridges[iface.subnet],
                    peer_mac=iface.mac,
                )
        subnet_prefix = {s.name: (s.ipv4, s.ipv6) for s in plan.subnets}
        with in_netns(router.netns) as ns:
            for iface in router.interfaces:
                ns.up(iface.ifname)
                v4net, v6net = subnet_prefix[iface.subnet]
                if iface.ipv4:
                    ns.add_address(iface.ifname, iface.ipv4, _prefixlen(v4net))
                if iface.ipv6:
                    ns.add_address(iface.ifname, iface.ipv6, _prefixlen(v6net))
            for route in router.routes:
                ns.route("add", route.prefix, via=route.via)


def node_sysctls() -> dict[str, str]:
    return {
        **ROUTER_SYSCTLS,
        # Encapsulated and pod traffic arrives on interfaces that are not the reverse path.
        "net.ipv4.conf.all.rp_filter": "0",
        "net.ipv4.conf.default.rp_filter": "0",
    }


def build_node(plan: LabPlan, node: NodePlan, record: Record, ipip_kernel: bool) -> None:
    bridge = next(s.bridge for s in plan.subnets if s.name == node.subnet)
    new_netns(node.netns, record, node_sysctls())
    with in_netns(plan.fabric_netns) as fabric:
        fabric.add_veth(
            node.fabric_ifname, node.netns, node.uplink, master=bridge, peer_mac=node.uplink_mac
        )
    with in_netns(node.netns) as ns:
        with ns.batch() as changes:
            changes.up(node.uplink)
            if node.ipv4:
                changes.add_address(node.uplink, node.ipv4, _prefixlen(node.ipv4_prefix))
            if node.ipv6:
                changes.add_address(node.uplink, node.ipv6, _prefixlen(node.ipv6_prefix))
            if node.gateway4:
                changes.route("add", "0.0.0.0/0", via=node.gateway4, dev=node.uplink)
            if node.gateway6:
                changes.route("add", "::/0", via=node.gateway6, dev=node.uplink)
        install_peer_routes(node, ns)
        if ipip_kernel and node.ipip_tunnel_address:
            # With the ipip module loaded the kernel makes `tunl0` in every new namespace,
            # unless net.core.fb_tunnels_only_for_init_net says otherwise: then make it.
            if not ns.has_link(names.IPIP_DEVICE):
                ns.add_ipip(names.IPIP_DEVICE)
            ns.up(names.IPIP_DEVICE)
            ns.add_address(names.IPIP_DEVICE, node.ipip_tunnel_address, 32)
        build_vxlan(plan, node, ns)


def install_peer_routes(node: NodePlan, ns: NetnsHandle) -> None:
    """The static routes a node's `reachableBy` BGPPeers ask for. A BIRD node's own BIRD
    installs them from confd's configuration; an ExaBGP node gets them here."""
    if node.speaker == "bird":
        return
    for route in node.reachable_by_routes():
        ns.route("replace", route.prefix, via=route.via, dev=node.uplink)


def build_vxlan(plan: LabPlan, node: NodePlan, ns: NetnsHandle) -> None:
    """Felix's VXLAN device per family, with a neighbour and FDB entry for every remote VTEP.

    Idempotent: a live change calls it again to add what new VTEPs need.
    """
    for vtep in node.vteps:
        local = node.address(vtep.family)
        if local is None:
            continue
        device = names.VXLAN_DEVICE[vtep.family]
        if not ns.has_link(device):
            ns.add_vxlan(
                device,
                names.VXLAN_VNI[vtep.family],
                local,
                node.uplink,
                names.VXLAN_PORT,
                vtep.mac,
            )
            ns.add_address(device, vtep.address, 32 if vtep.family == 4 else 128)
        for other in plan.nodes:
            if other.name == node.name:
                continue
            for remote in other.vteps:
                remote_ip = other.address(remote.family)
                if remote.family != vtep.family or remote_ip is None:
                    continue
                ns.add_neighbor(device, remote.address, remote.mac)
                ns.add_fdb(device, remote.mac, remote_ip)


def build_pod(
    node: NodePlan, pod: PodPlan, record: Record, host: NetnsHandle | None = None
) -> None:
    """A pod: its namespace, its veth (Calico's `cali` side in the node), addresses, routes.
    `host`: an open handle on the node's namespace (else one is opened)."""
    new_netns(pod.netns, record, POD_SYSCTLS)
    with contextlib.ExitStack() as stack:
        if host is None:
            host = stack.enter_context(in_netns(node.netns))
        _pod_host_side(node, pod, host)
    write_sysctls(
        node.netns,
        {
            f"net.ipv4.conf.{pod.host_ifname}.proxy_arp": "1",
            f"net.ipv4.neigh.{pod.host_ifname}.proxy_delay": "0",
        },
    )
    with batch(pod.netns) as changes:
        changes.up(names.POD_IFNAME)
        if pod.ipv4:
            changes.add_address(names.POD_IFNAME, pod.ipv4, 32)
            changes.route("add", f"{POD_GATEWAY4}/32", dev=names.POD_IFNAME, scope="link")
            changes.route("add", "0.0.0.0/0", via=POD_GATEWAY4, dev=names.POD_IFNAME)
            changes.add_neighbor(names.POD_IFNAME, POD_GATEWAY4, CALI_MAC)
        if pod.ipv6:
            changes.add_address(names.POD_IFNAME, pod.ipv6, 128)
            changes.route("add", "::/0", via=POD_GATEWAY6, dev=names.POD_IFNAME)
            changes.add_neighbor(names.POD_IFNAME, POD_GATEWAY6, CALI_MAC)


def _pod_host_side(node: NodePlan, pod: PodPlan, host: NetnsHandle) -> None:
    with host.batch() as changes:
        host.add_veth(pod.host_ifname, pod.netns, names.POD_IFNAME, mac=CALI_MAC)
        # As Felix programs a workload route: protocol DeviceRouteProtocol (default 3, boot:
        # felix/config/config_params.go) and metric the normal route priority
        # (felix/dataplane/linux/endpoint_mgr.go, routePriority). A BIRD node learns it from
        # the kernel, and confd's calico_aggr would export a pod route of a metric below that
        # priority to every peer (`net ~ block && krt_metric < priority`).
        if pod.ipv4:
            changes.route(
                "add",
                f"{pod.ipv4}/32",
                dev=pod.host_ifname,
                scope="link",
                proto=RTPROT_BOOT,
                metric=node.route_priority(4),
            )
        if pod.ipv6:
            changes.route(
                "add",
                f"{pod.ipv6}/128",
                dev=pod.host_ifname,
                proto=RTPROT_BOOT,
                metric=node.route_priority(6),
            )


def seed_neighbors(plan: LabPlan) -> int:
    """Permanent ARP/NDP entries between the nodes and routers of each subnet.

    The MACs are known from the plan, so there is no need for the broadcast storm of a large
    mesh starting at once (every node resolving every other within a second), in which lost
    ARP replies delay first SYNs by seconds. Returns how many entries were written.
    """
    stations: dict[str, list[tuple[str, str | None, str | None, str]]] = {}
    for node in plan.nodes:
        stations.setdefault(node.subnet, []).append(
            (node.netns, node.ipv4, node.ipv6, node.uplink_mac)
        )
    for router in plan.routers:
        for iface in router.interfaces:
            stations.setdefault(iface.subnet, []).append(
                (router.netns, iface.ipv4, iface.ipv6, iface.mac)
            )
    ifname = {n.netns: n.uplink for n in plan.nodes}
    for router in plan.routers:
        for iface in router.interfaces:
            ifname[f"{router.netns}#{iface.subnet}"] = iface.ifname
    count = 0
    for subnet, members in stations.items():
        for netns in {m[0] for m in members}:
            device = ifname.get(netns) or ifname[f"{netns}#{subnet}"]
            with batch(netns) as changes:
                for other_ns, ipv4, ipv6, mac in members:
                    if other_ns == netns:
                        continue
                    for address in (ipv4, ipv6):
                        if address:
                            changes.add_neighbor(device, address, mac)
                            count += 1
    return count
