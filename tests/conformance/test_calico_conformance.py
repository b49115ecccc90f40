"""meshemu's plan against Calico's own rendered BIRD configuration.

For each case in ../shared/calico-conformance/cases, the plan's sessions for node `kube-master`
must equal the `protocol bgp` blocks of Calico's bird.cfg + bird6.cfg, and each pool's
encapsulation must match `calico_kernel_programming` in bird_ipam.cfg / bird6_ipam.cfg.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from meshemu.model.load import load_topology
from meshemu.model.plan import build_plan

ROOT = Path(__file__).resolve().parents[2]
CORPUS = Path(os.environ.get("MESHEMU_CONFORMANCE", ROOT.parent / "shared" / "calico-conformance"))
CASES = sorted(p.name for p in (CORPUS / "cases").iterdir()) if (CORPUS / "cases").is_dir() else []

KIND_BY_PREFIX = {"Mesh": "mesh", "Global": "global", "Node": "node"}
_PROTOCOL = re.compile(r"^protocol bgp (\S+) from bgp_template \{(.*?)^\}", re.M | re.S)
_TEMPLATE_AS = re.compile(r"template bgp bgp_template \{.*?local as (\d+);", re.S)


def bird_sessions(text: str) -> list[dict[str, Any]]:
    """The sessions Calico rendered: one dict per `protocol bgp` block."""
    template_as = _TEMPLATE_AS.search(text)
    sessions = []
    for name, body in _PROTOCOL.findall(text):
        lines = [line.split("#")[0].strip() for line in body.splitlines()]
        neighbor = next(line for line in lines if line.startswith("neighbor "))
        match = re.match(r"neighbor (\S+)(?: port (\d+))? as (\d+);", neighbor)
        assert match, neighbor
        local_as = next(
            (int(line.split()[2].rstrip(";")) for line in lines if line.startswith("local as ")),
            int(template_as.group(1)) if template_as else None,
        )
        cluster = next(
            (line.split()[3].rstrip(";") for line in lines if "rr cluster id" in line), None
        )
        restart = next(
            (
                int(line.split()[3].rstrip(";"))
                for line in lines
                if line.startswith("graceful restart time")
            ),
            None,
        )
        allow = next(
            (
                int(line.split()[3].rstrip(";"))
                for line in lines
                if line.startswith("allow local as")
            ),
            None,
        )
        sessions.append(
            {
                "kind": KIND_BY_PREFIX[name.split("_")[0]],
                "peer_ip": match.group(1),
                "peer_port": int(match.group(2) or 179),
                "peer_as": int(match.group(3)),
                "local_as": local_as,
                "passive": "passive on;" in lines,
                "rr_client": "rr client;" in lines,
                "cluster_id": cluster,
                "password": any(line.startswith("password ") for line in lines),
                "source_address": any(line.startswith("source address") for line in lines),
                "keep_next_hop": "next hop keep;" in lines,
                "graceful_restart_time": restart,
                "allow_local_as": allow,
            }
        )
    return sorted(sessions, key=lambda s: (s["peer_ip"], s["peer_port"]))


def bird_encapsulation(text: str) -> dict[str, str]:
    """Per pool CIDR: what Calico's kernel-programming filter does with its routes."""
    body = text.split("filter calico_kernel_programming", 1)[1]
    rules = {}
    for cidr, comment in re.findall(r"if \(net ~ (\S+)\) then \{ reject; \} # (.*)", body):
        rules[cidr] = "vxlan" if comment.startswith("VXLAN") else "ipip"
    return rules


def exported_pools(text: str) -> set[str]:
    body = text.split("function calico_export_to_bgp_peers", 1)[1]
    body = body.split("filter calico_kernel_programming", 1)[0]
    return set(re.findall(r"if \(net ~ (\S+)\) then \{ accept; \}", body))


def test_the_corpus_is_here(require_shared: Callable[[Path, str], Path]) -> None:
    """Skips (or fails where MESHEMU_REQUIRE_SHARED=1) when the corpus is absent."""
    require_shared(CORPUS / "cases", "Calico conformance corpus")
    assert CASES


@pytest.mark.parametrize("case", CASES)
def test_sessions_and_tunnels_match_calico(case: str) -> None:
    folder = CORPUS / "cases" / case
    plan = build_plan(load_topology(folder / "input.yaml", name="conf"))
    master = plan.node("kube-master")
    expected = bird_sessions((folder / "bird.cfg").read_text()) + bird_sessions(
        (folder / "bird6.cfg").read_text()
    )
    expected.sort(key=lambda s: (s["peer_ip"], s["peer_port"]))
    planned = sorted(
        (
            {
                "kind": s.kind,
                "peer_ip": s.peer_ip,
                "peer_port": s.peer_port,
                "peer_as": s.peer_as,
                "local_as": s.local_as,
                "passive": s.passive,
                "rr_client": s.rr_client,
                "cluster_id": s.cluster_id,
                "password": s.password is not None,
                "source_address": s.source_address,
                "keep_next_hop": s.keep_next_hop,
                "graceful_restart_time": s.graceful_restart_time,
                "allow_local_as": s.allow_local_as,
            }
            for s in master.sessions
        ),
        key=lambda s: (s["peer_ip"], s["peer_port"]),
    )
    assert planned == expected

    calico_rules: dict[str, str] = {}
    exported: set[str] = set()
    for part in ((folder / "bird_ipam.cfg").read_text(), (folder / "bird6_ipam.cfg").read_text()):
        calico_rules.update(bird_encapsulation(part))
        exported |= exported_pools(part)
    for pool in plan.pools:
        if pool.disabled:
            continue
        assert pool.route_rule().encapsulation() == calico_rules.get(pool.cidr, "none"), pool.name
    assert exported == {p.cidr for p in plan.pools if not p.disable_bgp_export and not p.disabled}

    # Fields meshemu reads but does not emulate are named, never dropped silently.
    for location, reason in plan.unsupported:
        print(f"{case}: unsupported {location}: {reason}")
