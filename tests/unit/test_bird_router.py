"""The BIRD 2 configuration of a router (`model.bird_router.render_router_config`).

Text checks pin each rule (one kernel protocol per family exporting only BGP routes, direct or
multihop, GTSM, route reflection, timers, passwords that cannot break out of their string), and
`test_bird_accepts` gives every rendered example to BIRD 2.0.12 itself (`bird -p`).
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
from pathlib import Path

import pytest

from meshemu.model.bird_router import render_router_config
from meshemu.model.labplan import (
    RouterBgp,
    RouterInterface,
    RouterPlan,
    RouterSession,
    StaticRoute,
)

BIRD = Path("/usr/sbin/bird")


def _iface(subnet: str, n: int, ipv4: str | None, ipv6: str | None = None) -> RouterInterface:
    return RouterInterface(subnet, f"eth{n}", f"fab{n}", ipv4, ipv6, f"02:00:00:00:00:0{n}")


def _session(peer_ip: str, **kw: object) -> RouterSession:
    values: dict[str, object] = {
        "family": 6 if ":" in peer_ip else 4,
        "local_ip": "10.1.0.1",
        "local_as": 65101,
        "peer_ip": peer_ip,
        "peer_as": 64512,
        "peer_kind": "node",
        "peer_name": "n-" + peer_ip,
        "interface": "eth0",
        "rr_client": False,
        "next_hop_self_ebgp": False,
        "password": None,
        "ttl_security": None,
        "graceful_restart_time": None,
        "keepalive_time": None,
        "allow_local_as": 0,
        "reason": "test session",
    }
    values.update(kw)
    return RouterSession(**values)  # type: ignore[arg-type]


def _router(
    name: str,
    interfaces: tuple[RouterInterface, ...],
    sessions: tuple[RouterSession, ...],
    *,
    as_number: int = 65101,
    router_id: str = "10.1.0.1",
    cluster_id: str | None = None,
    routes: tuple[StaticRoute, ...] = (),
) -> RouterPlan:
    bgp = RouterBgp(as_number, router_id, cluster_id, sessions, (), (), None)
    return RouterPlan(name, f"meshemu-t-{name}", interfaces, routes, bgp)


def tor() -> RouterPlan:
    """eBGP top-of-rack: two nodes of its rack and a spine over a /31."""
    return _router(
        "tor1",
        (_iface("rack1", 0, "10.1.0.1"), _iface("up1", 1, "10.254.1.1")),
        (
            _session("10.1.0.11"),
            _session("10.1.0.12"),
            _session(
                "10.254.1.0",
                local_ip="10.254.1.1",
                peer_as=65000,
                peer_kind="router",
                peer_name="spine1",
                interface="eth1",
            ),
        ),
        routes=(StaticRoute("10.2.0.0/24", "10.254.1.0"),),
    )


def reflector() -> RouterPlan:
    """iBGP route reflector outside the cluster, two direct clients and one two hops away."""
    ibgp = {"local_ip": "10.0.0.250", "local_as": 64512, "peer_as": 64512, "rr_client": True}
    return _router(
        "rr",
        (_iface("net0", 0, "10.0.0.250"),),
        (
            _session("10.0.0.11", **ibgp),
            _session("10.0.0.12", **ibgp),
            _session("10.0.1.13", interface=None, **ibgp),
        ),
        as_number=64512,
        router_id="10.0.0.250",
        cluster_id="1.1.1.1",
        routes=(StaticRoute("10.0.1.0/24", "10.0.0.1"),),
    )


def dual_stack() -> RouterPlan:
    return _router(
        "ds",
        (_iface("rack1", 0, "10.1.0.1", "fd00:1::1"),),
        (
            _session("10.1.0.11"),
            _session("fd00:1::11", local_ip="fd00:1::1"),
        ),
        routes=(
            StaticRoute("10.9.0.0/24", "10.1.0.254"),
            StaticRoute("fd00:9::/64", "fd00:1::fe"),
        ),
    )


def ipv6_only() -> RouterPlan:
    return _router(
        "v6",
        (_iface("rack1", 0, None, "fd00:1::1"),),
        (_session("fd00:1::11", local_ip="fd00:1::1"),),
        router_id="10.255.0.7",
    )


def options() -> RouterPlan:
    """Password, GTSM, graceful restart, allow local as, keepalive, next hop self on one peer."""
    return _router(
        "opts",
        (_iface("rack1", 0, "10.1.0.1"),),
        (
            _session(
                "10.1.0.11",
                password='s3cr\\et é#}; "',
                ttl_security=2,
                graceful_restart_time=300,
                keepalive_time=2,
                allow_local_as=1,
            ),
        ),
    )


def multihop() -> RouterPlan:
    """eBGP to a peer behind the fabric: plain multihop, and multihop with GTSM."""
    return _router(
        "mh",
        (_iface("rack1", 0, "10.1.0.1"),),
        (
            _session("10.3.0.11", interface=None),
            _session("10.3.0.12", interface=None, ttl_security=3),
            _session(
                "10.1.0.2",
                local_as=65101,
                peer_as=65101,
                peer_kind="router",
                peer_name="tor1b",
                next_hop_self_ebgp=True,
            ),
        ),
        routes=(StaticRoute("10.3.0.0/24", "10.1.0.254"),),
    )


def _without_quote(router: RouterPlan) -> RouterPlan:
    """`options()` has a password with a double quote (refused); the accepted variant."""
    assert router.bgp is not None
    sessions = tuple(
        dataclasses.replace(s, password=s.password.replace('"', "")) if s.password else s
        for s in router.bgp.sessions
    )
    return dataclasses.replace(router, bgp=dataclasses.replace(router.bgp, sessions=sessions))


EXAMPLES = {
    "tor": tor,
    "reflector": reflector,
    "dual_stack": dual_stack,
    "ipv6_only": ipv6_only,
    "options": lambda: _without_quote(options()),
    "multihop": multihop,
}


def _block(text: str, header: str) -> str:
    """The lines of the top-level block that starts with `header` up to its closing brace."""
    lines = text.splitlines()
    start = lines.index(header)
    end = lines.index("}", start)
    return "\n".join(lines[start : end + 1])


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_bird_accepts(name: str, tmp_path: Path) -> None:
    if not BIRD.exists():
        pytest.skip(f"{BIRD} is absent: BIRD 2 not installed (./scripts/setup.sh installs it)")
    path = tmp_path / "bird.conf"
    path.write_text(render_router_config(EXAMPLES[name](), hold_time=9), encoding="utf-8")
    done = subprocess.run([str(BIRD), "-p", "-c", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr + path.read_text()


def test_bird_rejects_what_the_parse_check_must_catch(tmp_path: Path) -> None:
    """The parse check above can fail: the same config with a broken session does not pass."""
    if not BIRD.exists():
        pytest.skip(f"{BIRD} is absent: BIRD 2 not installed (./scripts/setup.sh installs it)")
    text = render_router_config(tor(), hold_time=9).replace("import all;", "", 1)
    path = tmp_path / "bird.conf"
    path.write_text(text)
    done = subprocess.run([str(BIRD), "-p", "-c", str(path)], capture_output=True, text=True)
    assert done.returncode == 1
    assert "EBGP requires explicit import policy" in done.stderr


def test_header_router_id_and_generic_protocols() -> None:
    text = render_router_config(tor(), hold_time=9)
    assert "log stderr all;" in text.splitlines()
    assert "router id 10.1.0.1;" in text.splitlines()
    assert "protocol device {" in text
    assert _block(text, "protocol direct {") == "protocol direct {\n  ipv4;\n}"


def test_kernel_protocol_per_family_exports_only_bgp() -> None:
    text = render_router_config(dual_stack(), hold_time=9)
    for family in (4, 6):
        block = _block(text, f"protocol kernel kernel{family} {{")
        assert f"ipv{family} {{" in block
        assert "import none;" in block
        assert "export where source = RTS_BGP;" in block
        # ECMP: a protocol option in BIRD 2.0.12 (sysdep/unix/krt.Y), outside the channel.
        assert block.splitlines()[1].startswith("  merge paths on;")
    assert text.count("protocol kernel") == 2
    assert "persist" not in text
    assert _block(text, "protocol direct {") == "protocol direct {\n  ipv4;\n  ipv6;\n}"


def test_ipv6_only_router() -> None:
    text = render_router_config(ipv6_only(), hold_time=9)
    assert "router id 10.255.0.7;" in text
    assert "protocol kernel kernel6 {" in text
    assert "kernel4" not in text
    assert "ipv4" not in text
    assert "  ipv6 {\n    import all;" in _block(text, "protocol bgp node_fd00_1__11 {")


def test_static_routes_per_family_and_not_exported() -> None:
    text = render_router_config(dual_stack(), hold_time=9)
    assert _block(text, "protocol static static4 {") == (
        "protocol static static4 {\n  ipv4;\n  route 10.9.0.0/24 via 10.1.0.254;\n}"
    )
    assert _block(text, "protocol static static6 {") == (
        "protocol static static6 {\n  ipv6;\n  route fd00:9::/64 via fd00:1::fe;\n}"
    )
    # No static protocol for a family without static routes.
    assert "protocol static" not in render_router_config(ipv6_only(), hold_time=9)


def test_ebgp_tor_sessions_in_order() -> None:
    text = render_router_config(tor(), hold_time=9)
    names = re.findall(r"^protocol bgp (\S+) \{", text, re.M)
    assert names == ["node_10_1_0_11", "node_10_1_0_12", "router_10_254_1_0"]
    spine = _block(text, "protocol bgp router_10_254_1_0 {")
    assert "  local 10.254.1.1 as 65101;" in spine
    assert "  neighbor 10.254.1.0 as 65000;" in spine
    assert "  direct;" in spine
    assert "multihop" not in spine
    assert "  ipv4 {\n    import all;\n    export where source = RTS_BGP;\n  };" in spine
    for absent in ("rr client", "password", "graceful restart", "allow local as", "next hop"):
        assert absent not in spine
    assert render_router_config(tor(), hold_time=9) == text


def test_route_reflector() -> None:
    text = render_router_config(reflector(), hold_time=9)
    for peer in ("10_0_0_11", "10_0_0_12", "10_0_1_13"):
        block = _block(text, f"protocol bgp node_{peer} {{")
        assert "  rr client;\n  rr cluster id 1.1.1.1;" in block
    assert "  direct;" in _block(text, "protocol bgp node_10_0_0_11 {")
    far = _block(text, "protocol bgp node_10_0_1_13 {")
    assert "  multihop;" in far
    assert "direct" not in far


def test_route_reflector_needs_ibgp_and_cluster_id() -> None:
    router = reflector()
    assert router.bgp is not None
    with pytest.raises(ValueError, match="cluster id"):
        render_router_config(
            dataclasses.replace(router, bgp=dataclasses.replace(router.bgp, cluster_id=None)), 9
        )
    ebgp = _router("x", tor().interfaces, (_session("10.1.0.11", rr_client=True),))
    with pytest.raises(ValueError, match="iBGP"):
        render_router_config(ebgp, 9)


def test_session_options() -> None:
    block = _block(
        render_router_config(_without_quote(options()), hold_time=9),
        "protocol bgp node_10_1_0_11 {",
    )
    assert block.splitlines()[1:] == [
        "  local 10.1.0.1 as 65101;",
        "  neighbor 10.1.0.11 as 64512;",
        "  direct;",
        "  ttl security on;",
        '  password "s3cr\\et é#}; ";',
        "  hold time 9;",
        "  keepalive time 2;",
        "  connect delay time 1;",
        "  connect retry time 2;",
        "  error wait time 1,5;",
        "  graceful restart on;",
        "  graceful restart time 300;",
        "  allow local as 1;",
        "  ipv4 {",
        "    import all;",
        "    export where source = RTS_BGP;",
        "  };",
        "}",
    ]


def test_multihop_with_and_without_ttl_security() -> None:
    text = render_router_config(multihop(), hold_time=9)
    plain = _block(text, "protocol bgp node_10_3_0_11 {")
    assert "  multihop;" in plain
    assert "ttl security" not in plain
    gtsm = _block(text, "protocol bgp node_10_3_0_12 {")
    assert "  ttl security on;\n  multihop 3;" in gtsm
    assert "direct" not in gtsm


def test_next_hop_self_ebgp_in_the_channel() -> None:
    block = _block(render_router_config(multihop(), 9), "protocol bgp router_10_1_0_2 {")
    channel = block[block.index("  ipv4 {") :]
    assert "    next hop self ebgp;" in channel


@pytest.mark.parametrize(
    ("hold", "keepalive", "expected"),
    [(9, None, 3), (4, None, 1), (3, None, 1), (240, None, 80), (9, 2, 2), (9, 9, 9)],
)
def test_keepalive(hold: int, keepalive: int | None, expected: int) -> None:
    router = _router("k", tor().interfaces, (_session("10.1.0.11", keepalive_time=keepalive),))
    text = render_router_config(router, hold_time=hold)
    assert f"  hold time {hold};\n  keepalive time {expected};\n" in text


def test_hold_time_zero_and_bad_timers() -> None:
    router = _router("k", tor().interfaces, (_session("10.1.0.11"),))
    text = render_router_config(router, hold_time=0)
    assert "  hold time 0;" in text
    assert "keepalive time" not in text
    for hold in (1, 2, 65536, -1):
        with pytest.raises(ValueError, match="hold time"):
            render_router_config(router, hold_time=hold)
    too_long = _router("k", tor().interfaces, (_session("10.1.0.11", keepalive_time=10),))
    with pytest.raises(ValueError, match="keepalive"):
        render_router_config(too_long, hold_time=9)
    gr = _router("k", tor().interfaces, (_session("10.1.0.11", graceful_restart_time=4096),))
    with pytest.raises(ValueError, match="graceful restart"):
        render_router_config(gr, hold_time=9)


@pytest.mark.parametrize(
    ("password", "why"),
    [
        ('ab"cd', "double quote"),
        ("ab\ncd", "newline"),
        ("ab\x00cd", "NUL"),
        ("", "empty"),
        ("x" * 81, "81 bytes"),
        ("é" * 41, "82 bytes"),
        ("\udc80", "Unicode"),
    ],
)
def test_password_that_bird_cannot_hold_is_refused(password: str, why: str) -> None:
    router = _router("p", tor().interfaces, (_session("10.1.0.11", password=password),))
    with pytest.raises(ValueError, match=why):
        render_router_config(router, hold_time=9)


def test_password_kept_byte_for_byte() -> None:
    """BIRD strings have no escapes: backslashes, braces and `#` go in as they are."""
    secret = "a\\b}{;#\t" + "x" * 72  # exactly 80 bytes
    router = _router("p", tor().interfaces, (_session("10.1.0.11", password=secret),))
    assert f'  password "{secret}";\n' in render_router_config(router, hold_time=9)


def test_text_from_the_plan_cannot_add_configuration(tmp_path: Path) -> None:
    """A reason or peer name with newlines stays inside its comment line."""
    evil = "x\nprotocol kernel evil { ipv4 { export all; }; }\n#"
    router = _router(
        "r\nrouter id 9.9.9.9;",
        tor().interfaces,
        (_session("10.1.0.11", reason=evil, peer_name=evil),),
    )
    text = render_router_config(router, hold_time=9)
    assert "evil" not in "\n".join(line for line in text.splitlines() if not line.startswith("#"))
    assert re.findall(r"^router id .*$", text, re.M) == ["router id 10.1.0.1;"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"peer_ip": "10.1.0.300"}, "not an IP address"),
        ({"peer_ip": "fd00::1"}, "not an IPv4 address"),
        ({"local_ip": "10.1.0.1; export all"}, "not an IP address"),
        ({"peer_ip": "fe80::1%eth0", "family": 6, "local_ip": "fe80::2"}, "scope"),
        ({"peer_as": 0}, "AS number"),
        ({"local_as": 2**32}, "AS number"),
        ({"ttl_security": 256}, "TTL"),
        ({"allow_local_as": -1}, "negative"),
    ],
)
def test_bad_session_values(change: dict[str, object], message: str) -> None:
    session = dataclasses.replace(_session("10.1.0.11"), **change)  # type: ignore[arg-type]
    router = _router("b", tor().interfaces, (session,))
    with pytest.raises(ValueError, match=message):
        render_router_config(router, hold_time=9)


def test_bad_router_values() -> None:
    with pytest.raises(ValueError, match="no BGP"):
        render_router_config(dataclasses.replace(tor(), bgp=None), 9)
    with pytest.raises(ValueError, match="router id"):
        render_router_config(_router("b", tor().interfaces, (), router_id="fd00::1"), 9)
    with pytest.raises(ValueError, match="router id"):
        render_router_config(_router("b", tor().interfaces, (), router_id="0.0.0.0"), 9)
    with pytest.raises(ValueError, match="not a prefix"):
        render_router_config(
            _router("b", tor().interfaces, (), routes=(StaticRoute("10.2.0.1/24", "10.1.0.2"),)),
            9,
        )
    with pytest.raises(ValueError, match="IPv4"):
        render_router_config(
            _router("b", tor().interfaces, (), routes=(StaticRoute("10.2.0.0/24", "fd00::1"),)),
            9,
        )
    twice = _router("b", tor().interfaces, (_session("10.1.0.11"), _session("10.1.0.11")))
    with pytest.raises(ValueError, match="two sessions"):
        render_router_config(twice, 9)
