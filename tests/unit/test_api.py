"""The Python API (`meshemu.Lab`) and the pytest plugin, without root or namespaces.

Labs here are state folders written the way `up` writes them, with no namespace or process:
`attach`, `status`, `down` and the plugin's report work on them as on a running lab, and what
needs a kernel (`exec` into a pod) says the namespace is gone. `Lab.up` itself is exercised up
to preflight (bad input, not root: nothing may be created); the integration test
tests/integration/test_api_fixture.py brings real labs up through the fixture.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import meshemu
from meshemu import api
from meshemu.api import Lab
from meshemu.errors import ConfigError, DataplaneError, EnvironmentProblem, LabError, UsageError
from meshemu.model.load import load_topology
from meshemu.model.plan import build_plan
from meshemu.state import LabState, LabSummary

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[2]
MESH = ROOT / "topologies" / "mesh.yaml"
EXAMPLE = ROOT / "examples" / "test_my_cluster.py"
DOC = ROOT / "docs" / "python-api.md"
# The plugin under its module name; `no:meshemu` keeps the entry point (same module) from
# registering it a second time where meshemu is installed with it.
BAD_TOPOLOGY = (
    "name: bad\nsubnets:\n  lan: {ipv4: 10.0.0.0/24}\nnodes:\n  node1: {subnet: nowhere}\n"
    "pools:\n  p: {cidr: 10.244.0.0/16}\n"
)
PLUGIN = (
    *("-p", "no:meshemu", "-p", "meshemu.pytest_plugin", "-p", "no:cacheprovider"),
    *("-p", "no:hypothesispytest"),  # a second per run, and no test here uses it
)


@pytest.fixture
def state_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "state"
    root.mkdir()
    monkeypatch.setenv("MESHEMU_STATE_DIR", str(root))
    return root


def written_lab(name: str = "fake", topology: Path = MESH) -> LabState:
    """A lab's state folder as `up` writes it (summary, plan, topology), nothing running."""
    topo = load_topology(topology, name=name)
    plan = build_plan(topo)
    state = LabState(plan.name)
    state.create()
    state.write_summary(LabSummary(plan.name, str(topology), "up"))
    state.write_plan(plan)
    state.write_topology(topo, plan)
    return state


def owned(state: LabState, keep: bool = False) -> Lab:
    """A lab as `Lab.up` hands it over (owned by this process), over a written state."""
    return Lab(state, state.plan(), owned=True, keep=keep)


def not_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)


# -- import cost ------------------------------------------------------------------------------


def _modules_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print('\\n'.join(sys.modules))"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    return set(done.stdout.split())


@pytest.mark.parametrize("statement", ["import meshemu", "import meshemu.pytest_plugin"])
def test_importing_meshemu_or_its_plugin_loads_no_lab_code(statement: str) -> None:
    """The CLI and every pytest run of a user with meshemu installed pay for these imports."""
    loaded = _modules_after(statement)
    heavy = {"meshemu.api", "meshemu.lab", "pyroute2", "pydantic", "scapy", "yaml"} & loaded
    assert not heavy, heavy


def test_lab_is_imported_on_first_use() -> None:
    loaded = _modules_after("from meshemu import Lab; assert Lab.__module__ == 'meshemu.api'")
    assert "meshemu.api" in loaded
    assert meshemu.Lab is Lab
    with pytest.raises(AttributeError, match="no attribute 'Lba'"):
        _ = meshemu.Lba


# -- Lab.up stops before creating anything ----------------------------------------------------


def test_up_of_a_bad_topology_is_a_config_error_and_creates_nothing(
    state_root: Path, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD_TOPOLOGY)
    with pytest.raises(ConfigError) as caught:
        Lab.up(bad)
    assert any("nowhere" in str(p) for p in caught.value.problems)
    with pytest.raises(ConfigError):
        Lab.up(MESH, name="Not_A_Name")
    assert list(state_root.iterdir()) == []


def test_up_without_root_says_so_and_creates_nothing(
    state_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    not_root(monkeypatch)
    reason = Lab.unavailable()
    assert reason is not None and "root" in reason
    with pytest.raises(EnvironmentProblem, match="needs root"):
        Lab.up(MESH, name="apiunit")
    assert list(state_root.iterdir()) == []
    assert signal.getsignal(signal.SIGTERM) != api._interrupts._handler  # put back


# -- an attached lab -------------------------------------------------------------------------


def test_attach_reads_the_running_labs_plan_and_leaves_it_up(state_root: Path) -> None:
    state = written_lab()
    with Lab.attach() as lab:  # the only lab up
        assert lab.name == "fake" and lab.is_up
        assert lab.plan == build_plan(load_topology(MESH, name="fake"))
        assert lab.state_dir == state.dir
        status = lab.status()
        assert [n.name for n in status.nodes] == ["node1", "node2", "node3", "node4"]
        assert "speaker dead" in lab.text()  # nothing runs in a written state
        by_name, by_address = lab.session("node1", "node2"), lab.session("node1", "10.20.0.3")
        assert by_name is not None and by_name.peer_ip == "10.20.0.2"
        assert by_address is not None and by_address.peer_node == "node3"
        assert by_name.state != "established"
        assert lab.session("node1", "node1") is None
        with pytest.raises(UsageError, match="no node 'node9'"):
            lab.session("node9", "node1")
    assert state.exists  # not ours: still up
    assert Lab.attach("fake").down().existed
    assert not state.dir.exists()


def test_attach_of_an_unknown_or_bad_name(state_root: Path) -> None:
    with pytest.raises(UsageError, match="no lab is up"):
        Lab.attach()
    written_lab()
    with pytest.raises(UsageError, match=r"no lab named 'other' is up \(labs up: fake\)"):
        Lab.attach("other")
    with pytest.raises(ConfigError, match="not a DNS label"):
        Lab.attach("../etc")


def test_exec_refuses_unknown_targets_and_commands_given_as_text(state_root: Path) -> None:
    lab = Lab.attach(written_lab().name)
    with pytest.raises(UsageError, match=r"no node 'node9' \(nodes: node1, node2"):
        lab.exec("node9", ["true"])
    with pytest.raises(UsageError, match=r"no pod 'pod7' \(pods: pod1, pod2\)"):
        lab.exec("node1/pod7", ["true"])
    with pytest.raises(UsageError, match="list of arguments"):
        lab.exec("node1/pod1", "ip route")
    with pytest.raises(UsageError, match="list of arguments"):
        lab.exec("node1/pod1", [])
    with pytest.raises(DataplaneError, match=r"meshemu\.fake\.node1\.pod1 of node1/pod1 is gone"):
        lab.exec("node1/pod1", ["true"])


def test_a_lab_brought_down_refuses_to_be_used(state_root: Path) -> None:
    lab = Lab.attach(written_lab().name)
    first = lab.down()
    assert lab.down() is first  # again: nothing more to do
    assert not lab.is_up and lab.plan.name == "fake"  # the plan it ran stays readable
    uses = (lab.verify, lab.status, lab.wait_converged, lambda: lab.link_down("node1"))
    for use in uses:
        with pytest.raises(LabError, match="lab fake is not up"):
            use()


# -- an owned lab always goes down ------------------------------------------------------------


class Boom(Exception):
    pass


@pytest.mark.parametrize("error", [Boom, KeyboardInterrupt])
def test_an_owned_lab_goes_down_when_its_block_raises(state_root: Path, error: type) -> None:
    state = written_lab()
    with pytest.raises(error), owned(state):
        raise error()
    assert not state.dir.exists()


def test_sigterm_in_an_owned_labs_block_brings_it_down(state_root: Path) -> None:
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        pytest.skip("SIGTERM has a handler in this test run: the API leaves it alone")
    state = written_lab()
    with pytest.raises(KeyboardInterrupt), owned(state) as lab:
        assert signal.getsignal(signal.SIGTERM) == api._interrupts._handler
        os.kill(os.getpid(), signal.SIGTERM)
        signal.sigtimedwait([], 0.5)  # the handler runs at the next bytecode
    assert not state.dir.exists() and not lab.is_up
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the last lab put it back


def test_kept_and_forgotten_owned_labs(state_root: Path) -> None:
    kept, forgotten = written_lab("kept"), written_lab("forgotten")
    with owned(kept, keep=True):
        pass
    assert kept.exists  # keep=True: left for `meshemu down`
    owned(forgotten)  # no `with`, no down(): the interpreter's exit removes it
    api._owned_labs.down_all()
    assert not forgotten.dir.exists() and kept.exists


# -- the pytest plugin ------------------------------------------------------------------------


class FakeUp:
    """`Lab.up` for the plugin's tests: a written state (no namespaces) handed over as owned,
    and each call recorded."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.refusal: Exception | None = None

    def __call__(self, topology: Path, **kwargs: Any) -> Lab:
        self.calls.append({"topology": Path(topology), **kwargs})
        if self.refusal is not None:
            raise self.refusal
        state = written_lab(kwargs.get("name") or "fake", Path(topology))
        return owned(state)


@pytest.fixture
def fake_up(state_root: Path, monkeypatch: pytest.MonkeyPatch) -> FakeUp:
    fake = FakeUp()
    monkeypatch.setattr(Lab, "up", fake)
    monkeypatch.setattr(Lab, "unavailable", staticmethod(lambda: None))
    return fake


def test_a_failed_tests_report_shows_its_lab_and_the_lab_goes_down(
    pytester: pytest.Pytester, fake_up: FakeUp, state_root: Path
) -> None:
    pytester.makepyfile(
        test_lab=f"""
        import pytest
        pytestmark = pytest.mark.meshemu_topology({str(MESH)!r}, name="shown")

        def test_fails(meshemu_lab):
            assert meshemu_lab.name == "shown" and meshemu_lab.is_up
            assert False, "on purpose"

        def test_passes(meshemu_lab):
            assert meshemu_lab.is_up
        """
    )
    result = pytester.runpytest_inprocess(*PLUGIN)
    result.assert_outcomes(failed=1, passed=1)
    out = result.stdout.str()
    assert out.count("meshemu lab shown") == 1  # a section for the failed test only
    result.stdout.fnmatch_lines(["*- meshemu lab shown -*", "lab shown (up); IPIP: none*"])
    assert len(fake_up.calls) == 2  # function scope: a lab per test
    assert list(state_root.iterdir()) == []  # both brought down


def test_module_scope_shares_one_lab_and_a_function_scoped_test_gets_its_own(
    pytester: pytest.Pytester, fake_up: FakeUp, state_root: Path
) -> None:
    pytester.makepyfile(
        test_shared=f"""
        import pytest
        pytestmark = pytest.mark.meshemu_topology({str(MESH)!r}, scope="module")
        seen = []

        def test_one(meshemu_lab):
            seen.append(meshemu_lab)

        def test_two(meshemu_lab):
            seen.append(meshemu_lab)
            assert seen[0] is seen[1]

        @pytest.mark.meshemu_topology({str(MESH)!r})
        def test_own(meshemu_lab):
            assert not seen[0].is_up  # the shared lab of the same name went down first
            assert meshemu_lab is not seen[0]
        """
    )
    pytester.runpytest_inprocess(*PLUGIN).assert_outcomes(passed=3)
    assert len(fake_up.calls) == 2
    assert list(state_root.iterdir()) == []


def test_a_shared_lab_that_cannot_come_up_is_tried_once_per_module(
    pytester: pytest.Pytester, fake_up: FakeUp
) -> None:
    fake_up.refusal = api.NotConverged("fake", [], 5.0)
    pytester.makepyfile(
        test_shared=f"""
        import pytest
        pytestmark = pytest.mark.meshemu_topology({str(MESH)!r}, scope="module")
        def test_one(meshemu_lab): pass
        def test_two(meshemu_lab): pass
        """
    )
    # -rN: no short summary, whose lines pytest cuts to the terminal's width, so the
    # count below does not depend on the terminal CI happens to have.
    result = pytester.runpytest_inprocess(*PLUGIN, "-rN")
    result.assert_outcomes(errors=2)
    assert result.stdout.str().count("lab fake did not converge in 5.0s") == 2
    assert len(fake_up.calls) == 1


def test_topologies_from_rootdir_test_folder_and_indirect_parameters(
    pytester: pytest.Pytester, fake_up: FakeUp
) -> None:
    (pytester.path / "topologies").mkdir()
    (pytester.path / "topologies" / "mesh.yaml").write_text(MESH.read_text())
    beside = pytester.mkpydir("sub")
    (beside / "own.yaml").write_text(MESH.read_text())
    (beside / "test_paths.py").write_text(
        "import pytest\n"
        "@pytest.mark.meshemu_topology('topologies/mesh.yaml', pods=1, timeout=5)\n"
        "def test_rootdir(meshemu_lab): pass\n"
        "@pytest.mark.meshemu_topology('own.yaml')\n"
        "def test_beside(meshemu_lab): pass\n"
        "@pytest.mark.parametrize('meshemu_lab', ['own.yaml', {'path': 'own.yaml',"
        " 'name': 'second'}], indirect=True)\n"
        "def test_indirect(meshemu_lab): pass\n"
        "def test_factory(meshemu_lab_factory):\n"
        "    a = meshemu_lab_factory('own.yaml', name='a')\n"
        "    b = meshemu_lab_factory('own.yaml', name='b')\n"
        "    assert a.is_up and b.is_up\n"
    )
    pytester.runpytest_inprocess(*PLUGIN).assert_outcomes(passed=5)
    got = [(c["topology"].relative_to(pytester.path), c.get("name")) for c in fake_up.calls]
    own = Path("sub/own.yaml")
    assert got == [
        (Path("topologies/mesh.yaml"), None),
        (own, None),
        (own, None),
        (own, "second"),
        (own, "a"),
        (own, "b"),
    ]
    assert fake_up.calls[0]["pods"] == 1 and fake_up.calls[0]["timeout"] == 5


def test_a_wrongly_used_fixture_is_an_error_that_says_what_to_do(
    pytester: pytest.Pytester, fake_up: FakeUp
) -> None:
    pytester.makepyfile(
        test_wrong="""
        import pytest

        def test_no_marker(meshemu_lab): pass

        @pytest.mark.meshemu_topology("x.yaml", scope="session")
        def test_bad_scope(meshemu_lab): pass

        @pytest.mark.meshemu_topology("x.yaml", nodes=3)
        def test_unknown_argument(meshemu_lab): pass
        """
    )
    result = pytester.runpytest_inprocess(*PLUGIN)
    result.assert_outcomes(errors=3)
    out = result.stdout.str()
    assert "test_no_marker: meshemu_lab needs a topology: mark the test" in out
    assert "scope must be one of ('function', 'module'), not 'session'" in out
    assert "unknown arguments ['nodes']" in out
    assert fake_up.calls == []


def test_a_bad_topology_fails_its_test_with_the_problem(pytester: pytest.Pytester) -> None:
    if os.geteuid() != 0:
        pytest.skip("the plugin skips before reading the topology without root")
    pytester.makefile(".yaml", broken=BAD_TOPOLOGY)
    pytester.makepyfile(
        test_broken="""
        import pytest
        @pytest.mark.meshemu_topology("broken.yaml")
        def test_it(meshemu_lab): pass
        """
    )
    result = pytester.runpytest_inprocess(*PLUGIN)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*meshemu lab from *broken.yaml: *unknown subnet 'nowhere'*"])
    assert "Traceback" not in result.stdout.str()


def test_without_root_tests_are_skipped_or_failed_under_must_run(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, state_root: Path
) -> None:
    not_root(monkeypatch)
    pytester.makepyfile(
        test_lab=f"""
        import pytest
        @pytest.mark.meshemu_topology({str(MESH)!r})
        def test_it(meshemu_lab): pass
        def test_no_lab(): pass
        """
    )
    pytester.makepyfile(
        test_shared=f"""
        import pytest
        pytestmark = pytest.mark.meshemu_topology({str(MESH)!r}, scope="module")
        def test_one(meshemu_lab): pass
        def test_two(meshemu_lab): pass
        """
    )
    result = pytester.runpytest_inprocess(*PLUGIN, "-rs")
    result.assert_outcomes(skipped=3, passed=1)
    result.stdout.fnmatch_lines(["SKIPPED*meshemu lab cannot run here: meshemu labs need root*"])
    strict = pytester.runpytest_inprocess(*PLUGIN, "--meshemu-must-run")
    strict.assert_outcomes(failed=0, errors=3, passed=1)
    strict.stdout.fnmatch_lines(["*cannot run here (--meshemu-must-run): meshemu labs need root*"])
    assert list(state_root.iterdir()) == []


def test_the_example_collects_and_skips_without_root(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, state_root: Path
) -> None:
    """examples/test_my_cluster.py is what users copy: it must keep importing and collecting,
    with its marker declared (--strict-markers)."""
    pytester.path.joinpath("test_my_cluster.py").write_text(EXAMPLE.read_text())
    pytester.path.joinpath("my-cluster.yaml").write_text(
        EXAMPLE.with_name("my-cluster.yaml").read_text()
    )
    collected = pytester.runpytest_inprocess(*PLUGIN, "--strict-markers", "--collect-only", "-q")
    collected.stdout.fnmatch_lines(["test_my_cluster.py::test_*"] * 4 + ["4 tests collected*"])
    not_root(monkeypatch)
    pytester.runpytest_inprocess(*PLUGIN, "--strict-markers").assert_outcomes(skipped=4)
    topo = load_topology(EXAMPLE.with_name("my-cluster.yaml"))
    assert {"node1", "node2", "node3"} <= {n.name for n in build_plan(topo).nodes}


def test_the_documented_example_is_the_shipped_one() -> None:
    """docs/python-api.md shows examples/test_my_cluster.py in full: the copy a user reads is
    the file the test above runs."""
    doc = DOC.read_text()
    section = doc[doc.index("## Example: test your cluster in your repository") :]
    shown = section.split("```python\n", 1)[1].split("```", 1)[0]
    assert shown == EXAMPLE.read_text()
