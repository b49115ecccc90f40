"""One `verify` run: observe the running lab, judge it against its plan, make the report.

Owns what `meshemu verify` and `meshemu demo` share: failing checks first, the run's time, and
the report's properties.
"""

from __future__ import annotations

import time

from meshemu.model.plan import LabPlan
from meshemu.state import LabState
from meshemu.verify.checks import verify_results
from meshemu.verify.observation import Observation
from meshemu.verify.observe import observe
from meshemu.verify.results import Report


def verify_lab(
    state: LabState, plan: LabPlan, dataplane: bool = True
) -> tuple[Report, Observation]:
    started = time.monotonic()
    observation = observe(state, plan, dataplane=dataplane)
    # Failing checks first, so the first lines say what is wrong.
    results = sorted(verify_results(plan, observation), key=lambda r: r.ok)
    report = Report(
        f"verify lab {state.name}",
        state.name,
        tuple(results),
        round(time.monotonic() - started, 3),
        {"lab": state.name, "nodes": str(len(plan.nodes))},
    )
    return report, observation
