"""Run a scenario: bring its lab up, apply each action, poll each expectation, time it all.

Owns the execution of a validated scenario against a real lab: every step becomes a
`CheckResult` (category `step`) with what was expected, what was observed, and how long it took
to hold (the convergence time after a fault). The first failing step stops the run (later steps
are reported as skipped: they would test a lab in an unknown state), and the lab is always
brought down at the end, pass or fail. A router that fails (`stop-router`) loses its links and
then its BIRD (SIGKILL): it forwards nothing and says nothing, so its peers learn it only when
their hold timers expire, as with a switch that loses power.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from meshemu.controlplane.bird_tools import bird_binary
from meshemu.dataplane.netlink import read_fib
from meshemu.errors import LabError, SpeakerError
from meshemu.lab import down, live, routers, up
from meshemu.lab.converge import checked_routers, fib_diffs
from meshemu.lab.status import lab_status
from meshemu.model.plan import LabPlan, build_plan
from meshemu.model.policy_eval import expected_matrix
from meshemu.model.routes import FibRoute
from meshemu.model.topology import Topology
from meshemu.scenario.evolve import apply_step_to_topology, evolve
from meshemu.scenario.expectations import router_next_hop, router_peer_address
from meshemu.scenario.model import Expectation, Scenario, Step, output_path
from meshemu.state import LabState
from meshemu.verify.checks import check_dataplane
from meshemu.verify.observation import Cell, expected_path, observed_path
from meshemu.verify.observe import current_node_state, observe_dataplane, take_snapshot
from meshemu.verify.policy import with_policy
from meshemu.verify.policy_probe import port_matrix
from meshemu.verify.probe import capture, in_child, ping_all
from meshemu.verify.results import FAIL, PASS, SKIP, CheckResult, Report
from meshemu.verify.services import check_services
from meshemu.verify.services_probe import probe_services
from meshemu.verify.snapshot import diff_snapshots, read_snapshot, write_snapshot

Progress = Callable[[str], None]
StepHook = Callable[[str, int, int], None]  # (what, done, of how many): a progress callback
POLL = 0.2


@dataclass
class Outcome:
    ok: bool
    observed: str
    diagnosis: str = ""


class Runner:
    def __init__(
        self,
        scenario: Scenario,
        topo: Topology,
        topo_path: Path,
        base: Path,
        progress: Progress,
        step: StepHook | None = None,
    ) -> None:
        self.scenario = scenario
        self.step = step
        self.topo = topo
        self.topo_path = topo_path
        self.base = base  # the scenario file's folder: snapshot paths are relative to it
        self.progress = progress
        self.plan: LabPlan = build_plan(topo)
        self.lab = topo.name
        self.state = LabState(topo.name)

    # -- expectations ---------------------------------------------------------------------
    def _evaluate(self, expect: Expectation) -> Outcome:
        kind = expect.kind
        if kind == "converged":
            return self._converged()
        if kind == "route":
            return self._route(expect)
        if kind == "session":
            return self._session(expect)
        if kind == "reachable":
            return self._reachable(expect)
        if kind == "matrix":
            return self._matrix(expect)
        return self._snapshot(expect)

    def _converged(self) -> Outcome:
        diffs = fib_diffs(self.plan)
        bad = [line for d in diffs for line in d.describe()]
        status = lab_status(self.state)
        down_sessions = [
            f"{n.name} -> {s.peer_ip}"
            for n in status.nodes
            for s in n.sessions
            if s.peer_ip in self.plan.node(n.name).expected_up and s.state != "established"
        ]
        # The routers' sessions as their BIRD reports them: a router's FIB can equal the plan
        # while one of two redundant sessions is still down. (A user's own BIRD configuration
        # is reported, not judged: `checked_routers` leaves those out, as for their FIBs.)
        expected = {r.name: r.bgp.expected_up for r in checked_routers(self.plan) if r.bgp}
        down_sessions += [
            f"{r.name} -> {s.peer_ip}"
            for r in status.routers
            for s in r.sessions
            if s.peer_ip in expected.get(r.name, ()) and s.state != "established"
        ]
        if not bad and not down_sessions:
            return Outcome(
                True,
                f"{len(self.plan.nodes) + len(expected)} FIBs equal the plan, the sessions it "
                "expects up are up",
            )
        parts = bad[:4] + [f"session {s} not established" for s in down_sessions[:4]]
        return Outcome(
            False,
            "; ".join(parts),
            f"{len(bad)} route difference(s), {len(down_sessions)} session(s) down",
        )

    def _prefixes(self, route: Any) -> list[str]:
        if route.prefix is not None:
            return [str(ipaddress.ip_network(route.prefix))]
        family = 4 if route.family == "ipv4" else 6
        owner = self.plan.node(route.to)
        return [b.cidr for b in owner.blocks if ipaddress.ip_network(b.cidr).version == family]

    def _route(self, expect: Expectation) -> Outcome:
        route = expect.route
        assert route is not None
        node = self.plan.node(route.node)
        observed: dict[str, FibRoute] = {}
        # Felix's and BIRD's route to one prefix may both be there (they differ in metric):
        # the one asked for by `source`, else the one the kernel uses (the lowest metric).
        for seen in read_fib(node.netns):
            if route.source is not None and seen.source != route.source:
                continue
            kept = observed.get(seen.prefix)
            if kept is None or (seen.metric or 0) < (kept.metric or 0):
                observed[seen.prefix] = seen
        prefixes = self._prefixes(route)
        if not prefixes:
            return Outcome(
                False,
                f"{route.to} has no {route.family} block",
                f"{route.to} owns no {route.family} block in the current plan",
            )
        family = 4 if route.family == "ipv4" else 6
        via = route.via
        if via is not None and via in {n.name for n in self.plan.nodes}:
            via = self.plan.node(via).address(family)
        elif via is not None and via in {r.name for r in self.plan.routers}:
            via = router_next_hop(self.plan, route.node, via, family)
        texts = []
        ok = True
        for prefix in prefixes:
            have = observed.get(prefix)
            texts.append(have.text() if have else f"no route to {prefix}")
            if not route.present:
                ok = ok and have is None
                continue
            if have is None:
                ok = False
                continue
            if via is not None and have.via != via:
                ok = False
            if route.dev is not None and have.dev != route.dev:
                ok = False
        return Outcome(ok, "; ".join(texts), "" if ok else f"on {route.node}: " + "; ".join(texts))

    def _session(self, expect: Expectation) -> Outcome:
        session = expect.session
        assert session is not None
        family = 4 if session.family == "ipv4" else 6
        peer_ip = session.peer
        if peer_ip in {n.name for n in self.plan.nodes}:
            peer_ip = self.plan.node(peer_ip).address(family) or peer_ip
        elif peer_ip in {r.name for r in self.plan.routers}:
            peer_ip = router_peer_address(self.plan, session.node, peer_ip, family) or peer_ip
        agent = current_node_state(self.state, self.plan.node(session.node), routes=False) or {}
        speaker_alive = self.state.running(f"speaker:{session.node}")
        seen = next((s for s in agent.get("sessions", []) if s["peer_ip"] == peer_ip), None)
        state = seen["state"] if seen and speaker_alive else "down"
        ok = (state == "established") == (session.state == "established")
        info = f" ({seen['info']})" if seen and seen.get("info") else ""
        return Outcome(ok, f"{session.node} -> {peer_ip}: {state}{info}")

    def _pod(self, ref: str) -> Any:
        node, _, pod = ref.partition("/")
        return next(p for p in self.plan.node(node).pods if p.name == pod)

    def _reachable(self, expect: Expectation) -> Outcome:
        reach = expect.reachable
        assert reach is not None
        family = 4 if reach.family == "ipv4" else 6
        source, target = self._pod(reach.from_), self._pod(reach.to)
        src_ip = source.ipv4 if family == 4 else source.ipv6
        dst_ip = target.ipv4 if family == 4 else target.ipv6
        if not src_ip or not dst_ip:
            return Outcome(False, f"no {reach.family} address on both pods")
        frames: list[Any] = []
        sniffer = threading.Thread(
            target=lambda: frames.extend(capture(self.plan.fabric_netns, 1.5))
        )
        sniffer.start()
        time.sleep(0.2)
        answers = in_child(source.netns, ping_all, [dst_ip], 1.0, 2)
        sniffer.join()
        assert isinstance(answers, dict)
        reached = answers.get(dst_ip) is not None
        src_node, dst_node = self.plan.node(source.node), self.plan.node(target.node)
        cell = Cell(
            reach.from_,
            reach.to,
            family,
            src_ip,
            dst_ip,
            expected_path(self.plan, src_node, dst_node, family),
            answers.get(dst_ip),
        )
        path = observed_path(cell, frames) if reached else "none"
        ok = reached == reach.reachable and (
            reach.path is None or not reached or path == reach.path
        )
        text = f"{'reachable' if reached else 'unreachable'}" + (f" via {path}" if reached else "")
        return Outcome(ok, text)

    def _matrix(self, expect: Expectation) -> Outcome:
        assert expect.matrix is not None
        cells = observe_dataplane(self.plan, tcp=False)
        results = check_dataplane(cells)
        if self.plan.policy is not None:
            # Network policy: the plan's verdict of every probe, allowed and denied.
            expected = expected_matrix(self.plan, self.plan.policy)
            results = with_policy(expected, results, cells, port_matrix(self.plan, expected))
        if self.plan.services is not None:
            # Services: every pod to each cluster IP, the outside host to advertised addresses.
            results += check_services(self.plan, *probe_services(self.plan))
        if not expect.matrix.paths:
            results = [
                r for r in results if r.details.get("icmp") is False or r.category == "policy"
            ]
        bad = [r for r in results if r.status == FAIL]
        if not bad and self.plan.policy is not None:
            allowed = sum(1 for r in results if r.details.get("allowed") is True)
            denied = sum(1 for r in results if r.details.get("allowed") is False)
            return Outcome(
                True, f"{allowed} allowed probes got through, {denied} denied ones were dropped"
            )
        if not bad:
            return Outcome(True, f"{len(results)} pod pairs reachable by their planned paths")
        return Outcome(
            False,
            f"{len(bad)}/{len(results)} cells wrong: " + "; ".join(r.diagnosis for r in bad[:4]),
        )

    def _snapshot(self, expect: Expectation) -> Outcome:
        assert expect.snapshot is not None
        saved = read_snapshot(self.base / expect.snapshot.file)
        changes = diff_snapshots(saved, take_snapshot(self.state, self.plan))
        if not changes:
            return Outcome(True, "equal to the snapshot")
        return Outcome(
            False, f"{len(changes)} change(s): " + "; ".join(c.text() for c in changes[:4])
        )

    # -- actions ----------------------------------------------------------------------------
    def _act(self, step: Step) -> str:
        kind, arg = step.kind, step.argument()
        if kind == "up":
            if arg.pods is not None:
                self.topo, self.plan = evolve(self.topo, None, step)
            result = up(self.plan, self.topo, self.topo_path, self.progress)
            return f"up in {result.seconds.get('total', 0):.2f}s" + (
                "" if result.converged else " (not converged yet)"
            )
        if kind == "link-down":
            live.set_link(self.plan, arg.node, up=False)
            return f"{arg.node}'s uplink down"
        if kind == "link-up":
            live.set_link(self.plan, arg.node, up=True)
            return f"{arg.node}'s uplink up"
        if kind in ("stop-speaker", "stop-reflector"):
            live.stop_speaker(self.state, arg.node)
            return f"{arg.node}'s speaker stopped"
        if kind == "start-speaker":
            live.start_speaker(self.state, self.plan, arg.node)
            return f"{arg.node}'s speaker started"
        if kind == "restart-speaker":
            live.stop_speaker(self.state, arg.node)
            live.start_speaker(self.state, self.plan, arg.node)
            return f"{arg.node}'s speaker restarted"
        if kind == "stop-router":
            # Links first: the kernel closes a killed BIRD's TCP connections itself (FIN or
            # RST), which would tell every peer at once; a switch that loses power says nothing.
            live.set_router_links(self.plan, arg.router, up=False)
            killed = routers.stop_router(self.state, arg.router, graceful=False)
            return f"{arg.router} failed: links down" + (", BIRD killed" if killed else "")
        if kind == "start-router":
            live.set_router_links(self.plan, arg.router, up=True)
            started = self._start_bird(arg.router)
            return f"{arg.router} back: links up" + (", BIRD started" if started else "")
        if kind == "kill-agent":
            live.kill_agent(self.state, arg.node)
            return f"{arg.node}'s agent killed (a new one takes over)"
        if kind == "wait":
            time.sleep(float(arg))
            return f"waited {arg}s"
        if kind == "write-snapshot":
            path = output_path(self.base, arg.file)
            write_snapshot(path, take_snapshot(self.state, self.plan))
            return f"snapshot written to {path}"
        new_topo = apply_step_to_topology(self.topo, step, previous=self.plan)
        self.plan, summary = live.apply_topology(self.state, self.plan, new_topo)
        self.topo = new_topo
        return summary.text()

    def _start_bird(self, name: str, seconds: float = 20.0) -> bool:
        """Start a BGP router's BIRD again and wait for its control socket; False for a router
        that does not speak BGP. (`routers.restart_dead` would start every dead one.)"""
        router = next(r for r in self.plan.routers if r.name == name)
        if router.bgp is None:
            return False
        if routers.router_running(self.state, name):
            raise LabError(f"the BIRD of router {name} is already running")
        sock = routers.start_router(self.state, self.plan, router, bird_binary())
        deadline = time.monotonic() + seconds
        while not sock.exists():
            if not routers.router_running(self.state, name):
                log = routers.router_dir(self.state, name) / "bird.log"
                raise SpeakerError(f"BIRD of router {name} exited at start: see {log}")
            if time.monotonic() > deadline:
                raise SpeakerError(f"BIRD of router {name} did not open {sock} in time")
            time.sleep(0.02)
        return True

    def run(self) -> Report:
        started = time.monotonic()
        results: list[CheckResult] = []
        failed = False
        try:
            for index, step in enumerate(self.scenario.steps):
                label = f"step {index + 1}: {step.name or describe(step)}"
                if self.step is not None:
                    self.step(label, index, len(self.scenario.steps))
                if failed:
                    results.append(
                        CheckResult(
                            "step", label, SKIP, diagnosis="not run: an earlier step failed"
                        )
                    )
                    continue
                t0 = time.monotonic()
                if step.expect is None:
                    try:
                        observed = self._act(step)
                    except Exception as err:  # a failed action is a failed step, reported
                        results.append(
                            CheckResult(
                                "step",
                                label,
                                FAIL,
                                describe(step),
                                f"{type(err).__name__}: {err}",
                                f"the action of step {index + 1} failed",
                                seconds=_since(t0),
                            )
                        )
                        failed = True
                        continue
                    results.append(
                        CheckResult(
                            "step", label, PASS, describe(step), observed, seconds=_since(t0)
                        )
                    )
                    self.progress(f"  {label:<58} {_since(t0):6.2f}s  {observed}")
                    continue
                outcome = self._poll(step.expect)
                seconds = _since(t0)
                status = PASS if outcome.ok else FAIL
                diagnosis = (
                    ""
                    if outcome.ok
                    else (
                        f"step {index + 1} expected {describe(step)} within "
                        f"{step.expect.timeout:g}s; observed: {outcome.observed}"
                        + (f" ({outcome.diagnosis})" if outcome.diagnosis else "")
                    )
                )
                results.append(
                    CheckResult(
                        "step",
                        label,
                        status,
                        describe(step),
                        outcome.observed,
                        diagnosis,
                        seconds=seconds,
                    )
                )
                self.progress(
                    f"  {label:<58} {seconds:6.2f}s  {'held' if outcome.ok else 'FAILED'}"
                )
                failed = not outcome.ok
        finally:
            down(self.lab, self.progress)
        return Report(
            f"scenario {self.scenario.name}",
            self.lab,
            tuple(results),
            _since(started),
            {"scenario": self.scenario.name, "lab": self.lab},
        )

    def _poll(self, expect: Expectation) -> Outcome:
        deadline = time.monotonic() + expect.timeout
        while True:
            try:
                outcome = self._evaluate(expect)
            except Exception as err:  # an observation that fails is a failing observation
                outcome = Outcome(False, f"{type(err).__name__}: {err}")
            if outcome.ok or time.monotonic() >= deadline:
                return outcome
            time.sleep(POLL)


def _since(start: float) -> float:
    return round(time.monotonic() - start, 3)


def _shown(field: str, value: object) -> str:
    """A changed field's new value as a report shows it: a password is a secret, so the
    report says it changed, never what it is."""
    if value is None:
        return "back to default"
    return "(changed)" if field == "password" else str(value)


def describe(step: Step) -> str:
    """One line saying what a step does or expects."""
    kind = step.kind
    arg = step.argument()
    if kind == "expect":
        assert isinstance(arg, Expectation)
        what = getattr(arg, arg.kind)
        if arg.kind == "converged":
            return "converged (every FIB equals the plan, every session up)"
        if arg.kind == "route":
            target = what.prefix or f"{what.to}'s {what.family} block"
            detail = "".join(
                f" {k} {v}"
                for k, v in (("via", what.via), ("dev", what.dev), ("by", what.source))
                if v
            )
            presence = "present" if what.present else "absent"
            return f"route on {what.node} to {target} {presence}{detail}"
        if arg.kind == "session":
            return f"session {what.node} -> {what.peer} ({what.family}) {what.state}"
        if arg.kind == "reachable":
            path = f" via {what.path}" if what.path else ""
            return (
                f"{what.from_} -> {what.to} ({what.family}) "
                f"{'reachable' if what.reachable else 'unreachable'}{path}"
            )
        if arg.kind == "matrix":
            return "every pod reaches every pod the policies allow, and no other" + (
                " (by the planned path)" if what.paths else ""
            )
        return f"equal to snapshot {what.file}"
    if kind == "wait":
        return f"wait {arg}s"
    if kind == "set-peer":
        fields = arg.model_dump(by_alias=True, include=arg.changed())
        shown = ", ".join(f"{key} {_shown(key, value)}" for key, value in sorted(fields.items()))
        return f"set-peer {arg.peer}: {shown}"
    if kind in ("apply-policy", "remove-policy"):
        _api, what, namespace, name = arg.key()
        return f"{kind} {what} {namespace + '/' if namespace else ''}{name}"
    if kind == "set-router":
        return f"set-router {arg.router}: nodePassword " + (
            "(changed)" if arg.node_password else "removed"
        )
    if hasattr(arg, "router"):
        return f"{kind} {arg.router}"
    if getattr(arg, "name", None):
        return f"{kind} {arg.name}"
    if getattr(arg, "node", None):
        return f"{kind} {arg.node}"
    if hasattr(arg, "pool"):
        return f"{kind} {arg.pool}"
    if hasattr(arg, "peer"):
        return f"{kind} {arg.peer}"
    return kind
