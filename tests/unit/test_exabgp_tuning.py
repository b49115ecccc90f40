"""meshemu's changes to ExaBGP (`controlplane.exabgp_tuning`) decide what ExaBGP decides."""

from __future__ import annotations

import pytest
from exabgp.reactor.api.command import limit

from meshemu.controlplane.exabgp_tuning import exact_neighbor_match, idle_turn


def _name(peer: str, local: str) -> str:
    """A peer's name as ExaBGP 5.0 writes it (`bgp/neighbor.py` `Neighbor.name`)."""
    return (
        f"neighbor {peer} local-ip {local} local-as 64512 peer-as 64512 router-id 10.0.0.1 "
        "family-allowed in-open"
    )


PEERS = [
    _name("10.77.0.1", "10.77.0.6"),
    _name("10.77.0.10", "10.77.0.6"),
    _name("10.77.0.100", "10.77.0.6"),
    _name("fd00:77::1", "fd00:77::6"),
    _name("fd00:77::10", "fd00:77::6"),
    _name("10.77.0.2", "10.77.0.1"),  # the address asked for is this one's local-ip
]


@pytest.mark.parametrize(
    "descriptions",
    [
        [["neighbor 10.77.0.1"]],
        [["neighbor 10.77.0.10"]],
        [["neighbor fd00:77::1"]],
        [["neighbor 10.77.0.1"], ["neighbor fd00:77::10"]],
        [["neighbor 10.77.0.99"]],
    ],
    ids=["one", "prefix-of-others", "ipv6", "two", "none"],
)
def test_a_plain_neighbor_matches_the_peers_exabgp_matches(descriptions: list[list[str]]) -> None:
    assert exact_neighbor_match(PEERS, descriptions) == limit.match_neighbors(PEERS, descriptions)


@pytest.mark.parametrize(
    "descriptions",
    [[], [["neighbor *"]], [["neighbor 10.77.0.1", "local-as 64512"]], [["local-ip 10.77.0.6"]]],
    ids=["no-description", "any", "with-keys", "no-neighbor"],
)
def test_any_other_description_is_left_to_exabgp(descriptions: list[list[str]]) -> None:
    assert exact_neighbor_match(PEERS, descriptions) is None


def test_a_joined_command_names_exactly_its_peers_for_exabgp() -> None:
    """What `coalesce_commands` joins, ExaBGP splits back into the same peers and command."""
    from meshemu.controlplane.events import coalesce_commands

    rest = "announce route 10.244.0.0/26 next-hop 10.77.0.6 local-preference 100"
    commands = [f"neighbor {p} {rest}" for p in ("10.77.0.1", "10.77.0.10", "10.77.0.2")]
    [joined] = coalesce_commands(commands)
    descriptions, command = limit.extract_neighbors(joined)
    assert command == rest
    assert descriptions == [["neighbor 10.77.0.1"], ["neighbor 10.77.0.10"], ["neighbor 10.77.0.2"]]
    matched = exact_neighbor_match(PEERS, descriptions)
    assert matched == limit.match_neighbors(PEERS, descriptions)
    assert matched == [PEERS[0], PEERS[1], PEERS[5]]


@pytest.mark.parametrize(
    ("hold_time", "turn"),
    [(240, 10.0), (90, 10.0), (9, 1.125), (3, 0.5), (0, 10.0)],
    ids=["calico", "long", "mesh.yaml", "shortest", "no-keepalives"],
)
def test_an_idle_peer_gets_its_turn_well_inside_its_keepalive_interval(
    hold_time: int, turn: float
) -> None:
    assert idle_turn(hold_time) == turn
    if hold_time:
        # ExaBGP sends a keepalive a third of the hold time after the last message: even a
        # whole turn late, it arrives well before the peer's hold timer runs out.
        assert hold_time / 3 + idle_turn(hold_time) <= hold_time / 2


def test_a_neighbours_api_defaults_are_the_same_fresh_copy(monkeypatch: pytest.MonkeyPatch) -> None:
    import copy

    from exabgp.configuration.neighbor.api import ParseAPI

    from meshemu.controlplane import exabgp_tuning

    monkeypatch.setattr(ParseAPI, "_empty", ParseAPI._empty)  # restored after the test
    exabgp_tuning._install_shallow_api_defaults()
    built = ParseAPI._empty()
    assert built == copy.deepcopy(ParseAPI.DEFAULT_API)
    built["processes"].append("agent")
    assert ParseAPI.DEFAULT_API["processes"] == []  # the defaults stay untouched


def test_a_peer_waiting_for_the_first_keepalive_waits_on_its_socket(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """OPENCONFIRM with nothing to read: `ACTION.LATER` (poll the socket), not `ACTION.NOW`
    (call again at once: a busy loop); the KEEPALIVE itself still goes on at once."""
    from types import SimpleNamespace

    from exabgp.bgp.message import NOP, KeepAlive
    from exabgp.reactor.peer import ACTION, Peer

    from meshemu.controlplane import exabgp_tuning

    monkeypatch.setattr(Peer, "_read_ka", Peer._read_ka)  # restored after the test
    exabgp_tuning._install_keepalive_wait()
    checked: list[object] = []
    waiting = SimpleNamespace(
        proto=SimpleNamespace(read_keepalive=lambda: iter([NOP(), NOP(), KeepAlive()])),
        recv_timer=SimpleNamespace(check_ka_timer=checked.append),
    )
    assert list(Peer._read_ka(waiting)) == [ACTION.LATER, ACTION.LATER, ACTION.NOW]
    assert len(checked) == 3  # every message still goes through ExaBGP's hold timer
