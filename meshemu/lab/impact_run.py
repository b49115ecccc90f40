"""`meshemu impact --run`: bring up the old input's lab, then the new one's, observe each, and
always bring each down.

Owns the labs' names (`<prefix>-o<tag>` and `<prefix>-n<tag>`, checked free before use, at most
12 characters) and the order: one lab at a time (they could share nothing but the machine's
two cores), each removed before the next starts, also when `up` or `verify` fails.
The comparison with the prediction is `verify.impact_check`'s.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from meshemu.errors import ConfigError, Problem
from meshemu.lab.lifecycle import Progress, down, up
from meshemu.model.names import LAB_NAME_MAX, lab_name_error
from meshemu.model.plan import LabPlan
from meshemu.model.topology import Topology
from meshemu.state import LabState
from meshemu.verify.observation import Observation
from meshemu.verify.run import verify_lab

PREFIX_MAX = LAB_NAME_MAX - 6  # "-o" and a 4-digit tag


def lab_names(prefix: str) -> tuple[str, str]:
    """Two free lab names for the old and new labs. ConfigError for an unusable prefix."""
    error = lab_name_error(prefix)
    if error is not None or len(prefix) > PREFIX_MAX:
        raise ConfigError(
            [
                Problem(
                    "--lab-prefix",
                    error or f"{prefix!r} is longer than {PREFIX_MAX} characters",
                    "a short DNS label, e.g. impact",
                )
            ]
        )
    base = os.getpid() % 10000
    for step in range(10000):
        tag = f"{(base + step) % 10000:04d}"
        old, new = f"{prefix}-o{tag}", f"{prefix}-n{tag}"
        if not LabState(old).dir.exists() and not LabState(new).dir.exists():
            return old, new
    raise ConfigError([Problem("--lab-prefix", "no free lab name", "bring old labs down")])


@dataclass(frozen=True)
class LabRun:
    """One lab of the run: whether it converged, and what verify observed."""

    name: str
    converged: bool
    up_seconds: float
    observation: Observation
    verify_ok: bool


def run_lab(
    plan: LabPlan, topo: Topology, path: Path, progress: Progress, timeout: float | None
) -> LabRun:
    """Up, verify (packets included), down: always down, whatever happens in between."""
    try:
        result = up(plan, topo, path, progress, timeout=timeout)
        report, observation = verify_lab(LabState(plan.name), plan)
        return LabRun(
            plan.name,
            result.converged,
            result.seconds.get("total", 0.0),
            observation,
            report.ok,
        )
    finally:
        down(plan.name, progress)
