"""The routers' BIRD 2 daemons: their configuration, starting and stopping them, and their state.

Owns, per router that speaks BGP: its folder in the state folder (`routers/<name>/`: the
rendered `bird.conf` and `bird.log`), its control socket (`bird-<index>.ctl`, a short name in
the state folder: a Unix socket path holds at most 107 bytes), starting `bird -f` inside the
router's namespace (foreground, so the recorded pid is BIRD's own; recorded as
`bird:<router>` the moment it exists, so `down` stops exactly it), checking a user's own
configuration with `bird -p` before anything is created. (Reading a running BIRD is
`verify.observe`'s.)
BIRD's kernel protocol installs what it learns into the router's FIB itself.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

from meshemu import process
from meshemu.controlplane.bird_tools import bird_binary, check_config
from meshemu.controlplane.birdc import MAX_SOCKET_PATH, BirdControl
from meshemu.errors import ConfigError, EnvironmentProblem, Problem, SpeakerError
from meshemu.lab.supervise import StartedBird, spawn, wait_bird_sockets
from meshemu.model.bird_router import render_router_config
from meshemu.model.plan import LabPlan, RouterPlan
from meshemu.state import LabState, write_text_atomic

ROLE = "bird"


def bgp_routers(plan: LabPlan) -> list[tuple[int, RouterPlan]]:
    """The routers that speak BGP, with their index among all routers (for the socket name)."""
    return [(i, r) for i, r in enumerate(plan.routers) if r.bgp is not None]


def process_name(router: str) -> str:
    return f"{ROLE}:{router}"


def router_dir(state: LabState, router: str) -> Path:
    path = state.dir / "routers" / router
    path.mkdir(parents=True, exist_ok=True)
    return path


def control_socket(state: LabState, plan: LabPlan, router: str) -> Path:
    return state.bird_socket(next(i for i, r in bgp_routers(plan) if r.name == router))


def check_user_configs(plan: LabPlan) -> None:
    """A user's own router configuration must exist and be one BIRD 2 accepts: ConfigError
    (exit 2) with BIRD's own file:line:col message otherwise, before anything is created."""
    problems: list[Problem] = []
    for _, router in bgp_routers(plan):
        assert router.bgp is not None
        if router.bgp.config_file is None:
            continue
        where = f"routers.{router.name}.bgp.config"
        path = Path(router.bgp.config_file)
        if not path.is_file():
            problems.append(
                Problem(where, f"{path} is not a file", "give the path of your BIRD 2 config")
            )
            continue
        problems += check_config(path, where)
    if problems:
        raise ConfigError(problems)


def check_socket_room(state: LabState, plan: LabPlan) -> None:
    """Every router's control socket path fits a Unix socket address."""
    for index, _router in bgp_routers(plan):
        path = state.bird_socket(index)
        if len(bytes(path)) > MAX_SOCKET_PATH:
            raise EnvironmentProblem(
                f"the BIRD control socket {path} would be {len(bytes(path))} bytes long; a Unix "
                f"socket path holds at most {MAX_SOCKET_PATH} (hint: set MESHEMU_STATE_DIR to a "
                "shorter folder; the default is /run/meshemu)"
            )


def write_config(state: LabState, plan: LabPlan, router: RouterPlan) -> Path:
    """The configuration BIRD starts with: the user's own file, or the rendered one."""
    assert router.bgp is not None
    if router.bgp.config_file is not None:
        return Path(router.bgp.config_file)
    path = router_dir(state, router.name) / "bird.conf"
    try:
        text = render_router_config(router, plan.hold_time)
    except ValueError as err:  # a value the planner let through and BIRD refuses: a bug
        raise SpeakerError(
            f"router {router.name}: cannot render its BIRD configuration: {err}"
        ) from err
    write_text_atomic(path, text)
    found = check_config(path, f"routers.{router.name}")
    if found:  # meshemu's own rendering: a bug, not the user's input
        raise SpeakerError(f"BIRD refuses the configuration rendered for {router.name}: {found[0]}")
    return path


def start_routers(state: LabState, plan: LabPlan, seconds: float = 20.0) -> int:
    """Start BIRD in every BGP router's namespace and wait for its control socket."""
    routers = bgp_routers(plan)
    if not routers:
        return 0
    bird = bird_binary()
    check_socket_room(state, plan)
    sockets = [(router, start_router(state, plan, router, bird)) for _, router in routers]
    _wait_sockets(state, sockets, seconds)
    return len(sockets)


def restart_dead(state: LabState, plan: LabPlan, seconds: float = 20.0) -> list[str]:
    """Start again the BIRD of every BGP router whose BIRD is not running; their names."""
    dead = [r for _, r in bgp_routers(plan) if not router_running(state, r.name)]
    if not dead:
        return []
    bird = bird_binary()
    sockets = [(router, start_router(state, plan, router, bird)) for router in dead]
    _wait_sockets(state, sockets, seconds)
    return [r.name for r in dead]


def _wait_sockets(state: LabState, sockets: list[tuple[RouterPlan, Path]], seconds: float) -> None:
    started = [
        StartedBird(
            f"router {router.name}",
            process_name(router.name),
            sock,
            router_dir(state, router.name) / "bird.log",
        )
        for router, sock in sockets
    ]
    wait_bird_sockets(state, started, time.monotonic() + seconds)


def start_router(state: LabState, plan: LabPlan, router: RouterPlan, bird: str) -> Path:
    """Start one router's BIRD (after a previous one of it stopped); its control socket."""
    config = write_config(state, plan, router)
    sock = control_socket(state, plan, router.name)
    sock.unlink(missing_ok=True)
    folder = router_dir(state, router.name)
    spawn(
        state,
        process_name(router.name),
        ROLE,
        [bird, "-f", "-c", str(config), "-s", str(sock), "-P", str(folder / "bird.pid")],
        folder / "bird.log",
        netns=router.netns,
    )
    return sock


def reconfigure(state: LabState, plan: LabPlan) -> list[str]:
    """After a live change: each running router whose rendered configuration changed gets
    it, and BIRD reloads it (`configure`: only the protocols that changed restart, as on a
    real router); the names of those routers."""
    changed = []
    for _, router in bgp_routers(plan):
        assert router.bgp is not None
        if router.bgp.config_file is not None or not router_running(state, router.name):
            continue
        path = router_dir(state, router.name) / "bird.conf"
        before = path.read_text() if path.is_file() else None
        if render_router_config(router, plan.hold_time) == before:
            continue
        write_config(state, plan, router)
        try:
            BirdControl(control_socket(state, plan, router.name)).command("configure", timeout=10)
        except SpeakerError:
            # BIRD still runs the old configuration: the file says so too, so that the next
            # change tries again instead of finding nothing changed.
            if before is not None:
                write_text_atomic(path, before)
            raise
        changed.append(router.name)
    return changed


def stop_router(state: LabState, router: str, graceful: bool = True) -> bool:
    """Stop a router's BIRD (SIGTERM: a clean shutdown that tells its peers; SIGKILL: it just
    vanishes, its sessions time out). False when it was not running."""
    resource = state.process(process_name(router))
    if resource is None or resource.pid is None or not state.running(resource.name):
        return False
    pid = resource.pid
    process.send(pid, signal.SIGTERM if graceful else signal.SIGKILL)
    if process.wait_gone({pid}, 5):
        process.send(pid, signal.SIGKILL)
        process.wait_gone({pid}, 2)
    return True


def router_running(state: LabState, router: str) -> bool:
    return state.running(process_name(router))
