"""natOutgoing and the outside host: the rendered nftables ruleset, the outside host's rules
(exit 2, located), its plan and wire form, and the pure check of the source address seen."""

from __future__ import annotations

from pathlib import Path

import pytest

from meshemu.errors import ConfigError
from meshemu.model.labplan import LabPlan, PoolPlan
from meshemu.model.load import load_topology_text
from meshemu.model.nat import check_outside as check_outside_rules
from meshemu.model.nat import expected_source, nat_ruleset
from meshemu.model.plan import build_plan
from meshemu.verify.outside import OutsideSeen, check_outside
from meshemu.verify.results import FAIL, PASS, SKIP

TOPOLOGY = Path(__file__).resolve().parents[2] / "topologies" / "nat-outgoing.yaml"


def _pool(name: str, cidr: str, nat: bool, disabled: bool = False) -> PoolPlan:
    return PoolPlan(name, cidr, 26, "Never", "Never", nat, "all()", False, disabled, "")


def _plan(text: str | None = None) -> LabPlan:
    source = TOPOLOGY.read_text() if text is None else text
    return build_plan(load_topology_text(source, "test.yaml", "test"))


def _problems(text: str) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as caught:
        _plan(text)
    return [(p.location, p.message) for p in caught.value.problems]


def test_no_nat_pool_renders_only_the_clearing_of_old_tables() -> None:
    text = nat_ruleset([_pool("a", "10.1.0.0/16", False)])
    assert "masquerade" not in text
    assert text.splitlines() == [
        "add table ip calico",
        "delete table ip calico",
        "add table ip6 calico",
        "delete table ip6 calico",
    ]


def test_nat_pool_masquerades_to_outside_every_pool_including_disabled() -> None:
    pools = [
        _pool("a", "10.1.0.0/16", True),
        _pool("b", "10.2.0.0/16", False),
        _pool("off", "10.3.0.0/16", False, disabled=True),
        _pool("v6", "fd00::/64", False),
    ]
    text = nat_ruleset(pools)
    assert "elements = { 10.1.0.0/16, 10.2.0.0/16, 10.3.0.0/16 }" in text
    assert "elements = { 10.1.0.0/16 }" in text
    assert (
        "ip saddr @cali40masq-ipam-pools ip daddr != @cali40network-ip-pools "
        "counter masquerade fully-random" in text
    )
    assert "type nat hook postrouting priority srcnat + 10; policy accept;" in text
    # IPv6 has no natOutgoing pool: no ip6 table beyond clearing an old one.
    assert "table ip6 calico {" not in text


def test_nat_outgoing_address_snats_ipv4_only() -> None:
    pools = [_pool("a", "10.1.0.0/16", True), _pool("v6", "fd00::/64", True)]
    text = nat_ruleset(pools, nat_address="192.0.2.7")
    assert "counter snat to 192.0.2.7" in text
    assert "ip6 saddr @cali60masq-ipam-pools ip6 daddr != @cali60network-ip-pools" in text
    assert text.count("masquerade") == 1


def test_expected_source_is_the_node_for_a_nat_pool_only() -> None:
    pools = [_pool("a", "10.1.0.0/16", True), _pool("b", "10.2.0.0/16", False)]
    assert expected_source("10.1.0.5", "192.168.0.2", pools) == "192.168.0.2"
    assert expected_source("10.2.0.5", "192.168.0.2", pools) == "10.2.0.5"


def test_shipped_topology_plans_the_outside_host() -> None:
    plan = _plan()
    outside = plan.outside
    assert outside is not None
    assert (outside.ipv4, outside.gateway4) == ("198.51.100.10", "198.51.100.1")
    assert outside.gateway6 == "2001:db8:100::1"
    assert outside.netns == "meshemu.natout.-outside"
    # Every other router reaches the outside subnet (static routes towards the spine).
    tor1 = next(r for r in plan.routers if r.name == "tor1")
    assert "198.51.100.0/24" in {r.prefix for r in tor1.routes}


def test_outside_survives_the_wire_form_and_old_plans_have_none() -> None:
    plan = _plan()
    again = LabPlan.from_json(plan.to_json(secrets=True))
    assert again.outside == plan.outside
    old = plan.to_json(secrets=True)
    del old["outside"]
    assert LabPlan.from_json(old).outside is None


def test_a_lab_without_outside_plans_none() -> None:
    text = (
        TOPOLOGY.read_text().split("outside:\n")[0]
        + "nodes:"
        + (TOPOLOGY.read_text().split("\nnodes:", 1)[1])
    )
    assert _plan(text).outside is None


def test_outside_address_in_a_pool_is_exit_2_located() -> None:
    # The loader already refuses a pool overlapping a subnet; a topology built in code (a
    # scenario's change) meets the planner's own check.
    topo = load_topology_text(TOPOLOGY.read_text(), "test.yaml", "test")
    pools = dict(topo.pools)
    pools["rack2-pool"] = pools["rack2-pool"].model_copy(update={"cidr": "198.51.100.0/26"})
    bad = topo.model_copy(update={"pools": pools})
    problems = [(p.location, p.message) for p in check_outside_rules(bad)]
    assert any(loc == "outside.ipv4" and "inside pool rack2-pool" in m for loc, m in problems)
    with pytest.raises(ConfigError):
        build_plan(bad)


def test_outside_on_a_node_subnet_is_refused() -> None:
    text = TOPOLOGY.read_text().replace(
        "  subnet: internet\n  ipv4: 198.51.100.10\n  ipv6: 2001:db8:100::10",
        "  subnet: rack1\n  ipv4: 10.45.1.200",
    )
    found = _problems(text)
    assert any(loc == "outside.subnet" and "node subnet" in m for loc, m in found)


def test_outside_address_outside_its_subnet_or_unknown_subnet() -> None:
    wrong = TOPOLOGY.read_text().replace("ipv4: 198.51.100.10", "ipv4: 203.0.113.10")
    assert any(loc == "outside.ipv4" for loc, _m in _problems(wrong))
    unknown = TOPOLOGY.read_text().replace("  subnet: internet\n", "  subnet: mars\n")
    assert _problems(unknown) == [("outside.subnet", "no subnet named 'mars'")]


def test_outside_address_taken_by_a_router_is_refused() -> None:
    text = TOPOLOGY.read_text().replace("ipv4: 198.51.100.10", "ipv4: 198.51.100.1")
    found = _problems(text)
    assert any(loc == "outside.ipv4" and "router spine" in m for loc, m in found)


def test_check_outside_verdicts() -> None:
    plan = _plan()
    node1 = plan.node("node1")
    node3 = plan.node("node3")
    pod1, pod3 = node1.pods[0], node3.pods[0]
    assert pod1.ipv4 is not None and pod3.ipv4 is not None and pod3.ipv6 is not None

    def seen(node: str, pod: str, family: int, ip: str, saw: str | None) -> OutsideSeen:
        target = "198.51.100.10" if family == 4 else "2001:db8:100::10"
        return OutsideSeen(node, pod, family, ip, target, saw)

    probes = (
        seen("node1", pod1.name, 4, pod1.ipv4, node1.ipv4),  # NATed: right
        seen("node1", pod1.name, 4, pod1.ipv4, pod1.ipv4),  # NAT missing
        seen("node3", pod3.name, 4, pod3.ipv4, pod3.ipv4),  # no NAT: right
        seen("node3", pod3.name, 4, pod3.ipv4, node3.ipv4),  # NAT where none belongs
        seen("node3", pod3.name, 6, pod3.ipv6, None),  # no NAT, no route back: reported
        seen("node1", pod1.name, 4, pod1.ipv4, None),  # NAT pool without answer: failed
    )
    statuses = [r.status for r in check_outside(plan, probes)]
    assert statuses == [PASS, FAIL, PASS, FAIL, SKIP, FAIL]
