"""Address families at a step: which the lab has, of which an address or prefix is, and the
form the lab writes an address in.

Owns the family checks every expectation shares: an expectation in a family no node has at
that step can never hold, nor a route or session of a node without an address of its family,
and an address written in another form than the lab reports never matches.
"""

from __future__ import annotations

import ipaddress

from meshemu.errors import Problem
from meshemu.model.addressing import parse_network
from meshemu.model.plan import NodePlan
from meshemu.scenario.changes import LabAtStep
from meshemu.scenario.messages import short


def family_number(text: str) -> int:
    """The IP version a `family:` field names (ipv4 or ipv6)."""
    return 4 if text == "ipv4" else 6


def address_version(text: str) -> int | None:
    """The IP version of an address, None for anything else (a prefix included)."""
    try:
        return ipaddress.ip_address(text).version
    except ValueError:
        return None


def address_form(where: str, text: str) -> list[Problem]:
    """The lab reports addresses in their short lower-case form and the runner compares text:
    `FD00::0001` would never match `fd00::1`."""
    canonical = str(ipaddress.ip_address(text))
    if canonical == text:
        return []
    return [Problem(where, f"the lab writes {text} as {canonical}", f"write {canonical}")]


def prefix_problems(where: str, text: str) -> list[Problem]:
    try:
        parse_network(text)
    except ValueError as err:
        return [Problem(where, short(str(err)), "write a prefix like 10.0.1.0/24 or fd00::/64")]
    return []


def missing_family(where: str, family: int, lab: LabAtStep) -> list[Problem]:
    """An expectation in a family no node of the lab has at this step."""
    if family in lab.families():
        return []
    other = 6 if family == 4 else 4
    return [
        Problem(
            where,
            f"the lab has no IPv{family} at this step (its nodes have IPv{other} addresses only)",
            f"expect family ipv{other}, or give the subnets an IPv{family} prefix",
        )
    ]


def lacks(node: NodePlan | None, family: int) -> bool:
    return node is not None and node.address(family) is None
