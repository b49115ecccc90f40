"""The scenario package's public names, where the CLI, the runner and the tests import them.

Owns nothing else: each job has its own module, and this one re-exports what other code uses.
  - `scenario.schema`: what a scenario file may say (`Scenario`, `Step`, `Expectation`);
  - `scenario.reading`: a path -> the validated scenario and its topology (`load_scenario`,
    `is_scenario_document`);
  - `scenario.checks`: whether the steps can hold (`check_steps`), from `scenario.changes`
    (the lab at each step), `references`, `expectations`, `families` and `paths`;
  - `scenario.files`: the files a scenario names (`output_path`);
  - `scenario.evolve`: how a step changes the topology and plan; `scenario.runner`: a run.
The types live in `scenario.schema`, not here, because the readers and checks import them and
this module imports the readers and checks (one direction only: no import cycle).
"""

from __future__ import annotations

from meshemu.scenario.checks import check_steps
from meshemu.scenario.files import output_path
from meshemu.scenario.reading import is_scenario_document, load_scenario
from meshemu.scenario.schema import Expectation, Scenario, Step

__all__ = [
    "Expectation",
    "Scenario",
    "Step",
    "check_steps",
    "is_scenario_document",
    "load_scenario",
    "output_path",
]
