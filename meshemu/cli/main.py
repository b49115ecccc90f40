"""The meshemu command line: argument parsing, printing and exit codes, nothing else.

Exit codes: 0 all good; 1 a check failed; 2 bad input or usage; 3 this machine cannot run it.
Each error class of `meshemu.errors` carries its exit code; only the CLI prints or exits.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence

from meshemu.cli import (
    check_cmds,
    clab_cmds,
    ecosystem_cmds,
    insight_cmds,
    lab_cmds,
    model_cmds,
)
from meshemu.cli.common import PODS_MAX
from meshemu.errors import EXIT_BAD_INPUT, ConfigError, MeshemuError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="meshemu",
        description="Emulate the BGP route mesh of a Calico-networked Kubernetes cluster.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    model_cmds.add_commands(sub)
    lab_cmds.add_commands(sub)
    check_cmds.add_commands(sub)
    insight_cmds.add_commands(sub)
    clab_cmds.add_commands(sub)
    ecosystem_cmds.add_commands(sub)
    return parser


_MAIN_PID = 0


def _terminate(_signum: int, _frame: object) -> None:
    # SIGTERM (from `meshemu down` or a CI runner) takes the same clean-up path as Ctrl-C, in
    # this process only: libraries fork helpers (pyroute2 does, to open sockets in other
    # namespaces) and stop them with SIGTERM; those must just end.
    if os.getpid() != _MAIN_PID:
        os._exit(143)
    raise KeyboardInterrupt


def report_error(err: MeshemuError) -> int:
    if isinstance(err, ConfigError):
        count = len(err.problems)
        print(f"{count} problem{'s' if count != 1 else ''} found:", file=sys.stderr)
        for problem in err.problems:
            print(f"  {problem}", file=sys.stderr)
    else:
        print(f"error: {err}", file=sys.stderr)
    return err.exit_code


def main(argv: Sequence[str] | None = None) -> int:
    global _MAIN_PID
    _MAIN_PID = os.getpid()
    signal.signal(signal.SIGTERM, _terminate)
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "pods", None) is not None and not 0 <= args.pods <= PODS_MAX:
        parser.error(f"--pods must be between 0 and {PODS_MAX}")
    try:
        code: int = args.func(args)
        return code
    except MeshemuError as err:
        return report_error(err)
    except RecursionError:
        print("error: the input is nested too deeply", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`meshemu plan ... | head`): not an error of ours. Point stdout
        # at /dev/null so the interpreter's final flush does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE


if __name__ == "__main__":
    sys.exit(main())
