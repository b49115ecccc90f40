"""The lab as a scenario's steps leave it, followed step by step before anything runs.

Owns the state the checks read at each step (`LabAtStep`: the topology, the plan, whether the
lab is up, whether it has IP-in-IP, the snapshots written so far, the routers stopped) and
applying the steps that change it (through `scenario.evolve`, as the run will), with what makes
a change impossible on a running lab: a node added live taking an address a running node or
router has, IP-in-IP added to a lab that came up without it, a router stopped twice or started
while it runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from meshemu.errors import Problem
from meshemu.model.changes import IPIP_ADDED, address_collisions, uses_ipip
from meshemu.model.plan import LabPlan, NodePlan
from meshemu.model.topology import Topology
from meshemu.scenario.evolve import ChangeError, evolve
from meshemu.scenario.schema import Step

# What a step that is not `up` brings up when the scenario did not start with one (the check
# then reports each later step once, without a cascade).
_UP = Step.model_validate({"up": {}})


@dataclass
class LabAtStep:
    """The lab as the steps so far leave it."""

    topo: Topology
    up: bool = False
    plan: LabPlan | None = None  # None before `up`, or when the lab cannot be planned
    ipip: bool = False  # whether `up` set IP-in-IP up (a live change cannot add it later)
    written: set[Path] = field(default_factory=set)  # snapshots written by earlier steps
    stopped: set[str] = field(default_factory=set)  # routers stopped and not started again

    def node(self, name: str) -> NodePlan | None:
        if self.plan is None:
            return None
        return next((n for n in self.plan.nodes if n.name == name), None)

    def families(self) -> set[int]:
        if self.plan is None:
            return {4, 6}
        return {f for n in self.plan.nodes for f in (4, 6) if n.address(f) is not None}


def bring_up(where: str, step: Step | None, lab: LabAtStep) -> list[Problem]:
    if lab.up:
        return [Problem(where, "the lab is already up", "drop this step")]
    lab.up = True
    try:
        lab.topo, lab.plan = evolve(lab.topo, None, step or _UP)
    except ChangeError as err:
        return [Problem(where, err.message.replace("changed topology", "lab"), err.hint)]
    lab.ipip = uses_ipip(lab.plan)
    return []


def toggle_router(where: str, step: Step, lab: LabAtStep) -> list[Problem]:
    """Follow `stop-router` and `start-router`: a router stops only while it runs and starts
    only once stopped (the run would otherwise fail on a lab left half changed)."""
    arg = step.stop_router or step.start_router
    if arg is None or arg.router not in lab.topo.routers:
        return []
    name = arg.router
    if step.stop_router is not None:
        if name in lab.stopped:
            return [Problem(f"{where}.router", f"{name} is stopped already", "drop this step")]
        lab.stopped.add(name)
        return []
    if name not in lab.stopped:
        return [
            Problem(
                f"{where}.router",
                f"{name} runs: start-router starts a router a stop-router stopped",
                f"stop it first with `- stop-router: {{router: {name}}}`",
            )
        ]
    lab.stopped.discard(name)
    return []


def apply_change(where: str, step: Step, lab: LabAtStep) -> list[Problem]:
    """Apply a topology-changing step to the lab; what makes it impossible on a running lab."""
    old = lab.plan
    try:
        topo, plan = evolve(lab.topo, old, step)
    except ChangeError as err:
        return [Problem(where, err.message, err.hint)]
    lab.topo, lab.plan = topo, plan
    problems: list[Problem] = []
    if old is not None:
        problems += _address_problems(where, step, old, plan)
        if not lab.ipip and uses_ipip(plan):
            problems.append(Problem(where, *IPIP_ADDED))
    return problems


def _address_problems(where: str, step: Step, old: LabPlan, new: LabPlan) -> list[Problem]:
    fixed = step.add_node
    problems = []
    for hit in address_collisions(old, new):
        given = fixed is not None and getattr(fixed, f"ipv{hit.family}") is not None
        problems.append(
            Problem(
                f"{where}.ipv{hit.family}" if given else where,
                f"{hit.node} would get {hit.address}, the address of {hit.holder}",
                "give it a free address, or remove that node first"
                if given
                else "fix a free address for it",
            )
        )
    return problems
