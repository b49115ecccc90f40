"""`meshemu status` text and JSON: pods IPAM could not address are named with Calico's reason."""

from __future__ import annotations

from meshemu.lab.status import IPAM_NOTE_MARKS, LabStatus
from meshemu.model.load import load_topology_text
from meshemu.model.plan import build_plan
from meshemu.report.lab_text import render_status

LIVE_SHORTAGE = """
name: st
subnets: {lan: {ipv4: 10.43.0.0/24}}
nodes:
  n1: {subnet: lan, pods: 6}
  n2: {subnet: lan, pods: 1}
pools:
  small: {cidr: 10.243.0.0/29, blockSize: 30}
ipam: {strictAffinity: true}
"""


def _status(notes: tuple[str, ...]) -> LabStatus:
    return LabStatus(
        "st", "up", "kernel", {}, "t.yaml", "/run/meshemu/st", "running", (), (), notes
    )


def test_the_plans_refusals_are_what_status_shows() -> None:
    # A live change (a previous plan) turns the strictAffinity shortage into plan notes.
    topo = load_topology_text(LIVE_SHORTAGE.replace("pods: 6", "pods: 1"), "t.yaml", "st")
    before = build_plan(topo)
    grown = load_topology_text(LIVE_SHORTAGE, "t.yaml", "st")
    after = build_plan(grown, previous=before)
    notes = tuple(n for n in after.notes if any(m in n for m in IPAM_NOTE_MARKS))
    assert notes and all("is not created" in n for n in notes)
    text = render_status(_status(notes))
    assert "not created (IPAM):" in text and notes[0] in text
    assert _status(notes).to_json()["not_created"] == list(notes)
    assert "not created" not in render_status(_status(()))
