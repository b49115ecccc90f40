"""User-space IP-in-IP for kernels without the `ipip` module: `tunl0` as a TUN device.

What this module owns:

- the tunnel process of one emulated node (`python -m meshemu.dataplane.ipip_tun --netns NS
  --local IP`): it enters the node's namespace, creates `tunl0` (TUN, IFF_TUN|IFF_NO_PI, MTU
  1480), sets the sysctls the tunnel needs on `tunl0` (rp_filter, accept_local), and then moves
  packets between `tunl0` and a raw IP-protocol-4 socket until SIGTERM/SIGINT, when it closes the
  TUN file descriptor, which removes `tunl0` (the device is not persistent, so it also disappears
  if the process is killed);
- the in-memory copy of the node's `dev tunl0` routes (longest-prefix match, prefix -> gateway),
  kept current from the kernel over rtnetlink, which gives each inner packet its outer
  destination exactly as the kernel `ipip` driver does (`rt_nexthop`: the gateway, or the inner
  destination for a route without one);
- the pure byte handling of encapsulation and decapsulation (`outer_destination`,
  `decapsulate`, `icmp_frag_needed`), kept free of I/O so unit tests run without root;
- `kernel_has_ipip()`, which tells the lab whether the real `tunl0` can be used instead.

What it must not do: program routes (the node agent installs `<block> via <node IP> dev tunl0
onlink`, so the FIB line is the same as with Calico's real `tunl0`), touch any namespace other
than the one it was given (the probe in `kernel_has_ipip` uses a throwaway namespace of its own),
or block: every socket is non-blocking and a packet that cannot be sent now is dropped and counted.

Encapsulation lets the kernel build the outer header (no IP_HDRINCL): the raw socket is bound to
the node address, so the kernel picks `src`, sets protocol 4 from the socket, fills the ID and
checksum, routes the packet out of the uplink and fragments it if a path MTU requires, and the
packet passes netfilter as any locally generated packet. Only the outer TTL is set per packet
(ancillary IP_TTL), copied from the inner packet as the kernel driver does with its default
`ttl inherit`. One difference from the driver: with IP_PMTUDISC_WANT the kernel sets DF on the
outer packet when it fits the path and fragments it when it does not, where the driver copies the
inner DF; EMSGSIZE (only possible above 64 KiB or with a locked MTU) is answered like the driver,
with ICMP "fragmentation needed" to the inner sender. Raw IPPROTO_IPIP sockets receive the whole
outer packet, so decapsulation strips the outer header honouring its IHL.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import fcntl
import ipaddress
import json
import logging
import os
import selectors
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from meshemu.errors import DataplaneError, EnvironmentProblem, MeshemuError
from meshemu.state import write_json_atomic

log = logging.getLogger("meshemu.ipip_tun")

Packet = bytes | bytearray | memoryview

TUNL0 = "tunl0"
DEFAULT_MTU = 1480
OUTER_HEADER_LEN = 20
IPPROTO_IPIP = 4
MAIN_TABLE = 254
RTN_UNICAST = 1

# linux/if_tun.h
TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000

# linux/rtnetlink.h multicast groups and message types
RTMGRP_LINK = 0x1
RTMGRP_IPV4_IFADDR = 0x10
RTMGRP_IPV4_ROUTE = 0x40
RTM_NEWLINK = 16
RTM_DELLINK = 17
RTM_NEWADDR = 20
RTM_DELADDR = 21
RTM_NEWROUTE = 24
RTM_DELROUTE = 25

# Generous socket buffers: a burst must queue in the kernel rather than be lost while the loop
# is busy with the other direction.
SOCKET_BUFFER = 8 * 1024 * 1024
# Packets handled per readiness event before the loop looks at the other descriptors, so one
# busy direction cannot starve the other or the route monitor.
BATCH = 256
# Route resync interval: IPv4 routes flushed by the kernel (link down, address removal) produce
# no RTM_DELROUTE, so the table is also rebuilt from a dump on link/address events and now and then.
RESYNC_SECONDS = 10.0
# Depth of the kernel's queue from tunl0 to this process (the TUN ring follows txqueuelen). At
# 1000 a 2000-packet ICMP burst from one socket loses about 15% in the kernel before we can read.
TXQUEUELEN = 4096
BUFFER_SIZE = 65536

IP_DF = 0x4000
# <linux/in.h> values the socket module does not export on every build
IP_MTU = 14
IP_MTU_DISCOVER = 10
IP_PMTUDISC_WANT = 1

_MASKS = tuple((0xFFFFFFFF << (32 - n)) & 0xFFFFFFFF if n else 0 for n in range(33))


# --------------------------------------------------------------------------------------------
# Pure part: longest-prefix match table and byte handling
# --------------------------------------------------------------------------------------------


def ip_to_int(address: str) -> int:
    """Dotted quad -> host-order integer."""
    return int(ipaddress.IPv4Address(address))


def int_to_ip(value: int) -> str:
    """Host-order integer -> dotted quad."""
    return str(ipaddress.IPv4Address(value))


@dataclass(frozen=True)
class RouteKey:
    """What identifies a kernel route in the table we mirror (main table, IPv4 unicast)."""

    network: int
    prefixlen: int
    priority: int = 0


class RouteTable:
    """Longest-prefix match from IPv4 prefix to next hops, mirroring the `dev tunl0` routes.

    A next hop of 0 stands for "no gateway": the outer destination is then the inner destination,
    as in the kernel driver's NBMA mode. Several next hops (multipath) are chosen by a hash of the
    inner addresses so one flow keeps one path. Among routes for the same prefix the lowest
    priority (metric) wins, as in the kernel.
    """

    def __init__(self) -> None:
        # prefixlen -> network -> priority -> next hops
        self._routes: dict[int, dict[int, dict[int, tuple[int, ...]]]] = {}
        # prefixlen -> network -> next hops of the best (lowest priority) route
        self._best: dict[int, dict[int, tuple[int, ...]]] = {}
        self._lengths: tuple[int, ...] = ()

    def __len__(self) -> int:
        return sum(len(p) for by_net in self._routes.values() for p in by_net.values())

    def set(self, key: RouteKey, next_hops: Iterable[int]) -> None:
        """Add or replace the route `key`."""
        hops = tuple(next_hops) or (0,)
        network = key.network & _MASKS[key.prefixlen]
        by_net = self._routes.setdefault(key.prefixlen, {})
        by_net.setdefault(network, {})[key.priority] = hops
        self._refresh(key.prefixlen, network)

    def remove(self, key: RouteKey) -> bool:
        """Remove the route `key`; True if it was there."""
        network = key.network & _MASKS[key.prefixlen]
        by_prio = self._routes.get(key.prefixlen, {}).get(network)
        if by_prio is None or key.priority not in by_prio:
            return False
        del by_prio[key.priority]
        self._refresh(key.prefixlen, network)
        return True

    def clear(self) -> None:
        self._routes.clear()
        self._best.clear()
        self._lengths = ()

    def replace_all(self, routes: Iterable[tuple[RouteKey, tuple[int, ...]]]) -> None:
        """Rebuild the table from a complete dump."""
        self.clear()
        for key, hops in routes:
            self.set(key, hops)

    def _refresh(self, prefixlen: int, network: int) -> None:
        by_net = self._routes[prefixlen]
        by_prio = by_net[network]
        best = self._best.setdefault(prefixlen, {})
        if by_prio:
            best[network] = by_prio[min(by_prio)]
        else:
            del by_net[network]
            best.pop(network, None)
            if not by_net:
                del self._routes[prefixlen]
                del self._best[prefixlen]
        self._lengths = tuple(sorted(self._best, reverse=True))

    def lookup(self, destination: int) -> tuple[int, ...] | None:
        """Next hops of the longest prefix containing `destination`, or None."""
        best = self._best
        for length in self._lengths:
            hops = best[length].get(destination & _MASKS[length])
            if hops is not None:
                return hops
        return None

    def entries(self) -> list[tuple[str, list[str]]]:
        """The table as text, for logs and the stats file."""
        out: list[tuple[str, list[str]]] = []
        for length in self._lengths:
            for network, hops in sorted(self._best[length].items()):
                out.append(
                    (f"{int_to_ip(network)}/{length}", [int_to_ip(h) if h else "-" for h in hops])
                )
        return out


def outer_destination(inner: Packet, table: RouteTable) -> int | None:
    """Outer destination (host-order int) for an inner packet read from tunl0, or None to drop.

    Only IPv4 inner packets are carried (IP protocol 4 is IPv4-in-IPv4); the route's gateway is
    the outer destination, or the inner destination when the route has none.
    """
    if len(inner) < 20 or inner[0] >> 4 != 4:
        return None
    destination = int(struct.unpack_from("!I", inner, 16)[0])
    hops = table.lookup(destination)
    if hops is None:
        return None
    hop = hops[0] if len(hops) == 1 else hops[_flow_hash(inner) % len(hops)]
    return hop or destination


def _flow_hash(inner: Packet) -> int:
    source, destination = struct.unpack_from("!II", inner, 12)
    return int((source * 2654435761) ^ destination) & 0xFFFFFFFF


def decapsulate(outer: Packet, local: int) -> tuple[int, int] | None:
    """Bounds (start, end) of the inner packet in an outer IPIP packet addressed to `local`.

    None when the packet is not one to decapsulate: not IPv4, not protocol 4, not for this node,
    a fragment (the kernel reassembles before raw delivery, so this means a malformed packet),
    or an inner packet that is not IPv4. The end honours the outer total length, so link padding
    is not passed on.
    """
    size = len(outer)
    if size < 20:
        return None
    version_ihl = outer[0]
    header = (version_ihl & 0x0F) * 4
    if version_ihl >> 4 != 4 or header < 20 or outer[9] != IPPROTO_IPIP:
        return None
    (total,) = struct.unpack_from("!H", outer, 2)
    (flags_fragment,) = struct.unpack_from("!H", outer, 6)
    (destination,) = struct.unpack_from("!I", outer, 16)
    if destination != local or flags_fragment & 0x3FFF:
        return None
    end = min(total, size) if total else size
    if end - header < 20 or outer[header] >> 4 != 4:
        return None
    return header, end


def inner_ttl(inner: Packet) -> int:
    """TTL of an IPv4 packet (the outer TTL is inherited from it)."""
    return int(inner[8])


def has_dont_fragment(inner: Packet) -> bool:
    return len(inner) >= 20 and bool(struct.unpack_from("!H", inner, 6)[0] & IP_DF)


def internet_checksum(data: Packet) -> int:
    """RFC 1071 checksum."""
    raw = bytes(data)
    if len(raw) % 2:
        raw += b"\0"
    total = sum(int(x) for x in struct.unpack(f"!{len(raw) // 2}H", raw))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def icmp_frag_needed(inner: Packet, mtu: int, source: int) -> bytes:
    """ICMP "fragmentation needed" (type 3 code 4) back to the sender of `inner`.

    What the kernel driver sends when an inner packet with DF does not fit the path: written to
    tunl0 it reaches the sender, which lowers its path MTU. `source` is this node's address.
    """
    header = (inner[0] & 0x0F) * 4
    quoted = bytes(inner[: header + 8])
    icmp = bytearray(struct.pack("!BBHHH", 3, 4, 0, 0, mtu) + quoted)
    struct.pack_into("!H", icmp, 2, internet_checksum(icmp))
    (sender,) = struct.unpack_from("!I", inner, 12)
    ip = bytearray(
        struct.pack("!BBHHHBBHII", 0x45, 0xC0, 20 + len(icmp), 0, 0, 64, 1, 0, source, sender)
    )
    struct.pack_into("!H", ip, 10, internet_checksum(ip))
    return bytes(ip + icmp)


# --------------------------------------------------------------------------------------------
# Route messages from rtnetlink (pyroute2 rtmsg objects)
# --------------------------------------------------------------------------------------------


class RouteMessage(Protocol):
    """The part of pyroute2's rtmsg this module reads."""

    def __getitem__(self, key: str) -> Any: ...

    def get(self, key: str, default: Any = None) -> Any: ...

    def get_attr(self, name: str, default: Any = None) -> Any: ...


@dataclass(frozen=True)
class RouteUpdate:
    """A route event reduced to what the table needs; `next_hops` None means "not ours"."""

    key: RouteKey
    next_hops: tuple[int, ...] | None


def route_update(msg: RouteMessage, ifindex: int) -> RouteUpdate | None:
    """Reduce an rtmsg to a table update; None for routes the table never mirrors.

    Mirrored: IPv4 unicast routes of the main table whose device (or one of whose multipath
    next hops) is `ifindex`. A main-table unicast route on another device yields an update with
    `next_hops=None`, so a route moved away from tunl0 by NLM_F_REPLACE leaves the table.
    """
    if msg.get("family") != socket.AF_INET or msg.get("type") != RTN_UNICAST:
        return None
    table = msg.get_attr("RTA_TABLE") or msg.get("table")
    if table != MAIN_TABLE:
        return None
    key = RouteKey(
        network=ip_to_int(msg.get_attr("RTA_DST") or "0.0.0.0"),
        prefixlen=int(msg.get("dst_len") or 0),
        priority=int(msg.get_attr("RTA_PRIORITY") or 0),
    )
    hops: list[int] = []
    if msg.get_attr("RTA_OIF") == ifindex:
        gateway = msg.get_attr("RTA_GATEWAY")
        hops.append(ip_to_int(gateway) if gateway else 0)
    for nexthop in msg.get_attr("RTA_MULTIPATH") or ():
        if nexthop.get("oif") == ifindex:
            gateway = nexthop.get_attr("RTA_GATEWAY")
            hops.append(ip_to_int(gateway) if gateway else 0)
    return RouteUpdate(key=key, next_hops=tuple(hops) if hops else None)


def apply_route_message(table: RouteTable, msg: RouteMessage, ifindex: int) -> bool:
    """Apply one RTM_NEWROUTE/RTM_DELROUTE to `table`; True if it changed the table."""
    update = route_update(msg, ifindex)
    if update is None:
        return False
    deleted = msg.get("event") == "RTM_DELROUTE" or msg["header"]["type"] == RTM_DELROUTE
    if deleted or update.next_hops is None:
        return table.remove(update.key)
    table.set(update.key, update.next_hops)
    return True


# --------------------------------------------------------------------------------------------
# Counters
# --------------------------------------------------------------------------------------------


@dataclass
class Counters:
    """What the tunnel did; written as JSON to the stats file."""

    encap_packets: int = 0
    encap_bytes: int = 0
    decap_packets: int = 0
    decap_bytes: int = 0
    dropped: int = 0
    dropped_no_route: int = 0
    dropped_not_ipv4: int = 0
    dropped_send_busy: int = 0  # EAGAIN / ENOBUFS on the raw socket
    dropped_too_big: int = 0  # EMSGSIZE
    dropped_send_error: int = 0
    dropped_not_for_us: int = 0  # protocol 4 packets the raw socket saw but we do not take
    dropped_tun_write: int = 0
    icmp_frag_needed_sent: int = 0
    route_events: int = 0
    route_resyncs: int = 0

    def drop(self, reason: str) -> None:
        self.dropped += 1
        setattr(self, reason, getattr(self, reason) + 1)


# --------------------------------------------------------------------------------------------
# Kernel side
# --------------------------------------------------------------------------------------------


def write_sysctl(path: str, value: str) -> None:
    """Write one sysctl of the current namespace (/proc/sys/net follows the caller's netns)."""
    try:
        Path("/proc/sys", path).write_text(value)
    except OSError as exc:
        raise DataplaneError(f"cannot set sysctl {path}={value}: {exc}") from exc


def open_tun(name: str) -> int:
    """Create the non-persistent TUN device `name`; closing the fd removes it."""
    try:
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise EnvironmentProblem(
            f"cannot open /dev/net/tun: {exc}; load the tun module or run as root"
        ) from exc
    try:
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    except OSError as exc:
        os.close(fd)
        taken = exc.errno in (errno.EBUSY, errno.EINVAL, errno.EEXIST)
        hint = " (a device of that name already exists)" if taken else ""
        raise DataplaneError(f"cannot create TUN device {name}: {exc}{hint}") from exc
    return fd


def open_raw_socket(local: str) -> socket.socket:
    """Raw IP-protocol-4 socket bound to the node address (sets the outer source, and makes the
    kernel deliver only protocol-4 packets addressed to it)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW | socket.SOCK_CLOEXEC, IPPROTO_IPIP)
    try:
        sock.setblocking(False)
        for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER)
        # SO_*BUFFORCE passes net.core.[rw]mem_max; we are root in the node's namespace.
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, 33, SOCKET_BUFFER)  # SO_RCVBUFFORCE
            sock.setsockopt(socket.SOL_SOCKET, 32, SOCKET_BUFFER)  # SO_SNDBUFFORCE
        sock.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_WANT)
        sock.bind((local, 0))
    except OSError as exc:
        sock.close()
        raise DataplaneError(f"cannot open the raw IPIP socket on {local}: {exc}") from exc
    return sock


def open_route_monitor() -> socket.socket:
    """rtnetlink socket subscribed to IPv4 route, link and address events."""
    sock = socket.socket(
        socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE
    )
    sock.setblocking(False)
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER)
        sock.setsockopt(socket.SOL_SOCKET, 33, SOCKET_BUFFER)
    sock.bind((0, RTMGRP_IPV4_ROUTE | RTMGRP_LINK | RTMGRP_IPV4_IFADDR))
    return sock


def path_mtu(destination: str) -> int | None:
    """The kernel's path MTU towards `destination`, from a connected UDP socket."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect((destination, 9))
            return int(probe.getsockopt(socket.IPPROTO_IP, IP_MTU))
    except OSError:
        return None


@contextlib.contextmanager
def _inside(netns: str | None) -> Iterator[None]:
    """This thread in namespace `netns` for the block (None: where it is). Sockets, TUN
    devices and /proc/sys/net opened meanwhile belong to that namespace for good."""
    if netns is None:
        yield
        return
    from meshemu.dataplane.netlink import entered

    with entered(netns):
        yield


class Tunnel:
    """The tunnel of one node: TUN fd, raw socket, route monitor (`serve` runs any number of
    them in one loop). `netns`: the node's namespace, entered while its descriptors are
    opened, so one process serves every node of a lab; None: the process's own namespace."""

    def __init__(
        self, local: str, mtu: int = DEFAULT_MTU, name: str = TUNL0, netns: str | None = None
    ) -> None:
        self.netns = netns
        with _inside(netns):
            self._open(local, mtu, name)

    def _open(self, local: str, mtu: int, name: str) -> None:
        from pyroute2 import IPRoute  # deferred: pure users of this module need no pyroute2
        from pyroute2.netlink.rtnl.marshal import MarshalRtnl

        self.local = local
        self.local_int = ip_to_int(local)
        self.mtu = mtu
        self.name = name
        self.table = RouteTable()
        self.counters = Counters()
        self.running = True
        self._marshal = MarshalRtnl()
        self._ttl_cmsg = [struct.pack("i", ttl) for ttl in range(256)]
        self._buffer = bytearray(BUFFER_SIZE)
        self._view = memoryview(self._buffer)
        self._closers: list[Any] = []
        try:
            self.ipr = IPRoute(groups=0)
            self._closers.append(self.ipr.close)
            # Subscribe before the first dump so no event between the two is lost.
            self.monitor = open_route_monitor()
            self._closers.append(self.monitor.close)
            self.raw = open_raw_socket(local)
            self._closers.append(self.raw.close)
            self.tun_fd = open_tun(name)
            self._closers.append(lambda: os.close(self.tun_fd))
            self.ifindex = self._configure_link()
            self.resync()
        except BaseException:
            self.close()
            raise

    def _configure_link(self) -> int:
        indexes = self.ipr.link_lookup(ifname=self.name)
        if not indexes:
            raise DataplaneError(f"TUN device {self.name} vanished right after creation")
        index = int(indexes[0])
        ipv6 = Path(f"/proc/sys/net/ipv6/conf/{self.name}/disable_ipv6")
        if ipv6.exists():
            write_sysctl(f"net/ipv6/conf/{self.name}/disable_ipv6", "1")
        # Decapsulated packets arrive on tunl0 from remote pod addresses: strict reverse-path
        # filtering (the effective value is max(all, dev)) must be off on both.
        write_sysctl("net/ipv4/conf/all/rp_filter", "0")
        write_sysctl(f"net/ipv4/conf/{self.name}/rp_filter", "0")
        # An inner packet may carry a source that is local to this node (a node reaching its own
        # pod through a remote hairpin); the real tunl0 accepts it, so should we.
        write_sysctl(f"net/ipv4/conf/{self.name}/accept_local", "1")
        try:
            self.ipr.link("set", index=index, mtu=self.mtu, txqlen=TXQUEUELEN, state="up")
        except Exception as exc:
            raise DataplaneError(f"cannot bring {self.name} up with MTU {self.mtu}: {exc}") from exc
        return index

    # -- routes ---------------------------------------------------------------------------

    def resync(self) -> None:
        """Rebuild the table from a dump of the kernel's IPv4 routes."""
        routes = []
        for msg in self.ipr.route("dump", family=socket.AF_INET):
            update = route_update(msg, self.ifindex)
            if update is not None and update.next_hops is not None:
                routes.append((update.key, update.next_hops))
        self.table.replace_all(routes)
        self.counters.route_resyncs += 1
        log.debug("routes on %s: %s", self.name, self.table.entries())

    def _on_monitor(self) -> None:
        need_resync = False
        for _ in range(BATCH):
            try:
                data = self.monitor.recv(BUFFER_SIZE)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:  # events were lost: the dump is the truth
                    need_resync = True
                    continue
                raise
            for msg in self._marshal.parse(data):
                kind = msg["header"]["type"]
                if kind in (RTM_NEWROUTE, RTM_DELROUTE):
                    self.counters.route_events += 1
                    apply_route_message(self.table, msg, self.ifindex)
                elif kind in (RTM_NEWLINK, RTM_DELLINK):
                    need_resync |= msg.get("index") == self.ifindex
                elif kind in (RTM_NEWADDR, RTM_DELADDR):
                    need_resync = True
        if need_resync:
            self.resync()

    # -- packets --------------------------------------------------------------------------

    def _on_tun(self) -> None:
        view = self._view
        counters = self.counters
        for _ in range(BATCH):
            try:
                size = os.readv(self.tun_fd, [self._buffer])
            except (BlockingIOError, InterruptedError):
                return
            inner = view[:size]
            if size < 20 or inner[0] >> 4 != 4:
                counters.drop("dropped_not_ipv4")
                continue
            destination = outer_destination(inner, self.table)
            if destination is None:
                counters.drop("dropped_no_route")
                continue
            self._send(inner, destination)

    def _send(self, inner: memoryview, destination: int) -> None:
        counters = self.counters
        address = (int_to_ip(destination), 0)
        try:
            self.raw.sendmsg(
                [inner], [(socket.IPPROTO_IP, socket.IP_TTL, self._ttl_cmsg[inner[8]])], 0, address
            )
        except (BlockingIOError, InterruptedError):
            counters.drop("dropped_send_busy")
            return
        except OSError as exc:
            if exc.errno == errno.ENOBUFS:
                counters.drop("dropped_send_busy")
            elif exc.errno == errno.EMSGSIZE:
                counters.drop("dropped_too_big")
                self._frag_needed(inner, address[0])
            else:
                # Unreachable gateway, EPERM from a firewall...: a packet problem, not ours.
                counters.drop("dropped_send_error")
                log.debug("send to %s failed: %s", address[0], exc)
            return
        counters.encap_packets += 1
        counters.encap_bytes += len(inner)

    def _frag_needed(self, inner: memoryview, gateway: str) -> None:
        if not has_dont_fragment(inner):
            return
        with _inside(self.netns):  # the path MTU of the node's namespace
            outer_mtu = path_mtu(gateway) or (self.mtu + OUTER_HEADER_LEN)
        mtu = max(68, min(self.mtu, outer_mtu - OUTER_HEADER_LEN))
        with contextlib.suppress(OSError):
            os.write(self.tun_fd, icmp_frag_needed(inner, mtu, self.local_int))
            self.counters.icmp_frag_needed_sent += 1

    def _on_raw(self) -> None:
        view = self._view
        counters = self.counters
        for _ in range(BATCH):
            try:
                size = self.raw.recv_into(self._buffer)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # ICMP errors queued on the socket (IP_RECVERR is off)
                log.debug("raw socket receive error: %s", exc)
                continue
            bounds = decapsulate(view[:size], self.local_int)
            if bounds is None:
                counters.drop("dropped_not_for_us")
                continue
            start, end = bounds
            try:
                os.write(self.tun_fd, view[start:end])
            except OSError:
                counters.drop("dropped_tun_write")
                continue
            counters.decap_packets += 1
            counters.decap_bytes += end - start

    # -- loop -----------------------------------------------------------------------------

    def kernel_tx_dropped(self) -> int | None:
        """Packets the kernel dropped on tunl0 because its queue to us was full (we were slow)."""
        try:
            links = self.ipr.get_links(self.ifindex)
            return int(links[0].get_attr("IFLA_STATS64")["tx_dropped"])
        except Exception:  # the counter is a diagnostic; never let it stop the loop
            return None

    def stats(self) -> dict[str, Any]:
        data: dict[str, Any] = asdict(self.counters)
        data["kernel_tx_dropped"] = self.kernel_tx_dropped()
        data.update(
            pid=os.getpid(),
            local=self.local,
            device=self.name,
            ifindex=self.ifindex,
            mtu=self.mtu,
            routes=[{"prefix": p, "via": v} for p, v in self.table.entries()],
            time=time.time(),
        )
        return data

    def run(
        self,
        wakeup: socket.socket | None = None,
        stats_file: Path | None = None,
        stats_interval: float = 1.0,
    ) -> None:
        """Move packets until `self.running` turns false (a signal handler does that)."""
        serve([Served(self, stats_file)], lambda: self.running, wakeup, stats_interval)

    def activity(self) -> tuple[int, int, int]:
        """What changes when the tunnel did something: packets, route events, table size."""
        c = self.counters
        packets = c.encap_packets + c.decap_packets + c.dropped + c.icmp_frag_needed_sent
        return packets, c.route_events + c.route_resyncs, len(self.table)

    def close(self) -> None:
        """Close everything; closing the TUN fd removes tunl0 and its routes."""
        while self._closers:
            with contextlib.suppress(Exception):
                self._closers.pop()()


@dataclass
class Served:
    """A tunnel in the loop, with its stats file and when it was last written."""

    tunnel: Tunnel
    stats_file: Path | None = None
    written: float = 0.0
    activity: tuple[int, int, int] = (-1, -1, -1)


# A tunnel whose counters did not change has its stats file rewritten this rarely: a lab's
# hundred idle tunnels would otherwise write a hundred files a second.
STATS_IDLE_SECONDS = 30.0


def serve(
    tunnels: list[Served],
    running: Callable[[], bool],
    wakeup: socket.socket | None = None,
    stats_interval: float = 1.0,
    resync_seconds: float = RESYNC_SECONDS,
) -> None:
    """One selector loop for every tunnel (a node's, or all of a lab's) until `running()` is
    false. Each tunnel's table is resynced every `resync_seconds` (staggered, so a lab's
    tunnels do not dump their routes all at once), and its stats file written at most every
    `stats_interval` when it changed, else every `STATS_IDLE_SECONDS`."""
    selector = selectors.DefaultSelector()
    handlers: dict[int, Callable[[], None]] = {}
    for served in tunnels:
        tunnel = served.tunnel
        handlers[tunnel.tun_fd] = tunnel._on_tun
        handlers[tunnel.raw.fileno()] = tunnel._on_raw
        handlers[tunnel.monitor.fileno()] = tunnel._on_monitor
    for fd in handlers:
        selector.register(fd, selectors.EVENT_READ)
    if wakeup is not None:
        selector.register(wakeup.fileno(), selectors.EVENT_READ)
    now = time.monotonic()
    step = resync_seconds / max(1, len(tunnels))
    resync = [now + resync_seconds + i * step for i in range(len(tunnels))]
    next_stats = now + stats_interval
    try:
        while running():
            timeout = max(0.0, min(next_stats, min(resync, default=next_stats)) - time.monotonic())
            for key, _ in selector.select(timeout):
                handler = handlers.get(key.fd)
                if handler is not None:
                    handler()
                elif wakeup is not None:
                    with contextlib.suppress(OSError):
                        wakeup.recv(4096)
            now = time.monotonic()
            for i, served in enumerate(tunnels):
                if now >= resync[i]:
                    served.tunnel.resync()
                    resync[i] = now + resync_seconds
            if now >= next_stats:
                for served in tunnels:
                    _write_stats(served, now)
                next_stats = now + stats_interval
    finally:
        selector.close()
        for served in tunnels:
            with contextlib.suppress(OSError):
                _write_stats(served, None)


def _write_stats(served: Served, now: float | None) -> None:
    """Write a tunnel's stats file if it changed (or has not been written for a while);
    `now` None: write it whatever."""
    if served.stats_file is None:
        return
    activity = served.tunnel.activity()
    if (
        now is not None
        and activity == served.activity
        and now - served.written < STATS_IDLE_SECONDS
    ):
        return
    write_json_atomic(served.stats_file, served.tunnel.stats())
    served.activity = activity
    served.written = now if now is not None else time.monotonic()


# --------------------------------------------------------------------------------------------
# Detection of the real driver
# --------------------------------------------------------------------------------------------


_IPIP_PROBE = """
import ctypes, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.unshare(0x40000000) != 0:  # CLONE_NEWNET: a namespace only this process sees
    sys.exit(2)
from pyroute2 import IPRoute
with IPRoute(groups=0) as ipr:
    try:
        ipr.link("add", ifname="ipipprobe0", kind="ipip")
    except Exception:
        sys.exit(1)
sys.exit(0)
"""


def kernel_has_ipip(timeout: float = 20.0) -> bool:
    """True when a real kernel `ipip` device can be created on this machine.

    Loaded or built in, the driver shows in /sys/module/ipip. Otherwise (it may be a module the
    kernel loads on demand) a child process unshares a new, anonymous network namespace and tries
    to create a throwaway `ipip` link in it: no other namespace is touched, and nothing can leak,
    as the namespace dies with the child. Without root the probe cannot run: False.
    """
    if Path("/sys/module/ipip").exists():
        return True
    if os.geteuid() != 0:
        return False
    try:
        probe = subprocess.run(
            [sys.executable, "-c", _IPIP_PROBE],
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m meshemu.dataplane.ipip_tun",
        description="User-space IPIP tunnel: tunl0 as a TUN device in a node's namespace.",
    )
    parser.add_argument("--netns", help="namespace of the node (must exist)")
    parser.add_argument("--local", help="the node's IPv4 address (outer source)")
    parser.add_argument(
        "--spec",
        type=Path,
        help="instead of --netns/--local: a JSON file listing every node this one process "
        'serves ({"nodes": [{"netns", "local", "ready", "stats"}], "stats_interval"})',
    )
    parser.add_argument("--mtu", type=int, default=DEFAULT_MTU, help="MTU of tunl0")
    parser.add_argument("--ready-file", type=Path, help="written once tunl0 is up and routed")
    parser.add_argument("--stats-file", type=Path, help="counters as JSON, rewritten atomically")
    parser.add_argument("--stats-interval", type=float, default=1.0, help="seconds")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    if args.spec is None and (args.netns is None or args.local is None):
        parser.error("give --netns and --local, or --spec")
    if args.spec is None:
        try:
            ipaddress.IPv4Address(args.local)
        except ValueError:
            parser.error(f"--local: not an IPv4 address: {args.local!r}")
    if not 68 <= args.mtu <= 65535 - OUTER_HEADER_LEN:
        parser.error(f"--mtu: out of range: {args.mtu}")
    return args


@dataclass
class _Stop:
    running: bool = True


@contextlib.contextmanager
def _signals_wake(stop_flag: _Stop) -> Iterator[socket.socket]:
    """SIGTERM/SIGINT stop the loop; a socketpair wakes the selector at once."""
    reader, writer = socket.socketpair()
    reader.setblocking(False)
    writer.setblocking(False)

    def stop(signum: int, frame: object) -> None:
        stop_flag.running = False

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    old_fd = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    try:
        yield reader
    finally:
        signal.set_wakeup_fd(old_fd)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        reader.close()
        writer.close()


@dataclass(frozen=True)
class NodeSpec:
    """One node a tunnel process serves."""

    netns: str | None  # None: the process's own namespace (entered before, single mode)
    local: str
    ready: Path | None = None
    stats: Path | None = None


def read_spec(path: Path) -> tuple[list[NodeSpec], float]:
    """The nodes of a `--spec` file and its stats interval; DataplaneError when malformed."""
    try:
        data = json.loads(path.read_text())
        nodes = [
            NodeSpec(
                str(n["netns"]),
                str(ipaddress.IPv4Address(n["local"])),
                Path(n["ready"]) if n.get("ready") else None,
                Path(n["stats"]) if n.get("stats") else None,
            )
            for n in data["nodes"]
        ]
        return nodes, float(data.get("stats_interval", 5.0))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataplaneError(f"{path}: not a tunnel spec: {exc}") from exc


def main(argv: list[str] | None = None) -> int:
    """Run the tunnels; exit 0 on SIGTERM/SIGINT, 3 when the environment cannot, 1 otherwise.

    With --spec one process serves every listed node (a lab's `tunl0`s: the process stays in
    its own namespace and enters each node's only to open that node's descriptors); a node
    whose tunnel cannot be made is logged and left out (no ready file), the others run."""
    args = parse_args(argv)
    where = args.netns or (args.spec.name if args.spec else "")
    logging.basicConfig(level=logging.INFO, format=f"ipip_tun[{where}] %(levelname)s %(message)s")
    if args.verbose:  # only ours: pyroute2's debug output is one line per netlink message
        log.setLevel(logging.DEBUG)
    # Block the stop signals until the handlers are in place, so a SIGTERM that races start-up
    # is acted on (after setup) instead of killing us half-configured.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    served: list[Served] = []
    started: list[NodeSpec] = []
    try:
        if args.spec is not None:
            nodes, interval = read_spec(args.spec)
        else:
            from pyroute2 import netns

            try:
                # flags=0: never create the namespace, it must be the node's.
                netns.setns(args.netns, flags=0)
            except OSError as exc:
                raise EnvironmentProblem(f"cannot enter namespace {args.netns!r}: {exc}") from exc
            nodes = [NodeSpec(None, args.local, args.ready_file, args.stats_file)]
            interval = args.stats_interval
        for node in nodes:
            try:
                served.append(
                    Served(Tunnel(node.local, mtu=args.mtu, netns=node.netns), node.stats)
                )
                started.append(node)
            except MeshemuError as exc:
                if args.spec is None:
                    raise
                log.error("%s: %s", node.netns, exc)
    except MeshemuError as exc:
        log.error("%s", exc)
        return 3 if isinstance(exc, EnvironmentProblem) else 1
    stop_flag = _Stop()
    try:
        with _signals_wake(stop_flag) as wakeup:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})
            for each, node in zip(served, started, strict=True):
                if node.ready is not None:
                    write_json_atomic(node.ready, each.tunnel.stats())
                log.info(
                    "%s up in %s (ifindex %d, mtu %d, local %s)",
                    TUNL0,
                    node.netns or args.netns,
                    each.tunnel.ifindex,
                    args.mtu,
                    node.local,
                )
            resync = RESYNC_SECONDS * (3 if len(served) > 1 else 1)
            serve(served, lambda: stop_flag.running, wakeup, interval, resync)
    except MeshemuError as exc:
        log.error("%s", exc)
        return 1
    finally:
        for each in served:
            each.tunnel.close()
            log.info("%s removed; counters %s", TUNL0, asdict(each.tunnel.counters))
    return 0


if __name__ == "__main__":
    sys.exit(main())
