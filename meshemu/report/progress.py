"""Progress bars for long work (`up` of a large lab, `verify`'s probes, scenarios), with rich.

Owns the one progress display of the command line. The layers that do the work (lab, verify,
scenario) do not import rich: they take a plain callback `step(what, done, total)` (total 0:
not countable, a spinner) and call it as they go; `ProgressBar.step` is such a callback.
The bar is drawn on stderr and only when both stdout and stderr are terminals (not in CI, not
in a pipe, never into `--json` output: a command printing JSON passes `enabled=False`);
otherwise `step` does nothing. It is transient: once the work is done the bar is gone, and
lines printed meanwhile (the phases of `up`, the steps of a scenario) stay above it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

Step = Callable[[str, int, int], None]  # what is being done, how much is done, of how much


def interactive() -> bool:
    """Whether a person watches: stdout and stderr are terminals, and no CI says otherwise."""
    if os.environ.get("CI") or os.environ.get("TERM") == "dumb":
        return False
    return sys.stdout.isatty() and sys.stderr.isatty()


class ProgressBar:
    """`with ProgressBar() as bar: work(step=bar.step)`: one bar, updated by `step`."""

    def __init__(self, enabled: bool | None = None) -> None:
        self.enabled = interactive() if enabled is None else enabled
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    def __enter__(self) -> ProgressBar:
        if self.enabled:
            self._progress = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            self._progress.start()
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _traceback: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def lines(self, say: Callable[[str], None], what: str) -> Callable[[str], None]:
        """A `progress(line)` callback for work that reports its phases as lines (`up`,
        `repair`): `say` prints each line, and each counts as one phase done on the bar."""
        done = 0

        def hear(line: str) -> None:
            nonlocal done
            say(line)
            done += 1
            last = (line.split() or [""])[0]
            self.step(f"{what}: {done} phases done, the last {last}", done, 0)

        return hear

    def step(self, what: str, done: int, total: int) -> None:
        """Show `what`, `done` of `total` (a spinner without a count when total is 0)."""
        if self._progress is None:
            return
        if self._task is None:
            self._task = self._progress.add_task(what, total=None)
        self._progress.update(
            self._task, description=what, completed=done, total=total if total > 0 else None
        )
