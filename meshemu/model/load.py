"""YAML -> validated `Topology`, with every problem collected and located.

Owns reading an input file (native topology or Calico bundle), turning YAML and pydantic errors
into `Problem`s with a dotted location, running `model.rules`, and mapping locations of a
converted bundle back into the bundle. Raises `ConfigError` with all problems at once.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from meshemu.errors import ConfigError, Problem
from meshemu.model.calico import DEFAULT_PODS_PER_NODE, convert_bundle, looks_like_bundle
from meshemu.model.rules import check_topology
from meshemu.model.topology import LAB_NAME_MAX, Topology

_HINTS = {
    "extra_forbidden": "remove it or check its spelling; unknown fields are errors",
    "missing": "this field is required",
    "literal_error": "",
    "int_parsing": "write a whole number",
    "int_type": "write a whole number",
    "bool_parsing": "write true or false",
    "bool_type": "write true or false",
    "ip_v4_network": "write an IPv4 prefix like 10.0.1.0/24",
    "ip_v6_network": "write an IPv6 prefix like fd00:1::/64",
    "ip_v4_address": "write an IPv4 address like 10.0.1.10",
    "ip_v6_address": "write an IPv6 address like fd00:1::10",
    "dict_type": "write a mapping (key: value lines)",
    "list_type": "write a list (- item lines)",
    "string_type": "write text (quote it if YAML reads it as something else)",
}


def _location(parts: tuple[int | str, ...], where: str) -> str:
    text = where
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text = f"{text}.{part}" if text else str(part)
    return text


def problems_from_validation(err: ValidationError, where: str = "") -> list[Problem]:
    """One `Problem` per pydantic error, located with dotted keys, never a traceback."""
    problems = []
    for item in err.errors():
        loc = _location(tuple(item["loc"]), where)
        kind = item["type"]
        message = item["msg"]
        if kind == "extra_forbidden":
            message = "unknown field"
        elif kind == "value_error":
            message = message.removeprefix("Value error, ")
        problems.append(Problem(loc, message, _HINTS.get(kind, "")))
    return problems


def parse_yaml(text: str, source: str) -> list[Any]:
    try:
        return [doc for doc in yaml.safe_load_all(text) if doc is not None]
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        problem = getattr(err, "problem", None) or str(err)
        raise ConfigError(
            [Problem(where, f"malformed YAML: {problem}", "check indentation and quoting")]
        ) from None


def lab_name_from_path(path: Path) -> str:
    stem = re.sub(r"[^a-z0-9-]+", "-", path.stem.lower()).strip("-") or "lab"
    return stem[:LAB_NAME_MAX].strip("-")


def load_topology(
    path: Path, name: str | None = None, pods_per_node: int | None = None
) -> Topology:
    """Read and validate a topology or Calico bundle; raise ConfigError listing every problem."""
    try:
        text = path.read_text()
    except OSError as err:
        raise ConfigError([Problem(str(path), f"cannot read: {err.strerror}", "")]) from None
    return load_topology_text(
        text, str(path), name or lab_name_from_path(path), pods_per_node, name_override=name
    )


def load_topology_text(
    text: str,
    source: str,
    default_name: str,
    pods_per_node: int | None = None,
    name_override: str | None = None,
) -> Topology:
    """`default_name` names a bundle's lab; `name_override` (`--name`) replaces any lab name."""
    documents = parse_yaml(text, source)
    if not documents:
        raise ConfigError([Problem(source, "is empty", "write a topology or Calico resources")])
    origins: dict[str, str] = {}
    if looks_like_bundle(documents):
        conv = convert_bundle(documents, default_name, pods_per_node or DEFAULT_PODS_PER_NODE)
        if conv.problems:
            raise ConfigError(conv.problems)
        data: Any = conv.data
        origins = conv.origins
    else:
        if len(documents) > 1:
            raise ConfigError(
                [Problem(source, "holds several YAML documents", "a topology is one document")]
            )
        data = documents[0]
        if not isinstance(data, dict):
            raise ConfigError([Problem(source, "is not a mapping", "a topology is a mapping")])
        if name_override is not None:
            data["name"] = name_override
        if pods_per_node is not None:
            for node in (data.get("nodes") or {}).values():
                if isinstance(node, dict):
                    node["pods"] = pods_per_node
    try:
        topo = Topology.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_relocate(problems_from_validation(err), origins)) from None
    problems = check_topology(topo)
    if problems:
        raise ConfigError(_relocate(problems, origins))
    return topo


# Native field names that a bundle spells differently.
_BUNDLE_FIELDS = {"ipv4": "ipv4Address", "ipv6": "ipv6Address"}


def _relocate(problems: list[Problem], origins: dict[str, str]) -> list[Problem]:
    """Point problems found on a converted bundle back at the bundle's resources."""
    if not origins:
        return problems
    out = []
    for problem in problems:
        location = problem.location
        for prefix in sorted(origins, key=len, reverse=True):
            if location == prefix or location.startswith(prefix + "."):
                rest = location[len(prefix) :].lstrip(".")
                rest = _BUNDLE_FIELDS.get(rest, rest)
                location = f"{origins[prefix]}.{rest}" if rest else origins[prefix]
                break
        out.append(Problem(location, problem.message, problem.hint))
    return out
