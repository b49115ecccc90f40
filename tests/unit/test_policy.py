"""Network policy without a lab: conversion as kube-controllers does it, Calico's defaults,
verdicts as Felix's chains decide them, the nftables text, bad input and warnings, live changes
of `policies:`, and the plan's JSON form."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from meshemu.errors import ConfigError
from meshemu.model.labplan import LabPlan
from meshemu.model.load import load_topology_text
from meshemu.model.plan import build_plan
from meshemu.model.policy import PortRange, read_policy, to_calico
from meshemu.model.policy_eval import Packet, Verdicts, echo, endpoints_of, expected_matrix
from meshemu.model.policy_nft import lab_verdicts, policy_ruleset
from meshemu.scenario.evolve import changed_topology

ROOT = Path(__file__).resolve().parents[2]

BASE: dict[str, Any] = {
    "name": "poltest",
    "subnets": {"rack1": {"ipv4": "10.0.1.0/24", "ipv6": "fd00:1::/64"}},
    "pools": {"v4": {"cidr": "10.244.0.0/16"}, "v6": {"cidr": "fd00:244::/48"}},
    "namespaces": {"prod": {"labels": {"env": "prod"}}, "dev": {"labels": {"env": "dev"}}},
    "nodes": {
        "node1": {
            "subnet": "rack1",
            "pods": [
                {"name": "web", "namespace": "prod", "labels": {"app": "web"},
                 "ports": [{"name": "http", "port": 8080}]},
                {"name": "db", "namespace": "prod", "labels": {"app": "db"},
                 "ports": [{"name": "pg", "port": 5432}]},
            ],
        },
        "node2": {
            "subnet": "rack1",
            "pods": [
                {"name": "client", "namespace": "dev", "labels": {"app": "client"}},
                {"name": "dns", "namespace": "dev", "labels": {"app": "dns"},
                 "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}]},
            ],
        },
    },
}  # fmt: skip


def k8s(name: str, ns: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
    }


def calico(name: str, spec: dict[str, Any], ns: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if ns is not None:
        meta["namespace"] = ns
    return {
        "apiVersion": "projectcalico.org/v3",
        "kind": "NetworkPolicy" if ns else "GlobalNetworkPolicy",
        "metadata": meta,
        "spec": spec,
    }


DENY_PROD = k8s("deny", "prod", {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]})
WEB_FROM_DEV = k8s(
    "web-in",
    "prod",
    {
        "podSelector": {"matchLabels": {"app": "web"}},
        "ingress": [
            {"from": [{"namespaceSelector": {"matchLabels": {"env": "dev"}}}],
             "ports": [{"port": "http"}]}
        ],
    },
)  # fmt: skip


def plan_of(*policies: dict[str, Any]) -> LabPlan:
    data = copy.deepcopy(BASE)
    data["policies"] = list(policies)
    import yaml

    return build_plan(load_topology_text(yaml.safe_dump(data), "t.yaml", "poltest"))


def verdict(plan: LabPlan, src: str, dst: str, packet: Packet) -> bool:
    assert plan.policy is not None
    verdicts = Verdicts(plan.policy, endpoints_of(plan, plan.policy))
    return verdicts.decide(verdicts.by_ref[src], verdicts.by_ref[dst], packet).allowed


TCP = 6
# An empty namespaceSelector: any namespace, and the pod part of a missing podSelector.
ANY_NAMESPACE = '(has(projectcalico.org/namespace) && projectcalico.org/orchestrator == "k8s")'


# --------------------------------------------------------------------------------------------
# Conversion (libcalico-go k8s/conversion/conversion.go).


def test_k8s_policy_converts_as_kube_controllers_does() -> None:
    obj, problems = read_policy(
        k8s(
            "mix",
            "prod",
            {
                "podSelector": {
                    "matchLabels": {"app": "web"},
                    "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["x"]}],
                },
                "ingress": [
                    {
                        "from": [
                            {"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}},
                            {"namespaceSelector": {}},
                        ],
                        "ports": [
                            {"port": 80},
                            {"port": 81},
                            {"protocol": "UDP", "port": 53},
                            {"port": 9000, "endPort": 9010},
                            {"port": "http"},
                        ],
                    }
                ],
            },
        ),
        "p",
    )
    assert obj is not None and not problems
    pol = to_calico(obj, "p")
    assert (pol.name, pol.namespace, pol.order, pol.types) == (
        "knp.default.mix",
        "prod",
        1000.0,
        ("Ingress",),
    )
    assert pol.selector == (
        '((projectcalico.org/orchestrator == "k8s" && app == "web" && tier not in {"x"}) '
        '&& projectcalico.org/namespace == "prod")'
    )
    # One rule per protocol (TCP first, as Calico sorts them) and peer.
    assert [(r.protocol, r.source.nets, r.source.selector) for r in pol.ingress] == [
        (6, ("10.0.0.0/8",), None),
        (6, (), ANY_NAMESPACE),
        (17, ("10.0.0.0/8",), None),
        (17, (), ANY_NAMESPACE),
    ]
    tcp = pol.ingress[0]
    assert tcp.source.not_nets == ("10.1.0.0/16",)
    assert tcp.destination.ports == (PortRange(80, 81), PortRange(9000, 9010))
    assert tcp.destination.named_ports == ("http",)
    assert pol.ingress[2].destination.ports == (PortRange(53, 53),)


def test_peer_selectors_are_limited_to_the_policy_namespace() -> None:
    obj, _ = read_policy(
        k8s("p", "prod", {"podSelector": {}, "policyTypes": ["Egress"], "egress": [
            {"to": [{"podSelector": {"matchLabels": {"app": "db"}}}]},
            {"to": [{"namespaceSelector": {"matchLabels": {"env": "dev"}},
                     "podSelector": {"matchLabels": {"app": "dns"}}}]},
        ]}),
        "p",
    )  # fmt: skip
    assert obj is not None
    pol = to_calico(obj, "p")
    assert pol.types == ("Egress",)
    assert [r.destination.selector for r in pol.egress] == [
        '(projectcalico.org/namespace == "prod" && '
        '(projectcalico.org/orchestrator == "k8s" && app == "db"))',
        '(pcns.env == "dev" && (projectcalico.org/orchestrator == "k8s" && app == "dns"))',
    ]


@pytest.mark.parametrize(
    ("ingress", "egress", "types"),
    [
        ([], [], ("Ingress",)),
        ([{"action": "Allow"}], [], ("Ingress",)),
        ([], [{"action": "Allow"}], ("Egress",)),
        ([{"action": "Allow"}], [{"action": "Allow"}], ("Ingress", "Egress")),
    ],
)
def test_calico_policy_types_default_by_its_rules(
    ingress: list[Any], egress: list[Any], types: tuple[str, ...]
) -> None:
    obj, _ = read_policy(calico("g", {"ingress": ingress, "egress": egress}), "p")
    assert obj is not None and to_calico(obj, "p").types == types


# --------------------------------------------------------------------------------------------
# Verdicts (felix/rules/endpoints.go, policy.go).


def test_no_policy_allows_everything() -> None:
    plan = plan_of()
    assert plan.policy is None


def test_default_deny_and_an_allow_by_namespace_and_named_port() -> None:
    plan = plan_of(DENY_PROD, WEB_FROM_DEV)
    assert verdict(plan, "node2/client", "node1/web", Packet(4, TCP, 8080))
    assert verdict(plan, "node2/client", "node1/web", Packet(6, TCP, 8080))
    assert not verdict(plan, "node2/client", "node1/web", Packet(4, TCP, 8081))
    assert not verdict(plan, "node2/client", "node1/web", echo(4))
    assert not verdict(plan, "node2/client", "node1/db", Packet(4, TCP, 5432))
    # The same namespace is no exception, and prod's egress is denied too.
    assert not verdict(plan, "node1/db", "node1/web", Packet(4, TCP, 8080))
    assert not verdict(plan, "node1/web", "node2/client", echo(4))
    # Untouched namespaces stay open.
    assert verdict(plan, "node2/dns", "node2/client", echo(6))


def test_order_pass_deny_and_log() -> None:
    first = calico(
        "first",
        {"order": 1, "selector": "app == 'dns'", "ingress": [
            {"action": "Log"},
            {"action": "Deny", "protocol": "UDP", "source": {"selector": "app == 'web'"}},
            {"action": "Pass", "protocol": "UDP", "destination": {"ports": ["dns"]}},
        ]},
    )  # fmt: skip
    then = calico("then", {"order": 2, "selector": "app == 'dns'", "ingress": []})
    plan = plan_of(first, then)
    assert [p.name for p in plan.policy.policies] == ["first", "then"]  # type: ignore[union-attr]
    # Pass skips `then` (whose end of tier would drop): the profile allows.
    assert verdict(plan, "node2/client", "node2/dns", Packet(4, 17, 53))
    # Deny comes first for web (prod's egress allows nothing anyway without DENY_PROD).
    assert not verdict(plan, "node1/web", "node2/dns", Packet(4, 17, 53))
    # Nothing matches TCP: `then` ends the tier.
    assert not verdict(plan, "node2/client", "node2/dns", Packet(4, TCP, 53))


def test_icmp_types_nets_and_ip_version() -> None:
    pol = calico(
        "icmp",
        {"selector": "app == 'client'", "ingress": [
            {"action": "Allow", "protocol": "ICMP", "icmp": {"type": 8}},
            {"action": "Allow", "ipVersion": 6, "protocol": "TCP",
             "source": {"notNets": ["fd00:244::/120"]}},
            {"action": "Allow", "protocol": "UDP", "source": {"nets": ["10.244.0.0/26"]}},
        ]},
    )  # fmt: skip
    plan = plan_of(pol)
    assert verdict(plan, "node1/web", "node2/client", echo(4))
    assert not verdict(plan, "node1/web", "node2/client", echo(6))  # ICMP is not ICMPv6
    assert not verdict(plan, "node1/web", "node2/client", Packet(4, TCP, 1))  # ipVersion 6
    web_v6 = plan.node("node1").pods[0].ipv6
    assert web_v6 is not None and web_v6.startswith("fd00:244::")
    assert not verdict(plan, "node1/web", "node2/client", Packet(6, TCP, 1))  # in notNets
    assert verdict(plan, "node1/web", "node2/client", Packet(4, 17, 1))  # in nets
    # A nets list of one family leaves the rule out of the other family's chains.
    assert not verdict(plan, "node1/web", "node2/client", Packet(6, 17, 1))


def test_expected_matrix_has_an_echo_and_every_declared_port() -> None:
    plan = plan_of(DENY_PROD, WEB_FROM_DEV)
    assert plan.policy is not None
    cells = expected_matrix(plan, plan.policy)
    # 4 pods, 12 ordered pairs, 2 families; targets declare 3 ports among 4 pods.
    assert len(cells) == 12 * 2 + 2 * 3 * 3
    allowed = {(c.source, c.target, c.family, c.packet.text()) for c in cells if c.allowed}
    assert ("node2/client", "node1/web", 4, "TCP 8080") in allowed
    assert ("node2/client", "node1/web", 6, "ICMPv6 type 128") not in allowed
    assert all(c.reason for c in cells)


# --------------------------------------------------------------------------------------------
# nftables.


def test_ruleset_has_felix_structure_and_resolved_sets() -> None:
    plan = plan_of(DENY_PROD, WEB_FROM_DEV)
    text = policy_ruleset(plan, plan.node("node1"), lab_verdicts(plan, plan.policy))
    web = plan.node("node1").pods[0]
    client = plan.node("node2").pods[0]
    assert text.startswith("add table ip calico-policy\ndelete table ip calico-policy\n")
    assert f"chain tw-{web.host_ifname} {{" in text and f"chain fw-{web.host_ifname} {{" in text
    assert "ct state established,related accept" in text
    # The namespace selector became the dev pods' addresses, the named port web's address.
    assert f"ip saddr {{ {client.ipv4}, " in text
    assert f"ip daddr . th dport {{ {web.ipv4} . 8080 }}" in text
    assert f"ip6 daddr . th dport {{ {web.ipv6} . 8080 }}" in text
    assert "End of tier default" in text and "icmpv6 type { 130," in text
    # No policy: only the deletes (a live change clearing the tables).
    assert policy_ruleset(plan, plan.node("node1"), None).count("\n") == 4


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("nft") is None or shutil.which("unshare") is None,
    reason="nft's own check needs root (a throw-away network namespace)",
)
def test_nft_accepts_the_ruleset_of_the_shipped_topology() -> None:
    from meshemu.model.load import load_topology

    plan = build_plan(load_topology(ROOT / "topologies" / "policy.yaml"))
    verdicts = lab_verdicts(plan, plan.policy)
    for node in plan.nodes:
        done = subprocess.run(
            ["unshare", "-n", "nft", "-c", "-f", "-"],
            input=policy_ruleset(plan, node, verdicts),
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr


# --------------------------------------------------------------------------------------------
# Bad input and warnings.


@pytest.mark.parametrize(
    ("policy", "location", "words"),
    [
        (calico("g", {"selector": "app == web"}), "policies[0].spec.selector", "invalid selector"),
        (
            k8s("p", "prod", {"podSelector": {}, "ingress": [{"ports": [{"port": 70000}]}]}),
            "policies[0].spec.ingress[0].ports[0].port",
            "out of range (1-65535)",
        ),
        (
            k8s("p", "prod", {"podSelector": {},
                              "ingress": [{"ports": [{"port": 90, "endPort": 80}]}]}),
            "policies[0].spec.ingress[0].ports[0]",
            "endPort 80 is below port 90",
        ),
        (
            calico("g", {"ingress": [{"action": "Allow", "destination": {"ports": [80]}}]}),
            "policies[0].spec.ingress[0].destination",
            "TCP, UDP or SCTP",
        ),
        (
            calico("g", {"ingress": [{"action": "Allow", "protocol": "TCP",
                                      "destination": {"ports": ["80:70000"]}}]}),
            "policies[0].spec.ingress[0].destination.ports[0]",
            "out of range",
        ),
        (
            k8s("p", "prod", {"podSelector": {}, "ingress": [
                {"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["11.0.0.0/8"]}}]}]}),
            "policies[0].spec.ingress[0].from[0].ipBlock.except[0]",
            "not inside",
        ),
        (
            k8s("p", "prod", {"podSelector": {"matchExpressions": [
                {"key": "a", "operator": "In", "values": []}]}}),
            "policies[0].spec.podSelector.matchExpressions[0]",
            "at least one value",
        ),
        (calico("g", {"tier": "security"}), "policies[0].spec.tier", "default tier"),
    ],
)  # fmt: skip
def test_bad_policies_are_located_problems(
    policy: dict[str, Any], location: str, words: str
) -> None:
    with pytest.raises(ConfigError) as err:
        plan_of(policy)
    found = [p for p in err.value.problems if p.location == location]
    assert found, [str(p) for p in err.value.problems]
    assert words in found[0].message


def test_unknown_namespace_and_named_port_are_warnings() -> None:
    lost = k8s("lost", "nowhere", {"podSelector": {}})
    port = k8s("port", "prod", {"podSelector": {}, "ingress": [{"ports": [{"port": "gopher"}]}]})
    ns_sel = k8s(
        "ns",
        "prod",
        {"podSelector": {}, "ingress": [
            {"from": [{"namespaceSelector": {"matchLabels": {"env": "staging"}}}]}]},
    )  # fmt: skip
    notes = "\n".join(plan_of(lost, port, ns_sel).notes)
    assert "namespace nowhere exists nowhere" in notes
    assert "named port 'gopher' is declared by no pod" in notes
    assert "selects no namespace" in notes


# --------------------------------------------------------------------------------------------
# Live changes and the plan's JSON.


class _Step:
    def __init__(self, kind: str, arg: Any) -> None:
        self.kind, self.arg = kind, arg

    def argument(self) -> Any:
        return self.arg


def test_apply_and_remove_policy_change_the_topology() -> None:
    import yaml

    from meshemu.scenario.schema import ApplyPolicy, RemovePolicy

    topo = load_topology_text(yaml.safe_dump(BASE), "t.yaml", "poltest")
    applied = changed_topology(topo, _Step("apply-policy", ApplyPolicy.model_validate(DENY_PROD)))
    assert len(applied.policies) == 1
    again = changed_topology(applied, _Step("apply-policy", ApplyPolicy.model_validate(DENY_PROD)))
    assert len(again.policies) == 1  # replaced, as kubectl apply does
    removed = changed_topology(
        again,
        _Step("remove-policy", RemovePolicy.model_validate({"name": "deny", "namespace": "prod"})),
    )
    assert removed.policies == []
    with pytest.raises(ValueError, match="no NetworkPolicy prod/deny"):
        changed_topology(
            removed,
            _Step(
                "remove-policy", RemovePolicy.model_validate({"name": "deny", "namespace": "prod"})
            ),
        )


def test_plan_json_carries_the_policies() -> None:
    plan = plan_of(DENY_PROD, WEB_FROM_DEV, calico("g", {"order": 5.5, "selector": "all()"}))
    back = LabPlan.from_json(plan.to_json(secrets=True))
    assert back.policy == plan.policy
    assert plan.to_json()["policy"]["policies"][0]["name"] == "g"


def test_a_bundle_carries_policies_and_namespaces() -> None:
    import yaml

    bundle = (ROOT / "topologies" / "calico-bundle.yaml").read_text()
    extra = [
        {"apiVersion": "v1", "kind": "Namespace",
         "metadata": {"name": "default", "labels": {"team": "core"}, "resourceVersion": "1"}},
        k8s("deny-all", "default", {"podSelector": {}}),
        calico("icmp", {"order": 5, "ingress": [{"action": "Allow", "protocol": "ICMP"}]}),
    ]  # fmt: skip
    text = bundle + "".join("---\n" + yaml.safe_dump(doc) for doc in extra)
    plan = build_plan(load_topology_text(text, "b.yaml", "bundle"))
    assert plan.policy is not None
    assert [p.ident for p in plan.policy.policies] == ["icmp", "default/knp.default.deny-all"]
    assert plan.policy.namespace_labels("default")["team"] == "core"
    bad = text.replace("order: 5", "order: 5\n  selector: app = x")
    with pytest.raises(ConfigError) as err:
        load_topology_text(bad, "b.yaml", "bundle")
    assert [p.location for p in err.value.problems] == ["GlobalNetworkPolicy/icmp.spec.selector"]


def test_text_matrix_marks_each_probe() -> None:
    from meshemu.report.policy_text import render_policy_matrix
    from meshemu.verify.observation import Cell, PathCell
    from meshemu.verify.policy import check_policy

    plan = plan_of(DENY_PROD, WEB_FROM_DEV)
    assert plan.policy is not None
    cells = expected_matrix(plan, plan.policy)
    echoes = [
        PathCell(Cell(c.source, c.target, c.family, c.source_ip, c.target_ip, "local",
                      1.0 if c.allowed or c.target == "node1/db" else None), None, "local")
        for c in cells
        if c.packet.icmp_type is not None
    ]  # fmt: skip
    ports = {c.key: c.allowed for c in cells if c.packet.icmp_type is None}
    results = check_policy(cells, echoes, ports)
    text = render_policy_matrix(results)
    # client -> web: echo denied and dropped, http allowed and through; -> db: echo got through.
    row = next(line for line in text.splitlines() if "node2/client" in line)
    assert ".+" in row and "X." in row
    failed = [r for r in results if r.status == "fail"]
    assert failed and all(r.details["target"] == "node1/db" for r in failed)
    assert "not enforced" in failed[0].diagnosis
