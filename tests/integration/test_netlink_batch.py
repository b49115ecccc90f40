"""Batched netlink (`netlink.batch`) writes exactly what the one-by-one calls write, fails
like them, and namespaces are made without helper processes."""

from __future__ import annotations

import ipaddress
import os
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from meshemu.dataplane.netlink import (
    Batch,
    RouteWatch,
    create_netns,
    in_netns,
    netns_exists,
    pids_in_namespaces,
    read_fib,
    remove_netns,
)
from meshemu.errors import DataplaneError
from meshemu.model.routes import FibRoute, NextHop, source_of

pytestmark = pytest.mark.integration
NAMES = ("benchnla", "benchnlb", "benchnlp")


@pytest.fixture
def spaces() -> Iterator[tuple[str, str, str]]:
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces)")
    for name in NAMES:
        assert not netns_exists(name), f"{name} left by an earlier run"
        create_netns(name)
    try:
        yield NAMES
    finally:
        for name in NAMES:
            remove_netns(name)
    assert not any(netns_exists(n) for n in NAMES)


def _changes(do: Any) -> None:
    """The same changes, through `do`: a `NetnsHandle` or one of its batches."""
    do.up("cali1")
    do.add_address("cali1", "10.1.0.1", 24)
    do.add_address("cali1", "fd00::1", 64)
    do.add_address("cali1", "10.1.0.1", 24)  # exists: ignored
    do.route("add", "10.9.9.9/32", dev="cali1", scope="link", proto=3, metric=1024)
    do.route("add", "fd00:9::9/128", dev="cali1", proto=3, metric=1024)
    do.route("add", "0.0.0.0/0", via="10.1.0.254", dev="cali1")
    do.route("add", "::/0", via="fd00::fe", dev="cali1")
    do.route("replace", "10.8.0.0/24", via="10.1.0.254", dev="cali1")
    do.route("add", "10.7.0.0/24", via="10.1.0.254", dev="cali1")
    do.route("add", "10.7.0.0/24", via="10.1.0.254", dev="cali1")
    do.route("add", "10.6.0.0/26", kind="blackhole", proto=80)
    do.route("replace", "10.5.0.0/26", via="10.1.0.99", dev="cali1", onlink=True, proto=12)
    do.route("replace", "fd00:5::/122", via="fd00::99", dev="cali1", proto=12, metric=2147483547)
    do.route("del", "10.7.0.0/24", via="10.1.0.254", dev="cali1")
    do.route("del", "10.4.0.0/24", via="10.1.0.254", dev="cali1")  # not there: ignored
    do.add_neighbor("cali1", "10.1.0.7", "ee:ee:ee:ee:ee:01")
    do.add_neighbor("cali1", "fd00::7", "ee:ee:ee:ee:ee:02")


def _shown(netns: str) -> str:
    out = []
    for command in ("-d addr show cali1", "route show table main", "-6 route show table main"):
        out.append(
            subprocess.run(
                f"ip -n {netns} {command}", shell=True, capture_output=True, text=True, check=True
            ).stdout
        )
    out.append(
        subprocess.run(
            f"ip -n {netns} neigh show", shell=True, capture_output=True, text=True, check=True
        ).stdout
    )
    # the veth peer's index differs between the two namespaces
    return "\n".join(out).replace("cali1@if2", "cali1@ifN").replace("cali1@if3", "cali1@ifN")


def test_a_batch_writes_what_single_calls_write(spaces: tuple[str, str, str]) -> None:
    one, batched, pods = spaces
    for name, peer in ((one, "eth1"), (batched, "eth2")):
        with in_netns(name) as ns:
            ns.add_veth("cali1", pods, peer, mac="ee:ee:ee:ee:ee:ee")
            if name == one:
                _changes(ns)
            else:
                with ns.batch() as changes:
                    _changes(changes)
    assert "10.9.9.9 dev cali1 scope link metric 1024" in _shown(batched)
    assert _shown(one) == _shown(batched)


def test_a_refused_change_is_a_dataplane_error_naming_it(spaces: tuple[str, str, str]) -> None:
    one, _batched, pods = spaces
    with in_netns(one) as ns:
        ns.add_veth("cali1", pods, "eth1")
        refused = pytest.raises(DataplaneError, match=r"route add 10.99.0.0/24 via 10.200.0.1")
        with refused, ns.batch() as changes:
            changes.route("add", "10.99.0.0/24", via="10.200.0.1", dev="cali1")


def test_a_batch_sent_for_answers_says_which_changes_were_refused(
    spaces: tuple[str, str, str],
) -> None:
    """What the route programmer relies on: one write, an answer per change, in order."""
    one, _batched, pods = spaces
    with in_netns(one) as ns:
        ns.add_veth("cali1", pods, "eth1")
        ns.up("cali1")
        ns.add_address("cali1", "10.1.0.1", 24)
        batch = Batch(one, ns.index)
        batch.route("replace", "10.98.0.0/24", via="10.1.0.2", dev="cali1", proto=12)
        batch.route("add", "10.99.0.0/24", via="10.200.0.1", dev="cali1")  # unreachable
        batch.route("del", "10.98.0.0/24", via="10.1.0.2", dev="cali1", proto=12)
        answers = batch.send()
    assert answers[0] is None and answers[2] is None
    assert answers[1] is not None and "route add 10.99.0.0/24" in answers[1]
    assert batch.send() == []  # nothing left queued


def test_namespaces_are_real_and_found_with_their_processes(spaces: tuple[str, str, str]) -> None:
    one, batched, _pods = spaces
    assert os.stat(f"/run/netns/{one}").st_ino != os.stat(f"/run/netns/{batched}").st_ino
    assert os.stat(f"/run/netns/{one}").st_ino != os.stat("/proc/self/ns/net").st_ino
    sleeper = subprocess.Popen(["ip", "netns", "exec", one, "sleep", "30"])
    try:
        for _ in range(50):
            if sleeper.pid in pids_in_namespaces([one, batched]):
                break
            subprocess.run(["sleep", "0.05"], check=True)
        assert sleeper.pid in pids_in_namespaces([one, batched])
        assert sleeper.pid not in pids_in_namespaces([batched])
    finally:
        sleeper.kill()
        sleeper.wait()


def test_listening_sees_the_namespace_from_any_thread(spaces: tuple[str, str, str]) -> None:
    """`listening` answers for the namespace it is asked about from a worker thread too (the
    benchmark starts a BIRD node from one): /proc/net is the process's main thread's view."""
    import socket
    import threading

    from meshemu.dataplane.netlink import entered, listening

    name = spaces[0]
    with entered(name):
        server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with server:
        server.bind(("127.0.0.1", 17900))
        server.listen(1)
        seen: list[bool] = []
        worker = threading.Thread(target=lambda: seen.append(listening(name, 17900)))
        worker.start()
        worker.join()
        assert seen == [True]
        assert listening(name, 17900)
        assert not listening(spaces[1], 17900)
        assert not listening(name, 17901)
        with entered(name):
            server6 = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        with server6:
            server6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            server6.bind(("::", 17901))
            server6.listen(1)
            assert listening(name, 17901)


def _pyroute2_routes(netns: str) -> list[FibRoute]:
    """The main table as pyroute2 decodes it: the reference for `read_fib`."""
    from pyroute2 import NetNS

    with NetNS(netns) as ipr:
        names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
        out = []
        for family in (2, 10):
            for msg in ipr.route("dump", family=family, table=254):
                if msg["proto"] == 2:  # the kernel's own
                    continue
                dst = msg.get_attr("RTA_DST") or ("0.0.0.0" if family == 2 else "::")
                prefix = str(ipaddress.ip_network(f"{dst}/{msg['dst_len']}"))
                kind = {1: "unicast", 6: "blackhole"}[msg["type"]]
                proto, metric = msg["proto"], msg.get_attr("RTA_PRIORITY")
                if kind != "unicast":
                    out.append(
                        FibRoute(
                            prefix,
                            kind,
                            reason=f"proto {proto}",
                            source=source_of(proto, kind, None),
                            metric=metric,
                        )
                    )
                    continue
                oif = msg.get_attr("RTA_OIF")
                dev = names.get(oif) if oif is not None else None
                hops = tuple(
                    NextHop(hop.get_attr("RTA_GATEWAY"), names.get(hop["oif"]))
                    for hop in msg.get_attr("RTA_MULTIPATH") or ()
                )
                out.append(
                    FibRoute(
                        prefix,
                        "unicast",
                        msg.get_attr("RTA_GATEWAY"),
                        dev,
                        bool(msg["flags"] & 4),
                        f"proto {proto}",
                        source_of(proto, kind, dev),
                        metric,
                        hops,
                    )
                )
        return out


def test_the_route_dump_reads_what_pyroute2_reads(spaces: tuple[str, str, str]) -> None:
    """Unicast, onlink, blackhole, IPv6, metrics, protocols and an ECMP route, read by
    `read_fib` (raw netlink) exactly as pyroute2 decodes them."""
    one, _batched, pods = spaces
    with in_netns(one) as ns:
        ns.add_veth("cali1", pods, "eth1")
        _changes(ns)
        ns.add_veth("cali2", pods, "eth2")
        ns.up("cali2")
        ns.add_address("cali2", "10.2.0.1", 24)
        ns.ipr.route(
            "add",
            dst="10.3.0.0/26",
            proto=12,
            multipath=[
                {"gateway": "10.1.0.254", "oif": ns.index("cali1")},
                {"gateway": "10.2.0.254", "oif": ns.index("cali2")},
            ],
        )
        routes = read_fib(one)
        assert routes == ns.routes()
    assert routes == _pyroute2_routes(one)
    ecmp = next(r for r in routes if r.prefix == "10.3.0.0/26")
    assert ecmp.nexthops == (NextHop("10.1.0.254", "cali1"), NextHop("10.2.0.254", "cali2"))
    assert any(r.type == "blackhole" and r.prefix == "10.6.0.0/26" for r in routes)
    assert any(r.onlink and r.prefix == "10.5.0.0/26" for r in routes)
    assert any(r.prefix == "fd00:5::/122" and r.metric == 2147483547 for r in routes)
    assert len(routes) == 9  # every route written above, none of the kernel's own


def test_route_events_name_each_prefix_as_the_route_dump_does(
    spaces: tuple[str, str, str],
) -> None:
    """The convergence wait matches events to the prefixes of a table it read: the same text."""
    one, _batched, pods = spaces
    watch = RouteWatch([one])
    try:
        with in_netns(one) as ns:
            ns.add_veth("cali1", pods, "eth1")
            _changes(ns)
        events = []
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not any(
            e.prefix == "10.7.0.0/24" and not e.added for e in events
        ):
            events += watch.poll(0.1)
    finally:
        watch.close()
    assert {e.netns for e in events} == {one}
    assert {r.prefix for r in read_fib(one)} <= {e.prefix for e in events if e.added}
    assert "fd00:5::/122" in {e.prefix for e in events if e.added}
    assert "10.7.0.0/24" in {e.prefix for e in events if not e.added}
