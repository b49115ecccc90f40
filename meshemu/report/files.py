"""Writing an output file a user named: whole or not at all.

Owns the one way pictures and starter files reach a user's path: a temporary file in the same
folder, renamed over the target once complete, removed on any failure. A path that cannot be
written (no such folder, no permission, a folder in the way) is a `UsageError` (exit 2) naming
it, never a traceback.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from meshemu.errors import UsageError


def write_whole(path: Path, write: Callable[[BinaryIO], None], mode: int = 0o644) -> None:
    """Have `write` fill a temporary file beside `path`, then rename it to `path`."""
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise UsageError(f"cannot write {path}: it is a folder")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    except OSError as err:
        raise UsageError(f"cannot write {path}: {err.strerror or err}") from None
    try:
        with os.fdopen(fd, "wb") as out:
            write(out)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except OSError as err:
        raise UsageError(f"cannot write {path}: {err.strerror or err}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
