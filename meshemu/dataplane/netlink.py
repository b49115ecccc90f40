"""The only code of the lab that touches the kernel's network configuration (pyroute2).

Owns namespaces, links (veth, bridge, VXLAN), addresses, routes, neighbours, FDB entries and
per-namespace sysctls. Everything else in meshemu speaks to the kernel through `Netlink` and
`NetnsHandle`; unit tests use the fake in `dataplane.fake`. It decides nothing: names and
addresses come from the plan. Errors from the kernel become `DataplaneError` saying what failed.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pyroute2 import IPRoute, netns
from pyroute2.netlink.exceptions import NetlinkError

from meshemu.errors import DataplaneError
from meshemu.model.routes import FibRoute, source_of

NETNS_DIR = Path("/run/netns")
CLONE_NEWNET = 0x40000000
IFA_F_NODAD = 0x02
RTNH_F_ONLINK = 0x04
RTPROT_KERNEL = 2
RTPROT_BOOT = 3
# The protocol number calico-node's Felix uses for the routes it programs; the agent uses it too,
# so its routes can be told apart from the CNI's pod routes and the kernel's own.
RTPROT_MESHEMU = 80
RT_TABLE_MAIN = 254
NUD_PERMANENT = 0x80
ROUTE_TYPES = {1: "unicast", 6: "blackhole", 7: "unreachable", 8: "prohibit"}


class NetnsHandle:
    """Operations inside one namespace, over one open netlink socket."""

    def __init__(self, name: str | None) -> None:
        """`name` None: the namespace this process runs in (the agent's case)."""
        self.name = name or "(own namespace)"
        if name and not netns_exists(name):
            raise DataplaneError(f"namespace {name} does not exist (it was deleted)")
        try:
            # flags=0: pyroute2 would otherwise create a missing namespace, silently
            # replacing a node that died with an empty one.
            self.ipr = IPRoute(netns=name, flags=0, groups=0) if name else IPRoute(groups=0)
        except (OSError, NetlinkError) as err:
            raise DataplaneError(f"cannot open namespace {name}: {err}") from err
        self._index: dict[str, int] = {}
        self.inode = netns_inode(name) if name else None  # which namespace of that name

    def close(self) -> None:
        self.ipr.close()

    def _fail(self, what: str, err: Exception) -> DataplaneError:
        return DataplaneError(f"{self.name}: {what}: {err}")

    def index(self, ifname: str) -> int:
        if ifname not in self._index:
            found = self.ipr.link_lookup(ifname=ifname)
            if not found:
                raise DataplaneError(f"{self.name}: no interface {ifname}")
            self._index[ifname] = found[0]
        return self._index[ifname]

    def has_link(self, ifname: str) -> bool:
        return bool(self.ipr.link_lookup(ifname=ifname))

    def add_bridge(self, ifname: str) -> None:
        try:
            # No STP and no forwarding delay: ports forward as soon as they are up.
            self.ipr.link("add", ifname=ifname, kind="bridge", br_stp_state=0, br_forward_delay=0)
        except NetlinkError as err:
            raise self._fail(f"add bridge {ifname}", err) from err
        self.up(ifname)

    def add_veth(
        self,
        ifname: str,
        peer_netns: str,
        peer_ifname: str,
        master: str | None = None,
        peer_mac: str | None = None,
        mac: str | None = None,
    ) -> None:
        """A veth pair created straight into both namespaces (never in the host's)."""
        peer: dict[str, Any] = {"ifname": peer_ifname, "net_ns_fd": peer_netns}
        if peer_mac:
            peer["address"] = peer_mac
        kwargs: dict[str, Any] = {"ifname": ifname, "kind": "veth", "peer": peer}
        if mac:
            kwargs["address"] = mac
        try:
            self.ipr.link("add", **kwargs)
            if master is not None:
                self.ipr.link("set", index=self.index(ifname), master=self.index(master))
        except NetlinkError as err:
            raise self._fail(f"add veth {ifname} <-> {peer_netns}/{peer_ifname}", err) from err
        self.up(ifname)

    def add_vxlan(
        self, ifname: str, vni: int, local: str, uplink: str, port: int, mac: str
    ) -> None:
        family_key = "vxlan_local6" if ":" in local else "vxlan_local"
        try:
            self.ipr.link(
                "add",
                ifname=ifname,
                kind="vxlan",
                vxlan_id=vni,
                vxlan_port=port,
                vxlan_learning=0,
                vxlan_link=self.index(uplink),
                address=mac,
                mtu=1450 if ":" not in local else 1430,
                **{family_key: local},
            )
        except NetlinkError as err:
            raise self._fail(f"add vxlan {ifname}", err) from err
        self.up(ifname)

    def delete_link(self, ifname: str) -> None:
        try:
            self.ipr.link("del", index=self.index(ifname))
        except NetlinkError as err:
            if err.code != errno.ENODEV:
                raise self._fail(f"delete {ifname}", err) from err
        self._index.pop(ifname, None)

    def add_ipip(self, ifname: str) -> None:
        """A kernel IP-in-IP device without fixed endpoints (like Calico's tunl0)."""
        try:
            self.ipr.link("add", ifname=ifname, kind="ipip")
        except NetlinkError as err:
            if err.code != errno.EEXIST:
                raise self._fail(f"add ipip {ifname}", err) from err

    def up(self, ifname: str) -> None:
        try:
            self.ipr.link("set", index=self.index(ifname), state="up")
        except NetlinkError as err:
            raise self._fail(f"set {ifname} up", err) from err

    def down(self, ifname: str) -> None:
        try:
            self.ipr.link("set", index=self.index(ifname), state="down")
        except NetlinkError as err:
            raise self._fail(f"set {ifname} down", err) from err

    def link_state(self, ifname: str) -> str:
        links = self.ipr.get_links(self.index(ifname))
        return str(links[0].get_attr("IFLA_OPERSTATE")) if links else "absent"

    def add_address(self, ifname: str, address: str, prefixlen: int) -> None:
        # No duplicate address detection: an address must be usable at once, the lab's
        # addresses are unique by construction.
        flags = IFA_F_NODAD if ":" in address else 0
        try:
            self.ipr.addr(
                "add", index=self.index(ifname), address=address, prefixlen=prefixlen, flags=flags
            )
        except NetlinkError as err:
            if err.code != errno.EEXIST:
                raise self._fail(f"add address {address}/{prefixlen} on {ifname}", err) from err

    def route(
        self,
        command: str,
        prefix: str,
        via: str | None = None,
        dev: str | None = None,
        onlink: bool = False,
        kind: str = "unicast",
        proto: int | None = None,
        scope: str | None = None,
        metric: int | None = None,
    ) -> None:
        """Add, replace or delete one route in the main table (`metric`: its priority)."""
        network = ipaddress.ip_network(prefix)
        spec: dict[str, Any] = {
            "dst": str(network.network_address),
            "dst_len": network.prefixlen,
            "family": 10 if network.version == 6 else 2,
            "table": RT_TABLE_MAIN,
        }
        if kind == "blackhole":
            spec["type"] = "blackhole"
        else:
            if via is not None:
                spec["gateway"] = via
            if dev is not None:
                spec["oif"] = self.index(dev)
            if onlink:
                spec["flags"] = RTNH_F_ONLINK
        if proto is not None:
            spec["proto"] = proto
        if scope is not None:
            spec["scope"] = scope
        if metric is not None:
            spec["priority"] = metric
        try:
            self.ipr.route(command, **spec)
        except NetlinkError as err:
            if command == "del" and err.code in (errno.ESRCH, errno.ENOENT):
                return
            if command == "add" and err.code == errno.EEXIST:
                return
            raise self._fail(f"route {command} {prefix} via {via} dev {dev}", err) from err

    def add_neighbor(self, ifname: str, address: str, mac: str) -> None:
        try:
            self.ipr.neigh(
                "replace", dst=address, lladdr=mac, ifindex=self.index(ifname), state="permanent"
            )
        except NetlinkError as err:
            raise self._fail(f"neighbour {address} on {ifname}", err) from err

    def add_fdb(self, ifname: str, mac: str, dst: str) -> None:
        try:
            self.ipr.fdb(
                "append", ifindex=self.index(ifname), lladdr=mac, dst=dst, state=NUD_PERMANENT
            )
        except NetlinkError as err:
            if err.code != errno.EEXIST:
                raise self._fail(f"fdb {mac} -> {dst} on {ifname}", err) from err

    def routes(self) -> list[FibRoute]:
        """The main table, IPv4 and IPv6, without the kernel's own connected/local routes."""
        names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in self.ipr.get_links()}
        out = []
        for family in (2, 10):
            for msg in self.ipr.route("dump", family=family, table=RT_TABLE_MAIN):
                if msg["proto"] == RTPROT_KERNEL:
                    continue
                dst = msg.get_attr("RTA_DST")
                default_len = 0
                if dst is None:
                    dst = "0.0.0.0" if family == 2 else "::"
                prefix = f"{dst}/{msg['dst_len'] if dst else default_len}"
                kind = ROUTE_TYPES.get(msg["type"], str(msg["type"]))
                proto, metric = msg["proto"], msg.get_attr("RTA_PRIORITY")
                if kind != "unicast":
                    out.append(
                        FibRoute(
                            str(ipaddress.ip_network(prefix)),
                            kind,
                            reason=f"proto {proto}",
                            source=source_of(proto, kind, None),
                            metric=metric,
                        )
                    )
                    continue
                gateway = msg.get_attr("RTA_GATEWAY")
                oif = msg.get_attr("RTA_OIF")
                dev = names.get(oif) if oif is not None else None
                out.append(
                    FibRoute(
                        str(ipaddress.ip_network(prefix)),
                        "unicast",
                        gateway,
                        dev,
                        bool(msg["flags"] & RTNH_F_ONLINK),
                        f"proto {proto}",
                        source_of(proto, kind, dev),
                        metric,
                    )
                )
        return out

    def link_names(self) -> list[str]:
        return [str(link.get_attr("IFLA_IFNAME")) for link in self.ipr.get_links()]

    def sysctl(self, key: str, value: str) -> None:
        """Write a per-namespace sysctl (net.*) inside this namespace."""
        write_sysctls(self.name, {key: value})

    def neighbors(self, ifname: str) -> list[tuple[str, str]]:
        out = []
        for msg in self.ipr.get_neighbours(ifindex=self.index(ifname)):
            dst, mac = msg.get_attr("NDA_DST"), msg.get_attr("NDA_LLADDR")
            if dst and mac:
                out.append((str(dst), str(mac)))
        return out


@contextlib.contextmanager
def in_netns(name: str) -> Iterator[NetnsHandle]:
    handle = NetnsHandle(name)
    try:
        yield handle
    finally:
        handle.close()


@contextlib.contextmanager
def entered(name: str) -> Iterator[None]:
    """Run the block with this thread in namespace `name`, which must exist (never created).

    /proc/net and /proc/sys/net show the namespace of the thread that opens them.
    """
    try:
        target = os.open(NETNS_DIR / name, os.O_RDONLY)
    except OSError as err:
        raise DataplaneError(f"namespace {name} does not exist ({err.strerror})") from err
    own = os.open("/proc/self/ns/net", os.O_RDONLY)
    try:
        _setns(target, name)
        try:
            yield
        finally:
            _setns(own, "(own namespace)")
    finally:
        os.close(target)
        os.close(own)


def _setns(fd: int, name: str) -> None:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        raise DataplaneError(f"cannot enter namespace {name}: {os.strerror(ctypes.get_errno())}")


def enter_for_good(name: str) -> None:
    """Move this (forked, single-threaded) process into namespace `name` for the rest of its
    life; the namespace must exist."""
    try:
        fd = os.open(NETNS_DIR / name, os.O_RDONLY)
    except OSError as err:
        raise DataplaneError(f"namespace {name} does not exist ({err.strerror})") from err
    try:
        _setns(fd, name)
    finally:
        os.close(fd)


def write_sysctls(name: str, values: dict[str, str]) -> None:
    with entered(name):
        for key, value in values.items():
            path = Path("/proc/sys") / key.replace(".", "/")
            try:
                path.write_text(value)
            except OSError as err:
                raise DataplaneError(f"{name}: sysctl {key}={value}: {err.strerror}") from err


def read_fib(name: str) -> list[FibRoute]:
    """The main routing table of namespace `name` (see `NetnsHandle.routes`)."""
    with in_netns(name) as ns:
        return ns.routes()


def listening(name: str, port: int) -> bool:
    """Is a TCP socket listening on `port` inside namespace `name`?"""
    hexport = f":{port:04X}"
    with entered(name):
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            try:
                lines = Path(table).read_text().splitlines()[1:]
            except OSError:
                continue
            for line in lines:
                fields = line.split()
                if len(fields) > 3 and fields[1].endswith(hexport) and fields[3] == "0A":
                    return True
    return False


def create_netns(name: str) -> None:
    if (NETNS_DIR / name).exists():
        raise DataplaneError(
            f"namespace {name} already exists: another lab with this name is up, or a previous "
            "run was not brought down (run `meshemu down` for it)"
        )
    try:
        netns.create(name)
    except OSError as err:
        raise DataplaneError(f"cannot create namespace {name}: {err}") from err


def remove_netns(name: str) -> bool:
    """Remove a namespace (its interfaces go with it); False when it was already gone."""
    if not (NETNS_DIR / name).exists():
        return False
    try:
        netns.remove(name)
    except OSError as err:
        if err.errno != errno.ENOENT:
            raise DataplaneError(f"cannot remove namespace {name}: {err}") from err
        return False
    return True


def netns_exists(name: str) -> bool:
    return (NETNS_DIR / name).exists()


def netns_inode(name: str) -> int | None:
    try:
        return os.stat(NETNS_DIR / name).st_ino
    except OSError:
        return None


def pids_in_netns(name: str) -> list[int]:
    """Processes whose network namespace is the recorded namespace `name` (by inode)."""
    inode = netns_inode(name)
    if inode is None:
        return []
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.stat(entry / "ns" / "net").st_ino == inode:
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def missing_link_kinds(kinds: list[str]) -> list[str]:
    """Which of these link kinds the kernel cannot create, probed in a throwaway namespace.

    A forked child unshares a new, unnamed network namespace (gone when the child exits, so
    nothing can leak) and tries each kind there; the host's namespace is never touched.
    """
    import ctypes
    import json

    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        missing: list[str] = []
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.unshare(0x40000000) != 0:  # CLONE_NEWNET
                raise OSError(ctypes.get_errno(), "unshare")
            with IPRoute(groups=0) as ipr:
                for kind in kinds:
                    extra: dict[str, Any] = {}
                    if kind == "veth":
                        extra = {"peer": {"ifname": "probe1"}}
                    elif kind == "vxlan":
                        extra = {"vxlan_id": 42}
                    try:
                        ipr.link("add", ifname="probe0", kind=kind, **extra)
                        ipr.link("del", index=ipr.link_lookup(ifname="probe0")[0])
                    except NetlinkError:
                        missing.append(kind)
        except BaseException:  # the child must never run on into the parent's code
            missing = list(kinds)
        finally:
            os.write(write_fd, json.dumps(missing).encode())
            os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd) as inp:
        data = inp.read()
    os.waitpid(pid, 0)
    result = json.loads(data or "[]")
    return [str(k) for k in result]
