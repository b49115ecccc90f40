"""Borrowed pod addresses over BGP with Calico's own BIRD 1.6 configuration (issue 9).

topologies/ipam-borrow-native.yaml with node1 (the lender) and node4 (the borrower) running
BIRD 1.6 as confd configures it: node4's BIRD learns its pod's kernel route (meshemu writes
it proto boot, metric the normal route priority; `learn` takes it as an alien route) and, the
/32 being outside node4's blocks, `calico_aggr` does not touch it and the pool's `accept`
exports it; node1's BIRD writes `10.250.0.5/32 via node4` beside its blackhole. The plan
predicts both (the lab converges), `birdc` shows them, `verify` passes, every pod reaches the
borrowed address. (The ExaBGP-agent side runs in scenarios/ipam-borrow-native.yaml.)
Lab names start with `itbrw`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from meshemu.model.load import load_topology_text
from meshemu.state import LabState

from .conftest import TOPOLOGIES
from .test_bird_nodes import birdc_routes, bring_up, verify_all

pytestmark = pytest.mark.integration

BORROWED = "10.250.0.5/32"


def test_birds_export_and_program_the_borrowed_host_route(lab_env: Path, tmp_path: Path) -> None:
    text = (TOPOLOGIES / "ipam-borrow-native.yaml").read_text()
    for name in ("node1", "node4"):
        text = text.replace(f"{name}: {{subnet: lan,", f"{name}: {{subnet: lan, speaker: bird,")
    path = tmp_path / "brw.yaml"
    path.write_text(text)
    topo = load_topology_text(text, str(path), "brw", name_override="itbrw")
    plan, _ = bring_up(topo, path)
    state = LabState(plan.name)
    node1, node4 = plan.node("node1"), plan.node("node4")
    assert (node1.speaker, node4.speaker) == ("bird", "bird")
    # The borrower's BIRD holds the pod route it learned from the kernel (not from BGP).
    (learned,) = [r for r in birdc_routes(state, node4, 4) if r.prefix == BORROWED]
    assert learned.selected and learned.source != "BGP", learned
    # The lender's BIRD selected node4's announcement and installed it (not `!`).
    (heard,) = [r for r in birdc_routes(state, node1, 4) if r.prefix == BORROWED]
    assert heard.selected and not heard.sync_error and heard.source == "BGP", heard
    assert heard.bgp_next_hop == node4.ipv4
    verify_all(plan)
