"""Check results: what `verify` and scenario expectations produce, and reports consume.

A failed check is a result, never an exception. Each result says what was expected, what was
observed, and a one-line diagnosis a person can act on without reading code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PASS, FAIL, SKIP = "pass", "fail", "skip"


@dataclass(frozen=True)
class CheckResult:
    """One check: `category` is sessions | rib | fib | dataplane | step (scenario)."""

    category: str
    name: str  # unique within a run, e.g. "fib node1" or "ping node1/pod1 -> node3/pod2 ipv4"
    status: str  # pass | fail | skip
    expected: str = ""
    observed: str = ""
    diagnosis: str = ""
    node: str | None = None
    seconds: float | None = None  # how long it took to hold (scenario expectations)
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status != FAIL

    def to_json(self) -> dict[str, Any]:
        return {
            "category": self.category,
            "name": self.name,
            "status": self.status,
            "expected": self.expected,
            "observed": self.observed,
            "diagnosis": self.diagnosis,
            "node": self.node,
            "seconds": self.seconds,
            "details": self.details,
        }


@dataclass(frozen=True)
class Report:
    """A whole run: `verify` of a lab, or a scenario."""

    title: str  # e.g. "verify lab flagship" or "scenario link-failure"
    lab: str
    results: tuple[CheckResult, ...]
    seconds: float
    properties: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    def failures(self) -> list[CheckResult]:
        return [r for r in self.results if r.status == FAIL]

    def to_json(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "lab": self.lab,
            "ok": self.ok,
            "seconds": self.seconds,
            "properties": self.properties,
            "summary": {
                status: sum(1 for r in self.results if r.status == status)
                for status in (PASS, FAIL, SKIP)
            },
            "results": [r.to_json() for r in self.results],
        }
