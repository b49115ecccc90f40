"""A lab as a containerlab topology: `export_clab` (pure; the CLI writes the files).

Owns what the exported lab is made of:
- every Kubernetes node a `linux` container of Calico's own image running BIRD 1.x, as
  calico-node's runit scripts start it (`bird -s /var/run/calico/bird.ctl -d -c
  /etc/calico/confd/config/bird.cfg`, projectcalico/calico node/filesystem/etc/service/
  available/bird/run and bird6/run), on the files `model.calico_bird` renders as confd would,
  bind-mounted at confd's output folder (BIRD resolves `include "bird_aggr.cfg"` beside the
  including file: projectcalico/bird conf/cf-lex.l `cf_include`); whatever the node's meshemu
  speaker, since BIRD is what calico-node runs;
- what Felix would program (`NodePlan.felix_fib`: the routes whose writer is Felix, as
  `model.cluster_routes` decides from programClusterRoutes, and their blocks' blackholes; the
  tunl0 and VXLAN devices with their neighbour and FDB entries), as post-deploy `exec`
  commands from the plan: a snapshot, not a running Felix;
- pods as addresses on dummy `cali...` interfaces of their node (pod-like: they answer pings
  and are routed to like pods; no pod namespaces, no workload routes);
- every BGP router a container of the BIRD 2 image containerlab's own peering lab uses, on
  `model.bird_router`'s configuration (or the user's own); routers without BGP and the outside
  host the same image without BIRD;
- every subnet of two members a point-to-point link, every other one a Linux bridge on the
  host (`kind: bridge`, which containerlab does not create: `bridges.sh` does) or, with
  `fabric="switch"`, a container bridging its ports (what clabernetes can run: it accepts
  point-to-point links only);
- the same addresses as the plan (exec `ip address add`), its default and static routes;
- labels (`model.clab.labels`) carrying every native field, so that `imports.import_clab`
  gives back a topology with the same plan.
Containers wait for a marker file the last exec command writes before their daemons start, so
BIRD starts with its addresses in place (a session to an address not yet there would wait for
BIRD's connect retry timer). Lab interfaces are eth1.. (containerlab's eth0 is management).
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import yaml

from meshemu.errors import ConfigError, Problem
from meshemu.model import names
from meshemu.model.bird_router import render_router_config
from meshemu.model.calico_bird import FILES, render_node_bird
from meshemu.model.clab import labels as L
from meshemu.model.labplan import LabPlan, NodePlan, RouterPlan, SubnetPlan
from meshemu.model.routes import FibRoute
from meshemu.model.topology import InputModel, Topology

Fabric = Literal["bridge", "switch"]
FABRICS: tuple[Fabric, ...] = ("bridge", "switch")

# Images (public; a user may substitute others that hold the same programs). Calico's node
# image holds Calico's BIRD 1.x build (bird, bird6) and iproute (node/Dockerfile.amd64);
# srl-labs/bird is BIRD 2.13 on Alpine with iproute2, the image of containerlab's peering lab.
NODE_IMAGE = "quay.io/calico/node:v3.29.0"
ROUTER_IMAGE = "ghcr.io/srl-labs/bird:2.13"
HOST_IMAGE = ROUTER_IMAGE

CONFD_DIR = "/etc/calico/confd/config"  # where confd writes, where calico-node's BIRD reads
RUN_DIR = "/var/run/calico"
ROUTER_CONFIG = "/etc/bird.conf"  # srl-labs/bird's entrypoint reads it
READY = "/tmp/meshemu-ready"  # the last exec command creates it; daemons start after it
SWITCH_BRIDGE = "br0"
_UPLINK = L.lab_ifname(0)
# Forwarding as the lab's node and router namespaces have it (dataplane.build): encapsulated
# and pod traffic arrives on interfaces that are not the reverse path.
_SYSCTLS4 = {
    "net.ipv4.ip_forward": "1",
    "net.ipv4.conf.all.rp_filter": "0",
    "net.ipv4.conf.default.rp_filter": "0",
}
_SYSCTLS6 = {"net.ipv6.conf.all.disable_ipv6": "0", "net.ipv6.conf.all.forwarding": "1"}


@dataclass(frozen=True)
class Images:
    node: str = NODE_IMAGE
    router: str = ROUTER_IMAGE
    host: str = HOST_IMAGE  # switches and the outside host


@dataclass(frozen=True)
class ClabExport:
    """The exported lab: `files` (path relative to the export folder, text), the topology
    file first; `bridges`: the host bridges the user creates before deploying."""

    topology_file: str
    files: tuple[tuple[str, str], ...]
    bridges: tuple[str, ...]


@dataclass(frozen=True)
class _Member:
    """One container's interface on a subnet (container None: the outside host)."""

    container: str | None
    ifname: str


def export_clab(
    plan: LabPlan,
    topo: Topology,
    *,
    fabric: Fabric = "bridge",
    images: Images | None = None,
    router_configs: Mapping[str, str] | None = None,
) -> ClabExport:
    """The containerlab topology of `plan` (built from `topo`), with the files it mounts.

    `router_configs`: the text of each router's own BIRD configuration (`bgp.config`), which
    the caller read. ConfigError from the BIRD renderers for a value BIRD cannot hold.
    """
    images = images or Images()
    router_configs = router_configs or {}
    members = _members(plan)
    taken = {n.name for n in plan.nodes} | {r.name for r in plan.routers}
    outside = _free_name(L.OUTSIDE, taken)
    segments = _segment_names(plan, members, fabric, taken)
    files: list[tuple[str, str]] = []
    nodes: dict[str, Any] = {}
    links: list[dict[str, Any]] = []
    for subnet in plan.subnets:
        here = [
            (outside if m.container is None else m.container, m.ifname)
            for m in members[subnet.name]
        ]
        segment = segments.get(subnet.name)
        if segment is None:
            links.append({"endpoints": [f"{c}:{i}" for c, i in here]})
            continue
        if fabric == "bridge":
            nodes[segment] = {"kind": "bridge", "labels": _subnet_labels(subnet)}
        else:
            nodes[segment] = _switch(subnet, len(here), images.host)
        for k, (container, ifname) in enumerate(here):
            # A host bridge's ports are host interfaces; a switch's are its own eth1...
            port = _port(plan.name, subnet, k) if fabric == "bridge" else L.lab_ifname(k)
            links.append({"endpoints": [f"{container}:{ifname}", f"{segment}:{port}"]})
    for router in plan.routers:
        nodes[router.name], router_files = _router(
            plan, topo, router, images.router, router_configs
        )
        files += router_files
    for node in plan.nodes:
        nodes[node.name], node_files = _node(plan, topo, node, images.node)
        files += node_files
    if plan.outside is not None:
        nodes[outside] = _outside(plan, images.host)
    clab: dict[str, Any] = {
        "name": plan.name,
        "topology": {"defaults": {"labels": _lab_labels(topo)}, "nodes": nodes},
    }
    if links:
        clab["topology"]["links"] = links
    topology_file = f"{plan.name}.clab.yml"
    text = _header(plan, images, fabric) + yaml.safe_dump(
        clab, sort_keys=False, default_flow_style=False, width=100, allow_unicode=True
    )
    bridges = tuple(segments[s.name] for s in plan.subnets if s.name in segments)
    if fabric == "bridge" and bridges:
        files.append(("bridges.sh", _bridges_script(plan.name, bridges)))
    return ClabExport(
        topology_file, ((topology_file, text), *files), bridges if fabric == "bridge" else ()
    )


# ---------------------------------------------------------------------------------------------
# Subnets


def _members(plan: LabPlan) -> dict[str, list[_Member]]:
    """Each subnet's interfaces in a fixed order: routers, nodes, the outside host."""
    out: dict[str, list[_Member]] = {s.name: [] for s in plan.subnets}
    for router in plan.routers:
        for i, iface in enumerate(router.interfaces):
            out[iface.subnet].append(_Member(router.name, L.lab_ifname(i)))
    for node in plan.nodes:
        out[node.subnet].append(_Member(node.name, _UPLINK))
    if plan.outside is not None:
        out[plan.outside.subnet].append(_Member(None, _UPLINK))
    return out


def _free_name(name: str, taken: set[str]) -> str:
    """`name`, or `name-2`, `name-3`... when a node or router has it already; taken now."""
    candidate, n = name, 2
    while candidate in taken:
        candidate, n = f"{name}-{n}", n + 1
    taken.add(candidate)
    return candidate


def _segment_names(
    plan: LabPlan, members: Mapping[str, list[_Member]], fabric: Fabric, taken: set[str]
) -> dict[str, str]:
    """The bridge or switch of every subnet that is not a point-to-point link (two members).

    A host bridge's name is a host interface name: at most 15 characters, unique on the host,
    so it carries the lab's name (`<lab>-<subnet>`) or, when that is too long, a hash of it."""
    out: dict[str, str] = {}
    for subnet in plan.subnets:
        if len(members[subnet.name]) == 2:
            continue
        if fabric == "bridge":
            name = f"{plan.name}-{subnet.name}"
            if len(name) > names.IFNAME_MAX or name in taken:
                name = "mx" + _digest(plan.name, subnet.name)[:8]
            taken.add(name)
        else:
            name = _free_name(f"sw-{subnet.name}", taken)
        out[subnet.name] = name
    return out


def _digest(*parts: str) -> str:
    return hashlib.sha1("/".join(parts).encode()).hexdigest()


def _port(lab: str, subnet: SubnetPlan, position: int) -> str:
    """The host-side name of a member's veth on a host bridge: unique on the host, <= 15."""
    return f"mx{_digest(lab, subnet.name)[:7]}p{position}"


def _subnet_labels(subnet: SubnetPlan) -> dict[str, str]:
    out = {L.SUBNET: subnet.name}
    if subnet.ipv4:
        out[L.IPV4] = subnet.ipv4
    if subnet.ipv6:
        out[L.IPV6] = subnet.ipv6
    return out


def _switch(subnet: SubnetPlan, ports: int, image: str) -> dict[str, Any]:
    """A container that bridges its lab interfaces: a subnet clabernetes can run."""
    commands = [f"ip link add {SWITCH_BRIDGE} type bridge", f"ip link set {SWITCH_BRIDGE} up"]
    for i in range(ports):
        commands.append(f"ip link set {L.lab_ifname(i)} master {SWITCH_BRIDGE}")
    return {
        "kind": L.LINUX,
        "image": image,
        "labels": {L.ROLE: L.SWITCH, **_subnet_labels(subnet)},
        **_idle(),
        "exec": [*commands, f"touch {READY}"],
    }


# ---------------------------------------------------------------------------------------------
# Containers


def _node(
    plan: LabPlan, topo: Topology, node: NodePlan, image: str
) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    spec = topo.nodes[node.name]
    families = [f for f in (4, 6) if node.address(f) is not None]
    files: list[tuple[str, str]] = []
    binds = []
    for family in families:
        for file_name, text in render_node_bird(plan, node.name, family, bgp=topo.bgp).items():
            files.append((f"nodes/{node.name}/{file_name}", text))
            binds.append(f"./nodes/{node.name}/{file_name}:{CONFD_DIR}/{file_name}:ro")
    labels = {L.ROLE: L.ROUTE_REFLECTOR if node.cluster_id else L.NODE, L.SUBNET: node.subnet}
    if spec.as_number is not None:
        labels[L.AS_NUMBER] = str(spec.as_number)
    if node.cluster_id:
        labels[L.CLUSTER_ID] = node.cluster_id
    labels.update(
        _spec_label(spec, {"subnet", "ipv4", "ipv6", "as_number", "route_reflector_cluster_id"})
    )
    # One daemon per family (bird, bird6), the last one the container's own process.
    daemons = [_bird1(f) for f in families]
    commands = [f"mkdir -p {RUN_DIR}", " & ".join([*daemons[:-1], f"exec {daemons[-1]}"])]
    exec_ = _addresses(_UPLINK, node.ipv4, node.ipv4_prefix, node.ipv6, node.ipv6_prefix)
    for family, gateway in ((4, node.gateway4), (6, node.gateway6)):
        if gateway is not None:
            exec_.append(f"{_ip(family)} route replace default via {gateway} dev {_UPLINK}")
    exec_ += _felix(plan, node)
    for pod in node.pods:
        exec_ += [f"ip link add {pod.host_ifname} type dummy", f"ip link set {pod.host_ifname} up"]
        exec_ += _addresses(pod.host_ifname, pod.ipv4, "/32", pod.ipv6, "/128")  # host routes
    return {
        "kind": L.LINUX,
        "image": image,
        "labels": labels,
        **_waiting(commands),
        "binds": binds,
        "privileged": True,
        "sysctls": _sysctls(families),
        "exec": [*exec_, f"touch {READY}"],
    }, files


def _router(
    plan: LabPlan, topo: Topology, router: RouterPlan, image: str, own: Mapping[str, str]
) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    spec = topo.routers[router.name]
    labels = {L.ROLE: L.ROUTER, L.SUBNETS: ",".join(i.subnet for i in router.interfaces)}
    dumped = _dump(spec, {"subnets", "addresses"})
    files: list[tuple[str, str]] = []
    out: dict[str, Any] = {"kind": L.LINUX, "image": image, "labels": labels}
    if router.bgp is not None:
        path = f"routers/{router.name}/bird.conf"
        bgp = dumped.pop("bgp")
        labels[L.AS_NUMBER] = str(bgp.pop("asNumber"))
        if router.bgp.config_file is not None:
            text = own[router.name]
            bgp["config"] = path  # relative to the topology file, as the import reads it
        else:
            try:
                text = render_router_config(router, plan.hold_time)
            except ValueError as err:  # what `up` would refuse too (lab.routers)
                where = f"routers.{router.name}"
                raise ConfigError([Problem(where, str(err), "the lab cannot run either")]) from err
        if bgp:
            dumped["bgp"] = bgp
        files.append((path, text))
        out.update(_waiting([f"exec bird -c {ROUTER_CONFIG} -d"]))
        out["binds"] = [f"./{path}:{ROUTER_CONFIG}:ro"]
    else:
        out.update(_idle())
    if dumped:
        labels[L.SPEC] = _json(dumped)
    prefixes = {s.name: (s.ipv4, s.ipv6) for s in plan.subnets}
    exec_ = []
    for i, iface in enumerate(router.interfaces):
        v4, v6 = prefixes[iface.subnet]
        exec_ += _addresses(L.lab_ifname(i), iface.ipv4, v4, iface.ipv6, v6)
    for route in router.routes:
        family = ipaddress.ip_network(route.prefix).version
        exec_.append(f"{_ip(family)} route replace {route.prefix} via {route.via}")
    families = [f for f in (4, 6) if any(i.address(f) for i in router.interfaces)]
    out.update(
        {"privileged": True, "sysctls": _sysctls(families), "exec": [*exec_, f"touch {READY}"]}
    )
    return out, files


def _outside(plan: LabPlan, image: str) -> dict[str, Any]:
    o = plan.outside
    assert o is not None
    labels = {L.ROLE: L.OUTSIDE, L.SUBNET: o.subnet}
    exec_ = _addresses(_UPLINK, o.ipv4, o.prefix4, o.ipv6, o.prefix6)
    for family, gateway in ((4, o.gateway4), (6, o.gateway6)):
        if gateway is not None:
            exec_.append(f"{_ip(family)} route replace default via {gateway} dev {_UPLINK}")
    return {
        "kind": L.LINUX,
        "image": image,
        "labels": labels,
        **_idle(),
        "exec": [*exec_, f"touch {READY}"],
    }


def _bird1(family: int) -> str:
    """calico-node's command line of a family's BIRD, in the foreground (`-d`) and without
    `-R` (a fresh container has no routes to recover; runit's has `-R`)."""
    daemon = "bird" if family == 4 else "bird6"
    return f"{daemon} -s {RUN_DIR}/{daemon}.ctl -d -c {CONFD_DIR}/{FILES[family][0]}"


def _waiting(commands: Iterable[str]) -> dict[str, str]:
    """Entrypoint and command: wait for the exec commands' marker, then run `commands`."""
    script = "; ".join([f"until [ -e {READY} ]; do sleep 0.2; done", *commands])
    return {"entrypoint": "/bin/sh", "cmd": f"-c {shlex.quote(script)}"}


def _idle() -> dict[str, str]:
    return _waiting(["exec tail -f /dev/null"])


def _sysctls(families: Iterable[int]) -> dict[str, str]:
    out: dict[str, str] = {}
    for family in families:
        out.update(_SYSCTLS4 if family == 4 else _SYSCTLS6)
    return out


def _ip(family: int) -> str:
    return "ip" if family == 4 else "ip -6"


def _addresses(
    ifname: str, ipv4: str | None, prefix4: str | None, ipv6: str | None, prefix6: str | None
) -> list[str]:
    """`ip address add` per family; IPv6 without duplicate address detection, so BIRD can
    bind the address at once (as the lab's namespaces: accept_dad 0)."""
    out = []
    if ipv4 is not None and prefix4 is not None:
        out.append(f"ip address add {ipv4}/{_length(prefix4)} dev {ifname}")
    if ipv6 is not None and prefix6 is not None:
        out.append(f"ip -6 address add {ipv6}/{_length(prefix6)} dev {ifname} nodad")
    return out


def _length(prefix: str) -> str:
    return prefix.rsplit("/", 1)[1]


# ---------------------------------------------------------------------------------------------
# Felix's part


def _felix(plan: LabPlan, node: NodePlan) -> list[str]:
    """The devices and routes Felix programs on `node`, as commands."""
    out = []
    routes = node.felix_fib(plan.pools)
    if node.ipip_tunnel_address is not None:
        # With the ipip module loaded every namespace has tunl0; adding it loads the module.
        out.append(f"sh -c 'ip link add name {names.IPIP_DEVICE} type ipip 2>/dev/null; true'")
        out.append(f"ip link set {names.IPIP_DEVICE} up")
        out.append(f"ip address add {node.ipip_tunnel_address}/32 dev {names.IPIP_DEVICE}")
    for vtep in node.vteps:
        local = node.address(vtep.family)
        if local is None:
            continue
        device, host = names.VXLAN_DEVICE[vtep.family], 32 if vtep.family == 4 else 128
        out += [
            f"ip link add {device} type vxlan id {names.VXLAN_VNI[vtep.family]} dstport "
            f"{names.VXLAN_PORT} local {local} dev {_UPLINK} nolearning",
            f"ip link set {device} address {vtep.mac}",
            f"{_ip(vtep.family)} address add {vtep.address}/{host} dev {device}"
            + (" nodad" if vtep.family == 6 else ""),
            f"ip link set {device} up",
        ]
        for other in plan.nodes:
            remote_ip = other.address(vtep.family)
            if other.name == node.name or remote_ip is None:
                continue
            for remote in (v for v in other.vteps if v.family == vtep.family):
                out += [
                    f"{_ip(vtep.family)} neigh replace {remote.address} lladdr {remote.mac} "
                    f"dev {device} nud permanent",
                    f"bridge fdb replace {remote.mac} dev {device} dst {remote_ip}",
                ]
    out += [_route_command(r) for r in routes]
    return out


def _route_command(route: FibRoute) -> str:
    family = ipaddress.ip_network(route.prefix).version
    if route.type == "blackhole":
        text = f"{_ip(family)} route replace blackhole {route.prefix}"
    else:
        text = f"{_ip(family)} route replace {route.prefix}"
        if route.via is not None:
            text += f" via {route.via}"
        if route.dev is not None:
            text += f" dev {_UPLINK if route.dev == names.UPLINK else route.dev}"
        if route.onlink:
            text += " onlink"
    if route.metric is not None:
        text += f" metric {route.metric}"
    return text


# ---------------------------------------------------------------------------------------------
# Labels and text


def _dump(model: InputModel, exclude: set[str]) -> dict[str, Any]:
    """A native section's fields that differ from their defaults, as the topology spells them."""
    data: dict[str, Any] = model.model_dump(
        mode="json", by_alias=True, exclude_defaults=True, exclude=exclude
    )
    return data


def _spec_label(model: InputModel, exclude: set[str]) -> dict[str, str]:
    data = _dump(model, exclude)
    return {L.SPEC: _json(data)} if data else {}


def _lab_labels(topo: Topology) -> dict[str, str]:
    """The lab-wide sections (pools, bgp, ipam, ...): every top-level field the containers,
    bridges and links do not already say."""
    data = _dump(topo, set(L.STRUCTURE))
    return {L.LAB: _json(data)} if data else {L.LAB: "{}"}


def _json(data: object) -> str:
    return json.dumps(data, separators=(",", ":"), sort_keys=False)


def _header(plan: LabPlan, images: Images, fabric: Fabric) -> str:
    lines = [
        f"# containerlab topology of meshemu lab {plan.name}, written by `meshemu export clab`.",
        f"# Nodes: {images.node} running BIRD with the configuration Calico's confd renders",
        f"# (nodes/<node>/); routers: {images.router} (routers/<router>/bird.conf).",
        "# Felix's routes and devices, the addresses and the pods are exec commands.",
    ]
    if fabric == "bridge":
        lines.append("# Create the host bridges first: sudo ./bridges.sh up")
    lines.append(f"# Deploy: sudo containerlab deploy -t {plan.name}.clab.yml")
    return "\n".join(lines) + "\n"


def _bridges_script(lab: str, bridges: Iterable[str]) -> str:
    listed = " ".join(bridges)
    return f"""#!/bin/sh
# The Linux bridges the subnets of meshemu lab {lab} use (containerlab does not create a
# `kind: bridge` node's bridge). `./bridges.sh up` before `containerlab deploy`,
# `./bridges.sh down` after `containerlab destroy`. Where bridged frames pass iptables
# (br_netfilter loaded, as Docker does), a rule lets them through Docker's FORWARD policy.
set -e
BRIDGES="{listed}"
case "${{1:-up}}" in
  up)
    for br in $BRIDGES; do
      ip link show "$br" >/dev/null 2>&1 || ip link add name "$br" type bridge
      ip link set "$br" up
      if command -v iptables >/dev/null 2>&1; then
        iptables -C FORWARD -i "$br" -o "$br" -j ACCEPT 2>/dev/null ||
          iptables -I FORWARD -i "$br" -o "$br" -j ACCEPT
      fi
    done ;;
  down)
    for br in $BRIDGES; do
      if command -v iptables >/dev/null 2>&1; then
        iptables -D FORWARD -i "$br" -o "$br" -j ACCEPT 2>/dev/null || true
      fi
      ip link del "$br" 2>/dev/null || true
    done ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
"""
