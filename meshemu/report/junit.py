"""JUnit XML for CI systems: one `<testsuite>` per `Report`, one `<testcase>` per `CheckResult`.

Owns the mapping of results to JUnit elements and attributes only; it must not run checks,
read the lab or write files (`cli` writes the returned text). The output validates against
`../shared/schemas/junit-10.xsd` (the Jenkins xUnit plugin's schema) and keeps to the
attribute names GitLab and the GitHub Actions test reporters read: `name`, `classname`, `time`,
`tests`, `failures`, `errors`, `skipped`, `timestamp`, `hostname`.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence

from meshemu.verify.results import FAIL, PASS, SKIP, CheckResult, Report

# XML 1.0 forbids most control characters even as character references; command output (ANSI
# colour codes, NUL bytes) would otherwise make the whole file unreadable to every CI system.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _clean(text: str) -> str:
    return _NOT_XML.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def _time(seconds: float | None) -> str:
    """Seconds as the schema's SUREFIRE_TIME: no sign, no exponent, at most three decimals."""
    if seconds is None or seconds != seconds or seconds < 0:  # None, NaN, negative
        return "0.000"
    return f"{seconds:.3f}"


def _classname(result: CheckResult) -> str:
    base = f"meshemu.{result.category}"
    return f"{base}.{result.node}" if result.node else base


def _evidence(result: CheckResult) -> str:
    lines = []
    if result.expected:
        lines.append(f"expected: {result.expected}")
    if result.observed:
        lines.append(f"observed: {result.observed}")
    if result.diagnosis:
        lines.append(f"diagnosis: {result.diagnosis}")
    return _clean("\n".join(lines))


def _testcase(parent: ET.Element, result: CheckResult) -> None:
    case = ET.SubElement(
        parent,
        "testcase",
        {
            "name": _clean(result.name),
            "classname": _clean(_classname(result)),
            "time": _time(result.seconds),
        },
    )
    message = _clean(result.diagnosis or result.name)
    if result.status == FAIL:
        failure = ET.SubElement(case, "failure", {"message": message, "type": result.category})
        failure.text = _evidence(result)
    elif result.status == SKIP:
        skipped = ET.SubElement(case, "skipped")
        if result.diagnosis:
            skipped.set("message", message)
    elif result.status != PASS:
        # Not a verdict meshemu knows: report it as an error rather than hide it as a pass.
        error = ET.SubElement(
            case, "error", {"message": _clean(f"unknown status {result.status!r}"), "type": "error"}
        )
        error.text = _evidence(result)
    elif result.expected or result.observed:
        # The evidence of a pass is worth keeping too: CI shows it as the case's output.
        ET.SubElement(case, "system-out").text = _evidence(result)


def _counts(results: Sequence[CheckResult]) -> tuple[int, int, int, int]:
    failures = sum(1 for r in results if r.status == FAIL)
    skipped = sum(1 for r in results if r.status == SKIP)
    errors = sum(1 for r in results if r.status not in (PASS, FAIL, SKIP))
    return len(results), failures, errors, skipped


def _testsuite(
    parent: ET.Element, report: Report, timestamp: str | None, hostname: str | None
) -> None:
    tests, failures, errors, skipped = _counts(report.results)
    attrs = {
        "name": _clean(report.title),
        "tests": str(tests),
        "failures": str(failures),
        "errors": str(errors),
        "skipped": str(skipped),
        "time": _time(report.seconds),
    }
    if timestamp is not None:
        attrs["timestamp"] = timestamp
    if hostname is not None:
        attrs["hostname"] = _clean(hostname)
    suite = ET.SubElement(parent, "testsuite", attrs)
    props = {"lab": report.lab, **report.properties}
    properties = ET.SubElement(suite, "properties")
    for key in sorted(props):
        ET.SubElement(properties, "property", {"name": _clean(key), "value": _clean(props[key])})
    for result in report.results:
        _testcase(suite, result)


def render_junit(
    reports: Sequence[Report],
    *,
    name: str = "meshemu",
    timestamp: str | None = None,
    hostname: str | None = None,
) -> str:
    """The JUnit XML document (text, UTF-8 declared) for `reports`.

    `timestamp` (ISO 8601, e.g. "2024-05-01T12:00:00") and `hostname` are optional so that the
    same reports always render to the same bytes unless the caller asks for them.
    """
    totals = [_counts(r.results) for r in reports]
    root = ET.Element(
        "testsuites",
        {
            "name": _clean(name),
            "tests": str(sum(t[0] for t in totals)),
            "failures": str(sum(t[1] for t in totals)),
            "errors": str(sum(t[2] for t in totals)),
            "time": _time(sum(max(r.seconds, 0.0) for r in reports)),
        },
    )
    for report in reports:
        _testsuite(root, report, timestamp, hostname)
    ET.indent(root)
    body = ET.tostring(root, encoding="unicode")
    return f'<?xml version="1.0" encoding="UTF-8"?>\n{body}\n'
