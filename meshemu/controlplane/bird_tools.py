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
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
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
