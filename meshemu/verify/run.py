"""One `verify` run: observe the running lab, judge it against its plan, make the report.

Owns what `meshemu verify` and `meshemu demo` share: failing checks first, the run's time, and
the report's properties.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from meshemu.model.plan import LabPlan
from meshemu.model.policy_eval import expected_matrix
from meshemu.state import LabState
from meshemu.verify.checks import verify_results
from meshemu.verify.observation import Observation
from meshemu.verify.observe import observe
from meshemu.verify.policy import with_policy
from meshemu.verify.policy_probe import port_matrix
from meshemu.verify.results import Report
from meshemu.verify.services import check_services
from meshemu.verify.services_probe import probe_services


def verify_lab(
    state: LabState,
    plan: LabPlan,
    dataplane: bool = True,
    step: Callable[[str, int, int], None] | None = None,
) -> tuple[Report, Observation]:
    """`step(what, done, total)`, if given, hears each phase (a progress bar's callback)."""
    started = time.monotonic()
    pods = sum(len(n.pods) for n in plan.nodes)
    tick = step or (lambda _what, _done, _total: None)
    probes = f", probing {pods * (pods - 1)} pod pairs per family" if dataplane else ""
    tick(f"verify {state.name}: reading sessions, RIBs and FIBs{probes}", 0, 2)
    observation = observe(state, plan, dataplane=dataplane)
    tick(f"verify {state.name}: judging against the plan", 1, 2)
    # Failing checks first, so the first lines say what is wrong.
    results = verify_results(plan, observation)
    if plan.policy is not None:
        # Network policy: every probe judged against the plan's verdict, both ways.
        cells = expected_matrix(plan, plan.policy)
        ports = port_matrix(plan, cells) if dataplane else {}
        results = with_policy(cells, results, observation.matrix, ports)
    if plan.services is not None and dataplane:
        results += check_services(plan, *probe_services(plan))
    results = sorted(results, key=lambda r: r.ok)
    report = Report(
        f"verify lab {state.name}",
        state.name,
        tuple(results),
        round(time.monotonic() - started, 3),
        {"lab": state.name, "nodes": str(len(plan.nodes))},
    )
    return report, observation
