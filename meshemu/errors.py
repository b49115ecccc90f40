"""The one exception tree of meshemu.

Every error the package raises on purpose derives from `MeshemuError`; `cli` maps them to exit
codes. A failed check is a result, never an exception.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One problem in an input, with where it is and what to do about it."""

    location: str
    message: str
    hint: str = ""

    def __str__(self) -> str:
        text = f"{self.location}: {self.message}" if self.location else self.message
        return f"{text} (hint: {self.hint})" if self.hint else text


class MeshemuError(Exception):
    """Base of every error meshemu raises on purpose."""


class ConfigError(MeshemuError):
    """The input (topology, Calico bundle, scenario) is invalid; carries every problem found."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class PlanError(MeshemuError):
    """A valid input that cannot be turned into a lab plan (for example a pool too small)."""


class EnvironmentProblem(MeshemuError):
    """This machine cannot run the lab: not root, a missing kernel feature or binary (exit 3)."""


class DataplaneError(MeshemuError):
    """The kernel refused an operation on namespaces, links, addresses or routes."""


class SpeakerError(MeshemuError):
    """A BGP speaker or agent could not be started, or died."""


class LabError(MeshemuError):
    """The lab's state folder is missing, foreign or inconsistent."""
