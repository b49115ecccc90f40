"""A scenario file's path -> the validated scenario and the topology it names.

Owns reading the scenario file and everything `load_scenario` checks in order: the file is one
small YAML mapping (read, decoded and parsed by `model.load`, the one reader of every input
file, within the scenario's own smaller bounds below), it is a `Scenario` (`scenario.schema`),
its lab name is a lab name, the topology it names is a file that loads, and its steps can hold
(`scenario.checks`). Every problem is collected with its location and a hint; never a hang on a
FIFO, never a traceback on binary or deeply nested input.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from meshemu.errors import ConfigError, Problem
from meshemu.model.load import load_topology, parse_yaml, problems_from_validation, read_input
from meshemu.model.names import LAB_NAME_MAX, lab_name_error
from meshemu.model.topology import Topology
from meshemu.scenario.checks import check_steps
from meshemu.scenario.files import too_big, topology_path
from meshemu.scenario.schema import Scenario

# `model.load` bounds every input file (16 MiB, 64 levels, 2,000,000 values once aliases are
# expanded) for topologies and Calico exports of thousands of nodes. A scenario is a few
# kilobytes, six levels and tens of steps, and validating it costs per value (pydantic, then a
# problem for each bad one): these stricter bounds keep reading and checking any file quick.
MAX_SCENARIO_BYTES = 1024 * 1024
MAX_DEPTH = 32  # nesting of mappings and lists (a scenario needs about six)
MAX_VALUES = 100_000  # values once YAML aliases are expanded (an alias bomb expands to billions)
MAX_PROBLEMS = 100


# -- reading the file -----------------------------------------------------------------------


def _regular_size(path: Path) -> int:
    """The size of `path` if it is a regular file, else 0: `read_input` says what is wrong with
    anything else (a FIFO, a directory, a symlink loop, a missing file)."""
    try:
        info = os.stat(path)
    except (OSError, ValueError):
        return 0
    return info.st_size if stat.S_ISREG(info.st_mode) else 0


def _read_text(path: Path) -> str:
    """The scenario file's text, read by `model.load.read_input` (type, encoding and a bounded
    read) once it is known to be no larger than a scenario may be."""
    where = str(path)
    if _regular_size(path) > MAX_SCENARIO_BYTES:
        raise ConfigError([too_big(where, MAX_SCENARIO_BYTES)])
    text = read_input(path)
    if len(text.encode()) > MAX_SCENARIO_BYTES:  # it grew after stat (read_input bounds that)
        raise ConfigError([too_big(where, MAX_SCENARIO_BYTES)])
    return text


def _too_deep(where: str) -> Problem:
    return Problem(
        where, f"is nested more than {MAX_DEPTH} levels deep", "a scenario is a few levels deep"
    )


def _check_bounds(data: Any, where: str) -> None:
    """Refuse documents too deep or too large (counting values behind aliases every time they
    are used, as validating them would), before anything walks them recursively."""
    stack: list[tuple[Any, int]] = [(data, 0)]
    count = 0
    while stack:
        value, depth = stack.pop()
        count += 1
        if depth > MAX_DEPTH:
            raise ConfigError([_too_deep(where)])
        if count > MAX_VALUES:
            raise ConfigError(
                [
                    Problem(
                        where,
                        f"holds more than {MAX_VALUES} values once YAML aliases are expanded",
                        "write the steps out; a scenario is small",
                    )
                ]
            )
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)


def _read_mapping(path: Path) -> dict[Any, Any]:
    """The scenario file's one YAML mapping, bounded in size, depth and expansion."""
    where = str(path)
    documents = parse_yaml(_read_text(path), where)
    if len(documents) != 1 or not isinstance(documents[0], dict):
        raise ConfigError(
            [Problem(where, "a scenario is one YAML mapping", "name, topology and steps")]
        )
    _check_bounds(documents[0], where)
    return documents[0]


def is_scenario_document(path: Path) -> bool:
    """Whether `path` looks like a scenario (one mapping with `steps` and `topology`), to tell
    scenarios from topologies and bundles. Never raises or blocks; False for anything that
    cannot be read as one small YAML document (the topology loader then says what is wrong)."""
    try:
        documents = parse_yaml(_read_text(path), str(path))
    except (ConfigError, RecursionError, MemoryError):
        return False
    return (
        len(documents) == 1
        and isinstance(documents[0], dict)
        and "steps" in documents[0]
        and "topology" in documents[0]
    )


# -- loading --------------------------------------------------------------------------------


def default_lab_name(scenario: Scenario) -> str:
    """The lab a scenario runs on: its `lab`, else `sc-` and the start of its name."""
    return scenario.lab or ("sc-" + scenario.name)[:LAB_NAME_MAX].rstrip("-")


def _lab_problems(data: dict[Any, Any]) -> list[Problem]:
    """A `lab:` that is no lab name (checked before pydantic, which could only say "not a
    string", so that every wrong value gets the same message and hint)."""
    if "lab" not in data or data["lab"] is None:
        return []
    error = lab_name_error(data["lab"])
    if error is None:
        return []
    del data["lab"]  # reported here; pydantic would report it again
    return [Problem("lab", error, "set lab: to a short name like sc-test")]


def _cap(problems: list[Problem], where: str) -> list[Problem]:
    if len(problems) <= MAX_PROBLEMS:
        return problems
    more = len(problems) - MAX_PROBLEMS
    return [*problems[:MAX_PROBLEMS], Problem(where, f"and {more} more problems", "fix these")]


def load_scenario(path: Path) -> tuple[Scenario, Topology, Path]:
    """Read and check a scenario and the topology it names: (scenario, topology named after
    the scenario's lab, topology path). ConfigError lists every problem found."""
    data = dict(_read_mapping(path))
    problems = _lab_problems(data)
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_cap(problems + problems_from_validation(err), str(path))) from None
    lab = default_lab_name(scenario)
    error = lab_name_error(lab)
    if error and scenario.lab is None:
        problems.append(Problem("name", error, "set lab: to a short name like sc-test"))
    folder = path.parent
    try:
        topo_path = topology_path(scenario.topology, folder)
    except ConfigError as err:
        raise ConfigError(problems + err.problems) from None
    try:
        topo = load_topology(topo_path, name=None if problems else lab)
    except ConfigError as err:
        problems += [
            Problem(f"topology ({topo_path.name}): {p.location}", p.message, p.hint)
            for p in err.problems
        ]
        raise ConfigError(_cap(problems, str(path))) from None
    problems += check_steps(scenario, topo, folder)
    if problems:
        raise ConfigError(_cap(problems, str(path)))
    return scenario, topo, topo_path
