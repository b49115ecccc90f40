"""The only code of the lab that touches the kernel's network configuration (pyroute2).

Owns namespaces, links (veth, bridge, VXLAN), addresses, routes, neighbours, FDB entries and
per-namespace sysctls. Everything else in meshemu speaks to the kernel through `Netlink` and
`NetnsHandle`; unit tests use the fake in `dataplane.fake`. It decides nothing: names and
addresses come from the plan. Errors from the kernel become `DataplaneError` saying what failed.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import ipaddress
import os
import selectors
import socket
import struct
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyroute2 import IPRoute, netns
from pyroute2.netlink.exceptions import NetlinkError

from meshemu.errors import DataplaneError
from meshemu.model.routes import FibRoute, NextHop, source_of

NETNS_DIR = Path("/run/netns")
CLONE_NEWNET = 0x40000000
IFA_F_NODAD = 0x02
RTNH_F_ONLINK = 0x04
RTPROT_KERNEL = 2
RTPROT_BOOT = 3
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
            # The socket is opened with this thread inside the namespace (a netlink socket
            # stays in the namespace it was made in): pyroute2's own `netns=` forks a helper
            # process per socket, about 10 ms each, which dominated building a lab. Never
            # created: a node that died is not silently replaced with an empty namespace.
            if name:
                with entered(name):
                    self.ipr = IPRoute(groups=0)
            else:
                self.ipr = IPRoute(groups=0)
        except (OSError, NetlinkError) as err:
            raise DataplaneError(f"cannot open namespace {name}: {err}") from err
        self._index: dict[str, int] = {}
        self.netns = name
        self.inode = netns_inode(name) if name else None  # which namespace of that name

    def close(self) -> None:
        self.ipr.close()

    def _fail(self, what: str, err: Exception) -> DataplaneError:
        return DataplaneError(f"{self.name}: {what}: {err}")

    @staticmethod
    def index_in(netns: str | None, cache: dict[str, int]) -> Callable[[str], int]:
        """An interface-name lookup in namespace `netns` (None: this thread's), cached."""

        def lookup(ifname: str) -> int:
            if ifname not in cache:
                try:
                    with entered(netns) if netns else contextlib.nullcontext():
                        cache[ifname] = socket.if_nametoindex(ifname)
                except OSError as err:
                    raise DataplaneError(
                        f"{netns or '(own namespace)'}: no interface {ifname}"
                    ) from err
            return cache[ifname]

        return lookup

    def forget_indexes(self) -> None:
        """Look interfaces up again from now on: one may have been deleted and made again
        (tunl0 restarting, a device Felix waits for)."""
        self._index.clear()

    def index(self, ifname: str) -> int:
        if ifname not in self._index:
            # if_nametoindex in the namespace: a few microseconds, where a pyroute2 lookup
            # (a link dump request) takes about a millisecond.
            return NetnsHandle.index_in(self.netns, self._index)(ifname)
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
        # Up from its creation (the flags of RTM_NEWLINK apply to the new link): one request
        # fewer per link. The peer comes up with its namespace's other changes.
        kwargs: dict[str, Any] = {"ifname": ifname, "kind": "veth", "peer": peer, "state": "up"}
        if mac:
            kwargs["address"] = mac
        if master is not None:
            kwargs["master"] = self.index(master)
        try:
            self.ipr.link("add", **kwargs)
        except NetlinkError as err:
            raise self._fail(f"add veth {ifname} <-> {peer_netns}/{peer_ifname}", err) from err

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
        return read_fib(self.netns)

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

    def batch(self) -> contextlib.AbstractContextManager[Batch]:
        """Changes to this namespace sent together (see `batch`)."""
        return batch(self.netns, self.index)


# Raw rtnetlink encoding for `Batch` (linux/netlink.h, linux/rtnetlink.h, linux/neighbour.h).
NLM_F_REQUEST, NLM_F_ACK, NLM_F_REPLACE, NLM_F_EXCL, NLM_F_CREATE = 1, 4, 0x100, 0x200, 0x400
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_DUMP = 0x300
RTM_GETROUTE = 26
SOCK_DIAG_BY_FAMILY, TCP_LISTEN = 20, 10
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_PRIORITY, RTA_MULTIPATH, RTA_TABLE = 1, 4, 5, 6, 9, 15
RTM_NEWLINK, RTM_NEWADDR, RTM_NEWNEIGH = 16, 20, 28
IFF_UP = 1
_SCOPES = {"universe": 0, "link": 253, "host": 254}
_BATCH_MESSAGES = 256  # per write: about 25 KiB, and as many acknowledgements
_ROUTE_TYPES = {"unicast": 1, "blackhole": 6}  # RTN_UNICAST, RTN_BLACKHOLE


def _attr(kind: int, data: bytes) -> bytes:
    size = 4 + len(data)
    return struct.pack("=HH", size, kind) + data + b"\0" * (-size % 4)


def _ip(address: str) -> tuple[int, bytes]:
    packed = ipaddress.ip_address(address).packed
    return (10 if len(packed) == 16 else 2), packed


@contextlib.contextmanager
def batch(netns: str | None, index: Callable[[str], int] | None = None) -> Iterator[Batch]:
    """Queue links up, addresses, routes and neighbours of namespace `netns` (None: this
    thread's), sent together when the block ends: one netlink write per 256 changes instead
    of a round trip through pyroute2 (about 1 ms) per change, and no pyroute2 socket needed;
    building a lab is thousands of changes. Not sent when the block raises."""
    queued = Batch(netns, index)
    yield queued
    queued.flush()


class Batch:
    """Changes to one namespace, encoded by hand and sent in bulk by `flush`. Each is
    acknowledged; the first refusal becomes a DataplaneError naming the change, except the
    harmless ones the unbatched calls ignore too (an address or route that exists already on
    `add`). `index` resolves an interface name (default: looked up in the namespace)."""

    def __init__(self, netns: str | None, index: Callable[[str], int] | None = None) -> None:
        self.netns = netns
        self.name = netns or "(own namespace)"
        self._lookup = index
        self._indexes: dict[str, int] = {}
        self._messages: list[tuple[bytes, str, tuple[int, ...]]] = []

    def index(self, ifname: str) -> int:
        if self._lookup is None:
            self._lookup = NetnsHandle.index_in(self.netns, self._indexes)
        return self._lookup(ifname)

    def _queue(self, kind: int, flags: int, body: bytes, what: str, ok: tuple[int, ...]) -> None:
        self._messages.append(
            (struct.pack("=HH", kind, flags | NLM_F_REQUEST | NLM_F_ACK) + body, what, ok)
        )

    def up(self, ifname: str) -> None:
        body = struct.pack("=BxHiII", 0, 0, self.index(ifname), IFF_UP, IFF_UP)
        self._queue(RTM_NEWLINK, 0, body, f"set {ifname} up", ())

    def add_address(self, ifname: str, address: str, prefixlen: int) -> None:
        family, packed = _ip(address)
        # No duplicate address detection (see `NetnsHandle.add_address`).
        flags = IFA_F_NODAD if family == 10 else 0
        body = struct.pack("=BBBBI", family, prefixlen, flags, 0, self.index(ifname))
        body += _attr(2, packed) + _attr(1, packed)  # IFA_LOCAL, IFA_ADDRESS
        what = f"add address {address}/{prefixlen} on {ifname}"
        self._queue(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, body, what, (errno.EEXIST,))

    def route(
        self,
        command: str,
        prefix: str,
        via: str | None = None,
        dev: str | None = None,
        proto: int = 4,  # RTPROT_STATIC, as `ip route add` and pyroute2 write
        scope: str = "universe",
        metric: int | None = None,
        kind: str = "unicast",
        onlink: bool = False,
    ) -> None:
        """`add`, `replace` or `del` a route (`kind` unicast or blackhole) in the main table;
        `del` of a route that is not there is no error, as for `NetnsHandle.route`."""
        network = ipaddress.ip_network(prefix)
        family = 10 if network.version == 6 else 2
        body = struct.pack(
            "=BBBBBBBBI",
            family,
            network.prefixlen,
            0,
            0,
            RT_TABLE_MAIN,
            proto,
            # Any scope matches a deletion (RT_SCOPE_NOWHERE, as `ip route del` sends).
            255 if command == "del" else _SCOPES[scope],
            _ROUTE_TYPES[kind],
            RTNH_F_ONLINK if onlink else 0,
        )
        body += _attr(15, struct.pack("=I", RT_TABLE_MAIN))  # RTA_TABLE
        if network.prefixlen:
            body += _attr(1, network.network_address.packed)  # RTA_DST
        if via is not None:
            body += _attr(5, _ip(via)[1])  # RTA_GATEWAY
        if dev is not None:
            body += _attr(4, struct.pack("=i", self.index(dev)))  # RTA_OIF
        if metric is not None:
            body += _attr(6, struct.pack("=I", metric))  # RTA_PRIORITY
        what = f"route {command} {prefix} via {via} dev {dev}"
        if command == "del":
            self._queue(RTM_DELROUTE, 0, body, what, (errno.ESRCH, errno.ENOENT))
            return
        flags = NLM_F_CREATE | (NLM_F_REPLACE if command == "replace" else NLM_F_EXCL)
        ok = (errno.EEXIST,) if command == "add" else ()
        self._queue(RTM_NEWROUTE, flags, body, what, ok)

    def add_neighbor(self, ifname: str, address: str, mac: str) -> None:
        family, packed = _ip(address)
        body = struct.pack("=BxxxiHBB", family, self.index(ifname), NUD_PERMANENT, 0, 0)
        body += _attr(1, packed) + _attr(2, bytes.fromhex(mac.replace(":", "")))
        flags = NLM_F_CREATE | NLM_F_REPLACE
        self._queue(RTM_NEWNEIGH, flags, body, f"neighbour {address} on {ifname}", ())

    def flush(self) -> None:
        """Send everything queued, in order, and wait for every acknowledgement; the first
        refusal is a DataplaneError."""
        failure = next((error for error in self.send() if error is not None), None)
        if failure is not None:
            raise DataplaneError(failure)

    def send(self) -> list[str | None]:
        """Send everything queued, in order; per change, None or what the kernel refused."""
        if not self._messages:
            return []
        messages, self._messages = self._messages, []
        with entered(self.netns) if self.netns else contextlib.nullcontext():
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, 0)
        errors: list[str | None] = []
        with sock:
            sock.settimeout(10.0)
            sock.bind((0, 0))
            for start in range(0, len(messages), _BATCH_MESSAGES):
                errors += self._send(sock, messages[start : start + _BATCH_MESSAGES])
        return errors

    def _send(
        self, sock: socket.socket, messages: list[tuple[bytes, str, tuple[int, ...]]]
    ) -> list[str | None]:
        out = bytearray()
        for seq, (message, _what, _ok) in enumerate(messages, 1):
            out += struct.pack("=I", 12 + len(message)) + message[:4] + struct.pack("=II", seq, 0)
            out += message[4:]
        # One write: the kernel handles the messages in order and acknowledges each one.
        sock.sendall(bytes(out))
        pending = len(messages)
        errors: list[str | None] = [None] * len(messages)
        while pending:
            for kind, seq, payload in _receive(sock, f"{self.name}: netlink"):
                if kind == NLMSG_ERROR:
                    pending -= 1
                    (code,) = struct.unpack_from("=i", payload)
                    _message, what, ok = messages[seq - 1]
                    if code and -code not in ok:
                        errors[seq - 1] = f"{self.name}: {what}: {os.strerror(-code)}"
        return errors


def _receive(sock: socket.socket, what: str) -> list[tuple[int, int, bytes]]:
    """One read of a netlink socket: each message's type, sequence number and payload.
    DataplaneError, naming `what`, when the kernel does not answer or a message is malformed."""
    try:
        data = sock.recv(1 << 20)
    except TimeoutError as err:  # never wait forever on the kernel
        raise DataplaneError(f"{what}: no answer") from err
    return _messages(data, what)


def _messages(data: bytes, what: str) -> list[tuple[int, int, bytes]]:
    """The netlink messages of one read: each one's type, sequence number and payload."""
    out = []
    offset = 0
    while offset + 16 <= len(data):
        size, kind, _flags, seq, _pid = struct.unpack_from("=IHHII", data, offset)
        if size < 16:
            raise DataplaneError(f"{what}: malformed answer")
        out.append((kind, seq, data[offset + 16 : offset + size]))
        offset += (size + 3) & ~3
    return out


def read_fib(netns: str | None) -> list[FibRoute]:
    """The main table of `netns` (None: this thread's namespace), IPv4 and IPv6, without the
    kernel's own connected and local routes, as `FibRoute`s.

    One raw RTM_GETROUTE dump per family, decoded here: pyroute2 decoded a 400-route table in
    80 ms, and `up` reads every node's table while the lab converges (16 s of the CLI's CPU for
    a 100-node BIRD mesh, taken from the speakers it waits for).
    """
    with entered(netns) if netns else contextlib.nullcontext():
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, 0)
        with sock:
            sock.settimeout(10.0)
            sock.bind((0, 0))
            messages = [m for family in (2, 10) for m in _dump(sock, family, netns)]
            names: dict[int, str | None] = {}
            return [
                route
                for message in messages
                if (route := _fib_route(message, lambda i: _if_name(names, i))) is not None
            ]


def _dump(sock: socket.socket, family: int, netns: str | None) -> list[bytes]:
    """The RTM_NEWROUTE messages (rtmsg and attributes) of one family's dump."""
    rtmsg = struct.pack("=BBBBBBBBI", family, 0, 0, 0, 0, 0, 0, 0, 0)
    answers = netlink_dump(sock, RTM_GETROUTE, rtmsg, f"{netns or '(own namespace)'}: route dump")
    return [payload for kind, payload in answers if kind == RTM_NEWROUTE]


def netlink_dump(sock: socket.socket, kind: int, body: bytes, what: str) -> list[tuple[int, bytes]]:
    """Send one dump request (`kind` with `body`) on a bound netlink socket and read the
    answers until NLMSG_DONE: each answer's message type and payload. DataplaneError, naming
    `what`, when the kernel refuses, sends something malformed, or does not answer."""
    header = struct.pack("=IHHII", 16 + len(body), kind, NLM_F_REQUEST | NLM_F_DUMP, 1, 0)
    sock.sendall(header + body)
    out: list[tuple[int, bytes]] = []
    while True:
        for answer, _seq, payload in _receive(sock, what):
            if answer == NLMSG_DONE:
                return out
            if answer == NLMSG_ERROR:
                (code,) = struct.unpack_from("=i", payload)
                raise DataplaneError(f"{what}: refused: {os.strerror(-code)}")
            out.append((answer, payload))


def _attributes(data: bytes, offset: int) -> dict[int, bytes]:
    """rtattrs from `offset` to the end: type -> payload (the last one of a type wins)."""
    out = {}
    while offset + 4 <= len(data):
        size, kind = struct.unpack_from("=HH", data, offset)
        if size < 4:
            break
        out[kind & 0x3FFF] = data[offset + 4 : offset + size]  # (without the nested flags)
        offset += (size + 3) & ~3
    return out


def _main_table_route(message: bytes) -> tuple[str, dict[int, bytes]] | None:
    """A route message's prefix and attributes; None when it is not of the main table."""
    family, dst_len, _src, _tos, table = struct.unpack_from("=BBBBB", message)
    attrs = _attributes(message, 12)
    if RTA_TABLE in attrs:
        (table,) = struct.unpack("=I", attrs[RTA_TABLE][:4])
    if table != RT_TABLE_MAIN:
        return None
    return _prefix(family, attrs.get(RTA_DST), dst_len), attrs


@functools.lru_cache(maxsize=65536)
def _prefix(family: int, packed: bytes | None, length: int) -> str:
    """The prefix text `FibRoute` and `RouteEvent` carry, made once per prefix: a converging
    lab's tables and events name the same few hundred prefixes again and again."""
    return str(ipaddress.ip_network((_address(family, packed), length)))


def _fib_route(message: bytes, name_of: Callable[[int], str | None]) -> FibRoute | None:
    family, _dst_len, _src, _tos, _table, proto, _scope, rtype, flags = struct.unpack_from(
        "=BBBBBBBBI", message
    )
    route = _main_table_route(message)
    if route is None or proto == RTPROT_KERNEL:
        return None
    prefix, attrs = route
    kind = ROUTE_TYPES.get(rtype, str(rtype))
    metric = struct.unpack("=I", attrs[RTA_PRIORITY][:4])[0] if RTA_PRIORITY in attrs else None
    if kind != "unicast":
        source = source_of(proto, kind, None)
        return FibRoute(prefix, kind, reason=f"proto {proto}", source=source, metric=metric)
    gateway = _address(family, attrs[RTA_GATEWAY]) if RTA_GATEWAY in attrs else None
    dev = name_of(struct.unpack("=i", attrs[RTA_OIF][:4])[0]) if RTA_OIF in attrs else None
    # An ECMP route (BIRD's `merge paths`) has RTA_MULTIPATH instead of a gateway.
    hops = tuple(_next_hops(family, attrs.get(RTA_MULTIPATH, b""), name_of))
    onlink = bool(flags & RTNH_F_ONLINK)
    source = source_of(proto, kind, dev)
    return FibRoute(prefix, "unicast", gateway, dev, onlink, f"proto {proto}", source, metric, hops)


def _next_hops(family: int, data: bytes, name_of: Callable[[int], str | None]) -> Iterator[NextHop]:
    """The rtnexthops of RTA_MULTIPATH: each its length, flags, hops, ifindex, then its own
    attributes (RTA_GATEWAY)."""
    offset = 0
    while offset + 8 <= len(data):
        size, _flags, _hops, ifindex = struct.unpack_from("=HBBi", data, offset)
        if size < 8:
            return
        attrs = _attributes(data[offset : offset + size], 8)
        gateway = _address(family, attrs[RTA_GATEWAY]) if RTA_GATEWAY in attrs else None
        yield NextHop(gateway, name_of(ifindex))
        offset += (size + 3) & ~3


def _address(family: int, packed: bytes | None) -> str:
    if packed is None:
        return "0.0.0.0" if family == 2 else "::"
    return socket.inet_ntop(socket.AF_INET if family == 2 else socket.AF_INET6, packed)


def _if_name(cache: dict[int, str | None], index: int) -> str | None:
    """The name of interface `index` of this thread's namespace (None: gone meanwhile)."""
    if index not in cache:
        try:
            cache[index] = socket.if_indextoname(index)
        except OSError:
            cache[index] = None
    return cache[index]


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

    /proc/sys/net and /proc/thread-self/net show the namespace of the thread that opens them
    (/proc/net is /proc/self/net: the main thread's).
    """
    try:
        target = os.open(NETNS_DIR / name, os.O_RDONLY)
    except OSError as err:
        raise DataplaneError(f"namespace {name} does not exist ({err.strerror})") from err
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        _setns(target, name)
        try:
            yield
        finally:
            _setns(own, "(own namespace)")
    finally:
        os.close(target)
        os.close(own)


_LIBC: Any = None


def _libc() -> Any:
    global _LIBC
    if _LIBC is None:
        import ctypes

        _LIBC = ctypes.CDLL(None, use_errno=True)
    return _LIBC


def _setns(fd: int, name: str) -> None:
    import ctypes

    if _libc().setns(fd, CLONE_NEWNET) != 0:
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


def listening(name: str, port: int) -> bool:
    """Is a TCP socket listening on `port` inside namespace `name`?

    Asked of the kernel's socket diagnostics (sock_diag, as `ss -lt` does) for the listening
    sockets of the namespace: /proc/net/tcp walks every TCP socket of the machine and took
    28 ms a read with a 100-node lab's 20,000 sessions up.
    """
    with entered(name):
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, 4)
    with sock:
        sock.settimeout(10.0)
        sock.bind((0, 0))
        return any(
            port in _listening_ports(sock, family, name)
            for family in (socket.AF_INET, socket.AF_INET6)
        )


def _listening_ports(sock: socket.socket, family: int, name: str) -> set[int]:
    """The ports of one family's TCP sockets in LISTEN (linux/inet_diag.h: an
    inet_diag_req_v2 dump; each answer an inet_diag_msg, its source port at offset 4)."""
    no_cookie = b"\xff" * 8  # INET_DIAG_NOCOOKIE
    request = struct.pack("=BBBxI", family, socket.IPPROTO_TCP, 0, 1 << TCP_LISTEN)
    request += struct.pack("=HH16s16sI8s", 0, 0, b"", b"", 0, no_cookie)
    answers = netlink_dump(sock, SOCK_DIAG_BY_FAMILY, request, f"{name}: sock_diag")
    return {
        struct.unpack_from("!H", payload, 4)[0] for _kind, payload in answers if len(payload) >= 6
    }


def create_netns(name: str) -> None:
    if (NETNS_DIR / name).exists():
        raise DataplaneError(
            f"namespace {name} already exists: another lab with this name is up, or a previous "
            "run was not brought down (run `meshemu down` for it)"
        )
    try:
        _create_netns(name)
    except OSError as err:
        raise DataplaneError(f"cannot create namespace {name}: {err}") from err


MS_BIND = 4096
MS_REC = 16384
MS_SHARED = 1 << 20
_shared_dir = False


def _create_netns(name: str) -> None:
    """What `ip netns add` does, in this thread (no helper process: about 0.5 ms instead of
    pyroute2's 6 ms fork): /run/netns a shared mount, a new namespace unshared by this thread
    and bound to /run/netns/NAME, then this thread back in its own namespace."""
    import ctypes

    global _shared_dir
    libc = _libc()
    if not _shared_dir:
        NETNS_DIR.mkdir(mode=0o755, exist_ok=True)
        directory = bytes(NETNS_DIR)
        if libc.mount(b"", directory, b"none", MS_SHARED | MS_REC, None) != 0:
            # Not a mount point yet: bind it onto itself, then share it (as iproute2 does).
            if libc.mount(directory, directory, b"none", MS_BIND | MS_REC, None) != 0:
                raise OSError(ctypes.get_errno(), f"cannot mount {NETNS_DIR}")
            if libc.mount(b"", directory, b"none", MS_SHARED | MS_REC, None) != 0:
                raise OSError(ctypes.get_errno(), f"cannot share {NETNS_DIR}")
        _shared_dir = True
    path = NETNS_DIR / name
    os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0))
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        if libc.unshare(CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "unshare")
        try:
            if libc.mount(b"/proc/thread-self/ns/net", bytes(path), b"none", MS_BIND, None) != 0:
                raise OSError(ctypes.get_errno(), f"cannot bind {path}")
        finally:
            _setns(own, "(own namespace)")
    except OSError:
        path.unlink(missing_ok=True)
        raise
    finally:
        os.close(own)


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


def pids_in_namespaces(names: Sequence[str]) -> list[int]:
    """Processes whose network namespace is one of these recorded namespaces (by inode), from
    one pass over /proc (a lab's `down` asks for hundreds of namespaces)."""
    inodes = {inode for inode in map(netns_inode, names) if inode is not None}
    if not inodes:
        return []
    pids = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            if os.stat(f"/proc/{entry.name}/ns/net").st_ino in inodes:
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def pids_in_netns(name: str) -> list[int]:
    """Processes whose network namespace is the recorded namespace `name` (by inode)."""
    return pids_in_namespaces([name])


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


RTMGRP_IPV4_ROUTE = 0x40
RTMGRP_IPV6_ROUTE = 0x400
RTM_NEWROUTE = 24
RTM_DELROUTE = 25


@dataclass(frozen=True)
class RouteEvent:
    """A route added (or replaced) or deleted in a namespace's main table, when it was seen."""

    netns: str
    added: bool
    prefix: str  # "": events of this namespace were lost (the socket overran); anything changed
    seen: float  # time.monotonic() when read


class RouteWatch:
    """Route events of many namespaces, read from one rtnetlink socket opened in each.

    For timing how fast a change reaches every FIB: the events carry the moment they were read,
    so nothing polls whole tables (reading a hundred tables takes longer than the change).
    """

    def __init__(self, namespaces: Sequence[str]) -> None:
        self._selector = selectors.DefaultSelector()
        self._sockets: list[socket.socket] = []
        try:
            for name in namespaces:
                with entered(name):
                    sock = socket.socket(
                        socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, 0
                    )
                self._sockets.append(sock)
                sock.setblocking(False)
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, 33, 4 * 1024 * 1024)  # SO_RCVBUFFORCE
                sock.bind((0, RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE))
                self._selector.register(sock, selectors.EVENT_READ, name)
        except BaseException:
            self.close()
            raise

    def poll(self, timeout: float) -> list[RouteEvent]:
        """The events that arrive within `timeout` seconds (all that are queued, at least)."""
        out: list[RouteEvent] = []
        for key, _ in self._selector.select(timeout):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            while True:
                try:
                    data = sock.recv(1 << 20)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError as err:
                    if err.errno == errno.ENOBUFS:  # overrun: the caller reads the FIB instead
                        out.append(RouteEvent(str(key.data), False, "", time.monotonic()))
                        continue
                    raise
                seen = time.monotonic()
                for kind, _seq, message in _messages(data, f"{key.data}: route events"):
                    if kind not in (RTM_NEWROUTE, RTM_DELROUTE):
                        continue
                    route = _main_table_route(message)
                    if route is not None:
                        added = kind == RTM_NEWROUTE
                        out.append(RouteEvent(str(key.data), added, route[0], seen))
        return out

    def close(self) -> None:
        self._selector.close()
        for sock in self._sockets:
            sock.close()
        self._sockets.clear()
