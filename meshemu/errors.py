"""The one exception tree of meshemu, and the exit code each kind of error means.

Every error the package raises on purpose derives from `MeshemuError`; each class carries the
exit code the CLI returns for it (README: 2 bad input or usage, 3 this machine cannot run it).
Exit code 1 belongs to failed checks, which are results, never exceptions: no error maps to 1.
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


EXIT_OK, EXIT_CHECK_FAILED, EXIT_BAD_INPUT, EXIT_ENVIRONMENT = 0, 1, 2, 3


class MeshemuError(Exception):
    """Base of every error meshemu raises on purpose."""

    exit_code = EXIT_BAD_INPUT


class ConfigError(MeshemuError):
    """The input (topology, Calico bundle, scenario) is invalid; carries every problem found."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class PlanError(MeshemuError):
    """A valid input that cannot be turned into a lab plan (for example a pool too small)."""


class UsageError(MeshemuError):
    """The command was used wrongly: an unknown lab, node or pod, a missing argument (exit 2)."""


class LabError(MeshemuError):
    """The lab's state folder is foreign or inconsistent, or the lab is in a state the command
    cannot act on (already up, not up) (exit 2: say which lab, or bring it down first)."""


class EnvironmentProblem(MeshemuError):
    """This machine cannot run the lab: not root, a missing kernel feature or binary (exit 3)."""

    exit_code = EXIT_ENVIRONMENT


class DataplaneError(EnvironmentProblem):
    """The kernel refused an operation on namespaces, links, addresses or routes (exit 3)."""


class SpeakerError(EnvironmentProblem):
    """A BGP speaker, agent or helper process could not be started (exit 3)."""
