"""Parsers of BIRD's `show protocols [all]` and `show route [all]` replies (pure, no I/O).

Owns turning BIRD's text into frozen records, for BIRD 2 (routers, 2.0.12) and BIRD 1.6 (the
node speaker running Calico's configuration, 1.6.8). Input is a sequence of (code, text) lines
as the control socket gives them (`meshemu.controlplane.birdc.BirdReply` is one), so this module
does not depend on the client; `birdc_text_lines` turns `birdc` output without codes into the
same shape. The parsers read the text, not the codes (except 8xxx/9xxx errors): BIRD reuses
codes across lines of different meaning (a route header and its next hops are both 1007), and
the text alone is what `birdc` users and the research notes captured.

Formats followed (CZ-NIC/bird, tags v2.0.12 and v1.6.8):
- protocol rows: `nest/proto.c` `proto_cmd_show` (2.0.12 `"%-10s %-10s %-10s %-6s %-12s  %s"`,
  1.6.8 `"%-8s %-8s %-8s %-5s  %-10s  %s"`; names longer than the column push the rest right,
  so rows are split on whitespace); states from `proto_state_name` (up, down, start, stop,
  flush; 1.6.8 also wait, feed);
- BGP details: `proto/bgp/bgp.c` `bgp_show_proto_info` and `bgp_get_status` (Info column
  `"%-14s%s%s"` = BGP state, error class, error message; only the error while the protocol is
  down); channels: 2.0.12 `nest/proto.c` `channel_show_info`/`channel_show_stats`, 1.6.8 has no
  channels and prints `proto_show_basic_info` (Routes line) at protocol level before the BGP block;
- routes: 2.0.12 `nest/rt-show.c` `rt_show_rte` (header `"%-20s %s [%s %s%s]%s%s"`, then one
  `\\tvia <gw> on <iface>` / `\\tdev <iface>` line per next hop of a unicast route, `Table <name>:`
  headings); 1.6.8 `nest/rt-table.c` `rt_show_rte` (header `"%-18s %s [%s %s%s]%s%s"` with the
  next hop in the destination: `via <gw> on <iface>`, `dev <iface>`, `multipath` followed by
  `\\tvia <gw> on <iface> weight <n>` lines; no table heading). In both, only the first route of
  a prefix names it: alternatives print an empty prefix, so their header starts with spaces
  (`rt_show_net`: `ia[0] = 0`). The info part is `proto/bgp/attrs.c` `bgp_get_route_info` for BGP
  (`" (<pref>[-][s][/<metric>]) [AS<n><i|e|?>]"`) and `" (<pref>)"` otherwise. `s` marks a
  long-lived stale route only (`rte_stale`: the LLGR_STALE community 65535:6, set when a
  neighbor's restart time ran out and long-lived graceful restart keeps its routes); during a
  regular graceful restart routes are kept unmarked (see the protocol's `Neighbor GR`).
  With `all`: `\\tType: <source> [<cast>] <scope>` and one `\\t<attr>: <value>` per attribute
  (`nest/rt-attr.c` `rta_show`/`ea_show`), long sets continued on `\\t\\t` lines; AS paths from
  `nest/a-path.c` `as_path_format` (`{..}` sets, `(..)` confed).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from meshemu.errors import SpeakerError

UNKNOWN_CODE = -1  # the code of a line taken from `birdc` output printed without `-v`

_WELCOME = re.compile(r"BIRD \S+ ready\.\Z")
_PROTOCOL_HEADING = re.compile(r"name\s+proto\s+table\s+state\s+since\s+info\s*\Z", re.IGNORECASE)
# Since is one token with BIRD's default time formats; "iso long" gives a date and a time.
_PROTOCOL_ROW = re.compile(
    r"(?P<name>\S+)\s+(?P<proto>\S+)\s+(?P<table>\S+)\s+(?P<state>\S+)\s+"
    r"(?P<since>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?|\S+)(?:\s+(?P<info>.*))?\Z"
)
_DETAIL = re.compile(r"(?P<key>[A-Za-z][A-Za-z0-9 ./-]*?):(?:\s+(?P<value>.*))?\Z")
_ROUTES = re.compile(
    r"(?P<imported>\d+) imported, (?:(?P<filtered>\d+) filtered, )?"
    r"(?P<exported>\d+) exported, (?P<preferred>\d+) preferred"
)
_TIMER = re.compile(r"(?P<remaining>[\d.]+)/(?P<total>\d+)\Z")

_TABLE_HEADING = re.compile(r"Table (?P<table>\S+):\Z")
_ROUTE_HEADER = re.compile(
    r"(?P<prefix>\S*)\s+(?P<dest>.*?)\s*\[(?P<proto>\S+) (?P<since>.+?)"
    r"(?: from (?P<from>\S+))?\](?P<mark> [*!])?(?P<info>.*)\Z"
)
_VIA = re.compile(r"via (?P<gw>\S+) on (?P<iface>\S+)(?P<rest>.*)\Z")
_DEV = re.compile(r"dev (?P<iface>\S+)(?P<rest>.*)\Z")
_WEIGHT = re.compile(r" weight (\d+)")
_ROUTE_INFO = re.compile(
    r" \((?P<pref>\d+)(?P<suppressed>-)?(?P<stale>s)?(?:/(?P<metric>[^)]*))?\)"
    r"(?: \[(?:AS(?P<origin_as>\d+))?(?P<origin>[ie?])\])?"
)
_ATTRIBUTE = re.compile(r"(?P<name>[^:\s][^:]*):(?: (?P<value>.*))?\Z")
_SIMPLE_DESTINATIONS = ("unicast", "blackhole", "unreachable", "prohibited", "multipath")


class BirdOutputError(SpeakerError):
    """BIRD's reply did not have the shape this module knows (another version, or an error)."""


@dataclass(frozen=True)
class BirdChannel:
    """One channel of a BIRD 2 protocol (`Channel ipv4`); BIRD 1.6 has none."""

    name: str  # "ipv4", "ipv6"
    state: str  # "UP", "DOWN", "START", "FEED", "FLUSHING"
    table: str | None = None
    preference: int | None = None
    input_filter: str | None = None
    output_filter: str | None = None
    # The Routes line is printed only while the channel is not down.
    routes_imported: int | None = None
    routes_filtered: int | None = None  # only with `import keep filtered`
    routes_exported: int | None = None
    routes_preferred: int | None = None
    neighbor_gr: str | None = None  # "None", "Regular", "Long-lived": only during a restart
    bgp_next_hop: str | None = None  # the next hop this side announces ("BGP Next hop:")


@dataclass(frozen=True)
class BirdProtocol:
    """One protocol of `show protocols [all]`. Fields a reply does not show are None."""

    name: str
    proto: str  # "BGP", "Device", "Kernel", "Static", "Direct", ...
    table: str | None  # the Table column; None for "---" (BIRD 2 BGP: see `channels`)
    state: str  # protocol state: "up", "down", "start", "stop", "flush" (1.6: "wait", "feed")
    since: str  # as BIRD prints it ("05:17:58.970", "2026-11-29")
    info: str  # the Info column, spaces at its end removed
    description: str | None = None
    message: str | None = None
    # BGP (None/False/empty for other protocols)
    # "Established", "Active", "Connect", "Idle", "OpenSent", "Down", "Passive", ...
    bgp_state: str | None = None
    neighbor_address: str | None = None
    neighbor_port: int | None = None  # BIRD 2 prints it only when not 179
    neighbor_as: int | None = None
    local_as: int | None = None  # BIRD 1.6 does not print it
    neighbor_id: str | None = None  # only while the session is up
    session_flags: tuple[str, ...] = ()  # ("internal", "multihop", "route-reflector", "AS4")
    source_address: str | None = None
    hold_time: int | None = None  # negotiated, seconds (only while up)
    keepalive_time: int | None = None  # negotiated, seconds (only while up)
    # `Last error:` of `show protocols all`; without `all`, the error part of the Info column.
    last_error: str | None = None
    neighbor_graceful_restart_active: bool = False
    channels: tuple[BirdChannel, ...] = ()
    # Route counts: BIRD 1.6's protocol-level Routes line, or the sum over BIRD 2's channels
    # that print one (None when none does: all channels down, or plain `show protocols`).
    routes_imported: int | None = None
    routes_exported: int | None = None
    routes_preferred: int | None = None
    # Every "Key: value" line of the protocol and BGP blocks (capabilities and per-channel
    # lines excluded), for what has no field of its own.
    details: tuple[tuple[str, str], ...] = ()

    @property
    def internal(self) -> bool | None:
        """iBGP (True) or eBGP (False) from the `Session:` line; None when not shown."""
        if "internal" in self.session_flags:
            return True
        if "external" in self.session_flags:
            return False
        return None

    @property
    def route_reflector_client(self) -> bool:
        """This side reflects routes to the neighbor (`rr client` configured here)."""
        return "route-reflector" in self.session_flags

    @property
    def route_server_client(self) -> bool:
        return "route-server" in self.session_flags

    @property
    def multihop(self) -> bool:
        return "multihop" in self.session_flags

    @property
    def established(self) -> bool:
        return self.bgp_state == "Established"


@dataclass(frozen=True)
class BirdNextHop:
    """One next hop of a unicast route; several for a multipath (ECMP) route."""

    gateway: str | None  # None for a device route (`dev eth0`)
    interface: str
    weight: int | None = None  # only printed for multipath
    onlink: bool = False


@dataclass(frozen=True)
class BirdRoute:
    """One route of `show route [all]`: one of possibly several for its prefix."""

    prefix: str  # "10.2.0.0/24", "2001:db8::/64"
    table: str | None  # "master4"; None in BIRD 1.6 (no table heading)
    destination: str  # "unicast" (any route with next hops), "blackhole", "unreachable", ...
    protocol: str  # the protocol that brought the route ("to_a", "static1")
    since: str
    from_address: str | None  # the BGP neighbor, printed only when not the gateway
    selected: bool  # `*` (or `!`): the route BIRD uses for the prefix
    info: str  # the protocol's part after the mark, as printed (" (100) [AS65003i]")
    next_hops: tuple[BirdNextHop, ...] = ()
    sync_error: bool = False  # `!` instead of `*`: the kernel protocol could not install it
    preference: int | None = None
    stale: bool = False  # `s` after the preference: long-lived stale (LLGR), see the docstring
    igp_metric: str | None = None  # after the "/": "-" unresolvable next hop, "?", "10"
    # `all` only:
    source: str | None = None  # first word of `Type:` ("BGP", "static", "device", "inherit")
    scope: str | None = None  # last word of `Type:` ("univ")
    origin: str | None = None  # BGP.origin: "IGP", "EGP", "Incomplete"
    as_path: tuple[int, ...] | None = None  # BGP.as_path; () when empty (iBGP from the origin)
    bgp_next_hop: str | None = None  # BGP.next_hop (global address)
    bgp_next_hop_link_local: str | None = None  # BGP.next_hop's second (IPv6 link-local) one
    local_pref: int | None = None
    med: int | None = None
    originator_id: str | None = None
    cluster_list: tuple[str, ...] = ()
    communities: tuple[tuple[int, int], ...] = ()
    large_communities: tuple[tuple[int, int, int], ...] = ()
    attributes: tuple[tuple[str, str], ...] = field(default=())  # every attribute line, raw

    def attribute(self, name: str) -> str | None:
        """The raw value of attribute `name` ("BGP.med"), None when the route has none."""
        return next((value for key, value in self.attributes if key == name), None)


def birdc_text_lines(text: str) -> tuple[tuple[int, str], ...]:
    """Lines of `birdc` output printed without `-v` (no codes), for the parsers below."""
    return tuple((UNKNOWN_CODE, line) for line in text.splitlines())


def _texts(lines: Iterable[tuple[int, str]], what: str) -> list[str]:
    """The texts to parse: welcome and final "OK" lines left out, errors raised."""
    out = []
    for code, text in lines:
        if code >= 8000:
            raise BirdOutputError(f"BIRD answered {what} with an error: {code} {text}")
        if code == 1 or (code == 0 and not text) or _WELCOME.match(text):
            continue
        out.append(text)
    return out


def _indent(text: str) -> int:
    return len(text) - len(text.lstrip(" "))


def _int_or_none(value: str | None) -> int | None:
    return int(value) if value is not None and value.isdigit() else None


# -- show protocols -----------------------------------------------------------------------------


@dataclass
class _ChannelDraft:
    name: str
    values: dict[str, str] = field(default_factory=dict)


@dataclass
class _ProtocolDraft:
    row: re.Match[str]
    details: list[tuple[str, str]] = field(default_factory=list)
    bgp: dict[str, str] = field(default_factory=dict)
    gr_active: bool = False
    channels: list[_ChannelDraft] = field(default_factory=list)


def parse_protocols(lines: Iterable[tuple[int, str]]) -> tuple[BirdProtocol, ...]:
    """The protocols of a `show protocols` or `show protocols all [name]` reply."""
    drafts: list[_ProtocolDraft] = []
    section = "protocol"  # "protocol", "bgp" or "channel" (the last of drafts[-1].channels)
    for text in _texts(lines, "show protocols"):
        if not text.strip() or _PROTOCOL_HEADING.match(text):
            continue
        if not text[0].isspace():
            row = _PROTOCOL_ROW.match(text.rstrip())
            if not row:
                raise BirdOutputError(f"not a protocol row of BIRD's show protocols: {text!r}")
            drafts.append(_ProtocolDraft(row))
            section = "protocol"
            continue
        if not drafts:
            raise BirdOutputError(f"protocol details before any protocol row: {text!r}")
        draft, indent, content = drafts[-1], _indent(text), text.strip()
        detail = _DETAIL.match(content)
        key, value = (detail.group("key"), detail.group("value") or "") if detail else ("", "")
        if indent <= 2:
            if key == "BGP state":
                section = "bgp"
            elif content.startswith("Channel "):
                draft.channels.append(_ChannelDraft(content.split(None, 1)[1]))
                section = "channel"
                continue
            else:
                section = "protocol"
            # "Route change stats:" heads a table of counters (BIRD 1.6 prints it here).
            if detail and key != "Route change stats":
                draft.details.append((key, value))
                if section == "bgp":
                    draft.bgp[key] = value
        elif indent <= 4:
            if section == "channel":
                if detail:
                    draft.channels[-1].values[key] = value
            elif section == "bgp":
                if content == "Neighbor graceful restart active":
                    draft.gr_active = True
                elif detail:
                    draft.details.append((key, value))
                    draft.bgp[key] = value
            # indent 4 in the protocol section: BIRD 1.6's route change stats rows.
        # deeper: capabilities (BIRD 2), route change stats (BIRD 2 channels): not needed.
    return tuple(_protocol(d) for d in drafts)


def _routes_counts(text: str | None) -> tuple[int | None, int | None, int | None, int | None]:
    match = _ROUTES.match(text or "")
    if not match:
        return None, None, None, None
    filtered = match.group("filtered")
    return (
        int(match.group("imported")),
        int(filtered) if filtered is not None else None,
        int(match.group("exported")),
        int(match.group("preferred")),
    )


def _channel(draft: _ChannelDraft) -> BirdChannel:
    values = draft.values
    imported, filtered, exported, preferred = _routes_counts(values.get("Routes"))
    return BirdChannel(
        name=draft.name,
        state=values.get("State", ""),
        table=values.get("Table"),
        preference=_int_or_none(values.get("Preference")),
        input_filter=values.get("Input filter"),
        output_filter=values.get("Output filter"),
        routes_imported=imported,
        routes_filtered=filtered,
        routes_exported=exported,
        routes_preferred=preferred,
        neighbor_gr=values.get("Neighbor GR"),
        bgp_next_hop=values.get("BGP Next hop"),
    )


def _timer_total(value: str | None) -> int | None:
    match = _TIMER.match(value or "")
    return int(match.group("total")) if match else None


def _sum(values: Iterable[int | None]) -> int | None:
    known = [v for v in values if v is not None]
    return sum(known) if known else None


def _protocol(draft: _ProtocolDraft) -> BirdProtocol:
    row = draft.row
    info = (row.group("info") or "").rstrip()
    state = row.group("state")
    details = dict(draft.details)
    channels = tuple(_channel(c) for c in draft.channels)
    imported, _, exported, preferred = _routes_counts(details.get("Routes"))
    if channels:
        imported = _sum(c.routes_imported for c in channels)
        exported = _sum(c.routes_exported for c in channels)
        preferred = _sum(c.routes_preferred for c in channels)
    bgp_state: str | None = None
    last_error: str | None = None
    if row.group("proto") == "BGP":
        # Info: "%-14s%s%s" (state, error) while not down, only the error when down.
        if state == "down":
            bgp_state, info_error = "Down", info
        else:
            bgp_state, _, info_error = info.partition(" ")
            info_error = info_error.strip()
        bgp_state = draft.bgp.get("BGP state", bgp_state) or None
        last_error = draft.bgp.get("Last error") or (info_error or None)
    bgp = draft.bgp
    port = bgp.get("Neighbor port")
    return BirdProtocol(
        name=row.group("name"),
        proto=row.group("proto"),
        table=None if row.group("table") == "---" else row.group("table"),
        state=state,
        since=row.group("since"),
        info=info,
        description=details.get("Description"),
        message=details.get("Message"),
        bgp_state=bgp_state,
        neighbor_address=bgp.get("Neighbor address"),
        neighbor_port=int(port) if port is not None and port.isdigit() else None,
        neighbor_as=_int_or_none(bgp.get("Neighbor AS")),
        local_as=_int_or_none(bgp.get("Local AS")),
        neighbor_id=bgp.get("Neighbor ID"),
        session_flags=tuple(bgp.get("Session", "").split()),
        source_address=bgp.get("Source address"),
        hold_time=_timer_total(bgp.get("Hold timer")),
        keepalive_time=_timer_total(bgp.get("Keepalive timer")),
        last_error=last_error,
        neighbor_graceful_restart_active=draft.gr_active,
        channels=channels,
        routes_imported=imported,
        routes_exported=exported,
        routes_preferred=preferred,
        details=tuple(draft.details),
    )


# -- show route ---------------------------------------------------------------------------------


@dataclass
class _RouteDraft:
    prefix: str
    table: str | None
    header: re.Match[str]
    next_hops: list[BirdNextHop] = field(default_factory=list)
    type_words: list[str] = field(default_factory=list)
    attributes: list[list[str]] = field(default_factory=list)  # [name, value] (value grows)


def parse_routes(lines: Iterable[tuple[int, str]]) -> tuple[BirdRoute, ...]:
    """The routes of a `show route [all] [table X] [protocol P] [for A]` reply, in BIRD's order.

    Alternatives of a prefix come right after its first route with the prefix left blank; they
    get the prefix of the route above them.
    """
    drafts: list[_RouteDraft] = []
    table: str | None = None
    prefix_above: str | None = None  # the prefix an alternative (blank prefix) belongs to
    for text in _texts(lines, "show route"):
        if not text.strip():
            continue  # the empty line between two tables
        heading = _TABLE_HEADING.match(text)
        if heading:
            table, prefix_above = heading.group("table"), None
            continue
        if text.startswith("\t"):
            if not drafts:
                raise BirdOutputError(f"route details before any route: {text!r}")
            _route_detail(drafts[-1], text)
            continue
        header = _ROUTE_HEADER.match(text)
        if not header:
            raise BirdOutputError(f"not a route line of BIRD's show route: {text!r}")
        prefix = header.group("prefix") or prefix_above
        if prefix is None:
            raise BirdOutputError(f"an alternative route with no route above it: {text!r}")
        prefix_above = prefix
        draft = _RouteDraft(prefix, table, header)
        next_hop = _destination_next_hop(header.group("dest"))
        if next_hop:
            draft.next_hops.append(next_hop)
        drafts.append(draft)
    return tuple(_route(d) for d in drafts)


def _next_hop(match: re.Match[str]) -> BirdNextHop:
    rest = match.group("rest")
    weight = _WEIGHT.search(rest)
    return BirdNextHop(
        gateway=match.groupdict().get("gw"),
        interface=match.group("iface"),
        weight=int(weight.group(1)) if weight else None,
        onlink=" onlink" in rest,
    )


def _destination_next_hop(dest: str) -> BirdNextHop | None:
    """BIRD 1.6 puts the one next hop in the destination (`via <gw> on <if>`, `dev <if>`)."""
    match = _VIA.match(dest) or _DEV.match(dest)
    return _next_hop(match) if match else None


def _route_detail(draft: _RouteDraft, text: str) -> None:
    if text.startswith("\t\t"):
        # A long set (communities, cluster list) continued on the next line (ea_show_int_set).
        if not draft.attributes:
            raise BirdOutputError(f"attribute continuation without an attribute: {text!r}")
        draft.attributes[-1][1] = f"{draft.attributes[-1][1]} {text.strip()}".strip()
        return
    content = text[1:]
    if not draft.type_words and not draft.attributes:
        next_hop = _VIA.match(content) or _DEV.match(content)
        if next_hop:
            draft.next_hops.append(_next_hop(next_hop))
            return
    if content.startswith("Type: "):
        draft.type_words = content[len("Type: ") :].split()
        return
    attribute = _ATTRIBUTE.match(content)
    if not attribute:
        raise BirdOutputError(f"not a route attribute line of BIRD's show route: {text!r}")
    draft.attributes.append([attribute.group("name"), (attribute.group("value") or "").strip()])


def _destination(dest: str) -> str:
    """BIRD 2 names the destination; BIRD 1.6 prints the next hop for unicast routes."""
    if dest in _SIMPLE_DESTINATIONS:
        return "unicast" if dest == "multipath" else dest
    if _VIA.match(dest) or _DEV.match(dest):
        return "unicast"
    return dest


def _as_path(value: str) -> tuple[int, ...]:
    # Sets `{..}` and confederation segments `(..)` are flattened: the numbers in order.
    return tuple(int(n) for n in re.findall(r"\d+", value))


def _route(draft: _RouteDraft) -> BirdRoute:
    header = draft.header
    info = header.group("info")
    parsed = _ROUTE_INFO.match(info)
    attrs = {name: value for name, value in draft.attributes}
    next_hop_words = attrs.get("BGP.next_hop", "").split()
    as_path = attrs.get("BGP.as_path")
    return BirdRoute(
        prefix=draft.prefix,
        table=draft.table,
        destination=_destination(header.group("dest")),
        protocol=header.group("proto"),
        since=header.group("since"),
        from_address=header.group("from"),
        selected=header.group("mark") is not None,
        info=info,
        next_hops=tuple(draft.next_hops),
        sync_error=header.group("mark") == " !",
        preference=int(parsed.group("pref")) if parsed else None,
        stale=bool(parsed and parsed.group("stale")),
        igp_metric=parsed.group("metric") if parsed else None,
        source=draft.type_words[0] if draft.type_words else None,
        scope=draft.type_words[-1] if draft.type_words else None,
        origin=attrs.get("BGP.origin"),
        as_path=_as_path(as_path) if as_path is not None else None,
        bgp_next_hop=next_hop_words[0] if next_hop_words else None,
        bgp_next_hop_link_local=next_hop_words[1] if len(next_hop_words) > 1 else None,
        local_pref=_int_or_none(attrs.get("BGP.local_pref")),
        med=_int_or_none(attrs.get("BGP.med")),
        originator_id=attrs.get("BGP.originator_id"),
        cluster_list=tuple(attrs.get("BGP.cluster_list", "").split()),
        communities=tuple(
            (int(a), int(b))
            for a, b in re.findall(r"\((\d+),(\d+)\)", attrs.get("BGP.community", ""))
        ),
        large_communities=tuple(
            (int(a), int(b), int(c))
            for a, b, c in re.findall(
                r"\((\d+), (\d+), (\d+)\)", attrs.get("BGP.large_community", "")
            )
        ),
        attributes=tuple((name, value) for name, value in draft.attributes),
    )
