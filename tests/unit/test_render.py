"""Tests of meshemu.model.render: a node's plan -> ExaBGP 5.0 configuration text.

Every rendered configuration is read back with ExaBGP's own configuration parser
(`exabgp.configuration.configuration.Configuration`, the one `exabgp` runs at start-up), so
these tests check what ExaBGP will do, not how the text looks: one neighbor per planned lab
session with its peer and local AS, router ID, local address, passive side, MD5 password, port,
hold time and single address family, and the agent as the API process.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshemu.errors import ConfigError
from meshemu.model.load import load_topology, load_topology_text
from meshemu.model.plan import LabPlan, NodePlan, build_plan
from meshemu.model.render import AGENT_PROCESS, effective_passive, render_exabgp
from meshemu.model.rules import password_problem
from meshemu.model.sessions import Session

TOPOLOGIES = Path(__file__).resolve().parents[2] / "topologies"
AGENT = ["/usr/bin/python3", "-m", "meshemu.controlplane.agent", "--state", "/run/a b", "--node"]

# Route reflector with its own listen port, a dual-stack leaf and an IPv6-only leaf (MD5 on
# their sessions), an eBGP edge node with an external upstream, and a node with no session.
MIXED = """
name: render
subnets:
  dual: {ipv4: 10.1.0.0/24, ipv6: "fd00:1::/64"}
  v6only: {ipv6: "fd00:2::/64"}
routers:
  r: {subnets: [dual, v6only]}
nodes:
  rr: {subnet: dual, ipv4: 10.1.0.10, labels: {role: rr}, routeReflectorClusterID: 244.0.0.9,
       listenPort: 1790}
  leaf1: {subnet: dual, labels: {role: leaf}}
  leaf6: {subnet: v6only, labels: {role: leaf}}
  edge: {subnet: dual, ipv4: 10.1.0.20, asNumber: 65010}
  lonely: {subnet: dual, families: [ipv4]}
pools:
  p4: {cidr: 10.244.0.0/16, ipipMode: Always}
  p6: {cidr: "fd80::/64", vxlanMode: CrossSubnet}
bgp:
  asNumber: 64512
  nodeToNodeMeshEnabled: false
  holdTime: 30
  peers:
    leaves-to-rr:
      nodeSelector: role == 'leaf'
      peerSelector: role == 'rr'
      password: "s3cr3t pass"
    rr-to-edge:
      node: rr
      peerIP: 10.1.0.20
      asNumber: 65010
    edge-to-rr:
      node: edge
      peerIP: 10.1.0.10:1790
      asNumber: 64512
    upstream:
      node: edge
      peerIP: 192.0.2.1
      asNumber: 65100
"""


def _plan_text(text: str) -> LabPlan:
    return build_plan(load_topology_text(text, "test.yaml", "test"))


def _all_plans() -> list[LabPlan]:
    plans = [build_plan(load_topology(path)) for path in sorted(TOPOLOGIES.glob("*.yaml"))]
    return [*plans, _plan_text(MIXED)]


PLANS = _all_plans()
MIXED_PLAN = PLANS[-1]
CASES = [(plan, node) for plan in PLANS for node in plan.nodes]
IDS = [f"{plan.name}-{node.name}" for plan, node in CASES]


def _parse(text: str) -> Any:
    """ExaBGP's reading of a configuration; fails the test with ExaBGP's error if it refuses."""
    from exabgp.configuration.configuration import Configuration
    from exabgp.logger import log

    log.silence()
    configuration = Configuration([text], text=True)
    assert configuration.reload() is True, (
        f"ExaBGP refused the configuration: {configuration.error}"
    )
    return configuration


def _neighbors(configuration: Any) -> dict[str, Any]:
    return {str(n["peer-address"]): n for n in configuration.neighbors.values()}


def _lab_sessions(node: NodePlan) -> list[Session]:
    """The sessions with a speaker in the lab at the other end: a node's or a router's."""
    return [s for s in node.sessions if s.emulated]


def test_the_shipped_topologies_are_all_covered() -> None:
    assert {p.name for p in PLANS} >= {"flagship", "mesh", "rr", "render"}
    assert len(PLANS) == len(list(TOPOLOGIES.glob("*.yaml"))) + 1


@pytest.mark.parametrize(("plan", "node"), CASES, ids=IDS)
def test_exabgp_accepts_it_and_has_one_neighbor_per_lab_session(
    plan: LabPlan, node: NodePlan
) -> None:
    neighbors = _neighbors(_parse(render_exabgp(plan, node, [*AGENT, node.name])))
    assert sorted(neighbors) == sorted(s.peer_ip for s in _lab_sessions(node))


@pytest.mark.parametrize(("plan", "node"), CASES, ids=IDS)
def test_each_neighbor_carries_the_planned_session(plan: LabPlan, node: NodePlan) -> None:
    neighbors = _neighbors(_parse(render_exabgp(plan, node, [*AGENT, node.name])))
    for session in _lab_sessions(node):
        neighbor = neighbors[session.peer_ip]
        where = f"{node.name} -> {session.peer_ip}"
        assert neighbor["peer-as"] == session.peer_as, where
        assert neighbor["local-as"] == session.local_as, where
        assert str(neighbor["router-id"]) == node.router_id, where
        assert str(neighbor["local-address"]) == session.local_ip, where
        assert session.local_ip == node.address(session.family), where
        assert neighbor["hold-time"] == plan.hold_time, where
        assert neighbor["passive"] is effective_passive(plan, node, session), where
        # `connect 0` is ExaBGP's default (179); any other port is written out.
        assert neighbor["connect"] == (0 if session.peer_port == 179 else session.peer_port), where
        assert _md5_key(neighbor) == (session.password.encode() if session.password else None)
        assert neighbor["capability"]["route-refresh"], where
        family = "ipv4" if session.family == 4 else "ipv6"
        assert [(str(afi), str(safi)) for afi, safi in neighbor.families()] == [
            (family, "unicast")
        ], where


@pytest.mark.parametrize(("plan", "node"), CASES, ids=IDS)
def test_the_agent_is_the_api_process_of_every_neighbor(plan: LabPlan, node: NodePlan) -> None:
    configuration = _parse(render_exabgp(plan, node, [*AGENT, node.name]))
    process = configuration.processes[AGENT_PROCESS]
    assert process["run"] == [*AGENT, node.name]  # the space in "/run/a b" survives quoting
    assert process["encoder"] == "json"
    if _lab_sessions(node):
        assert process["neighbor-changes"] == [AGENT_PROCESS]
    # One entry per neighbor block that asked for parsed updates.
    sessions = len(_lab_sessions(node))
    assert len(process.get("receive-parsed", [])) == sessions
    assert len(process.get("receive-update", [])) == sessions


def _ends(plan: LabPlan) -> list[tuple[NodePlan, Session, NodePlan, Session]]:
    """Both ends of every session the plan expects to come up."""
    out = []
    for node in plan.nodes:
        for session in node.sessions:
            if session.peer_ip not in node.expected_up or session.peer_node is None:
                continue
            other = plan.node(session.peer_node)
            back = next(s for s in other.sessions if s.peer_ip == session.local_ip)
            out.append((node, session, other, back))
    return out


@pytest.mark.parametrize("plan", PLANS, ids=[p.name for p in PLANS])
def test_every_expected_session_has_one_side_that_connects_to_the_others_port(
    plan: LabPlan,
) -> None:
    """ExaBGP needs seconds to resolve a collision: exactly one side connects, to a listener."""
    ends = _ends(plan)
    # (Node-to-node sessions only; BIRD at a router resolves collisions at once.)
    no_bgp = all(n.speaker == "none" for n in plan.nodes)  # (a lab without BGP: no session)
    assert ends or plan.name == "render" or any(r.bgp for r in plan.routers) or no_bgp
    for node, session, other, back in ends:
        mine = effective_passive(plan, node, session)
        theirs = effective_passive(plan, other, back)
        where = f"{node.name} <-> {other.name} ({session.peer_ip})"
        assert not (mine and theirs), where
        if not mine:
            assert session.peer_port == other.listen_port, where
        if not theirs:
            assert back.peer_port == node.listen_port, where
        if not session.passive and not back.passive:
            assert mine != theirs, f"{where}: both ends connect"


def test_the_plan_keeps_calicos_flag_where_both_ends_are_active() -> None:
    plan = _plan_text(MIXED)
    rr, leaf = plan.node("rr"), plan.node("leaf1")
    session = next(s for s in rr.sessions if s.peer_node == "leaf1" and s.family == 4)
    back = next(s for s in leaf.sessions if s.peer_node == "rr" and s.family == 4)
    assert (session.passive, back.passive) == (False, False)  # peerSelector: never passive
    # The side whose peer address is the higher text waits.
    assert effective_passive(plan, rr, session) is (session.peer_ip > session.local_ip)
    assert effective_passive(plan, leaf, back) is (back.peer_ip > back.local_ip)


# --- the mixed topology, one feature at a time ---------------------------------------------------


@pytest.fixture(scope="module")
def mixed() -> LabPlan:
    return _plan_text(MIXED)


def _rendered(plan: LabPlan, name: str) -> tuple[str, dict[str, Any]]:
    text = render_exabgp(plan, plan.node(name), [*AGENT, name])
    return text, _neighbors(_parse(text))


def test_a_node_with_no_sessions_gets_only_the_process(mixed: LabPlan) -> None:
    lonely = mixed.node("lonely")
    assert lonely.sessions == ()
    text, neighbors = _rendered(mixed, "lonely")
    assert neighbors == {}
    assert "neighbor" not in text
    assert f"process {AGENT_PROCESS} {{" in text


def test_an_ipv6_only_node(mixed: LabPlan) -> None:
    leaf6 = mixed.node("leaf6")
    assert leaf6.ipv4 is None and leaf6.ipv6 is not None
    _, neighbors = _rendered(mixed, "leaf6")
    assert list(neighbors) == ["fd00:1::2"]
    neighbor = neighbors["fd00:1::2"]
    # No IPv4 address: Calico's hashed router ID, an IPv4 dotted quad all the same.
    assert str(neighbor["router-id"]) == leaf6.router_id
    assert leaf6.router_id.count(".") == 3
    assert str(neighbor["local-address"]) == leaf6.ipv6
    assert [(str(a), str(s)) for a, s in neighbor.families()] == [("ipv6", "unicast")]
    assert neighbor["connect"] == 1790  # the reflector listens on its own port
    assert neighbor["md5-password"] == "s3cr3t pass"


def test_md5_only_where_the_bgppeer_has_a_password(mixed: LabPlan) -> None:
    _, neighbors = _rendered(mixed, "rr")
    passwords = {peer: n["md5-password"] for peer, n in neighbors.items()}
    assert passwords == {
        "10.1.0.2": "s3cr3t pass",
        "fd00:1::3": "s3cr3t pass",
        "fd00:2::2": "s3cr3t pass",
        "10.1.0.20": None,
    }


def test_ebgp_edge_and_external_upstream(mixed: LabPlan) -> None:
    text, neighbors = _rendered(mixed, "edge")
    assert list(neighbors) == ["10.1.0.10"]  # the upstream is outside the lab: no neighbor
    assert "# 192.0.2.1: external peer, not emulated" in text
    neighbor = neighbors["10.1.0.10"]
    assert (neighbor["local-as"], neighbor["peer-as"]) == (65010, 64512)
    assert neighbor["connect"] == 1790
    _, rr_neighbors = _rendered(mixed, "rr")
    assert (rr_neighbors["10.1.0.20"]["local-as"], rr_neighbors["10.1.0.20"]["peer-as"]) == (
        64512,
        65010,
    )


def test_hold_time_from_the_bgp_configuration(mixed: LabPlan) -> None:
    _, neighbors = _rendered(mixed, "leaf1")
    assert {n["hold-time"] for n in neighbors.values()} == {30}


def _yaml_string(text: str) -> str:
    """`text` as a YAML double-quoted scalar that reads back as exactly `text`."""
    out = []
    for char in text:
        if char in '"\\':
            out.append("\\" + char)
        elif " " <= char <= "~" or (char >= "\xa0" and char.isprintable()):
            out.append(char)
        elif ord(char) <= 0xFFFF:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(f"\\U{ord(char):08x}")
    return '"' + "".join(out) + '"'


def _md5_key(neighbor: Any) -> bytes | None:
    """The TCP MD5 key ExaBGP 5.0 puts on the socket for `neighbor`: its own `md5`
    (reactor/network/tcp.py, the call both the connecting and the listening side make) run on a
    stand-in socket whose setsockopt records the `struct tcp_md5sig` it is given."""
    import struct

    from exabgp.reactor.network.tcp import md5

    class _Socket:
        option = b""

        def setsockopt(self, level: int, name: int, value: bytes) -> None:
            self.option = value

    sock = _Socket()
    peer = neighbor["peer-address"].top()
    md5(sock, peer, 179, neighbor["md5-password"], neighbor["md5-base64"])
    # struct tcp_md5sig: a 128-byte sockaddr_storage, then (pad, keylen, pad, key[80]).
    (length,) = struct.unpack_from("H", sock.option, 128 + 2)
    return sock.option[128 + 8 : 128 + 8 + length] or None


def _keys_read_by_exabgp(password: str, tmp_path: Path) -> set[bytes | None]:
    """Load a topology whose peers have `password`, plan, render leaf1, write the file and let
    ExaBGP read it the way `exabgp <file>` does (its file reader differs from the text one:
    it strips line ends and joins lines ending in a backslash)."""
    from exabgp.configuration.configuration import Configuration
    from exabgp.logger import log

    plan = _plan_text(MIXED.replace('"s3cr3t pass"', _yaml_string(password)))
    assert plan.node("leaf1").sessions[0].password == password
    path = tmp_path / "exabgp.conf"
    path.write_text(render_exabgp(plan, plan.node("leaf1"), AGENT), encoding="utf-8")
    log.silence()
    configuration = Configuration([str(path)])
    assert configuration.reload() is True, f"ExaBGP refused: {configuration.error}"
    return {_md5_key(n) for n in _neighbors(configuration).values()}


# ExaBGP reads `unescape`d lines (configuration/core/format.py) before it splits them into
# words, so a backslash starts an escape and a quote of either kind anywhere in a quoted word
# changes the quoting; its key is `bytes(password, "ascii")`. Each of these must still reach the
# socket as exactly the password's UTF-8 bytes.
PASSWORDS = [
    "s3cr3t pass",
    "p@ss w0rd",
    "a;b{c}d#e",
    "[x] (y), z",
    "tab\there",
    "  spaces  ",
    "ünïcödé",
    "emoji \U0001f600",
    "it's",
    "back\\slash",
    "ends with a backslash \\",
    "\\n is not a newline",
    "\\u0041 is not an A",
    "del\x7f and \x85",
    "deadbeef",  # hex-looking: ExaBGP's 'auto' mode would read it as base64; ours is off
    "QUJD",  # base64-looking
    "x" * 80,  # the longest TCP MD5 key Linux takes
    "é" * 40,  # 80 bytes in UTF-8
]


@pytest.mark.parametrize("password", PASSWORDS)
def test_a_password_reaches_the_socket_exactly(password: str, tmp_path: Path) -> None:
    """Calico passwords come from Secrets: any text. Every password validation accepts is the
    key ExaBGP sets, byte for byte (the UTF-8 bytes BIRD would use for the same Secret)."""
    assert _keys_read_by_exabgp(password, tmp_path) == {password.encode()}


def test_a_plain_password_is_written_as_it_is(mixed: LabPlan) -> None:
    """Readable where quoting carries it exactly: printable ASCII without quotes."""
    text, neighbors = _rendered(mixed, "leaf1")
    assert "md5-password 's3cr3t pass';" in text
    assert {n["md5-base64"] for n in neighbors.values()} == {False}


@pytest.mark.parametrize("password", ["it's", "tab\there", "ünïcödé"])
def test_a_password_quoting_cannot_carry_goes_as_base64(password: str) -> None:
    plan = _plan_text(MIXED.replace('"s3cr3t pass"', _yaml_string(password)))
    text = render_exabgp(plan, plan.node("leaf1"), AGENT)
    assert password not in text
    neighbors = _neighbors(_parse(text))
    assert {n["md5-base64"] for n in neighbors.values()} == {True}


@settings(max_examples=200, deadline=None, database=None)
@given(st.text(max_size=90))
def test_any_password_is_carried_exactly_or_refused_at_validation(password: str) -> None:
    """The rule in model.rules and the writer in model.render agree: what the rule accepts,
    ExaBGP reads back as exactly the password; what it refuses, render refuses too."""
    session = replace(MIXED_PLAN.node("leaf1").sessions[0], password=password)
    node = replace(MIXED_PLAN.node("leaf1"), sessions=(session,))
    problem = password_problem(password, "password")
    if problem is not None:
        # Refused at the input (no key can be, or Calico's BIRD cannot hold it); what render
        # refuses on its own is `test_render_refuses_a_password_no_key_can_be`'s.
        return
    (neighbor,) = _neighbors(_parse(render_exabgp(MIXED_PLAN, node, AGENT))).values()
    assert _md5_key(neighbor) == (password.encode() or None)


TOO_LONG = "x" * 81
TOO_LONG_UTF8 = "é" * 41  # 41 characters, 82 bytes
REFUSED = {
    "81 bytes": TOO_LONG,
    "82 bytes in UTF-8": TOO_LONG_UTF8,
    "lone surrogate": "\ud800 half a character",
}


@pytest.mark.parametrize("password", list(REFUSED.values()), ids=list(REFUSED))
def test_render_refuses_a_password_no_key_can_be(password: str) -> None:
    session = replace(MIXED_PLAN.node("leaf1").sessions[0], password=password)
    node = replace(MIXED_PLAN.node("leaf1"), sessions=(session,))
    with pytest.raises(ValueError, match="password"):
        render_exabgp(MIXED_PLAN, node, AGENT)


@pytest.mark.parametrize("password", [TOO_LONG, TOO_LONG_UTF8], ids=["81-bytes", "82-utf8"])
def test_a_password_no_key_can_be_is_a_config_error(password: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_topology_text(MIXED.replace('"s3cr3t pass"', _yaml_string(password)), "t.yaml", "t")
    locations = [p.location for p in caught.value.problems]
    assert locations == ["bgp.peers.leaves-to-rr.password"]
    assert all(p.hint for p in caught.value.problems)
    assert password not in str(caught.value), "a secret is never echoed"


def test_a_password_without_utf8_form_is_a_problem() -> None:
    """The YAML reader already refuses a lone surrogate escape; the rule holds for any other
    way text reaches a Topology."""
    problem = password_problem("\ud800 half", "bgp.peers.p1.password")
    assert problem is not None
    assert problem.location == "bgp.peers.p1.password" and problem.hint
    with pytest.raises(ConfigError):
        load_topology_text(MIXED.replace('"s3cr3t pass"', '"\\ud800 half"'), "t.yaml", "t")


def test_the_longest_passwords_are_no_problem() -> None:
    assert password_problem("x" * 80, "p") is None
    assert password_problem("\U0001f600" * 20, "p") is None  # 4 bytes each


def _validate(tmp_path: Path, text: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "input.yaml"
    path.write_text(text, encoding="utf-8")
    return subprocess.run(
        [sys.executable, "-m", "meshemu.cli", "validate", str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


MESH_PASSWORD = """
name: mesh-md5
subnets: {s: {ipv4: 10.2.0.0/24}}
nodes: {a: {subnet: s}, b: {subnet: s}}
bgp: {nodeMeshPassword: PASSWORD}
"""

PEER_SECRET_BUNDLE = """\
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: worker-a}
spec: {bgp: {ipv4Address: 10.40.1.11/24}}
---
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: worker-b}
spec: {bgp: {ipv4Address: 10.40.1.12/24}}
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {name: to-b}
spec:
  node: worker-a
  peerIP: 10.40.1.12
  asNumber: 64512
  password: {secretKeyRef: {name: bgp-secrets, key: to-b}}
---
apiVersion: v1
kind: Secret
metadata: {name: bgp-secrets, namespace: calico-system}
stringData: {to-b: PASSWORD}
"""

CLI_REFUSED = {
    "peer": (MIXED.replace('"s3cr3t pass"', "PASSWORD"), "bgp.peers.leaves-to-rr.password"),
    "node mesh": (MESH_PASSWORD, "bgp.nodeMeshPassword"),
    "bundle peer secret": (PEER_SECRET_BUNDLE, "BGPPeer/to-b.spec.password"),
}


@pytest.mark.parametrize(("text", "location"), list(CLI_REFUSED.values()), ids=list(CLI_REFUSED))
@pytest.mark.parametrize("password", [TOO_LONG, TOO_LONG_UTF8], ids=["81-bytes", "82-utf8"])
def test_validate_refuses_a_password_no_key_can_be(
    tmp_path: Path, text: str, location: str, password: str
) -> None:
    result = _validate(tmp_path, text.replace("PASSWORD", _yaml_string(password)))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert location in result.stderr, result.stderr
    assert "80 bytes" in result.stderr
    assert password not in result.stderr


@pytest.mark.parametrize(("text", "location"), list(CLI_REFUSED.values()), ids=list(CLI_REFUSED))
def test_validate_accepts_a_password_that_needs_base64(
    tmp_path: Path, text: str, location: str
) -> None:
    result = _validate(tmp_path, text.replace("PASSWORD", _yaml_string("it's ü\\")))
    assert result.returncode == 0, result.stderr


BIRD_CANNOT_HOLD = ['dq"uote', "line\nbreak", "carriage\rreturn", "nul\x00byte"]


@pytest.mark.parametrize(("text", "location"), list(CLI_REFUSED.values()), ids=list(CLI_REFUSED))
@pytest.mark.parametrize("password", BIRD_CANNOT_HOLD)
def test_validate_refuses_a_password_calicos_bird_cannot_hold(
    tmp_path: Path, text: str, location: str, password: str
) -> None:
    """confd writes the password into a BIRD string, which has no escapes (BIRD
    conf/cf-lex.l): no Calico node could use it, so meshemu says so instead of emulating it."""
    result = _validate(tmp_path, text.replace("PASSWORD", _yaml_string(password)))
    assert result.returncode == 2, result.stderr
    assert location in result.stderr, result.stderr
    assert "Calico's BIRD cannot hold it" in result.stderr
    assert password not in result.stderr


def test_every_comment_stays_on_one_line() -> None:
    """Reasons are free text: a line break in one would turn the rest into configuration."""
    for plan, node in CASES:
        for line in render_exabgp(plan, node, AGENT).splitlines():
            if line.lstrip().startswith("#"):
                assert line.startswith("# "), line


# --- graceful restart (Calico renders `graceful restart;` on every session) ----------------------

RESTART_TIMES = """
name: gr
subnets: {s: {ipv4: 10.3.0.0/24, ipv6: "fd00:3::/64"}}
nodes:
  a: {subnet: s, ipv4: 10.3.0.1, ipv6: "fd00:3::1"}
  b: {subnet: s, ipv4: 10.3.0.2, ipv6: "fd00:3::2"}
bgp:
  nodeMeshMaxRestartTime: MESH
"""
PEER_RESTART_TIME = """
name: grpeer
subnets: {s: {ipv4: 10.3.0.0/24}}
nodes:
  a: {subnet: s, ipv4: 10.3.0.1}
  c: {subnet: s, ipv4: 10.3.0.3, asNumber: 65030}
bgp:
  nodeToNodeMeshEnabled: false
  peers:
    a-c: {node: a, peerIP: 10.3.0.3, asNumber: 65030, maxRestartTime: PEER}
    c-a: {node: c, peerIP: 10.3.0.1, asNumber: 64512}
"""


def _mesh_plan(mesh: str = "1m30s") -> LabPlan:
    return _plan_text(RESTART_TIMES.replace("MESH", mesh))


def _peer_plan(peer: str = "10s") -> LabPlan:
    return _plan_text(PEER_RESTART_TIME.replace("PEER", peer))


def _sent_graceful_restart(neighbor: Any) -> Any:
    """The graceful restart capability of the OPEN ExaBGP builds for the neighbor (None: none);
    `restarted`: its first OPEN (exabgp/reactor/peer.py FORCE_GRACEFUL)."""
    from exabgp.bgp.message.open.capability.capabilities import Capabilities
    from exabgp.bgp.message.open.capability.capability import Capability

    capabilities = Capabilities().new(neighbor, True)
    return capabilities.get(Capability.CODE.GRACEFUL_RESTART)


def test_every_neighbor_advertises_graceful_restart_with_its_sessions_restart_time() -> None:
    _, neighbors = _rendered(_mesh_plan(), "a")
    times = {ip: n["capability"]["graceful-restart"] for ip, n in neighbors.items()}
    assert times == {"10.3.0.2": 90, "fd00:3::2": 90}  # the mesh's, on both families
    peers = _peer_plan()
    _, neighbors = _rendered(peers, "a")
    assert neighbors["10.3.0.3"]["capability"]["graceful-restart"] == 10  # the BGPPeer's
    # The session back has no time of its own: BIRD's 120 s.
    _, neighbors = _rendered(peers, "c")
    assert neighbors["10.3.0.1"]["capability"]["graceful-restart"] == 120


@pytest.mark.parametrize(("plan", "node"), CASES, ids=IDS)
def test_the_opens_carry_the_restart_time_and_keep_forwarding(
    plan: LabPlan, node: NodePlan
) -> None:
    """What goes on the wire: the restart time, the Restart State bit on the first OPEN, and the
    Forwarding State bit on the session's family (the agent keeps the node's routes)."""
    neighbors = _neighbors(_parse(render_exabgp(plan, node, [*AGENT, node.name])))
    for session in _lab_sessions(node):
        sent = _sent_graceful_restart(neighbors[session.peer_ip])
        wanted = 120 if session.graceful_restart_time is None else session.graceful_restart_time
        assert sent is not None and sent.restart_time == wanted, session.peer_ip
        assert sent.restart_flag == sent.RESTART_STATE
        assert [(str(afi), str(safi), flag) for (afi, safi), flag in sent.items()] == [
            ("ipv4" if session.family == 4 else "ipv6", "unicast", sent.FORWARDING_STATE)
        ]


@pytest.mark.parametrize(("plan", "node"), CASES, ids=IDS)
def test_the_agent_sends_end_of_rib_and_sees_the_opens(plan: LabPlan, node: NodePlan) -> None:
    configuration = _parse(render_exabgp(plan, node, [*AGENT, node.name]))
    sessions = len(_lab_sessions(node))
    for neighbor in configuration.neighbors.values():
        assert neighbor["manual-eor"] is True
    process = configuration.processes[AGENT_PROCESS]
    assert len(process.get("receive-open", [])) == sessions
    assert len(process.get("send-open", [])) == sessions
    assert len(process.get("send-update", [])) == 0  # (what it sends, it knows)


def test_graceful_restart_is_no_longer_listed_as_not_emulated() -> None:
    for plan in (_mesh_plan(), _peer_plan()):
        for node in plan.nodes:
            text = render_exabgp(plan, node, AGENT)
            assert "graceful restart" not in text.lower(), node.name


def test_a_restart_time_of_zero_advertises_no_graceful_restart() -> None:
    """ExaBGP would read `graceful-restart 0` as the hold time; BIRD's peers of a restart time
    of 0 keep nothing anyway."""
    _, neighbors = _rendered(_peer_plan("0s"), "a")
    assert neighbors["10.3.0.3"]["capability"]["graceful-restart"] is False
    assert _sent_graceful_restart(neighbors["10.3.0.3"]) is None


def test_the_largest_restart_time_is_carried_and_a_larger_one_refused() -> None:
    _, neighbors = _rendered(_peer_plan("4095s"), "a")
    assert _sent_graceful_restart(neighbors["10.3.0.3"]).restart_time == 4095
    node = MIXED_PLAN.node("leaf1")
    session = replace(node.sessions[0], graceful_restart_time=4096)
    with pytest.raises(ValueError, match="4096"):
        render_exabgp(MIXED_PLAN, replace(node, sessions=(session,)), AGENT)


@pytest.mark.parametrize(
    ("text", "location"),
    [
        (PEER_RESTART_TIME.replace("PEER", "4096s"), "bgp.peers.a-c.maxRestartTime"),
        (RESTART_TIMES.replace("MESH", "2h"), "bgp.nodeMeshMaxRestartTime"),
    ],
)
def test_a_restart_time_beyond_12_bits_is_a_located_config_error(text: str, location: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _plan_text(text)
    assert [p.location for p in caught.value.problems] == [location]
    assert all("4095" in p.message and p.hint for p in caught.value.problems)
