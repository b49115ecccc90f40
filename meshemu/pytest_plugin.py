"""meshemu's pytest plugin: the `meshemu_lab` fixture, a lab per test or per module.

Owns bringing labs up for tests and down after them, whatever the outcome, and putting each
lab's state (`meshemu status`, and the latest `verify` report with its path matrix) into the
report of a test that fails. It builds on `meshemu.api.Lab` and does nothing a user could not
do with it; docs/python-api.md shows the fixture in use.

- `@pytest.mark.meshemu_topology(path, name=..., pods=..., timeout=..., scope="function")` on a
  test, a class or a module (`pytestmark`) says which lab `meshemu_lab` brings up; with
  `scope="module"` consecutive tests of the module with the same arguments share one lab.
  `@pytest.mark.parametrize("meshemu_lab", [path, ...], indirect=True)` runs a test on each
  topology. `meshemu_lab_factory(path, ...)` brings up labs inside a test.
- Relative paths are relative to pytest's rootdir, else to the test file's folder.
- A machine that cannot run labs (not root, no network namespaces, a kernel feature or binary
  missing) skips the test with the reason, or fails it under `--meshemu-must-run` (CI).

pytest loads this plugin for every run in an environment where meshemu is installed, so it
imports nothing heavy at start: `meshemu.api` (netlink, pydantic...) only when a test asks for
a lab.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, cast

import pytest

from meshemu.errors import EnvironmentProblem, MeshemuError

if TYPE_CHECKING:
    from meshemu.api import Lab

MARKER = "meshemu_topology"
SCOPES = ("function", "module")
_LABS = pytest.StashKey[list["Lab"]]()
_UNAVAILABLE = pytest.StashKey[str | None]()


@dataclass(frozen=True)
class LabSpec:
    """Which lab a test wants: what `Lab.up` is given."""

    topology: Path
    name: str | None = None
    pods: int | None = None
    timeout: float | None = None
    scope: str = "function"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("meshemu", "meshemu labs (the meshemu_lab fixture)")
    group.addoption(
        "--meshemu-must-run",
        action="store_true",
        help="fail, instead of skipping, tests whose meshemu lab this machine cannot run "
        "(not root, no network namespaces): for CI, where a skip would hide it",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(path, name=None, pods=None, timeout=None, scope='function'): the topology "
        "(native YAML or Calico bundle) the meshemu_lab fixture brings up; scope='module' "
        "shares one lab among the module's tests",
    )


# -- which lab ------------------------------------------------------------------------------


def _usage(message: str) -> NoReturn:
    """A wrongly used marker or fixture: an error of that test, with no traceback."""
    pytest.fail(message, pytrace=False)


def _resolve(request: pytest.FixtureRequest, topology: object) -> Path:
    if not isinstance(topology, str | Path):
        _usage(f"a meshemu topology is a path, not {topology!r}")
    path = Path(topology)
    if path.is_absolute():
        return path
    under_root = request.config.rootpath / path
    if under_root.exists():
        return under_root
    beside = request.path.parent / path
    return beside if beside.exists() else under_root  # not found: Lab.up says so at its path


def _spec(request: pytest.FixtureRequest) -> LabSpec:
    """From the indirect parameter (a path, or a dict of the marker's arguments), else from the
    closest `meshemu_topology` marker."""
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    param = getattr(request, "param", None)
    if param is not None:
        args, kwargs = ((), dict(param)) if isinstance(param, dict) else ((param,), {})
    else:
        marker = request.node.get_closest_marker(MARKER)
        if marker is None:
            _usage(
                f"{request.node.nodeid}: meshemu_lab needs a topology: mark the test (or its "
                f'module) with @pytest.mark.{MARKER}("topologies/lab.yaml")'
            )
        args, kwargs = marker.args, dict(marker.kwargs)
    if args:
        kwargs["path"] = args[0]
    if "path" not in kwargs or len(args) > 1:
        _usage(f"{MARKER} takes one path and keyword arguments: {param or args}")
    unknown = set(kwargs) - {"path", "name", "pods", "timeout", "scope"}
    if unknown:
        _usage(f"{MARKER}: unknown arguments {sorted(unknown)}")
    scope = kwargs.get("scope", "function")
    if scope not in SCOPES:
        _usage(f"{MARKER}: scope must be one of {SCOPES}, not {scope!r}")
    return LabSpec(
        _resolve(request, kwargs["path"]),
        kwargs.get("name"),
        kwargs.get("pods"),
        kwargs.get("timeout"),
        scope,
    )


# -- bringing labs up -----------------------------------------------------------------------


def _cannot_run(config: pytest.Config, reason: str) -> NoReturn:
    if config.getoption("meshemu_must_run"):
        pytest.fail(f"meshemu lab cannot run here (--meshemu-must-run): {reason}", pytrace=False)
    pytest.skip(f"meshemu lab cannot run here: {reason}")


def _bring_up(request: pytest.FixtureRequest, spec: LabSpec) -> Lab:
    from meshemu.api import Lab

    config = request.config
    if _UNAVAILABLE not in config.stash:  # root and namespaces: asked once per run
        config.stash[_UNAVAILABLE] = Lab.unavailable()
    reason = config.stash[_UNAVAILABLE]
    if reason is not None:
        _cannot_run(config, reason)
    try:
        return Lab.up(spec.topology, name=spec.name, pods=spec.pods, timeout=spec.timeout)
    except MeshemuError as err:
        # What preflight finds missing (an ipip module, BIRD) is this machine's; a kernel or a
        # speaker failing on a machine that has everything (the subclasses) is a failure.
        if isinstance(err, EnvironmentProblem) and type(err) is not EnvironmentProblem:
            raise
        problem = err
    # Outside the handler: the test's report shows one message, not a chain of two.
    if type(problem) is EnvironmentProblem:
        _cannot_run(config, str(problem))
    _usage(f"meshemu lab from {spec.topology}: {problem}")


def _shown_on_failure(item: pytest.Item, lab: Lab) -> None:
    labs = item.stash.setdefault(_LABS, [])
    if lab not in labs:
        labs.append(lab)


class _ModuleLab:
    """The lab shared by a module's tests: one at a time, replaced when a test of the module
    asks for another, brought down when the module's tests are done. A lab that could not come
    up (skipped, refused, not converged) is not tried again for each test: each gets the same
    outcome, as pytest does for a module fixture that raised."""

    def __init__(self) -> None:
        self.spec: LabSpec | None = None
        self.lab: Lab | None = None
        self.failed: tuple[LabSpec, BaseException] | None = None

    def get(self, request: pytest.FixtureRequest, spec: LabSpec) -> Lab:
        if self.lab is not None and (self.spec != spec or not self.lab.is_up):
            self.close()
        if self.failed is not None and self.failed[0] == spec:
            raise self.failed[1]
        if self.lab is None:
            try:
                self.lab, self.spec = _bring_up(request, spec), spec
            except (Exception, pytest.skip.Exception, pytest.fail.Exception) as err:
                self.failed = (spec, err)
                raise
        return self.lab

    def close(self) -> None:
        lab, self.lab, self.spec = self.lab, None, None
        if lab is not None:
            lab.down()


@pytest.fixture(scope="module")
def _meshemu_module_lab() -> Iterator[_ModuleLab]:
    shared = _ModuleLab()
    try:
        yield shared
    finally:
        shared.close()


@pytest.fixture
def meshemu_lab(request: pytest.FixtureRequest, _meshemu_module_lab: _ModuleLab) -> Iterator[Lab]:
    """A running lab of the topology the test's `meshemu_topology` marker (or indirect
    parameter) names, brought down after the test, or after the module with scope='module'."""
    spec = _spec(request)
    if spec.scope == "module":
        lab = _meshemu_module_lab.get(request, spec)
        _shown_on_failure(request.node, lab)
        yield lab
        return
    # One lab at a time: the module's shared lab (maybe of the same name) goes down first.
    _meshemu_module_lab.close()
    with _bring_up(request, spec) as lab:
        _shown_on_failure(request.node, lab)
        yield lab


@pytest.fixture
def meshemu_lab_factory(request: pytest.FixtureRequest) -> Iterator[Callable[..., Lab]]:
    """`meshemu_lab_factory(path, name=None, pods=None, timeout=None)` brings up a lab inside
    the test; every lab it made goes down after the test, in reverse order."""
    made: list[Lab] = []

    def make(
        topology: str | Path,
        *,
        name: str | None = None,
        pods: int | None = None,
        timeout: float | None = None,
    ) -> Lab:
        lab = _bring_up(request, LabSpec(_resolve(request, topology), name, pods, timeout))
        made.append(lab)
        _shown_on_failure(request.node, lab)
        return lab

    try:
        yield make
    finally:
        errors: list[BaseException] = []
        for lab in reversed(made):
            try:
                lab.down()
            except Exception as err:  # bring the others down too, then say what failed
                errors.append(err)
        if errors:
            raise errors[0]


# -- the report of a failed test ------------------------------------------------------------


def lab_report_text(lab: Lab) -> str:
    """The lab's status and its latest verify report, or why they cannot be read."""
    if not lab.is_up:
        return f"lab {lab.name} is down"
    try:
        return lab.text()
    except Exception as err:  # a broken lab must not hide the test's own failure
        return f"lab {lab.name}: status unavailable: {type(err).__name__}: {err}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = cast(pytest.TestReport, outcome.get_result())  # type: ignore[attr-defined]
    if report.failed and report.when in ("setup", "call"):
        for lab in item.stash.get(_LABS, []):
            report.sections.append((f"meshemu lab {lab.name}", lab_report_text(lab)))
