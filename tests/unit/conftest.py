"""Unit-test fixtures: `cli` runs the meshemu command line in this process, with every
command module registered (the lead registers `ecosystem_cmds` in `cli/main.py`; until then
the fixture adds it itself)."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable
from unittest import mock

import pytest

from meshemu.cli import ecosystem_cmds

_main = importlib.import_module("meshemu.cli.main")
_build = _main.build_parser


def build_parser() -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = _build()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    if "graph" not in sub.choices:
        ecosystem_cmds.add_commands(sub)
    return parser


@pytest.fixture
def cli_parser() -> argparse.ArgumentParser:
    """The whole command line's parser (every command module registered)."""
    return build_parser()


CliRun = Callable[..., tuple[int, str, str]]


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> CliRun:
    """`cli(ARGS...)`: `meshemu ARGS...` in this process; its exit code, stdout and stderr."""

    def run(*args: str) -> tuple[int, str, str]:
        with mock.patch.object(_main, "build_parser", build_parser):
            code: int = _main.main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    return run
