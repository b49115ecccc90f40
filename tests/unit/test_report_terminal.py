"""Tests of the terminal report: failures first, node x category table, steps, summary."""

from __future__ import annotations

from meshemu.report.terminal import WIDTH, render_report, summary_line
from meshemu.verify.results import CheckResult, Report

VERIFY = Report(
    title="verify lab flagship",
    lab="flagship",
    results=(
        CheckResult("sessions", "sessions node1", "pass", node="node1"),
        CheckResult("sessions", "sessions node2", "pass", node="node2"),
        CheckResult("rib", "rib node1", "pass", node="node1"),
        CheckResult("rib", "rib node2", "pass", node="node2"),
        CheckResult(
            "fib",
            "fib node2",
            "fail",
            expected="10.244.1.0/26 via 10.0.1.3 dev tunl0 onlink",
            observed="10.244.1.0/26 via 10.0.1.3 dev eth0",
            diagnosis="node2 reaches node3's block without the tunnel: pool p1 is CrossSubnet",
            node="node2",
        ),
        CheckResult("fib", "fib node2 v6", "fail", "a", "b", "c", node="node2"),
        CheckResult("fib", "fib node1", "pass", node="node1"),
        CheckResult("dataplane", "ping node1/pod1 -> node2/pod1 ipv6", "skip", node="node1"),
        CheckResult("dataplane", "matrix", "pass"),
    ),
    seconds=4.25,
)

SCENARIO = Report(
    title="scenario link-failure",
    lab="linkfail",
    results=(
        CheckResult("step", "up", "pass", seconds=5.5),
        CheckResult("step", "link node1 down", "pass"),
        CheckResult("step", "expect converged (after link node1 down)", "pass", seconds=3.21),
        CheckResult(
            "step",
            "expect route 10.244.0.0/26 absent on node2 " + "x" * 120,
            "fail",
            expected="absent",
            observed="present: 10.244.0.0/26 via 10.0.0.2 dev eth0",
            diagnosis="the withdrawal never reached node2",
            seconds=30.0,
        ),
    ),
    seconds=45.0,
)


def _lines(text: str) -> list[str]:
    return text.splitlines()


def test_failures_come_first_with_evidence() -> None:
    text = render_report(VERIFY)
    lines = _lines(text)
    assert lines[0] == "FAILED (2):"
    assert lines[1] == "  x fib on node2: fib node2"
    assert lines[2].split() == ["expected:", "10.244.1.0/26", "via", "10.0.1.3", "dev", "tunl0",
                                "onlink"]  # fmt: skip
    assert lines[3].split()[0] == "observed:" and "dev eth0" in lines[3]
    assert lines[4].split()[0] == "diagnosis:" and "CrossSubnet" in lines[4]
    assert text.index("FAILED (2):") < text.index("checks per node:")


def test_node_by_category_table() -> None:
    lines = _lines(render_report(VERIFY))
    start = lines.index("checks per node:")
    header = lines[start + 1].split()
    assert header == ["node", "sessions", "rib", "fib", "dataplane"]
    rows = {line.split()[0]: line.split()[1:] for line in lines[start + 2 : start + 5]}
    assert rows["node1"] == ["ok", "ok", "ok", "skip"]
    assert rows["node2"] == ["ok", "ok", "FAIL", "2", "-"]
    assert rows["(lab-wide)"] == ["-", "-", "-", "ok"]


def test_summary_is_last_and_counts() -> None:
    text = render_report(VERIFY)
    assert text.endswith("\n")
    assert _lines(text)[-1] == (
        "verify lab flagship: FAILED - 6 passed, 2 failed, 1 skipped in 4.25 s"
    )
    ok = Report("verify lab ok", "ok", (CheckResult("rib", "rib a", "pass", node="a"),), 1.0)
    assert summary_line(ok) == "verify lab ok: OK - 1 passed, 0 failed, 0 skipped in 1.00 s"


def test_all_passing_has_no_failure_section() -> None:
    ok = Report("verify lab ok", "ok", (CheckResult("rib", "rib a", "pass", node="a"),), 1.0)
    text = render_report(ok)
    assert "FAILED" not in text
    assert text.startswith("checks per node:")


def test_step_table_with_convergence_times() -> None:
    text = render_report(SCENARIO)
    lines = _lines(text)
    assert "checks per node:" not in text  # a scenario of steps only has no node table
    start = next(i for i, line in enumerate(lines) if line.startswith("steps"))
    header = lines[start + 1].split()
    assert header == ["#", "step", "status", "seconds"]
    rows = lines[start + 2 : start + 6]
    assert rows[0].split() == ["1", "up", "ok", "5.50", "s"]
    assert rows[1].split() == ["2", "link", "node1", "down", "ok", "-"]
    assert rows[2].split()[-3:] == ["ok", "3.21", "s"]
    assert rows[3].split()[-3:] == ["FAIL", "30.00", "s"]
    assert "..." in rows[3]  # the long name is cut, not the status or the seconds
    # The failing step is shown in full, before the table.
    assert text.index("the withdrawal never reached node2") < text.index("steps (")


def test_fits_a_100_column_terminal() -> None:
    long = CheckResult(
        "rib",
        "rib node1",
        "fail",
        expected=" ".join(f"10.244.{i}.0/26" for i in range(40)),
        observed="none",
        diagnosis="d",
        node="a-node-with-a-name-that-is-much-too-long-for-the-table",
    )
    text = render_report(Report("r", "r", (*VERIFY.results, long), 1.0))
    text += render_report(SCENARIO)
    assert all(len(line) <= WIDTH for line in text.splitlines()), max(text.splitlines(), key=len)
    assert text.isascii()
    assert "10.244.39.0/26" in text  # wrapped, not cut


def test_multiline_evidence_is_indented() -> None:
    result = CheckResult(
        "fib", "fib n1", "fail", expected="route a\nroute b", observed="route a", node="n1"
    )
    lines = _lines(render_report(Report("r", "r", (result,), 0.5)))
    assert lines[2].split() == ["expected:", "route", "a"]
    assert lines[3].startswith(" " * 8) and lines[3].strip() == "route b"
    assert lines[5].split() == ["diagnosis:", "-"]
