"""User-space IPIP (`meshemu.dataplane.ipip_tun`) between two nodes in different subnets.

Topology, every namespace named `ipt-<suffix>-*` and removed by its recorded name:

    node a (192.168.1.10/24, pod 10.244.1.1/32 on lo)
        eth0 ---- ra  router (forwards)  rb ---- eth0
                                          node b (192.168.2.10/24, pod 10.244.2.1/32 on lo)

Each node runs the tunnel process and has Calico's route to the other's block:
`10.244.X.0/26 via <other node> dev tunl0 onlink`.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
]

REPO = Path(__file__).resolve().parents[2]
NODE_A, NODE_B = "192.168.1.10", "192.168.2.10"
POD_A, POD_B = "10.244.1.1", "10.244.2.1"
BLOCK_A, BLOCK_B = "10.244.1.0", "10.244.2.0"
RTNH_F_ONLINK = 4
ETH_P_ALL = 0x0003


@dataclass
class Lab:
    prefix: str
    a: str
    b: str
    router: str
    workdir: Path
    namespaces: list[str] = field(default_factory=list)
    tunnels: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def stats(self, ns: str) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.workdir / f"{ns}.stats").read_text())
        return data


@contextlib.contextmanager
def in_netns(name: str) -> Iterator[None]:
    """Run a block (sysctl writes) in `name`; /proc/sys/net follows the caller's namespace."""
    from pyroute2 import netns

    netns.pushns(name)
    try:
        yield
    finally:
        netns.popns()


def ns_socket(name: str, family: int, kind: int, proto: int = 0) -> socket.socket:
    from pyroute2 import netns

    return netns.create_socket(name, family, kind, proto, flags=0)  # type: ignore[no-any-return]


def ipr(name: str) -> Any:
    from pyroute2 import IPRoute

    return IPRoute(netns=name, flags=0, groups=0)


def build_topology(lab: Lab) -> None:
    from pyroute2 import netns

    for name in (lab.a, lab.b, lab.router):
        lab.namespaces.append(name)  # recorded before creation: teardown removes it either way
        netns.create(name)
    with ipr(lab.router) as r:
        # veth pairs created straight into the namespaces: no root-namespace interface exists,
        # even for a moment.
        r.link("add", ifname="ra", kind="veth", peer={"ifname": "eth0", "net_ns_fd": lab.a})
        r.link("add", ifname="rb", kind="veth", peer={"ifname": "eth0", "net_ns_fd": lab.b})
        for ifname, address in (("ra", "192.168.1.1"), ("rb", "192.168.2.1")):
            index = r.link_lookup(ifname=ifname)[0]
            r.addr("add", index=index, address=address, prefixlen=24)
            r.link("set", index=index, state="up")
        r.link("set", index=r.link_lookup(ifname="lo")[0], state="up")
    with in_netns(lab.router):
        Path("/proc/sys/net/ipv4/ip_forward").write_text("1")
    for name, node, pod, gateway in (
        (lab.a, NODE_A, POD_A, "192.168.1.1"),
        (lab.b, NODE_B, POD_B, "192.168.2.1"),
    ):
        with ipr(name) as n:
            lo = n.link_lookup(ifname="lo")[0]
            eth0 = n.link_lookup(ifname="eth0")[0]
            n.link("set", index=lo, state="up")
            n.addr("add", index=lo, address=pod, prefixlen=32)
            n.addr("add", index=eth0, address=node, prefixlen=24)
            n.link("set", index=eth0, state="up")
            n.route("add", dst="0.0.0.0/0", gateway=gateway)


def start_tunnel(lab: Lab, name: str, local: str) -> None:
    ready = lab.workdir / f"{name}.ready"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    log = (lab.workdir / f"{name}.log").open("wb")
    lab.tunnels[name] = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "meshemu.dataplane.ipip_tun",
            "--netns",
            name,
            "--local",
            local,
            "--ready-file",
            str(ready),
            "--stats-file",
            str(lab.workdir / f"{name}.stats"),
            "--stats-interval",
            "0.2",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    deadline = time.monotonic() + 15
    while not ready.exists():
        if lab.tunnels[name].poll() is not None:
            pytest.fail(f"tunnel in {name} exited: {(lab.workdir / f'{name}.log').read_text()}")
        if time.monotonic() > deadline:
            pytest.fail(f"tunnel in {name} not ready after 15 s")
        time.sleep(0.05)


def add_tunnel_route(name: str, block: str, gateway: str) -> None:
    with ipr(name) as n:
        tunl0 = n.link_lookup(ifname="tunl0")[0]
        n.route("add", dst=f"{block}/26", gateway=gateway, oif=tunl0, flags=RTNH_F_ONLINK)


def teardown(lab: Lab) -> list[str]:
    """Remove exactly what the lab created; return what could not be removed."""
    from pyroute2 import netns

    problems: list[str] = []
    for name, proc in lab.tunnels.items():
        if proc.poll() is None:
            proc.terminate()  # by pid, never by name
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
                problems.append(f"tunnel {name} (pid {proc.pid}) ignored SIGTERM")
    for name in reversed(lab.namespaces):
        try:
            netns.remove(name)
        except FileNotFoundError:
            pass
        except OSError as exc:
            problems.append(f"namespace {name}: {exc}")
    return problems


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    prefix = f"ipt-{secrets.token_hex(3)}"
    lab = Lab(prefix, f"{prefix}-a", f"{prefix}-b", f"{prefix}-r", tmp_path)
    try:
        build_topology(lab)
        start_tunnel(lab, lab.a, NODE_A)
        start_tunnel(lab, lab.b, NODE_B)
        add_tunnel_route(lab.a, BLOCK_B, NODE_B)
        add_tunnel_route(lab.b, BLOCK_A, NODE_A)
        yield lab
    finally:
        problems = teardown(lab)
        # Leak check: no namespace and no process of this lab is left.
        from pyroute2 import netns

        left = [n for n in netns.listnetns() if n.startswith(prefix)]
        alive = [p.pid for p in lab.tunnels.values() if p.poll() is None]
        assert not problems and not left and not alive, (problems, left, alive)


# ----------------------------------------------------------------------------------------------
# ICMP helpers (a raw ICMP socket; there is no ping binary)
# ----------------------------------------------------------------------------------------------


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(int(x) for x in struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def echo_request(ident: int, seq: int, size: int = 56) -> bytes:
    body = struct.pack("!BBHHH", 8, 0, 0, ident, seq) + bytes(size)
    return body[:2] + struct.pack("!H", checksum(body)) + body[4:]


class Pinger:
    def __init__(self, ns: str, source: str) -> None:
        self.sock = ns_socket(ns, socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        self.sock.bind((source, 0))
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        self.ident = secrets.randbelow(0xFFFF)

    def send(self, target: str, seq: int) -> None:
        self.sock.sendto(echo_request(self.ident, seq), (target, 0))

    def wait_reply(self, seq: int | None, timeout: float) -> bool:
        """True on an echo reply of ours (with `seq`, or any when None) within `timeout`."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65535)
            except TimeoutError:
                return False
            header = (data[0] & 0x0F) * 4
            kind, _, _, ident, got = struct.unpack_from("!BBHHH", data, header)
            if kind == 0 and ident == self.ident and (seq is None or got == seq):
                return True
        return False

    def ping(self, target: str, seq: int, timeout: float = 2.0) -> float | None:
        start = time.perf_counter()
        self.send(target, seq)
        return time.perf_counter() - start if self.wait_reply(seq, timeout) else None

    def close(self) -> None:
        self.sock.close()


# ----------------------------------------------------------------------------------------------
# Tests
# ----------------------------------------------------------------------------------------------


def test_fib_line_is_calicos(lab: Lab) -> None:
    from pyroute2 import IPRoute

    with IPRoute(netns=lab.a, flags=0, groups=0) as n:
        tunl0 = n.link_lookup(ifname="tunl0")[0]
        link = n.get_links(tunl0)[0]
        assert link.get_attr("IFLA_MTU") == 1480
        routes = [r for r in n.get_routes(family=socket.AF_INET) if r.get_attr("RTA_OIF") == tunl0]
    assert len(routes) == 1
    route = routes[0]
    assert route.get_attr("RTA_DST") == BLOCK_B and route["dst_len"] == 26
    assert route.get_attr("RTA_GATEWAY") == NODE_B
    assert route["flags"] & RTNH_F_ONLINK  # `onlink` is accepted on a TUN device


def test_echo_and_capture_on_router(lab: Lab) -> None:
    from scapy.layers.inet import ICMP, IP
    from scapy.layers.l2 import Ether

    capture = ns_socket(lab.router, socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    capture.bind(("rb", 0))
    pinger = Pinger(lab.a, POD_A)
    try:
        rtts = []
        for seq in range(20):
            rtt = pinger.ping(POD_B, seq)
            assert rtt is not None, f"no echo reply for seq {seq}"
            rtts.append(rtt)
        rtts.sort()
        print(
            f"\nICMP RTT pod->pod via two user-space tunnels: min {rtts[0] * 1e3:.3f} ms, "
            f"median {rtts[len(rtts) // 2] * 1e3:.3f} ms, max {rtts[-1] * 1e3:.3f} ms"
        )

        capture.settimeout(0.5)
        seen_request = seen_reply = False
        with contextlib.suppress(TimeoutError):
            while not (seen_request and seen_reply):
                frame = Ether(capture.recv(65535))
                if IP not in frame or frame[IP].proto != 4:
                    continue
                outer = frame[IP]
                inner = outer.payload
                assert isinstance(inner, IP), frame.summary()
                if (outer.src, outer.dst) == (NODE_A, NODE_B):
                    assert (inner.src, inner.dst) == (POD_A, POD_B)
                    assert inner[ICMP].type == 8
                    seen_request = True
                elif (outer.src, outer.dst) == (NODE_B, NODE_A):
                    assert (inner.src, inner.dst) == (POD_B, POD_A)
                    assert inner[ICMP].type == 0
                    seen_reply = True
        assert seen_request and seen_reply, "no IPIP packet node-to-node seen on the router"
    finally:
        pinger.close()
        capture.close()
    # The stats file is rewritten every 0.2 s.
    assert wait_for(
        lambda: lab.stats(lab.a)["encap_packets"] >= 20 and lab.stats(lab.a)["decap_packets"] >= 20
    ), lab.stats(lab.a)


def test_tcp_transfer_5mb(lab: Lab) -> None:
    size = 5 * 1024 * 1024
    server = ns_socket(lab.b, socket.AF_INET, socket.SOCK_STREAM)
    client = ns_socket(lab.a, socket.AF_INET, socket.SOCK_STREAM)
    received: list[int] = []
    try:
        server.bind((POD_B, 5001))
        server.listen(1)
        server.settimeout(30)

        def serve() -> None:
            conn, _ = server.accept()
            with conn:
                conn.settimeout(30)
                total = 0
                while chunk := conn.recv(1 << 16):
                    total += len(chunk)
                conn.sendall(struct.pack("!Q", total))
                received.append(total)

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        client.settimeout(30)
        client.bind((POD_A, 0))
        payload = os.urandom(size)
        start = time.perf_counter()
        client.connect((POD_B, 5001))
        client.sendall(payload)
        client.shutdown(socket.SHUT_WR)
        echoed = struct.unpack("!Q", client.recv(8))[0]
        elapsed = time.perf_counter() - start
        thread.join(30)
    finally:
        client.close()
        server.close()
    assert echoed == size and received == [size]
    print(
        f"\nTCP 5 MiB pod->pod through the tunnel: {elapsed:.2f} s, "
        f"{size * 8 / elapsed / 1e6:.0f} Mbit/s"
    )
    assert elapsed < 30


def test_burst_does_not_stall(lab: Lab) -> None:
    pinger = Pinger(lab.a, POD_A)
    pinger.sock.setblocking(False)
    sent = 0
    try:
        start = time.perf_counter()
        for seq in range(2000):
            try:
                pinger.send(POD_B, seq)
                sent += 1
            except (BlockingIOError, OSError):
                pass
        burst = time.perf_counter() - start
        replies = 0
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            if not pinger.wait_reply(None, 0.5):
                break
            replies += 1
        print(f"\nburst: {sent} echo requests in {burst * 1e3:.0f} ms, {replies} replies")
        pinger.sock.setblocking(True)
        assert any(pinger.ping(POD_B, 60000 + i) is not None for i in range(3)), "tunnel stalled"
    finally:
        pinger.close()
    for name in (lab.a, lab.b):
        assert lab.tunnels[name].poll() is None, f"tunnel in {name} died"
    time.sleep(0.5)  # one more stats period
    a, b = lab.stats(lab.a), lab.stats(lab.b)
    for label, st in (("a", a), ("b", b)):
        print(
            f"tunnel {label}: {st['encap_packets']} encap, {st['decap_packets']} decap, "
            f"{st['dropped']} dropped by the tunnel, {st['kernel_tx_dropped']} dropped by the "
            "kernel on tunl0 (queue to the tunnel full)"
        )
    assert replies > 0


def test_route_changes_follow_the_kernel(lab: Lab) -> None:
    pinger = Pinger(lab.a, POD_A)
    try:
        assert pinger.ping(POD_B, 1) is not None
        with ipr(lab.a) as n:
            tunl0 = n.link_lookup(ifname="tunl0")[0]
            n.route("del", dst=f"{BLOCK_B}/26", gateway=NODE_B, oif=tunl0)
            # Re-point the block at the node with a more specific route, then at nothing.
            n.route("add", dst=f"{POD_B}/32", gateway=NODE_B, oif=tunl0, flags=RTNH_F_ONLINK)
        assert wait_for(lambda: routes_in_stats(lab, lab.a) == {f"{POD_B}/32": [NODE_B]})
        assert pinger.ping(POD_B, 2) is not None
        with ipr(lab.a) as n:
            tunl0 = n.link_lookup(ifname="tunl0")[0]
            n.route("del", dst=f"{POD_B}/32", gateway=NODE_B, oif=tunl0)
        assert wait_for(lambda: routes_in_stats(lab, lab.a) == {})
    finally:
        pinger.close()


def routes_in_stats(lab: Lab, ns: str) -> dict[str, list[str]]:
    return {r["prefix"]: r["via"] for r in lab.stats(ns)["routes"]}


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError, KeyError):
            if predicate():
                return True
        time.sleep(0.1)
    return False


def test_sigterm_removes_tunl0(lab: Lab) -> None:
    proc = lab.tunnels[lab.a]
    proc.terminate()
    assert proc.wait(10) == 0
    with ipr(lab.a) as n:
        assert n.link_lookup(ifname="tunl0") == []


def test_kernel_has_ipip_matches_sysfs() -> None:
    from meshemu.dataplane.ipip_tun import kernel_has_ipip

    before = set(os.listdir("/sys/class/net"))
    result = kernel_has_ipip()
    assert set(os.listdir("/sys/class/net")) == before  # the root namespace is untouched
    if Path("/sys/module/ipip").exists():
        assert result
    print(f"\nkernel_has_ipip() = {result}")
