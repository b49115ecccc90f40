"""Real packets in the lab: ICMP echo between pods, and captures on the fabric.

Owns sending probes from inside pod namespaces (raw ICMP / ICMPv6 sockets in a forked child
that enters the namespace; no ping binary needed) and capturing frames on a namespace's
interfaces (AF_PACKET), classifying each as plain, IP-in-IP (outer protocol 4) or VXLAN (UDP
4789) with the inner addresses. It reads the plan; it never changes the lab.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import select
import socket
import struct
import time

from meshemu.dataplane.netlink import enter_for_good
from meshemu.errors import DataplaneError
from meshemu.model.plan import LabPlan, NodePlan, PodPlan
from meshemu.verify.observation import Cell, Frame, expected_path, pods_of, targets_of

ETH_P_ALL = 0x0003


def in_child(netns: str, work: object, *args: object) -> object:
    """Run `work(*args)` in a forked child inside `netns`; return its JSON-able result."""
    assert callable(work)
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        code, payload = 1, '{"error": "interrupted"}'
        try:
            enter_for_good(netns)
            payload = json.dumps({"ok": work(*args)})
            code = 0
        except BaseException as err:  # reported to the parent, never raised past the fork
            payload = json.dumps({"error": f"{type(err).__name__}: {err}"})
        finally:
            with os.fdopen(write_fd, "w") as out:
                out.write(payload)
            os._exit(code)
    os.close(write_fd)
    with os.fdopen(read_fd) as inp:
        data = json.loads(inp.read() or '{"error": "child died"}')
    os.waitpid(pid, 0)
    if "error" in data:
        raise DataplaneError(f"in namespace {netns}: {data['error']}")
    return data.get("ok")


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def ping_all(
    targets: list[str], timeout: float = 1.0, attempts: int = 3
) -> dict[str, float | None]:
    """From the current namespace: echo each target; RTT in ms, or None when unanswered."""
    ident = os.getpid() & 0xFFFF
    sockets = {
        4: socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP),
        6: socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6),
    }
    result: dict[str, float | None] = {t: None for t in targets}
    sent_at: dict[tuple[int, int], tuple[str, float]] = {}
    seq = 0
    try:
        for _attempt in range(attempts):
            pending = [t for t in targets if result[t] is None]
            if not pending:
                break
            for target in pending:
                seq += 1
                family = ipaddress.ip_address(target).version
                kind = 8 if family == 4 else 128
                header = struct.pack("!BBHHH", kind, 0, 0, ident, seq)
                payload = b"meshemu-probe"
                if family == 4:
                    header = struct.pack("!BBHHH", kind, 0, _checksum(header + payload), ident, seq)
                sent_at[(family, seq)] = (target, time.monotonic())
                sockets[family].sendto(header + payload, (target, 0))
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and any(result[t] is None for t in pending):
                ready, _, _ = select.select(list(sockets.values()), [], [], 0.05)
                for sock in ready:
                    data = sock.recv(2048)
                    family = 4 if sock.family == socket.AF_INET else 6
                    if family == 4:
                        data = data[(data[0] & 0x0F) * 4 :]
                    if len(data) < 8:
                        continue
                    kind, _code, _sum, rid, rseq = struct.unpack("!BBHHH", data[:8])
                    if kind not in (0, 129) or rid != ident:
                        continue
                    entry = sent_at.get((family, rseq))
                    if entry and result[entry[0]] is None:
                        result[entry[0]] = round((time.monotonic() - entry[1]) * 1000, 3)
    finally:
        for sock in sockets.values():
            sock.close()
    return result


def reachability_matrix(plan: LabPlan, timeout: float = 1.0) -> list[Cell]:
    """Every pod to every other pod, IPv4 and IPv6, one forked prober per source pod."""
    pods = pods_of(plan)
    children: list[tuple[NodePlan, PodPlan, int, int]] = []
    for node, pod in pods:
        targets = targets_of(pod, pods)
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read_fd)
            payload = '{"error": "interrupted"}'
            try:
                enter_for_good(pod.netns)
                payload = json.dumps(ping_all(targets, timeout))
            except BaseException as err:  # reported, never raised past the fork
                payload = json.dumps({"error": str(err)})
            finally:
                with os.fdopen(write_fd, "w") as out:
                    out.write(payload)
                os._exit(0)
        os.close(write_fd)
        children.append((node, pod, pid, read_fd))
    cells = []
    for node, pod, pid, read_fd in children:
        with os.fdopen(read_fd) as inp:
            answers = json.loads(inp.read() or "{}")
        os.waitpid(pid, 0)
        error = str(answers.get("error", ""))
        for other_node, other in pods:
            if other is pod:
                continue
            for family, src_ip, dst_ip in ((4, pod.ipv4, other.ipv4), (6, pod.ipv6, other.ipv6)):
                if src_ip and dst_ip:
                    rtt = (
                        answers.get(dst_ip)
                        if isinstance(answers.get(dst_ip), (int, float))
                        else None
                    )
                    cells.append(
                        Cell(
                            f"{node.name}/{pod.name}",
                            f"{other_node.name}/{other.name}",
                            family,
                            src_ip,
                            dst_ip,
                            expected_path(plan, node, other_node, family),
                            rtt,
                            error,
                        )
                    )
    return cells


def _ip_summary(data: bytes) -> tuple[str, str, int, bytes] | None:
    if not data:
        return None
    version = data[0] >> 4
    if version == 4 and len(data) >= 20:
        ihl = (data[0] & 0x0F) * 4
        return (
            str(ipaddress.IPv4Address(data[12:16])),
            str(ipaddress.IPv4Address(data[16:20])),
            data[9],
            data[ihl:],
        )
    if version == 6 and len(data) >= 40:
        return (
            str(ipaddress.IPv6Address(data[8:24])),
            str(ipaddress.IPv6Address(data[24:40])),
            data[6],
            data[40:],
        )
    return None


def classify(ifname: str, frame: bytes) -> Frame | None:
    """One Ethernet frame -> what crossed the wire (pure, unit-tested)."""
    if len(frame) < 14:
        return None
    ethertype = struct.unpack("!H", frame[12:14])[0]
    if ethertype not in (0x0800, 0x86DD):
        return None
    outer = _ip_summary(frame[14:])
    if outer is None:
        return None
    src, dst, proto, rest = outer
    if proto == 4:
        inner = _ip_summary(rest)
        if inner:
            return Frame(ifname, "ipip", src, dst, inner[0], inner[1], inner[2])
    if proto == 17 and len(rest) >= 8 + 8 + 14:
        dport = struct.unpack("!H", rest[2:4])[0]
        if dport == 4789:
            inner_frame = rest[16:]
            inner = _ip_summary(inner_frame[14:])
            if inner:
                return Frame(ifname, "vxlan", src, dst, inner[0], inner[1], inner[2])
    return Frame(ifname, "plain", src, dst, None, None, proto)


def capture(netns: str, seconds: float, ifnames: list[str] | None = None) -> list[Frame]:
    """Capture for `seconds` in `netns` (all its interfaces unless named); blocks."""

    def work() -> list[dict[str, object]]:
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        names = {index: name for index, name in socket.if_nameindex()}
        frames: list[dict[str, object]] = []
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            ready, _, _ = select.select([sock], [], [], 0.05)
            if not ready:
                continue
            data, address = sock.recvfrom(65535)
            ifname = names.get(socket.if_nametoindex(address[0]), address[0])
            if ifnames and ifname not in ifnames:
                continue
            if address[2] == socket.PACKET_OUTGOING:
                continue  # each frame once: as received on a port
            frame = classify(ifname, data)
            if frame is not None:
                frames.append(frame.__dict__)
        sock.close()
        return frames

    raw = in_child(netns, work)
    assert isinstance(raw, list)
    return [Frame(**f) for f in raw]


def tcp_transfer(
    source_netns: str,
    target_netns: str,
    target_ip: str,
    size: int,
    port: int = 5001,
    timeout: float = 30.0,
) -> tuple[int, float]:
    """Send `size` bytes over TCP from one namespace to a listener in another.

    Returns (bytes received by the listener, seconds the transfer took).
    """
    family = socket.AF_INET6 if ":" in target_ip else socket.AF_INET
    ready_r, ready_w = os.pipe()
    result_r, result_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the listener
        os.close(ready_r)
        os.close(result_r)
        received = 0
        try:
            enter_for_good(target_netns)
            server = socket.socket(family, socket.SOCK_STREAM)
            server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            server.bind((target_ip, port))
            server.listen(1)
            server.settimeout(timeout)
            os.write(ready_w, b"1")
            conn, _ = server.accept()
            conn.settimeout(timeout)
            while True:
                chunk = conn.recv(1 << 16)
                if not chunk:
                    break
                received += len(chunk)
            conn.close()
        except BaseException:  # reported as a short count, never raised past the fork
            pass
        finally:
            os.write(result_w, str(received).encode())
            os._exit(0)
    os.close(ready_w)
    os.close(result_w)
    try:
        if os.read(ready_r, 1) != b"1":
            raise RuntimeError(f"no TCP listener came up in {target_netns}")

        def send() -> float:
            client = socket.socket(family, socket.SOCK_STREAM)
            client.settimeout(timeout)
            started = time.monotonic()
            client.connect((target_ip, port))
            block = b"m" * (1 << 16)
            left = size
            while left > 0:
                client.sendall(block[: min(left, len(block))])
                left -= min(left, len(block))
            client.shutdown(socket.SHUT_WR)
            client.recv(1)  # wait for the listener to close: everything arrived
            client.close()
            return time.monotonic() - started

        seconds = in_child(source_netns, send)
        received = int(os.read(result_r, 64) or b"0")
    finally:
        os.close(ready_r)
        os.close(result_r)
        os.waitpid(pid, 0)
    assert isinstance(seconds, float)
    return received, seconds


def flood(netns: str, target_ip: str, count: int) -> int:
    """Send `count` ICMP echo requests as fast as possible; returns how many replies came."""

    def work() -> int:
        family = 4 if ":" not in target_ip else 6
        sock = socket.socket(
            socket.AF_INET if family == 4 else socket.AF_INET6,
            socket.SOCK_RAW,
            socket.IPPROTO_ICMP if family == 4 else socket.IPPROTO_ICMPV6,
        )
        sock.setblocking(False)
        ident = os.getpid() & 0xFFFF
        replies = 0
        for seq in range(count):
            header = struct.pack("!BBHHH", 8 if family == 4 else 128, 0, 0, ident, seq)
            if family == 4:
                header = struct.pack("!BBHHH", 8, 0, _checksum(header), ident, seq)
            with contextlib.suppress(BlockingIOError):
                sock.sendto(header, (target_ip, 0))
            try:
                while True:
                    data = sock.recv(2048)
                    replies += 1 if data else 0
            except BlockingIOError:
                pass
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            ready, _, _ = select.select([sock], [], [], 0.1)
            if ready:
                sock.recv(2048)
                replies += 1
        sock.close()
        return replies

    result = in_child(netns, work)
    assert isinstance(result, int)
    return result
