"""Whether a scenario's steps can hold, before anything runs: `check_steps`.

Owns following the steps in order through the lab they change (`scenario.changes`) and asking,
at each step, the check for what it does: the lab is up first and only once, the names it uses
exist (`scenario.references`), a router stops only while it runs, its expectation can hold
(`scenario.expectations`), the file it writes stays inside the scenario's folder
(`scenario.files`), and its change can be made to the running lab. Problems are collected
with their location (`steps[3].expect.reachable.from`) and a hint.
"""

from __future__ import annotations

from pathlib import Path

from meshemu.errors import Problem
from meshemu.model.topology import Topology
from meshemu.scenario.changes import LabAtStep, apply_change, bring_up, toggle_router
from meshemu.scenario.evolve import TOPOLOGY_KINDS
from meshemu.scenario.expectations import check_expectation
from meshemu.scenario.files import output_target
from meshemu.scenario.references import check_refs
from meshemu.scenario.schema import Scenario


def check_steps(scenario: Scenario, topo: Topology, folder: Path | None = None) -> list[Problem]:
    """Follow the steps through the topology and plan they change; report what can never
    work. `folder` is the scenario's folder: without it, files are not checked."""
    problems: list[Problem] = []
    lab = LabAtStep(topo)
    for index, step in enumerate(scenario.steps):
        where = f"steps[{index}].{step.kind}"
        if step.kind == "up":
            problems += bring_up(where, step, lab)
            continue
        if not lab.up and step.kind != "wait":
            problems.append(
                Problem(where, "the lab is not up yet", "start the steps with `- up: {}`")
            )
            problems += bring_up(where, None, lab)  # report each later step once, no cascade
        problems += check_refs(where, step, lab.topo)
        if step.expect is not None:
            problems += check_expectation(where, step.expect, lab, folder)
        if step.write_snapshot is not None and folder is not None:
            target = output_target(folder, step.write_snapshot.file, f"{where}.file")
            if isinstance(target, Problem):
                problems.append(target)
            else:
                lab.written.add(target)
        if step.kind in ("stop-router", "start-router"):
            problems += toggle_router(where, step, lab)
        if step.kind in TOPOLOGY_KINDS:
            problems += apply_change(where, step, lab)
    return problems
