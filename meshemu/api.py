"""The Python API: `Lab`, a running lab as an object, for scripts and test suites.

Owns nothing the CLI does not already do: it strings together the same layers (`model.load` and
`model.plan` to plan, `lab` to bring up, break and bring down, `verify` to judge, `report` to
render) behind one typed object, and owns the one promise the CLI gets from its process: a lab
this process brought up goes down again, when its `with` block ends (exception, Ctrl-C and
SIGTERM included), on `lab.down()`, or at the latest when the interpreter exits. It returns the
layers' own result types (`Report`, `LabStatus`, `RouteRow`, `FibRoute`, `UpResult`,
`DownResult`) and raises meshemu's exception tree (`meshemu.errors`); it prints nothing
(progress goes to the `meshemu` logger unless a callable is given).

`import meshemu` stays cheap: `meshemu.Lab` imports this module on first use.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType

from meshemu.dataplane.netlink import enter_for_good, netns_exists, read_fib
from meshemu.errors import DataplaneError, LabError, UsageError
from meshemu.lab import DownResult, LabStatus, UpResult, converge, down, lab_status, live, up
from meshemu.lab.running import netns_of, node_of, resolve_lab
from meshemu.lab.status import SessionStatus
from meshemu.model.load import load_topology
from meshemu.model.plan import LabPlan, build_plan
from meshemu.model.routes import FibRoute
from meshemu.report.lab_text import render_observed_matrix, render_status
from meshemu.report.terminal import render_report
from meshemu.state import LabState
from meshemu.verify.fib import FibDiff
from meshemu.verify.observation import Observation
from meshemu.verify.observe import node_state
from meshemu.verify.results import Report
from meshemu.verify.routes import RouteRow, route_rows
from meshemu.verify.run import verify_lab

__all__ = ["Convergence", "Lab", "NotConverged", "Progress"]

Progress = Callable[[str], None]
log = logging.getLogger("meshemu")


class NotConverged(LabError):
    """`Lab.up` timed out before every FIB equalled the plan (the lab was brought down)."""

    def __init__(self, name: str, diffs: Sequence[FibDiff], seconds: float) -> None:
        self.name, self.diffs, self.seconds = name, tuple(diffs), seconds
        lines = [line for d in self.diffs for line in d.describe()]
        if len(lines) > 20:
            lines = [*lines[:20], f"... {len(lines) - 20} more"]
        super().__init__(
            f"lab {name} did not converge in {seconds:.1f}s; routes that differ from the "
            "plan:\n  " + "\n  ".join(lines)
        )


@dataclass(frozen=True)
class Convergence:
    """What `Lab.wait_converged` saw: `converged` once every FIB equals the plan."""

    converged: bool
    seconds: float
    diffs: tuple[FibDiff, ...]

    def text(self) -> str:
        if self.converged:
            return f"converged in {self.seconds:.2f}s"
        lines = [line for d in self.diffs for line in d.describe()]
        return f"not converged after {self.seconds:.2f}s: " + "; ".join(lines)


class Lab:
    """A running lab. Get one with `Lab.up(topology)` (brings one up, owned by this process)
    or `Lab.attach(name)` (one already running, never brought down unless asked).

    >>> with Lab.up("topologies/mesh.yaml", name="demo") as lab:   # doctest: +SKIP
    ...     assert lab.verify().ok
    """

    def __init__(
        self,
        state: LabState,
        plan: LabPlan,
        *,
        owned: bool,
        keep: bool = False,
        up_result: UpResult | None = None,
        progress: Progress | None = None,
    ) -> None:
        self._state = state
        self._plan = plan
        self._owned = owned
        self._keep = keep
        self._progress: Progress = progress or log.info
        self._last: tuple[Report, Observation] | None = None
        self._down: DownResult | None = None
        #: How `up` went (phase times, IPIP implementation); None for an attached lab.
        self.up_result = up_result
        if self._guarded:
            _owned_labs.add(self)
            _interrupts.acquire()

    # -- getting a lab ------------------------------------------------------------------------
    @classmethod
    def up(
        cls,
        topology: str | os.PathLike[str],
        *,
        name: str | None = None,
        pods: int | None = None,
        timeout: float | None = None,
        require_converged: bool = True,
        keep: bool = False,
        progress: Progress | None = None,
    ) -> Lab:
        """Bring up the lab of `topology` (native YAML or Calico bundle) and wait until every
        kernel FIB equals the plan.

        `name` overrides the lab name (at most 12 characters), `pods` the pods per node,
        `timeout` the seconds to wait for convergence (default 30 + 0.5 per node). When the
        lab does not converge in time it is brought down and `NotConverged` raised, unless
        `require_converged=False` (then `lab.up_result.diffs` says what differs). `keep=True`
        leaves the lab up when the `with` block ends (`meshemu down NAME` removes it).
        Raises `ConfigError` (bad input), `LabError` (a lab of that name is up),
        `EnvironmentProblem` (not root, missing kernel feature or binary; `Lab.unavailable()`
        says it without trying).
        """
        path = Path(topology)
        topo = load_topology(path, name=name, pods_per_node=pods)
        plan = build_plan(topo)
        with _interrupts:  # `up` removes what it built on KeyboardInterrupt: SIGTERM too
            result = up(plan, topo, path, progress or log.info, timeout=timeout)
            lab = cls(
                LabState(plan.name),
                plan,
                owned=True,
                keep=keep,
                up_result=result,
                progress=progress,
            )
        if require_converged and not result.converged:
            lab.down()
            raise NotConverged(plan.name, result.diffs, result.seconds.get("total", 0.0))
        return lab

    @classmethod
    def attach(cls, name: str | None = None, *, progress: Progress | None = None) -> Lab:
        """The running lab called `name` (default: the only lab up). Leaving its `with` block
        leaves it running; `lab.down()` removes it. `UsageError` when no such lab is up."""
        state = resolve_lab(name)
        return cls(state, state.plan(), owned=False, progress=progress)

    @staticmethod
    def unavailable() -> str | None:
        """Why this machine cannot run a lab (not root, no network namespaces), or None.

        A quick check for skipping tests; `Lab.up` still checks the lab's own needs (IP-in-IP,
        VXLAN, BIRD) and raises `EnvironmentProblem` for those."""
        return _unavailable()

    # -- what it is -------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self._state.name

    @property
    def state_dir(self) -> Path:
        """The lab's state folder (logs, agent states, rendered configurations)."""
        return self._state.dir

    @property
    def plan(self) -> LabPlan:
        """The plan the lab runs: nodes, pods, addresses, sessions, expected routes. Re-read
        from the state folder while the lab is up (a live change replaces it)."""
        if self._down is None and self._state.exists:
            self._plan = self._state.plan()
        return self._plan

    @property
    def is_up(self) -> bool:
        return self._down is None and self._state.exists

    @property
    def last_report(self) -> Report | None:
        """The report of the latest `verify()` of this object, if any."""
        return self._last[0] if self._last else None

    # -- looking at it ----------------------------------------------------------------------
    def verify(self, *, dataplane: bool = True) -> Report:
        """Check the running lab against its plan: sessions, RIBs, FIBs and (unless
        `dataplane=False`) real packets between every pair of pods. A failed check is a
        result (`report.ok` False, `report.failures()`), not an exception."""
        state = self._running()
        self._last = verify_lab(state, self.plan, dataplane=dataplane)
        return self._last[0]

    def status(self) -> LabStatus:
        """Sessions per node, like `calicoctl node status`, and which processes run."""
        return lab_status(self._running())

    def session(self, node: str, peer: str) -> SessionStatus | None:
        """`node`'s BGP session with `peer` (a node's or router's name, or an address) as
        `status()` shows it (`.state`: established, idle, connect, ...), or None when the
        node has no such session."""
        status = next((n for n in self.status().nodes if n.name == node), None)
        if status is None:
            node_of(self.plan, node)  # raises UsageError naming the lab's nodes
            return None
        return next((s for s in status.sessions if peer in (s.peer_node, s.peer_ip)), None)

    def routes(self, node: str) -> tuple[RouteRow, ...]:
        """A node's BGP best paths beside its kernel routes and the plan's expectation."""
        state = self._running()
        plan = self.plan
        target = node_of(plan, node)
        return tuple(route_rows(plan, target, node_state(state, target), read_fib(target.netns)))

    def kernel_routes(self, target: str) -> tuple[FibRoute, ...]:
        """The main routing table of `NODE`, `NODE/POD` or `ROUTER`, as the kernel has it."""
        self._running()
        return tuple(read_fib(netns_of(self.plan, target)))

    def exec(
        self,
        target: str,
        command: Sequence[str],
        *,
        timeout: float | None = 60.0,
        check: bool = False,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run `command` (a list: `["ip", "route", "get", "10.244.0.5"]`) in the network
        namespace of `NODE`, `NODE/POD` or `ROUTER`; its exit code and output (text).

        `check=True` raises `subprocess.CalledProcessError` on a non-zero exit, `timeout`
        `subprocess.TimeoutExpired`, as `subprocess.run` does. An unknown target or command is
        a `UsageError`."""
        if isinstance(command, str) or not command:
            raise UsageError(
                "give the command as a non-empty list of arguments, e.g. ['ip', 'route']"
            )
        self._running()
        netns = netns_of(self.plan, target)
        if not netns_exists(netns):
            raise DataplaneError(f"namespace {netns} of {target} is gone (`repair` rebuilds it)")
        try:
            return subprocess.run(
                list(command),
                capture_output=True,
                text=True,
                timeout=timeout,
                check=check,
                input=input,
                # The child enters the namespace between fork and exec: this process stays put.
                preexec_fn=lambda: enter_for_good(netns),
            )
        except FileNotFoundError as err:
            raise UsageError(f"command not found: {command[0]}") from err

    def wait_converged(self, timeout: float = 30.0) -> Convergence:
        """Wait up to `timeout` seconds until every FIB equals the plan and every agent reports
        its expected sessions (after `link_up`, `start_speaker`...)."""
        started = time.monotonic()
        diffs = converge.wait_converged(self.plan, self._running(), timeout)
        return Convergence(not diffs, round(time.monotonic() - started, 3), tuple(diffs))

    def text(self) -> str:
        """What a person debugging a failure wants: the status and the latest verify report
        (with its observed path matrix), as `meshemu status` and `verify` print them."""
        parts = [render_status(self.status())]
        if self._last is not None:
            report, observation = self._last
            parts.append(render_report(report))
            if observation.matrix:
                parts.append(render_observed_matrix(self.plan, observation.matrix))
        return "\n\n".join(parts)

    # -- faults ---------------------------------------------------------------------------------
    def link_down(self, node: str) -> None:
        """Take `node`'s uplink down (its sessions drop when the peers' hold timers expire)."""
        self._running()
        live.set_link(self.plan, node, up=False)
        self._progress(f"lab {self.name}: {node}'s uplink down")

    def link_up(self, node: str) -> None:
        """Bring `node`'s uplink up again, with the default routes the kernel dropped."""
        self._running()
        live.set_link(self.plan, node, up=True)
        self._progress(f"lab {self.name}: {node}'s uplink up")

    def stop_speaker(self, node: str, *, graceful: bool = True) -> bool:
        """Stop `node`'s BGP speaker (`graceful`: as a restarting BIRD, peers keep its routes
        for the restart time). False when it was not running."""
        return live.stop_speaker(self._running(), node, graceful)

    def start_speaker(self, node: str) -> None:
        """Start `node`'s stopped speaker (`LabError` when it runs)."""
        live.start_speaker(self._running(), self.plan, node)

    def restart_speaker(self, node: str) -> None:
        self.stop_speaker(node)
        self.start_speaker(node)

    def kill_agent(self, node: str) -> None:
        """End `node`'s agent as a crash would (a new one takes over)."""
        live.kill_agent(self._running(), node)

    # -- ending it ----------------------------------------------------------------------------
    def down(self) -> DownResult:
        """Stop every process and remove every namespace the lab's state folder lists; safe to
        call again (later calls return the first result)."""
        if self._down is None:
            self._down = down(self.name, self._progress)
            if self._guarded:
                _owned_labs.discard(self)
                _interrupts.release()
        return self._down

    def __enter__(self) -> Lab:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """An owned lab goes down (whatever ended the block); an attached or kept one stays."""
        if self._guarded:
            self.down()

    def __repr__(self) -> str:
        state = "down" if self._down else ("attached" if not self._owned else "owned")
        return f"<Lab {self.name} ({state}, {len(self._plan.nodes)} nodes)>"

    @property
    def _guarded(self) -> bool:
        """Brought up here and not kept: this process must bring it down."""
        return self._owned and not self._keep

    def _running(self) -> LabState:
        if self._down is not None or not self._state.exists:
            raise LabError(f"lab {self.name} is not up")
        return self._state


# -- what this process owns -------------------------------------------------------------------


class _Owned:
    """The labs this process brought up and has not brought down: `atexit` removes them, so
    a script that forgets `with` or `down()` leaves nothing behind."""

    def __init__(self) -> None:
        self._labs: dict[int, Lab] = {}
        self._lock = threading.Lock()

    def add(self, lab: Lab) -> None:
        with self._lock:
            self._labs[id(lab)] = lab

    def discard(self, lab: Lab) -> None:
        with self._lock:
            self._labs.pop(id(lab), None)

    def down_all(self) -> None:
        with self._lock:
            labs = list(self._labs.values())
        for lab in labs:
            try:
                lab.down()
            except Exception as err:  # at exit: report, and go on with the others
                print(f"meshemu: could not bring lab {lab.name} down: {err}", file=sys.stderr)


_owned_labs = _Owned()
atexit.register(_owned_labs.down_all)


class _SigtermInterrupts:
    """While a lab of this process is up, SIGTERM (a CI runner cancelling the job, `kill`)
    raises KeyboardInterrupt in the main thread, as in the CLI, so `with` blocks, `finally`
    clauses and `atexit` bring the labs down; the default action would kill the process and
    leave namespaces and speakers behind. Counted: the default comes back after the last lab.
    Only when SIGTERM had its default action (an application's own handler is left alone) and
    only from the main thread (Python installs handlers nowhere else)."""

    def __init__(self) -> None:
        self._count = 0
        self._main_pid = 0
        self._installed = False
        self._lock = threading.Lock()

    def _handler(self, _signum: int, _frame: FrameType | None) -> None:
        # Libraries fork helpers (pyroute2, to open sockets in other namespaces) and stop them
        # with SIGTERM: a forked child inherits this handler and must simply end.
        if os.getpid() != self._main_pid:
            os._exit(143)
        raise KeyboardInterrupt

    def acquire(self) -> None:
        with self._lock:
            self._count += 1
            if self._installed or threading.current_thread() is not threading.main_thread():
                return
            if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
                self._main_pid = os.getpid()
                signal.signal(signal.SIGTERM, self._handler)
                self._installed = True

    def release(self) -> None:
        with self._lock:
            self._count = max(0, self._count - 1)
            if self._count or not self._installed:
                return
            if threading.current_thread() is threading.main_thread():
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                self._installed = False

    def __enter__(self) -> None:
        self.acquire()

    def __exit__(self, *_exc: object) -> None:
        self.release()


_interrupts = _SigtermInterrupts()


def _unavailable() -> str | None:
    if os.geteuid() != 0:
        return (
            "meshemu labs need root (network namespaces, veths, routes): run the tests as "
            "root or with sudo"
        )
    # Root inside a container without CAP_SYS_ADMIN cannot create a network namespace: ask a
    # short-lived child to try (unshare(CLONE_NEWNET) only affects that child).
    probe = (
        "import ctypes, os; "
        "os._exit(0 if ctypes.CDLL(None, use_errno=True).unshare(0x40000000) == 0 else 1)"
    )
    try:
        done = subprocess.run([sys.executable, "-c", probe], timeout=20, capture_output=True)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"cannot check for network namespaces: {err}"
    if done.returncode != 0:
        return (
            "this process cannot create network namespaces (unshare(CLONE_NEWNET) refused: a "
            "container without CAP_SYS_ADMIN?)"
        )
    return None
