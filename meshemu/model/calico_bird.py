"""The BIRD 1.6 configuration Calico's confd would render for one lab node (pure).

Owns `render_node_bird`: a node of the plan, one address family, to the three files confd writes
for it (`bird.cfg`, `bird_aggr.cfg`, `bird_ipam.cfg` for IPv4; `bird6.cfg`, `bird6_aggr.cfg`,
`bird6_ipam.cfg` for IPv6), in BIRD 1.x syntax as calico-node's BIRD reads them. Starting BIRD
with them is not this module's job; refusing a value that would not stay in its place in the
file is (ConfigError at the input field it came from).

Followed, projectcalico/calico at commit 87c15906f20c4ca1fda55af92295e7678b0cc0b2 (the commit of
the conformance cases):
- `node/filesystem/etc/calico/confd/templates/bird.cfg.template`, `bird6.cfg.template` (the main
  file: communities, kernel/direct/device protocols, router id, listen, the BGP template, the
  BGPFilter functions, one `protocol bgp` per peer), `bird_aggr.cfg.template`,
  `bird6_aggr.cfg.template` (blackholes of the node's blocks, static routes to `reachableBy`
  gateways, `calico_aggr`), `bird_ipam.cfg.template`, `bird6_ipam.cfg.template`
  (`calico_export_to_bgp_peers`, `calico_kernel_programming`);
- `confd/pkg/backends/calico/bgp_processor.go`: `populateNodeConfig` (router id, debug modes,
  listen port, direct interfaces, SetMetricForBGPRoutes), `processMeshPeers` and
  `buildPeerFromData` (protocol names, ttl security, passive, rr client, next hop, ...),
  `buildImportFilter` / `buildExportFilter` (the inline filters), peers sorted by name,
  `processCommunityRules`, `processIPPools` / `processIPPool` / `clusterRoutePolicyFromBGPConfig`
  (the pool statements, sorted as text) and `emitFilterStatementForIPPools`;
- BGPFilter functions and communities come from `model.bgp_policy` (template_funcs.go).
The conformance test (tests/conformance/test_calico_bird.py) compares the result with confd's
own rendered files, protocol by protocol.

What the plan does not carry, and what is rendered instead (each also said where it is done):
- the BGPFilter resources and the communities / prefixAdvertisements: passed as `bgp` (the
  topology's `bgp` section, which the lab's state folder keeps); without it no BGPFilter
  function and no community is rendered, and a session that applies a BGPFilter is refused;
- a BGPPeer's `localASNumber` and the normal route priority: also read from `bgp` (the plan
  keeps only the effective local AS, and the priority only on sessions); without it a
  `local as` equal to the node's AS is not written (the same for BIRD) and a node without
  sessions gets the default priority 1024;
- `programClusterRoutes` (BGPConfiguration): read from `bgp`, all four values as confd renders
  them (processIPPools, processIPPool, clusterRoutePolicyFromBGPConfig,
  extraStatementForKernelProgrammingIPIPNoEncap: bgp_processor.go:910-1006, 1100-1240). Where
  BIRD owns IPIP pools their kernel statements set `krt_tunnel`, which only Calico's BIRD fork
  knows (Debian's BIRD 1.6 refuses the file: `model.rules` refuses such a BIRD node). Without
  `bgp`, the pools' `bird_programs` say what BIRD owns, and Calico's default the rest;
- `logSeverityScreen`: the default debug lines (`debug { states }`, peers
  `debug { states, routes, filters, events }`);
- `bindMode`: no listen address (BIRD listens on every address of the node's namespace);
- `ignoredInterfaces`: the default `interface -"cali*", -"kube-ipvs*", "*"`;
- a port of 179 written explicitly (`peerIP: a.b.c.d:179`, `listenPort: 179`): confd writes
  `port 179` (and `_port_179` in the protocol name), the plan keeps only the number, so 179 is
  never written (the same for BIRD);
- the static route to a global BGPPeer's `reachableBy` gateway is written from the node's
  sessions, so not on the node whose own address the BGPPeer names (confd writes it there too);
- service advertisement (`/staticroutes`, `/rejectcidrs`, load balancer and external IPs of a
  route reflector), WireGuard peers, workload (local BGP) peers and block affinity states other
  than confirmed: not emulated, so never rendered;
- the hold time: the lab's (`plan.hold_time`) in the BGP template, where confd leaves BIRD's
  default of 240 s: the lab's other speakers use it and its scenarios time failures by it.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence

from meshemu.errors import ConfigError, Problem, UsageError
from meshemu.model import bgp_policy
from meshemu.model.addressing import parse_peer_ip
from meshemu.model.labplan import LabPlan, NodePlan, PoolPlan
from meshemu.model.rules import password_problem
from meshemu.model.sessions import DEFAULT_BGP_PORT, Session
from meshemu.model.topology import BgpSpec, FilterRuleSpec, loc_part

__all__ = ["BIRD_DEFAULT_HOLD_TIME", "FILES", "protocol_name", "render_node_bird"]

FILES = {
    4: ("bird.cfg", "bird_aggr.cfg", "bird_ipam.cfg"),
    6: ("bird6.cfg", "bird6_aggr.cfg", "bird6_ipam.cfg"),
}
BIRD_DEFAULT_HOLD_TIME = 240  # BIRD 1.6 proto/bgp/config.Y line 47
_MAX = bgp_policy.BIRD_INT_MAX
# bgp_processor.go birdOverridePreference: a route of higher than normal priority overrides a
# local workload route (live migration).
_OVERRIDE_PREFERENCE = 200
_PREFIX = {"mesh": "Mesh", "global": "Global", "node": "Node"}
_DIRECT_INTERFACES = '-"cali*", -"kube-ipvs*", "*"'  # populateNodeConfig, no ignoredInterfaces
# A BIRD 1.6 symbol in quotes (conf/cf-lex.l v1.6.8 line 194): letters, digits, `_ - . :`;
# without its quotes at most 64 characters (SYM_MAX_LEN, conf/conf.h 123; cf-lex.l 451).
_QUOTED_SYMBOL = re.compile(r"'[A-Za-z0-9_.:-]{1,64}'")
_COMMUNITY = re.compile(r"\d+:\d+(:\d+)?\Z")
# clusterRoutePolicyFromBGPConfig (bgp_processor.go:1158-1182): BGPConfiguration
# programClusterRoutes -> (BIRD programs IPIP pools' routes, BIRD programs unencapsulated pools').
_CLUSTER_ROUTE_POLICY = {
    "Disabled": (False, False),
    "Enabled": (True, True),
    "EnabledIPIPOnly": (True, False),
    "EnabledNoEncapOnly": (False, True),
}
_DEFAULT_POLICY = _CLUSTER_ROUTE_POLICY["EnabledNoEncapOnly"]
_ENCAPSULATES = ("Always", "CrossSubnet")  # poolUsesIPIP / poolUsesVXLAN


def protocol_name(session: Session) -> str:
    """confd's name of the session's protocol: `Mesh_10_0_0_2`, `Global_fd00__1_port_180`
    (processMeshPeers, buildPeerFromData; a mesh name never has the port)."""
    sep = "." if session.family == 4 else ":"
    name = f"{_PREFIX[session.kind]}_{session.peer_ip.replace(sep, '_')}"
    if session.kind != "mesh" and session.peer_port != DEFAULT_BGP_PORT:
        name += f"_port_{session.peer_port}"
    return name


def render_node_bird(
    plan: LabPlan, node: str, family: int, *, bgp: BgpSpec | None = None
) -> dict[str, str]:
    """The files confd writes for `node` and `family` (4 or 6): file name -> text.

    `bgp` is the topology's `bgp` section: the BGPFilters, communities and route priorities
    the plan does not carry. UsageError for a node the plan does not have; ConfigError for an
    input value BIRD cannot hold where it goes (a password with a double quote, ...).
    """
    if family not in FILES:
        raise ValueError(f"family {family!r}: expected 4 or 6")
    try:
        me = plan.node(node)
    except KeyError:
        raise UsageError(f"lab {plan.name} has no node {node!r}") from None
    sessions = sorted((s for s in me.sessions if s.family == family), key=protocol_name)
    named = [s for s in sessions if s.import_filters or s.export_filters]
    if bgp is None and named:
        raise ValueError(
            f"node {node}: session {protocol_name(named[0])} applies BGPFilters, whose rules "
            "the plan does not carry: pass the topology's bgp section"
        )
    if bgp is not None:
        priority = bgp.route_priority(family)
    else:
        # Every session carries the family's normal route priority; with none, the default.
        priority = sessions[0].route_priority if sessions else 1024
    main, aggr, ipam = FILES[family]
    return {
        main: _main(plan, me, family, sessions, bgp, priority),
        aggr: _aggr(me, family, sessions, priority),
        ipam: _ipam(plan, me, family, priority, _policy(plan.pools, bgp)),
    }


# ---------------------------------------------------------------------------------------------
# bird.cfg / bird6.cfg


def _main(
    plan: LabPlan,
    me: NodePlan,
    family: int,
    sessions: Sequence[Session],
    bgp: BgpSpec | None,
    priority: int,
) -> str:
    aggr, ipam = FILES[family][1:]
    out = ["function apply_communities ()", "{"]
    for cidr, statements in _communities(bgp, me.name, family):
        out.append(f"      if ( net ~ {cidr} ) then {{")
        out += [f"          {statement}" for statement in statements]
        out.append("      }")
    out += [
        "}",
        "",
        "template kernel kernel_template {",
        "  learn;             # Learn all alien routes from the kernel",
        "  persist;           # Don't remove routes on bird shutdown",
        "  scan time 2;       # Scan kernel routing table every 2 seconds",
        "  import all;",
        "}",
        "",
        "template direct direct_template {",
        "  debug { states };  # logSeverityScreen is not in the plan: confd's default",
        f"  interface {_DIRECT_INTERFACES}; # Exclude cali* and kube-ipvs* but",
        "                                          # include everything else.",
        "}",
        "",
        f"# Generated by meshemu for node {_comment(me.name)} as Calico's confd renders it",
        f'include "{aggr}";',
        f'include "{ipam}";',
        "",
        f"router id {_address(me.router_id, 4, f'node {me.name}: router id')};",
    ]
    if me.listen_port != DEFAULT_BGP_PORT:
        # bindMode NodeIP would add `address <node IP>`: not in the plan (module docstring).
        out += ["# BGP listen configuration", f"listen bgp port {me.listen_port};"]
    out += [
        "",
        "# Configure synchronization between routing tables and kernel.",
        "protocol kernel from kernel_template {",
        "  export filter calico_kernel_programming; # Default is export none",
        "  graceful restart;  # Turn on graceful restart to reduce potential flaps in",
        "                     # routes when reloading BIRD configuration.",
        "  merge paths on;    # Allow export multipath routes (ECMP)",
        "}",
        "",
        "# Watch interface up/down events.",
        "protocol device {",
        "  debug { states };",
        "  scan time 2;    # Scan interfaces every 2 seconds",
        "}",
        "",
        "protocol direct from direct_template {",
        "}",
        "",
    ]
    mine = me.address(family)
    if mine is None:
        out.append(f"# IPv{family} disabled on this node.")
        return "\n".join(out) + "\n"
    out += [
        "# Template for all BGP clients",
        "template bgp bgp_template {",
        "  debug { states, routes, filters, events };",
        '  description "Connection to BGP peer";',
        f"  local as {me.as_number};",
        "  gateway recursive; # This should be the default, but just in case.",
        "  add paths on;",
        "  graceful restart;  # See comment in kernel section about graceful restart.",
        "  connect delay time 2;",
        "  connect retry time 5;",
        "  error wait time 5,30;",
    ]
    if plan.hold_time != BIRD_DEFAULT_HOLD_TIME:
        out.append(f"  hold time {plan.hold_time};  # the lab's; confd leaves BIRD's 240")
    out += ["}", "", "# -------------- BGP Filters ------------------"]
    if bgp is None:
        out.append(f"# No v{family} BGPFilters given (the plan does not carry them)")
    else:
        _check_filters(bgp, family)
        out += bgp_policy.bird_filter_functions(bgp.filters, family)
    if not sessions:
        out.append("# No BGP peers configured for this node")
        return "\n".join(out) + "\n"
    out.append("# BGP Protocol Configurations")
    for session in sessions:
        out += _protocol(me, session, bgp)
    return "\n".join(out) + "\n"


def _protocol(me: NodePlan, s: Session, bgp: BgpSpec | None) -> list[str]:
    """One `protocol bgp` block, line for line as bird.cfg.template renders a peer."""
    name = protocol_name(s)
    where = f"node {me.name}, session {name}"
    peer = _address(s.peer_ip, s.family, f"{where}: peer address")
    out = [f"# {_comment(s.reason)}", f"protocol bgp {name} from bgp_template {{"]
    local_as = _explicit_local_as(s, bgp)
    if local_as is None and s.local_as != me.as_number:
        local_as = s.local_as
    if local_as is not None:
        out.append(f"  local as {local_as};")
    port = f" port {s.peer_port}" if s.peer_port != DEFAULT_BGP_PORT else ""
    out.append(f"  neighbor {peer}{port} as {s.peer_as};")
    if s.source_address:
        local = _address(s.local_ip, s.family, f"{where}: local address")
        out.append(f"  source address {local};  # The local address we use for the TCP connection")
    if s.ttl_security:
        out += ["  ttl security on;", f"  multihop {s.ttl_security};"]
    else:
        out += ["  ttl security off;", "  multihop;"]
    imports = [*_calls(s, s.import_filters, "import", bgp)]
    imports += [
        f"if (defined(bgp_local_pref)&&(bgp_local_pref > {_MAX - s.route_priority})) then",
        f"  preference = {_OVERRIDE_PREFERENCE};",
        "accept;",
    ]
    exports = [
        "if (defined(source) && source = RTS_BGP && defined(bgp_local_pref)) then {",
        f"  krt_metric = {_MAX} - bgp_local_pref;",
        "} else {",
        f"  if (!defined(krt_metric)) then {{ krt_metric = {s.route_priority}; }}",
        f"  bgp_local_pref = {_MAX} - krt_metric;",
        "}",
        *_calls(s, s.export_filters, "export", bgp),
        f"calico_export_to_bgp_peers({str(s.same_as).lower()});",
        "reject;",
    ]
    out += ["  import filter {", *(f"    {line}" for line in imports), "  };"]
    out += ["  export filter {", *(f"    {line}" for line in exports)]
    out.append("  };  # Only want to export routes for workloads.")
    if s.passive:
        out.append("  passive on;")
    if s.graceful_restart_time is not None:
        out.append(f"  graceful restart time {s.graceful_restart_time};")
    if s.keepalive_time is not None:
        out.append(f"  keepalive time {s.keepalive_time};")
    if s.rr_client and s.cluster_id:
        cluster = _address(s.cluster_id, 4, f"{where}: cluster id")
        out += ["  rr client;", f"  rr cluster id {cluster};"]
    if s.password:  # confd: `{{if .Password}}`, so an empty password is none
        out.append(f"  password {_password(s)};")
    if s.keep_next_hop:
        out.append("  next hop keep;")
    if s.next_hop_self:
        out.append("  next hop self;")
    if s.allow_local_as:
        out.append(f"  allow local as {s.allow_local_as};")
    out.append("}")
    return out


def _explicit_local_as(s: Session, bgp: BgpSpec | None) -> int | None:
    """The `localASNumber` of the `peerIP` BGPPeer the session comes from, which confd writes
    even when it equals the node's AS (buildPeerFromData); the plan keeps only the effective
    local AS, so it is read from `bgp`. Sessions to selected or reverse-peering nodes have none
    (client.go nodeAsBGPPeers)."""
    peer = bgp.peers.get(s.source) if bgp is not None and s.kind != "mesh" else None
    if peer is None or peer.local_as_number is None or peer.peer_selector is not None:
        return None
    if peer.peer_ip is None or str(parse_peer_ip(peer.peer_ip)[0]) != s.peer_ip:
        return None
    return peer.local_as_number


def _calls(s: Session, names: Iterable[str], direction: str, bgp: BgpSpec | None) -> list[str]:
    """The BGPFilter calls of a session's inline filter (buildImportFilter/buildExportFilter):
    the plan keeps only the filters that have rules for the direction and family."""
    out = []
    for name in names:
        assert bgp is not None  # render_node_bird refuses filters without `bgp`
        call = bgp_policy.filter_call(bgp.filters, name, direction, s.family, s.same_as)
        if call is None:
            raise ValueError(f"session {protocol_name(s)}: BGPFilter {name!r} is not in `bgp`")
        out.append(call)
    return out


def _communities(bgp: BgpSpec | None, node: str, family: int) -> list[tuple[str, list[str]]]:
    """apply_communities(): per CIDR, its `bgp_community.add(...)` statements; a CIDR with no
    community gets no block (processCommunityRules)."""
    if bgp is None:
        return []
    out = []
    for cidr, values in bgp_policy.community_rules(bgp, node, family):
        if not values:
            continue
        where = (
            "bgp.nodePrefixAdvertisements"
            if node in bgp.node_prefix_advertisements
            else ("bgp.prefixAdvertisements")
        )
        _network(cidr, f"{where}: cidr {cidr!r}")
        for value in values:
            _community(value, f"{where} ({cidr})")
        out.append((cidr, [bgp_policy.community_statement(value) for value in values]))
    return out


# ---------------------------------------------------------------------------------------------
# bird_aggr.cfg / bird6_aggr.cfg


def _aggr(me: NodePlan, family: int, sessions: Sequence[Session], priority: int) -> str:
    host = 32 if family == 4 else 128
    blocks = sorted(_blocks(me, family), key=lambda cidr: cidr.replace("/", "-"))
    out = [
        "# Generated by meshemu as Calico's confd renders it",
        "",
        "template static static_template {",
    ]
    added = False
    if blocks:
        added = True
        out.append("   # IP blocks for this host.")
        out += [f"   route {cidr} blackhole;" for cidr in blocks if not cidr.endswith(f"/{host}")]
    for kind, title in (("global", "global BGP peers"), ("node", "node specific BGP peers")):
        routes = sorted(
            {
                (s.peer_ip, s.peer_port, s.reachable_by)
                for s in sessions
                if s.kind == kind and s.reachable_by
            },
            key=lambda r: r[0] if r[1] == DEFAULT_BGP_PORT else f"{r[0]}-{r[1]}",
        )
        if routes:
            added = True
            out.append(f"   # Static routes needed for {title}.")
            for peer, _, gateway in routes:
                via = _address(gateway, family, f"node {me.name}: reachableBy of {peer}")
                out.append(f"   route {peer}/{host} via {via};")
    if not added:
        out.append("   # No IP blocks or static routes for this host.")
    out += ["}", ""]
    if added:
        out += ["protocol static from static_template {", "}", ""]
    out += [
        "# Aggregation of routes on this host; export the block, nothing beneath it.",
        "function calico_aggr ()",
        "{",
    ]
    for cidr in blocks:
        # Every block of the plan is confirmed (the plan has no pending affinity).
        out += [
            f"      # Block {cidr} is confirmed",
            f"      if ( net = {cidr} ) then {{ accept; }}",
            f"      if ( net ~ {cidr} && krt_metric < {priority} ) then {{ accept; }}",
            f"      if ( net ~ {cidr} ) then {{ reject; }}",
        ]
    out.append("}")
    return "\n".join(out) + "\n"


def _blocks(me: NodePlan, family: int) -> list[str]:
    out = []
    for block in me.blocks:
        network = _network(block.cidr, f"node {me.name}: block {block.cidr!r}")
        if network.version == family:
            out.append(str(network))
    return out


# ---------------------------------------------------------------------------------------------
# bird_ipam.cfg / bird6_ipam.cfg


def _policy(pools: Sequence[PoolPlan], bgp: BgpSpec | None) -> tuple[bool, bool]:
    """(BIRD programs IPIP pools, BIRD programs unencapsulated pools): confd's
    clusterRoutePolicy, from `bgp`; without it, from the plan's pools where it has one of the
    kind (`bird_programs`), Calico's default otherwise."""
    if bgp is not None:
        return _CLUSTER_ROUTE_POLICY[bgp.program_cluster_routes]
    ipip, noencap = _DEFAULT_POLICY
    for pool in pools:
        if pool.vxlan_mode in _ENCAPSULATES:
            continue
        if pool.ipip_mode in _ENCAPSULATES:
            ipip = pool.bird_programs
        else:
            noencap = pool.bird_programs
    return ipip, noencap


def _ipam(
    plan: LabPlan, me: NodePlan, family: int, priority: int, policy: tuple[bool, bool]
) -> str:
    rejected, accepted, kernel = _pool_statements(plan.pools, me, family, policy)
    # IBGPExportFilterForTunnelRoutes (bgp_processor.go:923-941): Felix's tunnel routes never go
    # to an iBGP peer; `tunl0`'s are Felix's exactly when BIRD does not program IPIP pools.
    tunnels = ["*.cali", "*.calico"] + ([] if policy[0] else ["tunl0"])
    matches = " || ".join(f'(ifname ~ "{pattern}")' for pattern in tunnels)
    out = [
        "# Generated by meshemu as Calico's confd renders it",
        "",
        "function reject_local_routes () {",
        "  # Don't export local routes learned via BPF as they should never leave the node.",
        "  if (defined(ifname)) then {",
        '     if (ifname ~ "bpf*.cali") then {',
        "        reject;",
        "     }",
        "  }",
        "}",
        "",
        "function calico_export_to_bgp_peers(bool internal_peer) {",
        "  # filter code terminates when it calls `accept;` or `reject;`,",
        *rejected,
        "  if (internal_peer) then {",
        "    if (defined(ifname)) then {",
        f"      if ({matches}) then {{",
        "        reject;",
        "      }",
        "    }",
        "  }",
        "  reject_local_routes();",
        "  apply_communities();",
        "  calico_aggr();",
        *accepted,
        "}",
        "",
        "filter calico_kernel_programming {",
        # populateNodeConfig SetMetricForBGPRoutes
        "  if (defined(source) && (source = RTS_BGP) && !defined(krt_metric)) then {",
        f"      krt_metric = {priority};",
        "      if (defined(bgp_local_pref)) then {",
        f"          krt_metric = {_MAX} - bgp_local_pref;",
        "      }",
        f"      if (krt_metric < {priority}) then {{",
        f"          preference = {_OVERRIDE_PREFERENCE};",
        "      }",
        "  }",
        *kernel,
        "  accept;",
        "}",
    ]
    return "\n".join(out) + "\n"


def _pool_statements(
    pools: Sequence[PoolPlan], me: NodePlan, family: int, policy: tuple[bool, bool]
) -> tuple[list[str], list[str], list[str]]:
    """processIPPools: the export filter's rejects (BGP export disabled) and accepts, and the
    kernel filter's statements, each list sorted as text. Disabled pools are included: confd
    does not look at `disabled`. For IPv6 the kernel filter keeps only its rejects (accept is
    its last word anyway); for IPv4 it has statements only when the node has a subnet (confd's
    `network_v4` key, the CrossSubnet test of `krt_tunnel`)."""
    rejected, accepted, kernel = [], [], []
    subnet = me.subnet_prefix(4)
    for pool in pools:
        network = _network(pool.cidr, f"pools.{loc_part(pool.name)}.cidr")
        if network.version != family:
            continue
        cidr = str(network)
        if pool.disable_bgp_export:
            rejected.append(f"  if (net ~ {cidr}) then {{ reject; }} # BGP export is disabled.")
        else:
            accepted.append(f"  if (net ~ {cidr}) then {{ accept; }}")
        if family == 6 or subnet is not None:
            statement = _kernel_statement(pool, cidr, family, policy, subnet or "")
            if statement is not None:
                kernel.append(statement)
    return sorted(rejected), sorted(accepted), sorted(kernel)


def _kernel_statement(
    pool: PoolPlan, cidr: str, family: int, policy: tuple[bool, bool], subnet: str
) -> str | None:
    """processIPPool for the kernel filter (bgp_processor.go:1100-1141): VXLAN pools are
    always Felix's; a pool BIRD programs is accepted (for IPv4 with the `krt_tunnel` of its
    ipipMode: extraStatementForKernelProgrammingIPIPNoEncap), the rest is left to Felix. For
    IPv6, accepts are dropped (filterActionForKernel "reject")."""
    if pool.vxlan_mode in _ENCAPSULATES:
        return f"  if (net ~ {cidr}) then {{ reject; }} # VXLAN routes are handled by Felix."
    ipip = pool.ipip_mode in _ENCAPSULATES
    if not (policy[0] if ipip else policy[1]):
        return f"  if (net ~ {cidr}) then {{ reject; }} # Cluster routes are handled by Felix."
    if family == 6:
        return None
    if pool.ipip_mode == "Always":
        return f'  if (net ~ {cidr}) then {{ krt_tunnel="tunl0"; accept; }}'
    if pool.ipip_mode == "CrossSubnet":
        tunnel = (
            f'if (defined(bgp_next_hop)&&(bgp_next_hop ~ {subnet})) then krt_tunnel=""; '
            'else krt_tunnel="tunl0";'
        )
        return f"  if (net ~ {cidr}) then {{ {tunnel} accept; }}"
    return f"  if (net ~ {cidr}) then {{ accept; }}"


# ---------------------------------------------------------------------------------------------
# Values that go into the file: each must stay in its place.


def _bird_string_problem(text: str) -> str | None:
    """Why `text` cannot be a BIRD 1.6 string, or None. A string is `"`, any bytes but `"` and
    newline, `"` (conf/cf-lex.l v1.6.8 line 229), with no escape at all; a NUL would silently
    cut it (cfg_strdup). So these three characters cannot be written, only refused."""
    for bad, what in (('"', "a double quote"), ("\n", "a newline"), ("\x00", "a NUL character")):
        if bad in text:
            return f"contains {what}, which a BIRD configuration string cannot hold"
    return None


def _password(s: Session) -> str:
    """The session's password as a BIRD string; ConfigError at the field it came from."""
    assert s.password is not None
    where = (
        "bgp.nodeMeshPassword" if s.source == "mesh" else f"bgp.peers.{loc_part(s.source)}.password"
    )
    problem = password_problem(s.password, where)
    if problem is not None:
        raise ConfigError([problem])
    why = _bird_string_problem(s.password)
    if why is not None:
        # The message never repeats the password: it is a secret.
        raise ConfigError(
            [Problem(where, f"the password {why}", "use a password without that character")]
        )
    return f'"{s.password}"'


def _check_filters(bgp: BgpSpec, family: int) -> None:
    """What `bgp_policy.bird_filter_functions` writes from the BGPFilters' text fields."""
    problems = []
    for name, spec in sorted(bgp.filters.items()):
        base = f"bgp.filters.{loc_part(name)}"
        for direction in bgp_policy.DIRECTIONS:
            rules = spec.rules(direction, family)
            if not rules:
                continue
            symbol = bgp_policy.function_name(name, direction, family)
            if not _QUOTED_SYMBOL.fullmatch(symbol):
                problems.append(
                    Problem(
                        base,
                        "the name cannot be part of a BIRD function name (letters, digits, "
                        "`_ - . :` only)",
                        "name BGPFilters as Kubernetes names them (lower case, digits, - and .)",
                    )
                )
            field = f"{direction}V{family}"
            for i, rule in enumerate(rules):
                problems += _rule_problems(rule, f"{base}.{field}[{i}]")
    if problems:
        raise ConfigError(problems)


def _rule_problems(rule: FilterRuleSpec, where: str) -> list[Problem]:
    out = []
    if rule.interface is not None:
        why = _bird_string_problem(rule.interface)
        if why is not None:
            out.append(Problem(f"{where}.interface", why, "an interface name or pattern"))
    if rule.cidr is not None:
        try:
            _network(rule.cidr, f"{where}.cidr")
        except ConfigError as err:
            out += err.problems
    values = [op.add_community.value for op in rule.operations if op.add_community is not None]
    if rule.communities is not None:
        values += rule.communities.values
    for value in values:
        try:
            _community(value, where)
        except ConfigError as err:
            out += err.problems
    return out


def _community(value: str, where: str) -> None:
    if not _COMMUNITY.match(value):
        raise ConfigError(
            [
                Problem(
                    where,
                    f"community {value!r} is not `a:b` or `a:b:c` (numbers)",
                    "write a standard (65001:100) or large (65001:1:2) community",
                )
            ]
        )


def _network(text: str, where: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """A CIDR as BIRD reads it (no scope, no stray text), or ConfigError."""
    try:
        if "%" in text:
            raise ValueError(text)
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise ConfigError(
            [Problem(where, f"{text!r} is not a CIDR", "write an address/length, e.g. 10.0.0.0/24")]
        ) from None


def _address(text: str, family: int, where: str) -> str:
    """An address of the plan as BIRD reads it; a plan with anything else is corrupt."""
    try:
        if "%" in text:
            raise ValueError(text)
        address = ipaddress.ip_address(text)
    except ValueError:
        raise ValueError(f"{where}: {text!r} is not an IP address") from None
    if address.version != family:
        raise ValueError(f"{where}: {text} is not an IPv{family} address")
    return str(address)


def _comment(text: str) -> str:
    """Text safe inside a `#` comment: one line (a comment runs to the end of the line)."""
    return re.sub(r"[\x00-\x1f\x7f]", " ", text)
