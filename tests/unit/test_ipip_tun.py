"""Pure parts of the user-space IPIP tunnel: LPM table, encap/decap byte handling, route events."""

from __future__ import annotations

import json
import socket
import struct
from pathlib import Path
from typing import Any

import pytest

from meshemu.dataplane.ipip_tun import (
    RTM_DELROUTE,
    RTM_NEWROUTE,
    STATS_IDLE_SECONDS,
    Counters,
    NodeSpec,
    RouteKey,
    RouteTable,
    Served,
    _write_stats,
    apply_route_message,
    decapsulate,
    has_dont_fragment,
    icmp_frag_needed,
    inner_ttl,
    internet_checksum,
    ip_to_int,
    outer_destination,
    parse_args,
    read_spec,
    route_update,
    write_json_atomic,
)
from meshemu.errors import DataplaneError


def key(prefix: str, priority: int = 0) -> RouteKey:
    address, length = prefix.split("/")
    return RouteKey(ip_to_int(address), int(length), priority)


def ip(address: str) -> int:
    return ip_to_int(address)


def ipv4(
    src: str,
    dst: str,
    proto: int = 1,
    payload: bytes = b"\x08\x00\x00\x00" + bytes(60),
    ttl: int = 63,
    flags_fragment: int = 0x4000,
    options: bytes = b"",
    ident: int = 7,
) -> bytes:
    ihl = 5 + len(options) // 4
    header = bytearray(
        struct.pack(
            "!BBHHHBBHII",
            0x40 | ihl,
            0,
            ihl * 4 + len(payload),
            ident,
            flags_fragment,
            ttl,
            proto,
            0,
            ip(src),
            ip(dst),
        )
        + options
    )
    struct.pack_into("!H", header, 10, internet_checksum(header))
    return bytes(header) + payload


# -- LPM table --------------------------------------------------------------------------------


def test_longest_prefix_wins() -> None:
    table = RouteTable()
    table.set(key("10.244.0.0/16"), [ip("192.168.1.1")])
    table.set(key("10.244.2.0/26"), [ip("192.168.2.10")])
    table.set(key("10.244.2.5/32"), [ip("192.168.3.10")])
    assert table.lookup(ip("10.244.2.1")) == (ip("192.168.2.10"),)
    assert table.lookup(ip("10.244.2.5")) == (ip("192.168.3.10"),)
    assert table.lookup(ip("10.244.9.9")) == (ip("192.168.1.1"),)
    assert table.lookup(ip("10.245.0.1")) is None
    assert len(table) == 3


def test_default_route_and_host_bits_ignored() -> None:
    table = RouteTable()
    table.set(key("0.0.0.0/0"), [ip("192.168.9.9")])
    table.set(key("10.244.2.17/26"), [ip("192.168.2.10")])  # host bits are masked off
    assert table.entries()[0] == ("10.244.2.0/26", ["192.168.2.10"])
    assert table.lookup(ip("10.244.2.63")) == (ip("192.168.2.10"),)
    assert table.lookup(ip("10.244.2.64")) == (ip("192.168.9.9"),)


def test_remove_and_lowest_metric() -> None:
    table = RouteTable()
    table.set(key("10.244.2.0/26", 100), [ip("192.168.2.10")])
    table.set(key("10.244.2.0/26", 10), [ip("192.168.2.11")])
    assert table.lookup(ip("10.244.2.1")) == (ip("192.168.2.11"),)
    assert table.remove(key("10.244.2.0/26", 10))
    assert table.lookup(ip("10.244.2.1")) == (ip("192.168.2.10"),)
    assert not table.remove(key("10.244.2.0/26", 10))
    assert table.remove(key("10.244.2.0/26", 100))
    assert table.lookup(ip("10.244.2.1")) is None
    assert len(table) == 0 and table.entries() == []


def test_replace_all() -> None:
    table = RouteTable()
    table.set(key("10.1.0.0/16"), [ip("1.1.1.1")])
    table.replace_all([(key("10.2.0.0/16"), (ip("2.2.2.2"),))])
    assert table.lookup(ip("10.1.0.1")) is None
    assert table.lookup(ip("10.2.0.1")) == (ip("2.2.2.2"),)


# -- encapsulation ----------------------------------------------------------------------------


def test_outer_destination_is_gateway() -> None:
    table = RouteTable()
    table.set(key("10.244.2.0/26"), [ip("192.168.2.10")])
    assert outer_destination(ipv4("10.244.1.1", "10.244.2.1"), table) == ip("192.168.2.10")
    assert outer_destination(ipv4("10.244.1.1", "10.244.3.1"), table) is None


def test_outer_destination_without_gateway_is_inner_destination() -> None:
    table = RouteTable()
    table.set(key("192.168.2.0/24"), [0])  # `dev tunl0` without `via`: the kernel's rt_nexthop
    assert outer_destination(ipv4("10.244.1.1", "192.168.2.7"), table) == ip("192.168.2.7")


def test_outer_destination_rejects_non_ipv4() -> None:
    table = RouteTable()
    table.set(key("0.0.0.0/0"), [ip("192.168.2.10")])
    ipv6 = bytes([0x60]) + bytes(39)
    assert outer_destination(ipv6, table) is None
    assert outer_destination(b"\x45" + bytes(10), table) is None  # truncated


def test_multipath_is_per_flow() -> None:
    table = RouteTable()
    hops = [ip("192.168.2.10"), ip("192.168.3.10")]
    table.set(key("10.244.2.0/26"), hops)
    packet = ipv4("10.244.1.1", "10.244.2.1")
    first = outer_destination(packet, table)
    assert first in hops
    assert all(outer_destination(packet, table) == first for _ in range(10))
    chosen = {outer_destination(ipv4(f"10.244.1.{i}", "10.244.2.1"), table) for i in range(64)}
    assert chosen == set(hops)


def test_inner_ttl_and_df() -> None:
    packet = ipv4("10.0.0.1", "10.0.0.2", ttl=42)
    assert inner_ttl(packet) == 42
    assert has_dont_fragment(packet)
    assert not has_dont_fragment(ipv4("10.0.0.1", "10.0.0.2", flags_fragment=0))


# -- decapsulation ----------------------------------------------------------------------------


def test_decapsulate_strips_outer_header() -> None:
    inner = ipv4("10.244.1.1", "10.244.2.1")
    outer = ipv4("192.168.1.10", "192.168.2.10", proto=4, payload=inner)
    bounds = decapsulate(memoryview(outer), ip("192.168.2.10"))
    assert bounds == (20, len(outer))
    assert outer[bounds[0] : bounds[1]] == inner


def test_decapsulate_honours_ihl_and_total_length() -> None:
    inner = ipv4("10.244.1.1", "10.244.2.1")
    options = b"\x01\x01\x01\x00"  # NOP NOP NOP EOL: IHL 6
    outer = ipv4("192.168.1.10", "192.168.2.10", proto=4, payload=inner, options=options)
    padded = outer + b"\0" * 6  # link-layer padding beyond the total length
    bounds = decapsulate(padded, ip("192.168.2.10"))
    assert bounds == (24, len(outer))
    assert padded[bounds[0] : bounds[1]] == inner


@pytest.mark.parametrize(
    "outer",
    [
        pytest.param(
            ipv4("192.168.1.10", "192.168.9.9", proto=4, payload=ipv4("10.0.0.1", "10.0.0.2")),
            id="not-for-us",
        ),
        pytest.param(
            ipv4("192.168.1.10", "192.168.2.10", proto=17, payload=ipv4("10.0.0.1", "10.0.0.2")),
            id="not-protocol-4",
        ),
        pytest.param(
            ipv4(
                "192.168.1.10",
                "192.168.2.10",
                proto=4,
                payload=ipv4("10.0.0.1", "10.0.0.2"),
                flags_fragment=0x2000,
            ),
            id="fragment",
        ),
        pytest.param(
            ipv4("192.168.1.10", "192.168.2.10", proto=4, payload=b"\x60" + bytes(39)),
            id="inner-not-ipv4",
        ),
        pytest.param(
            ipv4("192.168.1.10", "192.168.2.10", proto=4, payload=b"\x45" + bytes(5)),
            id="inner-truncated",
        ),
        pytest.param(b"\x45\x00", id="truncated"),
        pytest.param(b"\x44" + bytes(39), id="bad-ihl"),
    ],
)
def test_decapsulate_rejects(outer: bytes) -> None:
    assert decapsulate(outer, ip("192.168.2.10")) is None


def test_icmp_frag_needed() -> None:
    inner = ipv4("10.244.1.1", "10.244.2.1", proto=6, payload=bytes(1400))
    reply = icmp_frag_needed(inner, 1380, ip("192.168.1.10"))
    assert internet_checksum(reply[:20]) == 0
    assert reply[9] == 1  # ICMP
    assert struct.unpack_from("!II", reply, 12) == (ip("192.168.1.10"), ip("10.244.1.1"))
    icmp = reply[20:]
    assert icmp[0] == 3 and icmp[1] == 4
    assert struct.unpack_from("!H", icmp, 6)[0] == 1380
    assert icmp[8:] == inner[:28]  # the offending header plus 8 bytes
    assert internet_checksum(icmp) == 0
    assert struct.unpack_from("!H", reply, 2)[0] == len(reply)


# -- route events -----------------------------------------------------------------------------


class FakeRtmsg(dict[str, Any]):
    """Enough of pyroute2's rtmsg for route_update: fields as items, attributes via get_attr."""

    def __init__(self, attrs: dict[str, Any], **fields: Any) -> None:
        super().__init__(fields)
        self.attrs = attrs

    def get_attr(self, name: str, default: Any = None) -> Any:
        return self.attrs.get(name, default)


def rtmsg(event: int = RTM_NEWROUTE, **attrs: Any) -> FakeRtmsg:
    fields: dict[str, Any] = {
        "family": socket.AF_INET,
        "type": 1,
        "table": 254,
        "dst_len": attrs.pop("dst_len", 26),
        "header": {"type": event},
        "event": "RTM_NEWROUTE" if event == RTM_NEWROUTE else "RTM_DELROUTE",
    }
    return FakeRtmsg({"RTA_TABLE": 254, **attrs}, **fields)


def test_route_update_on_tunl0() -> None:
    msg = rtmsg(RTA_DST="10.244.2.0", RTA_GATEWAY="192.168.2.10", RTA_OIF=7)
    update = route_update(msg, 7)
    assert update is not None
    assert update.key == key("10.244.2.0/26")
    assert update.next_hops == (ip("192.168.2.10"),)
    other = route_update(rtmsg(RTA_DST="10.244.2.0", RTA_GATEWAY="192.168.2.1", RTA_OIF=2), 7)
    assert other is not None and other.next_hops is None


def test_route_update_ignores_other_tables_and_types() -> None:
    local = rtmsg(RTA_DST="10.244.1.1", RTA_OIF=7, RTA_TABLE=255)
    assert route_update(local, 7) is None
    blackhole = rtmsg(RTA_DST="10.244.1.0")
    blackhole["type"] = 6
    assert route_update(blackhole, 7) is None
    ipv6 = rtmsg(RTA_DST="fd00::", RTA_OIF=7)
    ipv6["family"] = socket.AF_INET6
    assert route_update(ipv6, 7) is None


def test_route_update_multipath() -> None:
    nexthops = [
        FakeRtmsg({"RTA_GATEWAY": "192.168.2.10"}, oif=7),
        FakeRtmsg({"RTA_GATEWAY": "192.168.3.10"}, oif=7),
        FakeRtmsg({"RTA_GATEWAY": "192.168.1.1"}, oif=2),
    ]
    update = route_update(rtmsg(RTA_DST="10.244.2.0", RTA_MULTIPATH=nexthops), 7)
    assert update is not None
    assert update.next_hops == (ip("192.168.2.10"), ip("192.168.3.10"))


def test_apply_route_messages() -> None:
    table = RouteTable()
    add = rtmsg(RTA_DST="10.244.2.0", RTA_GATEWAY="192.168.2.10", RTA_OIF=7)
    assert apply_route_message(table, add, 7)
    assert table.lookup(ip("10.244.2.1")) == (ip("192.168.2.10"),)
    # NLM_F_REPLACE moving the block to the uplink takes it out of the tunnel's table.
    moved = rtmsg(RTA_DST="10.244.2.0", RTA_GATEWAY="192.168.1.1", RTA_OIF=2)
    assert apply_route_message(table, moved, 7)
    assert table.lookup(ip("10.244.2.1")) is None
    assert apply_route_message(table, add, 7)
    delete = rtmsg(RTM_DELROUTE, RTA_DST="10.244.2.0", RTA_GATEWAY="192.168.2.10", RTA_OIF=7)
    assert apply_route_message(table, delete, 7)
    assert table.lookup(ip("10.244.2.1")) is None
    assert not apply_route_message(table, delete, 7)


# -- counters, files, arguments ---------------------------------------------------------------


def test_counters_drop() -> None:
    counters = Counters()
    counters.drop("dropped_no_route")
    counters.drop("dropped_send_busy")
    assert counters.dropped == 2
    assert counters.dropped_no_route == 1 and counters.dropped_send_busy == 1


def test_write_json_atomic(tmp_path: Path) -> None:
    target = tmp_path / "stats.json"
    write_json_atomic(target, {"a": 1})
    write_json_atomic(target, {"a": 2})
    assert json.loads(target.read_text()) == {"a": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["stats.json"]


def test_parse_args() -> None:
    args = parse_args(["--netns", "n1", "--local", "192.168.1.10"])
    assert args.mtu == 1480 and args.ready_file is None
    with pytest.raises(SystemExit):
        parse_args(["--netns", "n1", "--local", "fd00::1"])
    with pytest.raises(SystemExit):
        parse_args(["--netns", "n1", "--local", "192.168.1.10", "--mtu", "20"])


def test_parse_args_takes_a_spec_instead_of_one_node(tmp_path: Path) -> None:
    args = parse_args(["--spec", str(tmp_path / "t.json")])
    assert args.spec == tmp_path / "t.json" and args.netns is None
    with pytest.raises(SystemExit):
        parse_args(["--netns", "n1"])  # a single node needs its address too


def test_read_spec_lists_every_node_and_refuses_a_bad_one(tmp_path: Path) -> None:
    spec = tmp_path / "tunnels.json"
    spec.write_text(
        json.dumps(
            {
                "nodes": [
                    {"netns": "a", "local": "10.0.0.1", "ready": "/r/a", "stats": "/s/a"},
                    {"netns": "b", "local": "10.0.0.2"},
                ],
                "stats_interval": 2,
            }
        )
    )
    nodes, interval = read_spec(spec)
    assert interval == 2.0
    assert nodes == [
        NodeSpec("a", "10.0.0.1", Path("/r/a"), Path("/s/a")),
        NodeSpec("b", "10.0.0.2", None, None),
    ]
    spec.write_text(json.dumps({"nodes": [{"netns": "a", "local": "fd00::1"}]}))
    with pytest.raises(DataplaneError, match="not a tunnel spec"):
        read_spec(spec)
    spec.write_text("{")
    with pytest.raises(DataplaneError):
        read_spec(spec)


class _Quiet:
    """A tunnel stand-in for the stats policy: only its activity and stats are read."""

    def __init__(self) -> None:
        self.packets = 0

    def activity(self) -> tuple[int, int, int]:
        return self.packets, 0, 0

    def stats(self) -> dict[str, Any]:
        return {"packets": self.packets}


def test_stats_written_when_changed_and_rarely_when_idle(tmp_path: Path) -> None:
    stats = tmp_path / "s.json"
    tunnel = _Quiet()
    served = Served(tunnel, stats)  # type: ignore[arg-type]
    _write_stats(served, 100.0)
    assert json.loads(stats.read_text()) == {"packets": 0}
    stats.unlink()
    _write_stats(served, 101.0)  # nothing changed: not written again so soon
    assert not stats.exists()
    tunnel.packets = 5
    _write_stats(served, 102.0)
    assert json.loads(stats.read_text()) == {"packets": 5}
    stats.unlink()
    _write_stats(served, 102.0 + STATS_IDLE_SECONDS)  # idle, but a long time passed
    assert stats.exists()
    stats.unlink()
    _write_stats(served, None)  # at exit: always
    assert stats.exists()
