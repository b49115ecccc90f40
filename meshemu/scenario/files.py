"""The files a scenario names, as paths: its topology, the snapshots it compares and the files
it writes.

Owns checking each before anything runs: the topology is a regular file (resolved through
symlinks, relative to the scenario's folder); a snapshot to compare exists, is a regular file
of bounded size and is a snapshot (`verify.snapshot.read_snapshot` reads it); a file the
scenario writes resolves inside the scenario's folder and is no directory or special file.
Reading the scenario file itself is `scenario.reading`.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from meshemu.errors import ConfigError, Problem
from meshemu.scenario.messages import short
from meshemu.verify.snapshot import read_snapshot

# `read_snapshot` reads the whole file: it is checked to be a regular file of at most this size
# first (a snapshot of a large lab is far bigger than a scenario or topology file).
MAX_SNAPSHOT_BYTES = 64 * 1024 * 1024

# -- what a path is -------------------------------------------------------------------------

_FILE_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def not_regular(mode: int) -> str | None:
    """What a file is when it is not a regular file (None when it is one)."""
    if stat.S_ISREG(mode):
        return None
    return next((text for test, text in _FILE_KINDS if test(mode)), "not a regular file")


def _os_problem(where: str, err: OSError, hint: str) -> Problem:
    if err.errno == errno.ELOOP:
        return Problem(where, "is a symlink loop", "point the link at a file")
    if err.errno == errno.ENOENT:
        return Problem(where, "no such file", hint)
    return Problem(where, f"cannot read: {err.strerror or err}", hint)


def _loop(where: str, path: Path) -> Problem:
    return Problem(where, f"{short(path)} is a symlink loop", "point the link at a file")


def too_big(where: str, limit: int) -> Problem:
    return Problem(
        where, f"is larger than {limit // 1024} KiB", "is this the right file? it is too big"
    )


# -- the topology ---------------------------------------------------------------------------


def topology_path(topology: str, folder: Path) -> Path:
    """The topology file the scenario names, resolved (relative to the scenario's folder) and
    checked to be a regular file; a ConfigError at `topology` for anything else. (`load_topology`
    then reads it with `model.load.read_input`; this says what is wrong at `topology`.)"""
    hint = f"the path is relative to the scenario's folder {folder}"
    if not topology.strip():
        raise ConfigError([Problem("topology", "names no file", hint)])
    given = folder / topology
    try:
        resolved = given.resolve(strict=True)
        mode = resolved.stat().st_mode
    except FileNotFoundError:
        raise ConfigError([Problem("topology", f"no such file {short(given)}", hint)]) from None
    except RuntimeError:  # Python 3.11's Path.resolve on a symlink loop
        raise ConfigError([_loop("topology", given)]) from None
    except OSError as err:
        problem = _os_problem("topology", err, hint)
        raise ConfigError(
            [Problem("topology", f"{short(given)} {problem.message}", problem.hint)]
        ) from None
    except ValueError:
        raise ConfigError(
            [Problem("topology", f"{short(given)} is not a file name", hint)]
        ) from None
    kind = not_regular(mode)
    if kind is not None:
        raise ConfigError([Problem("topology", f"{short(given)} is {kind}, not a file", hint)])
    return resolved


# -- snapshots a scenario compares ----------------------------------------------------------


def _open_regular(path: Path, limit: int, hint: str = "") -> int:
    """A descriptor open on `path`, a regular file of at most `limit` bytes; a located
    ConfigError otherwise. The caller closes it.

    Not `model.load.read_input`: a snapshot is JSON that `verify.snapshot.read_snapshot` reads
    itself (this only makes sure it may), and a large lab's snapshot is bigger than the 16 MiB
    `read_input` allows.

    Opened non-blocking and checked with fstat before anything reads it: opening a FIFO for
    reading blocks until a writer comes, and reading /dev/zero or a sparse file never ends.
    """
    where = str(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as err:
        raise ConfigError([_os_problem(where, err, hint)]) from None
    except ValueError:  # a NUL byte in the name
        raise ConfigError([Problem(where, "is not a file name", hint)]) from None
    info = os.fstat(fd)
    kind = not_regular(info.st_mode)
    problem = None
    if kind is not None:
        problem = Problem(where, f"is {kind}, not a regular file", hint or "name a file")
    elif info.st_size > limit:
        problem = too_big(where, limit)
    if problem is not None:
        os.close(fd)
        raise ConfigError([problem])
    return fd


def snapshot_problems(where: str, file: str, folder: Path, written: set[Path]) -> list[Problem]:
    """A snapshot to compare with exists (or an earlier step writes it) and is a snapshot."""
    hint = "write it with `meshemu snapshot LAB -o FILE` or a write-snapshot step before this"
    try:
        target = (folder.resolve(strict=True) / file).resolve()
    except (OSError, RuntimeError, ValueError):
        return [Problem(where, f"{short(file)!r} cannot be resolved (a symlink loop?)", hint)]
    if target in written:
        return []
    try:
        os.close(_open_regular(target, MAX_SNAPSHOT_BYTES, hint))
    except ConfigError as err:
        problem = err.problems[0]
        message = problem.message
        if message == "no such file":
            message = f"no such file {short(target)}"
        return [Problem(where, message, problem.hint or hint)]
    try:
        read_snapshot(target)
    except ConfigError as err:
        first = err.problems[0]
        return [
            Problem(where, f"{short(target.name)} is not a snapshot: {short(first.message)}", hint)
        ]
    return []


# -- files a scenario writes ----------------------------------------------------------------


def output_target(folder: Path, file: str, where: str) -> Path | Problem:
    """Where a scenario writes `file`: a path inside its folder, resolved through every
    symlink, whose parent folder exists and which is not a directory or other special file."""
    hint = "write a path relative to the scenario's folder, inside it"
    if not file:
        return Problem(where, "names no file", hint)
    if Path(file).is_absolute():
        return Problem(where, f"{short(file)} is an absolute path", hint)
    try:
        base = folder.resolve(strict=True)
        target = (base / file).resolve()
    except (OSError, RuntimeError, ValueError):
        return Problem(where, f"{short(file)!r} cannot be resolved (a symlink loop?)", hint)
    if target == base:
        return Problem(
            where, f"{short(file)!r} is the scenario's folder itself", "name a file in it"
        )
    if not target.is_relative_to(base):
        return Problem(where, f"{short(file)!r} resolves to {short(target)}, outside {base}", hint)
    if not target.parent.is_dir():
        return Problem(where, f"folder {short(target.parent)} does not exist", "create it first")
    try:
        kind = not_regular(target.lstat().st_mode)
    except FileNotFoundError:
        kind = None
    except OSError as err:
        return Problem(where, f"{short(file)!r}: {err.strerror}", hint)
    if kind is not None:
        return Problem(where, f"{short(file)!r} is {kind}", "name a file")
    return target


def output_path(folder: Path, file: str) -> Path:
    """The resolved path a scenario in `folder` writes `file` to (the runner writes there);
    ConfigError if it would be outside the folder or cannot be written."""
    target = output_target(folder, file, "file")
    if isinstance(target, Problem):
        raise ConfigError([target])
    return target
