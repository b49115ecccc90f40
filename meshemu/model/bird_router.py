"""The BIRD 2 configuration of a router that speaks BGP: `render_router_config`.

Owns turning one `RouterPlan` (with its `RouterBgp`) into the text of the BIRD 2.0.12
configuration file the router's daemon runs, and refusing (ValueError) a plan value that BIRD
would reject or that could break out of its place in the file. Deciding sessions, AS numbers or
expected routes is not this module's job (`model.plan` and its phases); starting BIRD and
checking a file with `bird -p` is `controlplane.bird_tools`.

Shape (docs/research/fabric/bird-router.md sections 3-4, bird-examples/tor1.conf and rr.conf):
`log stderr all;` (the lab redirects the daemon's stderr to its log), `router id`, `protocol
device`, `protocol direct` with a channel per family the router has (connected subnets in BIRD's
tables, so BGP next hops resolve), one `protocol kernel` per family exporting only BGP-learned
routes (no `persist`: BIRD removes its routes when it stops; `merge paths on`: a prefix several
peers advertise equally well, a Service CIDR every node originates, becomes one ECMP route, as a
top-of-rack router in Calico's reference designs does; `model.phases.fabric._merged` says which
paths BIRD merges), a `protocol static` per family with the router's static
routes (only so recursive and multihop next hops resolve: the kernel protocols export only
RTS_BGP, and the kernel has those routes already), then one `protocol bgp` per session, in the
plan's order.

BIRD sources and documentation followed (CZ-NIC/bird, tag v2.0.12):
- `doc/bird.sgml`: `local` 2440, `neighbor` 2452, `direct` 2477, `multihop` 2484,
  `ttl security` 2548 (with `multihop N` the expected TTL is 256-N; `bgp.c` 1096-1125: a direct
  session expects 255), `password` 2559, `rr client` 2595, `rr cluster id` 2599,
  `allow local as` 2625, `graceful restart` 2667 (default `aware`), `graceful restart time`
  2681, `hold time` 2759, `keepalive time` 2776, `connect delay time` 2787 (default 5),
  `connect retry time` 2791 (default 120), `error wait time` 2795 (default 60,300),
  RFC 8212 (eBGP channels need explicit import and export) 2904, `next hop self
  switch|ibgp|ebgp` (a channel option) 2932, Direct 3311, Kernel 3361 (`persist` 3399,
  `merge paths` 3434: a protocol option, not a channel one, sysdep/unix/krt.Y 72),
  `source = RTS_BGP` 1794 and 3608.
- `proto/bgp/config.Y`: ranges enforced at parse time: hold time 0 or 3-65535 (159), multihop
  1-255 (164), keepalive 1-65535 (184); `error wait time expr ',' expr` (187), `password text`
  (195), `allow local as expr` (200), `graceful restart bool` / `time expr` (203, 205),
  `ttl security bool` (209), `next hop self bgp_nh` with `bgp_nh: bool | IBGP | EBGP` (259-269).
- `proto/bgp/bgp.c` `bgp_postconfig` 1935-2045: only an internal neighbor can be an RR client,
  keepalive at most hold time, eBGP needs explicit import/export policies.
- `proto/bgp/packets.c` 367-368: the graceful restart time travels in 12 bits (RFC 4724), so
  BIRD would silently corrupt a time above 4095.
- `conf/cf-lex.l` 354-368: a string is `"` then any bytes but newline up to the next `"`, with
  no escape sequence at all (a backslash is itself); a NUL byte would silently cut the text
  (`cfg_strdup`). 376 and 382-388: a `#` comment runs to the end of the line. 585: a symbol is
  at most 64 characters (`SYM_MAX_LEN`, `conf/conf.h` 147).
- `sysdep/linux/sysio.h` 180: a TCP MD5 key longer than 80 bytes (`TCP_MD5SIG_MAXKEYLEN`) makes
  the session fail at run time ("The password for TCP MD5 Signature is too long").
"""

from __future__ import annotations

import ipaddress
import re

from meshemu.model.labplan import RouterPlan, RouterSession, StaticRoute

# Lab-friendly retry timers: BIRD's defaults (5 s before the first connection, 120 s between
# attempts, 60-300 s after an error) would leave a session down for minutes after a peer that
# was not listening yet, or a fault a scenario injects, comes back.
CONNECT_DELAY = 1
CONNECT_RETRY = 2
ERROR_WAIT = (1, 5)

MAX_MD5_KEY = 80  # bytes, TCP_MD5SIG_MAXKEYLEN (linux/tcp.h; BIRD sysdep/linux/sysio.h 180)
MAX_GR_TIME = 4095  # 12-bit restart time of the graceful restart capability (RFC 4724)
MAX_AS = 4294967295
_SYMBOL = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")  # BIRD symbol, at most SYM_MAX_LEN
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def render_router_config(router: RouterPlan, hold_time: int) -> str:
    """The BIRD 2 configuration of `router`, deterministic; ValueError on a value BIRD refuses.

    `hold_time` is the lab's BGP hold time, used on every session (0 disables keepalives).
    """
    bgp = router.bgp
    if bgp is None:
        raise ValueError(f"router {router.name} has no BGP speaker to configure")
    where = f"router {router.name}"
    router_id = _ipv4_id(bgp.router_id, f"{where}: router id")
    cluster_id = (
        None if bgp.cluster_id is None else _ipv4_id(bgp.cluster_id, f"{where}: cluster id")
    )
    _as_number(bgp.as_number, f"{where}: AS number")
    if hold_time != 0 and not 3 <= hold_time <= 65535:
        raise ValueError(f"hold time {hold_time}: BIRD accepts 0 or 3-65535 seconds")
    families = sorted({f for i in router.interfaces for f in (4, 6) if i.address(f) is not None})

    out = [
        f"# BIRD 2 configuration of router {_comment(router.name)}, rendered by meshemu from",
        "# the lab plan. The kernel protocols install only what BGP learned.",
        "log stderr all;",
        f"router id {router_id};",
        "",
        "protocol device {",
        "  scan time 10;",
        "}",
        "",
        "# Connected subnets, so that BGP next hops resolve; never exported to the kernel.",
        "protocol direct {",
        *(f"  ipv{f};" for f in families),
        "}",
    ]
    for family in families:
        out += [
            "",
            f"protocol kernel kernel{family} {{",
            "  merge paths on;  # ECMP over equally good BGP paths (at most 16 next hops)",
            f"  ipv{family} {{",
            "    import none;",
            "    export where source = RTS_BGP;",
            "  };",
            "}",
        ]
    for family in families:
        routes = [r for r in router.routes if _route_family(r, where) == family]
        if routes:
            out += [
                "",
                "# Static routes of the plan, for resolving next hops only (not exported).",
                f"protocol static static{family} {{",
                f"  ipv{family};",
                *(f"  route {_route(r, where)};" for r in routes),
                "}",
            ]
    seen: set[str] = set()
    for session in bgp.sessions:
        name = session.protocol_name
        if name in seen:
            raise ValueError(f"{where}: two sessions with peer {session.peer_ip}")
        seen.add(name)
        out += ["", *_session(session, cluster_id, hold_time, f"{where}, session {name}")]
    return "\n".join(out) + "\n"


def _session(s: RouterSession, cluster_id: str | None, hold_time: int, where: str) -> list[str]:
    local_ip = _address(s.local_ip, s.family, f"{where}: local address")
    peer_ip = _address(s.peer_ip, s.family, f"{where}: peer address")
    name = s.protocol_name  # from a valid address, so only letters, digits and underscores
    if not _SYMBOL.fullmatch(name):
        raise ValueError(f"{where}: {name!r} is not a BIRD protocol name")
    _as_number(s.local_as, f"{where}: local AS")
    _as_number(s.peer_as, f"{where}: peer AS")
    kind = "eBGP" if s.ebgp else "iBGP"
    lines = [
        f"# {_comment(s.peer_kind)} {_comment(s.peer_name)} ({kind}): {_comment(s.reason)}",
        f"protocol bgp {name} {{",
        f"  local {local_ip} as {s.local_as};",
        f"  neighbor {peer_ip} as {s.peer_as};",
    ]
    if s.ttl_security is not None and not 1 <= s.ttl_security <= 255:
        raise ValueError(f"{where}: TTL security hops {s.ttl_security}: BIRD accepts 1-255")
    if s.interface is not None:
        # On the peer's subnet. With GTSM a direct session sends TTL 255 and expects 255 (bgp.c
        # 1096-1125), right for a neighbour one hop away whatever hop count the peer allows;
        # `multihop N` here would also turn the gateway recursive and lose BIRD's "keep the next
        # hop between single-hop sessions on the same interface" (packets.c bgp_use_next_hop).
        lines.append("  direct;")
        if s.ttl_security is not None:
            lines.append("  ttl security on;")
    elif s.ttl_security is not None:
        lines += ["  ttl security on;", f"  multihop {s.ttl_security};"]
    else:
        lines.append("  multihop;")
    if s.rr_client:
        if s.ebgp:
            raise ValueError(f"{where}: only an iBGP peer can be a route reflector client")
        if cluster_id is None:
            raise ValueError(f"{where}: route reflector client but the router has no cluster id")
        lines += ["  rr client;", f"  rr cluster id {cluster_id};"]
    if s.password is not None:
        lines.append(f"  password {_password(s.password, where)};")
    lines += _timers(s, hold_time, where)
    if s.graceful_restart_time is not None:
        if not 0 <= s.graceful_restart_time <= MAX_GR_TIME:
            raise ValueError(
                f"{where}: graceful restart time {s.graceful_restart_time}: BGP carries "
                f"0-{MAX_GR_TIME} seconds"
            )
        lines += ["  graceful restart on;", f"  graceful restart time {s.graceful_restart_time};"]
    if s.allow_local_as < 0:
        raise ValueError(f"{where}: allow local as {s.allow_local_as} is negative")
    if s.allow_local_as > 0:
        lines.append(f"  allow local as {s.allow_local_as};")
    lines += [
        f"  ipv{s.family} {{",
        "    import all;",
        "    export where source = RTS_BGP;",
        *(["    next hop self ebgp;"] if s.next_hop_self_ebgp else []),
        "  };",
        "}",
    ]
    return lines


def _timers(s: RouterSession, hold_time: int, where: str) -> list[str]:
    lines = [f"  hold time {hold_time};"]
    if hold_time == 0:
        # No keepalives at all (RFC 4271 4.2); BIRD refuses a keepalive above the hold time.
        if s.keepalive_time is not None:
            raise ValueError(f"{where}: keepalive time set but the hold time is 0")
    else:
        keepalive = s.keepalive_time if s.keepalive_time is not None else max(1, hold_time // 3)
        if not 1 <= keepalive <= hold_time:
            raise ValueError(
                f"{where}: keepalive time {keepalive}: BIRD accepts 1 to the hold time "
                f"({hold_time} s)"
            )
        lines.append(f"  keepalive time {keepalive};")
    lines += [
        f"  connect delay time {CONNECT_DELAY};",
        f"  connect retry time {CONNECT_RETRY};",
        f"  error wait time {ERROR_WAIT[0]},{ERROR_WAIT[1]};",
    ]
    return lines


def _password(text: str, where: str) -> str:
    """`text` as a BIRD string literal; ValueError when BIRD cannot hold it exactly.

    BIRD strings have no escapes (cf-lex.l 354-368): a `"` would end the string, a newline is
    an error, a NUL silently cuts it. Everything else is taken byte for byte.
    """
    try:
        raw = text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"{where}: the password is not valid Unicode text") from exc
    if not raw:
        raise ValueError(f"{where}: the password is empty (an empty TCP MD5 key means none)")
    for bad, what in (('"', "a double quote"), ("\n", "a newline"), ("\x00", "a NUL character")):
        if bad in text:
            raise ValueError(
                f"{where}: the password contains {what}, which a BIRD configuration string "
                "cannot hold"
            )
    if len(raw) > MAX_MD5_KEY:
        raise ValueError(
            f"{where}: the password is {len(raw)} bytes long; TCP MD5 keys are at most "
            f"{MAX_MD5_KEY}"
        )
    return f'"{text}"'


def _comment(text: str) -> str:
    """Text safe inside a `#` comment: one line, no control characters (cf-lex.l 376-388)."""
    return _CONTROL.sub(" ", text)


def _address(text: str, family: int, where: str) -> str:
    if "%" in text:  # Python accepts an IPv6 scope (`fe80::1%eth0`); BIRD's syntax differs
        raise ValueError(f"{where}: {text!r} has a scope")
    try:
        address = ipaddress.ip_address(text)
    except ValueError as exc:
        raise ValueError(f"{where}: {text!r} is not an IP address") from exc
    if address.version != family:
        raise ValueError(f"{where}: {text} is not an IPv{family} address")
    return str(address)


def _ipv4_id(text: str, where: str) -> str:
    value = _address(text, 4, where)
    if value == "0.0.0.0":
        raise ValueError(f"{where}: 0.0.0.0 is not a valid identifier")
    return value


def _as_number(value: int, where: str) -> None:
    if not 1 <= value <= MAX_AS:
        raise ValueError(f"{where}: {value} is not an AS number (1-{MAX_AS})")


def _route_family(route: StaticRoute, where: str) -> int:
    try:
        return ipaddress.ip_network(route.prefix, strict=True).version
    except ValueError as exc:
        raise ValueError(f"{where}: static route {route.prefix!r} is not a prefix") from exc


def _route(route: StaticRoute, where: str) -> str:
    family = _route_family(route, where)
    prefix = ipaddress.ip_network(route.prefix, strict=True)
    via = _address(route.via, family, f"{where}: static route {route.prefix} via")
    return f"{prefix} via {via}"
