"""Tests of the JUnit XML report: schema validity, counts, evidence and escaping."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pytest

from meshemu.report.junit import render_junit
from meshemu.verify.results import CheckResult, Report

SCHEMAS = Path(__file__).resolve().parents[2].parent / "shared" / "schemas"
XSD = SCHEMAS / "junit-10.xsd"

PASSING = Report(
    title="verify lab flagship",
    lab="flagship",
    results=(
        CheckResult("sessions", "sessions node1", "pass", "2 established", "2 established",
                    node="node1"),
        CheckResult("fib", "fib node1", "pass", node="node1", seconds=0.0123456),
    ),
    seconds=3.5,
    properties={"topology": "topologies/flagship.yaml"},
)  # fmt: skip

FAILING = Report(
    title="scenario ipip-to-crosssubnet",
    lab="ipipcs",
    results=(
        CheckResult(
            "fib",
            "fib node2",
            "fail",
            expected="10.244.1.0/26 via 10.0.1.3 dev tunl0 onlink",
            observed="10.244.1.0/26 via 10.0.1.3 dev eth0",
            diagnosis='route to node3\'s block left the tunnel: <pool "p1"> & ipipMode ≠ Always',
            node="node2",
        ),
        CheckResult("step", "link node1 down; expect converged", "pass", seconds=2.75),
        CheckResult(
            "step",
            "expect route on node2",
            "fail",
            expected="present",
            observed="absent after 30 s",
            diagnosis="Knoten überprüfen: Sitzung fehlt \x1b[31m",
            seconds=30.0,
        ),
    ),
    seconds=61.25,
)

SKIPPING = Report(
    title="verify lab v4only",
    lab="v4only",
    results=(
        CheckResult("dataplane", "ping node1/pod1 -> node2/pod1 ipv6", "skip",
                    diagnosis="the lab has no IPv6 pool"),
    ),
    seconds=0.2,
)  # fmt: skip

EMPTY = Report(title="verify lab empty", lab="empty", results=(), seconds=0.0)

ALL = [PASSING, FAILING, SKIPPING, EMPTY]


def _parse(text: str) -> ET.Element:
    return ET.fromstring(text.encode("utf-8"))


@pytest.mark.parametrize(
    "reports",
    [[PASSING], [FAILING], [SKIPPING], [EMPTY], ALL, []],
    ids=["pass", "fail", "skip", "empty", "all", "none"],
)
def test_validates_against_junit_schema(
    reports: list[Report], require_shared: Callable[[Path, str], Path]
) -> None:
    require_shared(XSD, "JUnit schema")
    xmlschema = pytest.importorskip("xmlschema")
    schema = xmlschema.XMLSchema(str(XSD))
    text = render_junit(reports, timestamp="2024-05-01T12:00:00", hostname="ci-runner")
    schema.validate(text)
    schema.validate(render_junit(reports))  # without the optional attributes too


def test_schema_rejects_a_broken_document(require_shared: Callable[[Path, str], Path]) -> None:
    """The validation above can fail: a testsuite without its required counts is refused."""
    require_shared(XSD, "JUnit schema")
    xmlschema = pytest.importorskip("xmlschema")
    schema = xmlschema.XMLSchema(str(XSD))
    broken = render_junit([PASSING]).replace(' failures="0"', "")
    assert not schema.is_valid(broken)


def test_one_suite_per_report_with_counts() -> None:
    root = _parse(render_junit(ALL))
    assert root.tag == "testsuites"
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("6", "2", "0")
    assert root.get("time") == "64.950"
    suites = root.findall("testsuite")
    assert [s.get("name") for s in suites] == [r.title for r in ALL]
    counts = [
        (s.get("tests"), s.get("failures"), s.get("errors"), s.get("skipped")) for s in suites
    ]
    assert counts == [("2", "0", "0", "0"), ("3", "2", "0", "0"), ("1", "0", "0", "1"),
                      ("0", "0", "0", "0")]  # fmt: skip
    assert [s.get("time") for s in suites] == ["3.500", "61.250", "0.200", "0.000"]


def test_testcases_names_classnames_and_times() -> None:
    suite = _parse(render_junit([FAILING, PASSING])).findall("testsuite")[1]
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == ["sessions node1", "fib node1"]
    assert [c.get("classname") for c in cases] == ["meshemu.sessions.node1", "meshemu.fib.node1"]
    assert [c.get("time") for c in cases] == ["0.000", "0.012"]
    steps = _parse(render_junit([FAILING])).findall("testsuite/testcase")[1:]
    assert [c.get("classname") for c in steps] == ["meshemu.step", "meshemu.step"]
    assert [c.get("time") for c in steps] == ["2.750", "30.000"]


def test_properties_include_lab_and_report_properties() -> None:
    props = _parse(render_junit([PASSING])).findall("testsuite/properties/property")
    assert {p.get("name"): p.get("value") for p in props} == {
        "lab": "flagship",
        "topology": "topologies/flagship.yaml",
    }


def test_failure_carries_expected_observed_and_diagnosis() -> None:
    case = _parse(render_junit([FAILING])).find("testsuite/testcase")
    assert case is not None
    failure = case.find("failure")
    assert failure is not None
    assert failure.get("type") == "fib"
    diagnosis = FAILING.results[0].diagnosis
    assert failure.get("message") == diagnosis  # special characters survive the round trip
    assert (failure.text or "").splitlines() == [
        "expected: 10.244.1.0/26 via 10.0.1.3 dev tunl0 onlink",
        "observed: 10.244.1.0/26 via 10.0.1.3 dev eth0",
        f"diagnosis: {diagnosis}",
    ]


def test_special_characters_are_escaped_and_non_ascii_kept() -> None:
    text = render_junit([FAILING])
    assert "&lt;pool" in text and "&amp; ipipMode" in text
    assert "≠" in text and "überprüfen" in text
    assert "\x1b" not in text  # a control character would make the whole file invalid XML
    message = _parse(text).findall("testsuite/testcase")[2].find("failure")
    assert message is not None
    assert message.get("message") == "Knoten überprüfen: Sitzung fehlt \\x1b[31m"


def test_skip_and_pass_elements() -> None:
    root = _parse(render_junit([SKIPPING, PASSING]))
    skipped = root.find("testsuite/testcase/skipped")
    assert skipped is not None and skipped.get("message") == "the lab has no IPv6 pool"
    assert root.find("testsuite/testcase/failure") is None
    passing = root.findall("testsuite")[1].findall("testcase")
    assert all(c.find("failure") is None and c.find("skipped") is None for c in passing)
    out = passing[0].find("system-out")
    assert out is not None and "observed: 2 established" in (out.text or "")
    assert passing[1].find("system-out") is None  # no evidence, no output element


def test_optional_attributes_and_determinism() -> None:
    plain = render_junit(ALL)
    assert plain == render_junit(ALL)
    assert "timestamp" not in plain and "hostname" not in plain
    suite = _parse(render_junit([PASSING], timestamp="2024-05-01T12:00:00", hostname="h1")).find(
        "testsuite"
    )
    assert suite is not None
    assert (suite.get("timestamp"), suite.get("hostname")) == ("2024-05-01T12:00:00", "h1")
    assert plain.startswith('<?xml version="1.0" encoding="UTF-8"?>\n<testsuites')


def test_unknown_status_is_an_error_not_a_pass() -> None:
    report = Report("odd", "odd", (CheckResult("fib", "fib x", "weird"),), 1.0)
    root = _parse(render_junit([report]))
    assert root.get("errors") == "1"
    assert root.find("testsuite/testcase/error") is not None


def test_negative_or_nan_times_render_as_zero() -> None:
    report = Report("t", "t", (CheckResult("step", "s", "pass", seconds=float("nan")),), -1.0)
    root = _parse(render_junit([report]))
    assert root.get("time") == "0.000"
    case = root.find("testsuite/testcase")
    assert case is not None and case.get("time") == "0.000"
