"""BIRD 2's programs on this machine: finding `bird` and `birdc`, and checking a configuration.

Owns locating BIRD 2's binaries (`bird_binary`, `birdc_binary`: an `EnvironmentProblem`, exit 3,
with the setup command when BIRD 2 is missing) and `check_config`, which runs `bird -p -c FILE`
(parse and check, start nothing) and turns BIRD's complaint into a `Problem` at the user's
configuration key. Starting, stopping and querying the router daemons is not this module's job.

BIRD facts relied on (docs/research/fabric/bird-router.md sections 1 and 2, checked with Debian's
bird2 2.0.12): `bird --version` prints `BIRD version 2.0.12` on stderr and exits 0; `bird -p -c
FILE` exits 0 silently when the file is valid, else exits 1 with one line
`bird: <file>:<line>:<col> <message>` on stderr (`sysdep/unix/main.c` v2.0.12 `read_config`
lines 231-234, `die("%s:%d:%d %s", ...)`: the first error stops the parse; an error in an
included file names that file), or `bird: Unable to open configuration file ...` when it
cannot read it.
`birdc` has no version option, so the `birdc` used is the one next to the BIRD 2 `bird`.

Also `bird1_binaries`: BIRD 1.6's `bird` and `bird6`, which run a node's configuration as
Calico's confd renders it (BIRD 1.x syntax; BIRD 2 refuses it). Debian's `bird` package (1.6.8)
conflicts with bird2, so `scripts/setup.sh` unpacks it into the virtual environment
(`<venv>/opt/bird1/usr/sbin`) without installing it; `$MESHEMU_BIRD1` names another one (the
`bird` binary, or its folder). Its daemons need only libc (research notes, section 1, fact 3).
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from meshemu.errors import EnvironmentProblem, Problem

# Where Debian installs BIRD; a non-root PATH often lacks /usr/sbin.
FALLBACK_DIRS: tuple[str, ...] = ("/usr/sbin",)
SETUP_HINT = "run ./scripts/setup.sh (it installs Debian's bird2)"
_VERSION = re.compile(r"BIRD version (\d+)\.(\d+)(?:\.(\d+))?")
_ERROR = re.compile(r"^bird: (?P<file>.+?):(?P<line>\d+):(?P<col>\d+) (?P<message>.*)$")
CHECK_TIMEOUT = 60.0  # seconds; a parse takes milliseconds, this only bounds a hung binary


def _candidates(name: str) -> list[str]:
    found = [p] if (p := shutil.which(name)) else []
    for folder in FALLBACK_DIRS:
        path = os.path.join(folder, name)
        if path not in found and os.path.isfile(path) and os.access(path, os.X_OK):
            found.append(path)
    return found


def _major_version(path: str) -> int | None:
    """BIRD's major version from `bird --version` (printed on stderr), None if it says none."""
    try:
        done = subprocess.run(
            [path, "--version"], capture_output=True, text=True, timeout=CHECK_TIMEOUT
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = _VERSION.search(done.stderr + done.stdout)
    return int(match.group(1)) if match else None


@functools.cache
def bird_binary() -> str:
    """The path of BIRD 2's `bird` (cached); EnvironmentProblem when there is none."""
    others = []
    for path in _candidates("bird"):
        major = _major_version(path)
        if major == 2:
            return path
        others.append(f"{path} (version {major if major is not None else 'unknown'})")
    found = f"; found only {', '.join(others)}" if others else ""
    raise EnvironmentProblem(
        f"BIRD 2 is missing: no `bird` of version 2.x on PATH or in "
        f"{', '.join(FALLBACK_DIRS)}{found} (hint: {SETUP_HINT})"
    )


@functools.cache
def birdc_binary() -> str:
    """The path of BIRD 2's `birdc`, the one beside `bird_binary()` (cached)."""
    path = Path(bird_binary()).with_name("birdc")
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise EnvironmentProblem(
            f"BIRD 2 is missing: {path.parent} has `bird` but no `birdc` (hint: {SETUP_HINT})"
        )
    return str(path)


def check_config(path: Path, where: str) -> list[Problem]:
    """Problems BIRD 2 finds in the configuration at `path`, located at `where` (the user's
    configuration key); empty when the file is valid. Starts nothing (`bird -p`)."""
    try:
        done = subprocess.run(
            [bird_binary(), "-p", "-c", str(path)],
            capture_output=True,
            text=True,
            errors="replace",
            timeout=CHECK_TIMEOUT,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EnvironmentProblem(f"cannot run BIRD to check {path}: {exc}") from exc
    if done.returncode == 0:
        return []
    lines = [line for line in (done.stderr + done.stdout).splitlines() if line.strip()]
    for line in lines:
        if match := _ERROR.match(line):
            return [
                Problem(
                    where,
                    f"BIRD rejects the configuration: {match['file']}:{match['line']}:"
                    f"{match['col']}: {match['message']}",
                    "fix that line (BIRD 2 syntax); `bird -p -c FILE` repeats the check",
                )
            ]
    said = lines[-1].removeprefix("bird: ") if lines else f"exit status {done.returncode}"
    return [
        Problem(
            where,
            f"BIRD rejects the configuration {path}: {said}",
            "check that the file exists, is readable and is a BIRD 2 configuration",
        )
    ]


BIRD1_ENV = "MESHEMU_BIRD1"
# Where scripts/setup.sh unpacks Debian's bird 1.6 package (`dpkg-deb -x`), inside the venv.
BIRD1_UNPACKED = Path("opt") / "bird1" / "usr" / "sbin"
BIRD1_SETUP_HINT = (
    "run ./scripts/setup.sh (it unpacks Debian's bird 1.6 package into .venv/opt/bird1 without "
    f"installing it), or set {BIRD1_ENV} to a BIRD 1.6 `bird` binary with `bird6` beside it"
)


@dataclass(frozen=True)
class Bird1:
    """BIRD 1.6's two daemons: `bird` (IPv4, bird.cfg) and `bird6` (IPv6, bird6.cfg)."""

    bird: str
    bird6: str

    def daemon(self, family: int) -> str:
        return self.bird if family == 4 else self.bird6


def _bird1_folders() -> list[Path]:
    given = os.environ.get(BIRD1_ENV)
    if given:
        path = Path(given)
        # The binary itself (as the conformance test takes it), its folder, or the root the
        # package was unpacked into.
        return [path.parent] if path.is_file() else [path, path / "usr" / "sbin"]
    return [Path(sys.prefix) / BIRD1_UNPACKED]


@functools.cache
def bird1_binaries() -> Bird1:
    """BIRD 1.6's `bird` and `bird6` (cached); EnvironmentProblem (exit 3) with the setup
    command when there are none, or they are not version 1."""
    seen = []
    for folder in _bird1_folders():
        bird, bird6 = folder / "bird", folder / "bird6"
        if not all(p.is_file() and os.access(p, os.X_OK) for p in (bird, bird6)):
            seen.append(f"{folder} (no bird and bird6)")
            continue
        majors = {_major_version(str(p)) for p in (bird, bird6)}
        if majors == {1}:
            return Bird1(str(bird), str(bird6))
        seen.append(f"{folder} (version {', '.join(str(m) for m in sorted(majors, key=str))})")
    raise EnvironmentProblem(
        f"BIRD 1.6 is missing, which nodes with speaker: bird run: looked in {'; '.join(seen)} "
        f"(hint: {BIRD1_SETUP_HINT})"
    )
