"""Plan -> ExaBGP configuration text for one node (pure).

Owns the translation of a node's planned sessions into ExaBGP 5.0 `neighbor` blocks: local and
peer address and AS, passive side, the peer's port, hold time, MD5 password, one address family
per session (Calico's BIRD carries IPv4 routes on IPv4 sessions and IPv6 routes on IPv6 ones),
and the API process (the node's agent) that receives parsed updates and state changes.
Sessions to peers outside the lab (external BGPPeers) get no neighbor block: nothing in the lab
answers there and the lab must not send packets towards addresses it does not own.
Calico's `ttlSecurity` (BIRD `ttl security on; multihop N;`: send with TTL 255, accept only
TTL >= 256 - N) becomes ExaBGP's `incoming-ttl 256-N` (IP_MINTTL, and TTL 255 on what it
sends). Calico renders `graceful restart;` on every session (confd's bird.cfg templates; BIRD's
restart time is 120 s unless `maxRestartTime` on a BGPPeer or `nodeMeshMaxRestartTime` sets
`graceful restart time`): each neighbor advertises the capability with the session's restart
time (`graceful-restart N`; ExaBGP sets the Forwarding State bit of the family, and the
agent keeps the node's routes while its speaker restarts), and sends no End-of-RIB of its own
(`manual-eor`): the agent sends it once it has announced what it has (see
`controlplane.agent`). The API gives the agent the OPENs both ways, whose capabilities it acts
on. The session option ExaBGP has no setting for (keepalive time) is written as a comment in
the neighbor block, so the configuration says what the speaker does not do. (A session's
BGPFilters are the agent's: it applies them to what it receives and sends, see `model.bgp`;
its `reachableBy` route is the node's, installed by `dataplane.build`.)
"""

from __future__ import annotations

import base64
import shlex

from meshemu.model.plan import LabPlan, NodePlan
from meshemu.model.rules import MAX_RESTART_SECONDS, password_problem
from meshemu.model.sessions import Session

AGENT_PROCESS = "agent"
NEIGHBOR_TEMPLATE = "node"
# BIRD's graceful restart time when none is set (`gr_time = 120`, proto/bgp/config.Y of BIRD
# 2.0.12 and 1.6.8), which Calico's `graceful restart;` keeps.
DEFAULT_RESTART_TIME = 120


# Printable ASCII but the quotes: what a quoted `md5-password` carries as written. ExaBGP 5.0
# runs `unescape` over each configuration line before `tokens` splits it into words
# (configuration/core/format.py), so a backslash starts an escape (`\\` for itself) and no escape
# can put a quote inside a quoted word: a `'` or a `"` anywhere switches the quoting, and the
# whole configuration is refused. It then makes the key with `bytes(password, "ascii")`
# (reactor/network/tcp.py, `md5`), so nothing beyond ASCII reaches the socket that way.
QUOTABLE = frozenset(chr(code) for code in range(0x20, 0x7F)) - {"'", '"'}


def _md5_lines(password: str) -> list[str]:
    """The `md5-password` lines that make ExaBGP use exactly the password's UTF-8 bytes as the
    session's TCP MD5 key.

    Plain passwords are written quoted; any other goes as `md5-base64 true` (ExaBGP decodes it
    to the key, util/psk.py `decode_base64`), which carries every byte. `model.rules` refuses at
    validation what no key can be (`password_problem`); a plan read back from a file that
    holds one is refused here rather than given to ExaBGP changed.
    """
    problem = password_problem(password, "md5-password")
    if problem is not None:
        raise ValueError(f"a BGP password {problem.message}")
    if set(password) <= QUOTABLE:
        escaped = password.replace("\\", "\\\\")  # `unescape` reads `\\` as one backslash
        return [f"    md5-password '{escaped}';"]
    key = base64.b64encode(password.encode("utf-8")).decode("ascii")
    return [f"    md5-password '{key}';", "    md5-base64 true;"]


def effective_passive(plan: LabPlan, node: NodePlan, session: Session) -> bool:
    """The passive flag the speaker gets.

    Calico leaves both ends of some sessions active (peerSelector peerings, reverse peerings);
    BIRD resolves the collision at once, but ExaBGP needs seconds to. The session that results
    is the same whichever side connects, so where both ends are active the speaker whose peer
    has the higher address (as text, like Calico's mesh rule) waits. The plan keeps Calico's flag.
    """
    if session.passive or session.peer_node is None:
        return session.passive  # (a router's BIRD resolves a collision at once)
    other = plan.node(session.peer_node)
    back = next((s for s in other.sessions if s.peer_ip == session.local_ip), None)
    if back is None or back.passive:
        return False
    return session.peer_ip > session.local_ip


def gtsm_minimum_ttl(hops: int) -> int:
    """The smallest TTL a packet from a peer `hops` hops away arrives with (RFC 5082; BIRD's
    `ttl security on` with `multihop hops`): 255 - hops + 1."""
    return 256 - hops


def restart_time(session: Session) -> int:
    """The restart time the session advertises: its own, else BIRD's default.

    ValueError above 4095 s, which the capability's 12 bits cannot carry (`rules` refuses it
    where it is written; ExaBGP would send it cut to 12 bits, and BIRD would spill it into the
    flags, `bgp_write_capabilities` in proto/bgp/packets.c)."""
    time = session.graceful_restart_time
    time = DEFAULT_RESTART_TIME if time is None else time
    if not 0 <= time <= MAX_RESTART_SECONDS:
        raise ValueError(
            f"session to {session.peer_ip}: graceful restart time {time} s: BGP carries "
            f"0-{MAX_RESTART_SECONDS} s"
        )
    return time


def _capability(session: Session) -> str:
    """The neighbor's capabilities: route refresh (lets a restarted agent ask its peers to send
    their routes again) and graceful restart.

    A restart time of 0 is `disable`: ExaBGP reads `graceful-restart 0` as "the hold time"
    (`Neighbor.infer`), and BIRD's peers of a restart time of 0 keep nothing anyway (their
    restart timer fires at once, `bgp_handle_graceful_restart`)."""
    time = restart_time(session)
    return f"    capability {{ route-refresh; graceful-restart {time or 'disable'}; }}"


def not_emulated(session: Session) -> list[str]:
    """The session options of the plan (as Calico renders them) that ExaBGP does not apply."""
    out = []
    if session.keepalive_time is not None:
        out.append(f"keepalive time {session.keepalive_time} (ExaBGP: a third of the hold time)")
    # Next hop self/keep and BGPFilters are the agent's (AgentConfig; model.bgp sets the next
    # hop to the node itself unless it keeps it, and runs the session's filters), so they are
    # not listed; so is reachableBy's static route (`dataplane.build.install_peer_routes`).
    return out


def render_exabgp(plan: LabPlan, node: NodePlan, agent_command: list[str]) -> str:
    lines = [
        f"# ExaBGP configuration of node {node.name} in lab {plan.name} (generated by meshemu)",
        f"process {AGENT_PROCESS} {{",
        f"    run {' '.join(shlex.quote(part) for part in agent_command)};",
        "    encoder json;",
        "}",
        "",
    ]
    if any(session.emulated for session in node.sessions):
        lines += _neighbor_template(plan, node)
    for session in node.sessions:
        if not session.emulated:
            lines.append(f"# {session.peer_ip}: external peer, not emulated")
            continue
        family = "ipv4 unicast" if session.family == 4 else "ipv6 unicast"
        lines += [
            f"# {session.reason}",
            f"neighbor {session.peer_ip} {{",
            f"    inherit {NEIGHBOR_TEMPLATE};",
            f"    local-address {session.local_ip};",
            f"    local-as {session.local_as};",
            f"    peer-as {session.peer_as};",
            f"    passive {'true' if effective_passive(plan, node, session) else 'false'};",
        ]
        if session.peer_port != 179:
            lines.append(f"    connect {session.peer_port};")
        if session.password:
            lines += _md5_lines(session.password)
        if session.ttl_security:
            lines.append(f"    incoming-ttl {gtsm_minimum_ttl(session.ttl_security)};")
        lines += [f"    # not emulated by ExaBGP: {what}" for what in not_emulated(session)]
        lines += [_capability(session), f"    family {{ {family}; }}", "}", ""]
    return "\n".join(lines)


def _neighbor_template(plan: LabPlan, node: NodePlan) -> list[str]:
    """What every neighbor of the node shares, parsed once and inherited: ExaBGP's
    configuration parser is the dearest part of a speaker's start (about half the CPU it
    spends before it listens, with 198 neighbors), and the `api` section the dearest part of
    a neighbor."""
    return [
        "template {",
        f"    neighbor {NEIGHBOR_TEMPLATE} {{",
        f"        router-id {node.router_id};",
        f"        hold-time {plan.hold_time};",
        # The agent sends End-of-RIB after what it announced (see the module docstring).
        "        manual-eor true;",
        f"        api {{ processes [ {AGENT_PROCESS} ]; neighbor-changes; "
        "receive { parsed; update; open; } send { parsed; open; } }",
        "    }",
        "}",
        "",
    ]
