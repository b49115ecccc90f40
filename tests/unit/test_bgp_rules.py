"""Tests of meshemu.model.bgp (decision, export, reflection, propagation) and model.routes."""

from __future__ import annotations

import ipaddress

import pytest

from meshemu.model.bgp import (
    DEFAULT_LOCAL_PREF,
    Adjacency,
    Link,
    Path,
    Speaker,
    accept,
    best_path,
    export,
    propagate,
    received,
    router_id_for,
)
from meshemu.model.routes import FibRoute, PoolRule, RouteContext, pool_of, route_for

PREFIX = "192.168.1.0/26"
PREFIX6 = "fd80::40/122"


def speaker(
    name: str = "me",
    router_id: str = "10.0.0.1",
    as_number: int = 64512,
    cluster_id: str | None = None,
    v6: str | None = "fd00::1",
) -> Speaker:
    addresses = {4: router_id}
    if v6 is not None:
        addresses[6] = v6
    return Speaker(name, router_id, as_number, cluster_id, addresses)


def ibgp(peer_ip: str = "10.0.0.9", rr_client: bool = False) -> Link:
    return Link(peer_ip=peer_ip, peer_as=64512, local_as=64512, rr_client=rr_client)


def learned(
    next_hop: str = "10.0.0.2",
    learned_from: str = "10.0.0.2",
    router_id: str = "10.0.0.2",
    **kw: object,
) -> Path:
    return Path(
        prefix=str(kw.pop("prefix", PREFIX)),
        next_hop=next_hop,
        learned_from=learned_from,
        learned_router_id=router_id,
        **kw,  # type: ignore[arg-type]
    )


# --- best_path ---------------------------------------------------------------------------------


def test_best_path_empty() -> None:
    assert best_path([]) is None


def test_best_path_local_pref_first() -> None:
    low = learned(as_path=(), local_pref=100, learned_from="10.0.0.2")
    high = learned(as_path=(1, 2, 3), local_pref=200, learned_from="10.0.0.3")
    assert best_path([low, high]) == high


def test_best_path_shorter_as_path() -> None:
    short = learned(as_path=(65001,), learned_from="10.0.0.3", router_id="10.0.0.3")
    long = learned(as_path=(65002, 65001), learned_from="10.0.0.2")
    assert best_path([long, short]) == short


def test_best_path_own_route_wins_over_learned() -> None:
    own = Path(prefix=PREFIX, next_hop="10.0.0.1")
    other = learned()
    assert best_path([other, own]) == own


def test_best_path_ebgp_over_ibgp() -> None:
    i = learned(as_path=(65001,), learned_from="10.0.0.2", router_id="10.0.0.2")
    e = learned(as_path=(65001,), learned_from="10.0.0.9", router_id="10.0.0.9", ebgp=True)
    assert best_path([i, e]) == e


def test_best_path_shorter_cluster_list() -> None:
    one = learned(
        learned_from="10.0.0.9",
        router_id="10.0.0.9",
        originator_id="10.0.0.9",
        cluster_list=("1.1.1.1",),
    )
    two = learned(
        learned_from="10.0.0.2",
        router_id="10.0.0.2",
        originator_id="10.0.0.2",
        cluster_list=("1.1.1.1", "2.2.2.2"),
    )
    assert best_path([two, one]) == one


def test_best_path_lowest_originator_or_router_id() -> None:
    a = learned(learned_from="10.0.0.2", router_id="10.0.0.200")
    b = learned(learned_from="10.0.0.3", router_id="10.0.0.100")
    assert best_path([a, b]) == b
    # A reflected path is compared by its ORIGINATOR_ID, not the reflector's router ID.
    c = learned(learned_from="10.0.0.4", router_id="10.0.0.1", originator_id="10.0.0.250")
    assert best_path([a, c]) == a


def test_best_path_lowest_peer_address_last() -> None:
    a = learned(learned_from="10.0.0.20", router_id="10.0.0.5")
    b = learned(learned_from="10.0.0.3", router_id="10.0.0.5")
    assert best_path([a, b]) == b
    assert best_path([b, a]) == b


# --- accept ------------------------------------------------------------------------------------


def test_accept_drops_own_originator_id() -> None:
    me = speaker(router_id="10.0.0.1")
    assert not accept(learned(originator_id="10.0.0.1"), me, ibgp())
    assert accept(learned(originator_id="10.0.0.7"), me, ibgp())


def test_accept_drops_own_cluster_id() -> None:
    me = speaker(cluster_id="244.0.0.1")
    assert not accept(learned(cluster_list=("9.9.9.9", "244.0.0.1")), me, ibgp())
    assert accept(learned(cluster_list=("9.9.9.9",)), me, ibgp())
    # A non-reflector does not check cluster lists.
    assert accept(learned(cluster_list=("244.0.0.1",)), speaker(), ibgp())


def test_accept_ebgp_as_loop() -> None:
    me = speaker(as_number=65001)
    link = Link(peer_ip="10.0.0.9", peer_as=65002, local_as=65001, rr_client=False)
    assert not accept(learned(as_path=(65002, 65001)), me, link)
    assert accept(learned(as_path=(65002, 65003)), me, link)
    allow = Link("10.0.0.9", 65002, 65001, False, allow_local_as=1)
    assert accept(learned(as_path=(65002, 65001)), me, allow)
    assert not accept(learned(as_path=(65001, 65002, 65001)), me, allow)


# --- export ------------------------------------------------------------------------------------


def test_export_never_back_to_sender() -> None:
    path = learned(learned_from="10.0.0.9")
    assert export(path, speaker(cluster_id="1.1.1.1"), ibgp("10.0.0.9", rr_client=True)) is None


def test_export_family_separation() -> None:
    own4 = Path(prefix=PREFIX, next_hop="10.0.0.1")
    own6 = Path(prefix=PREFIX6, next_hop="fd00::1")
    assert export(own4, speaker(), ibgp("fd00::9")) is None
    assert export(own6, speaker(), ibgp("10.0.0.9")) is None
    assert export(own4, speaker(), ibgp("10.0.0.9")) is not None
    assert export(own6, speaker(), ibgp("fd00::9")) is not None


def test_export_own_route_ibgp_unchanged() -> None:
    own = Path(prefix=PREFIX, next_hop="10.0.0.1")
    out = export(own, speaker(), ibgp())
    assert out == Path(prefix=PREFIX, next_hop="10.0.0.1", as_path=(), local_pref=100)
    assert out is not None and out.originator_id is None and out.cluster_list == ()


def test_export_ibgp_split_horizon_without_reflector() -> None:
    assert export(learned(), speaker(), ibgp()) is None
    assert export(learned(from_rr_client=True), speaker(), ibgp(rr_client=True)) is None


@pytest.mark.parametrize(
    ("from_client", "to_client", "exported"),
    [
        (True, True, True),  # client -> client
        (True, False, True),  # client -> non-client
        (False, True, True),  # non-client -> client
        (False, False, False),  # non-client -> non-client: forbidden
    ],
)
def test_export_reflection_rules(from_client: bool, to_client: bool, exported: bool) -> None:
    me = speaker(cluster_id="244.0.0.1")
    path = learned(router_id="10.0.0.2", from_rr_client=from_client)
    out = export(path, me, ibgp("10.0.0.9", rr_client=to_client))
    if not exported:
        assert out is None
        return
    assert out is not None
    assert out.next_hop == "10.0.0.2"  # a reflector keeps the next hop
    assert out.originator_id == "10.0.0.2"
    assert out.cluster_list == ("244.0.0.1",)
    assert out.as_path == ()


def test_export_reflection_keeps_originator_and_prepends_cluster() -> None:
    me = speaker(cluster_id="244.0.0.2")
    path = learned(
        router_id="10.0.0.5",
        originator_id="10.0.0.7",
        cluster_list=("244.0.0.1",),
        from_rr_client=True,
    )
    out = export(path, me, ibgp())
    assert out is not None
    assert out.originator_id == "10.0.0.7"
    assert out.cluster_list == ("244.0.0.2", "244.0.0.1")


def test_export_ebgp_next_hop_self_and_prepend() -> None:
    me = speaker(router_id="10.0.0.1", as_number=65001)
    link = Link(peer_ip="10.0.0.9", peer_as=65002, local_as=65001, rr_client=False)
    own = Path(prefix=PREFIX, next_hop="10.0.0.1")
    out = export(own, me, link)
    assert out is not None
    assert out.as_path == (65001,)
    assert out.next_hop == "10.0.0.1"
    # An iBGP-learned path leaves over eBGP with our address as next hop and our AS prepended.
    path = learned(next_hop="10.0.0.2", as_path=(65010,), local_pref=300)
    out = export(path, me, link)
    assert out is not None
    assert out.next_hop == "10.0.0.1"
    assert out.as_path == (65001, 65010)
    assert out.local_pref == DEFAULT_LOCAL_PREF
    assert out.originator_id is None and out.cluster_list == ()


def test_export_ebgp_ipv6_next_hop_self() -> None:
    me = speaker(router_id="10.0.0.1", as_number=65001, v6="fd00::1")
    link = Link(peer_ip="fd00::9", peer_as=65002, local_as=65001, rr_client=False)
    path = learned(prefix=PREFIX6, next_hop="fd00::2", learned_from="fd00::2")
    out = export(path, me, link)
    assert out is not None and out.next_hop == "fd00::1"


def test_export_ebgp_keep_original_next_hop() -> None:
    me = speaker(router_id="10.0.0.1", as_number=65001)
    link = Link("10.0.0.9", 65002, 65001, False, keep_next_hop=True)
    out = export(learned(next_hop="10.0.0.2"), me, link)
    assert out is not None and out.next_hop == "10.0.0.2"
    assert out.as_path == (65001,)


def test_export_ebgp_learned_to_ibgp_peer() -> None:
    """A path from an eBGP peer goes to iBGP peers unchanged, even from a non-reflector."""
    path = learned(next_hop="10.0.0.50", as_path=(65002,), ebgp=True)
    out = export(path, speaker(), ibgp())
    assert out is not None
    assert out.next_hop == "10.0.0.50" and out.as_path == (65002,)
    assert out.originator_id is None


def test_received_stamps_origin() -> None:
    path = Path(prefix=PREFIX, next_hop="10.0.0.2", local_pref=250)
    stored = received(path, ibgp("10.0.0.2", rr_client=True), "10.0.0.2")
    assert stored.learned_from == "10.0.0.2"
    assert stored.learned_router_id == "10.0.0.2"
    assert stored.from_rr_client and not stored.ebgp
    assert stored.local_pref == 250
    ebgp_link = Link("10.0.0.2", 65002, 64512, False)
    stored = received(path, ebgp_link, "10.0.0.2")
    assert stored.ebgp and stored.local_pref == DEFAULT_LOCAL_PREF


def test_router_id_for() -> None:
    assert router_id_for("10.1.2.3", "n1") == "10.1.2.3"
    hashed = router_id_for(None, "n1")
    assert hashed == router_id_for(None, "n1")
    assert hashed != router_id_for(None, "n2")
    assert ipaddress.IPv4Address(hashed) != ipaddress.IPv4Address("0.0.0.0")


# --- propagate ---------------------------------------------------------------------------------


def _adj(
    a: str, b: str, ip_of: dict[str, str], as_of: dict[str, int], clients=()
) -> list[Adjacency]:  # type: ignore[no-untyped-def]
    """Both directions of a session between a and b; `clients` are (reflector, client) pairs."""
    return [
        Adjacency(a, b, Link(ip_of[b], as_of[b], as_of[a], (a, b) in clients)),
        Adjacency(b, a, Link(ip_of[a], as_of[a], as_of[b], (b, a) in clients)),
    ]


def _line(cluster_b: str | None, as_of: dict[str, int], clients=()):  # type: ignore[no-untyped-def]
    ip_of = {"a": "10.0.0.1", "b": "10.0.0.2", "c": "10.0.0.3"}
    speakers = {
        n: Speaker(n, ip_of[n], as_of[n], cluster_b if n == "b" else None, {4: ip_of[n]})
        for n in ip_of
    }
    adjs = _adj("a", "b", ip_of, as_of, clients) + _adj("b", "c", ip_of, as_of, clients)
    originated = {"a": [Path(prefix=PREFIX, next_hop="10.0.0.1")]}
    return propagate(speakers, adjs, originated)


def test_propagate_ibgp_no_transit_without_reflector() -> None:
    ribs = _line(None, {"a": 64512, "b": 64512, "c": 64512})
    assert ribs["b"][PREFIX][0].next_hop == "10.0.0.1"
    assert PREFIX not in ribs["c"]


def test_propagate_through_reflector() -> None:
    ribs = _line(
        "244.0.0.1",
        {"a": 64512, "b": 64512, "c": 64512},
        clients=(("b", "a"), ("b", "c")),
    )
    chosen, candidates = ribs["c"][PREFIX]
    assert chosen.next_hop == "10.0.0.1"
    assert chosen.originator_id == "10.0.0.1"
    assert chosen.cluster_list == ("244.0.0.1",)
    assert chosen.learned_from == "10.0.0.2"
    assert len(candidates) == 1
    # a does not get its own route back (ORIGINATOR_ID is its router ID, and b never sends
    # it back to the sender anyway): its only path is its own.
    own, candidates = ribs["a"][PREFIX]
    assert own.learned_from is None and len(candidates) == 1


def test_propagate_ebgp_chain() -> None:
    ribs = _line(None, {"a": 65001, "b": 65002, "c": 65003})
    chosen, _ = ribs["c"][PREFIX]
    assert chosen.as_path == (65002, 65001)
    assert chosen.next_hop == "10.0.0.2"
    assert chosen.ebgp


def test_propagate_reflector_pair_same_cluster_drops_loop() -> None:
    """Two reflectors of one cluster: a client route reaches the other reflector only directly."""
    ip_of = {"r1": "10.0.0.1", "r2": "10.0.0.2", "c": "10.0.0.3"}
    as_of = dict.fromkeys(ip_of, 64512)
    cid = {"r1": "244.0.0.1", "r2": "244.0.0.1", "c": None}
    speakers = {n: Speaker(n, ip_of[n], as_of[n], cid[n], {4: ip_of[n]}) for n in ip_of}
    clients = (("r1", "c"), ("r2", "c"))
    adjs = (
        _adj("r1", "r2", ip_of, as_of, clients)
        + _adj("r1", "c", ip_of, as_of, clients)
        + _adj("r2", "c", ip_of, as_of, clients)
    )
    ribs = propagate(speakers, adjs, {"c": [Path(prefix=PREFIX, next_hop="10.0.0.3")]})
    for reflector in ("r1", "r2"):
        chosen, candidates = ribs[reflector][PREFIX]
        assert chosen.learned_from == "10.0.0.3"
        assert len(candidates) == 1, candidates  # the copy via the other reflector is dropped


# --- routes.route_for --------------------------------------------------------------------------

CTX = RouteContext(
    node_subnet={4: "10.0.1.0/24", 6: "fd00:1::/64"},
    gateway={4: "10.0.1.1", 6: "fd00:1::1"},
    vteps={
        "10.0.1.3": "192.168.0.65",
        "10.0.2.2": "192.168.0.129",
        "fd00:1::3": "fd80::41",
        "fd00:2::2": "fd80::81",
    },
)
SAME4, CROSS4, SAME6, CROSS6 = "10.0.1.3", "10.0.2.2", "fd00:1::3", "fd00:2::2"
BLOCK4, BLOCK6 = "192.168.0.64/26", "fd80::40/122"


def pools(ipip: str = "Never", vxlan: str = "Never", vxlan6: str = "Never") -> list[PoolRule]:
    return [
        PoolRule("v4", "192.168.0.0/16", ipip, vxlan),
        PoolRule("v6", "fd80::/64", "Never", vxlan6),
    ]


def route(prefix: str, hop: str, rules: list[PoolRule]) -> tuple[str | None, str | None, bool]:
    r = route_for(prefix, hop, rules, CTX)
    assert r.type == "unicast"
    assert r.reason
    return (r.via, r.dev, r.onlink)


@pytest.mark.parametrize(
    ("mode", "hop", "expected"),
    [
        ("Always", SAME4, (SAME4, "tunl0", True)),
        ("Always", CROSS4, (CROSS4, "tunl0", True)),
        ("CrossSubnet", SAME4, (SAME4, "eth0", False)),
        ("CrossSubnet", CROSS4, (CROSS4, "tunl0", True)),
        ("Never", SAME4, (SAME4, "eth0", False)),
        ("Never", CROSS4, ("10.0.1.1", "eth0", False)),
    ],
)
def test_route_for_ipip(mode: str, hop: str, expected: tuple[str, str, bool]) -> None:
    assert route(BLOCK4, hop, pools(ipip=mode)) == expected


@pytest.mark.parametrize(
    ("mode", "hop", "expected"),
    [
        ("Always", SAME4, ("192.168.0.65", "vxlan.calico", True)),
        ("Always", CROSS4, ("192.168.0.129", "vxlan.calico", True)),
        ("CrossSubnet", SAME4, (SAME4, "eth0", False)),
        ("CrossSubnet", CROSS4, ("192.168.0.129", "vxlan.calico", True)),
    ],
)
def test_route_for_vxlan_v4(mode: str, hop: str, expected: tuple[str, str, bool]) -> None:
    assert route(BLOCK4, hop, pools(vxlan=mode)) == expected


@pytest.mark.parametrize(
    ("mode", "hop", "expected"),
    [
        ("Always", SAME6, ("fd80::41", "vxlan-v6.calico", True)),
        ("Always", CROSS6, ("fd80::81", "vxlan-v6.calico", True)),
        ("CrossSubnet", SAME6, (SAME6, "eth0", False)),
        ("CrossSubnet", CROSS6, ("fd80::81", "vxlan-v6.calico", True)),
        ("Never", SAME6, (SAME6, "eth0", False)),
        ("Never", CROSS6, ("fd00:1::1", "eth0", False)),
    ],
)
def test_route_for_vxlan_v6(mode: str, hop: str, expected: tuple[str, str, bool]) -> None:
    assert route(BLOCK6, hop, pools(vxlan6=mode)) == expected


def test_route_for_ipip_never_applies_to_ipv6() -> None:
    """Even if an IPv6 pool somehow says ipipMode, an IPv6 route never goes into tunl0."""
    rules = [PoolRule("v6", "fd80::/64", "Always", "Never")]
    assert route(BLOCK6, CROSS6, rules)[1] != "tunl0"
    assert route(BLOCK6, SAME6, rules) == (SAME6, "eth0", False)


def test_route_for_no_pool_is_plain() -> None:
    assert route("10.99.0.0/24", SAME4, pools(ipip="Always")) == (SAME4, "eth0", False)
    r = route_for("10.99.0.0/24", CROSS4, pools(ipip="Always"), CTX)
    assert r.via == "10.0.1.1" and "no pool" in r.reason


def test_route_for_reasons_say_why() -> None:
    r = route_for(BLOCK4, CROSS4, pools(ipip="CrossSubnet"), CTX)
    assert "outside this node's subnet 10.0.1.0/24" in r.reason and "tunl0" in r.reason
    r = route_for(BLOCK4, SAME4, pools(ipip="CrossSubnet"), CTX)
    assert "inside this node's subnet 10.0.1.0/24" in r.reason and "directly" in r.reason
    r = route_for(BLOCK4, CROSS4, pools(), CTX)
    assert "default router 10.0.1.1" in r.reason and "no pod routes" in r.reason


def test_pool_of() -> None:
    rules = pools()
    assert pool_of("192.168.5.0/26", rules) == rules[0]
    assert pool_of("fd80::80/122", rules) == rules[1]
    assert pool_of("10.0.0.0/26", rules) is None
    assert pool_of("192.168.0.0/15", rules) is None  # larger than the pool: not inside it


def test_fib_route_text_and_key() -> None:
    r = FibRoute("192.168.0.64/26", "unicast", "10.0.2.2", "tunl0", True, "why")
    assert r.text() == "192.168.0.64/26 via 10.0.2.2 dev tunl0 onlink"
    assert r.key() == ("192.168.0.64/26", "unicast", "10.0.2.2", "tunl0", True)
    assert FibRoute("192.168.0.0/26", "blackhole").text() == "blackhole 192.168.0.0/26"
    # The reason is commentary: it does not change the key.
    assert r.key() == FibRoute("192.168.0.64/26", "unicast", "10.0.2.2", "tunl0", True).key()
