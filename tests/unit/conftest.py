"""Unit-test fixtures: `cli` runs the meshemu command line in this process."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable

import pytest

# (the module, not the `main` function `meshemu.cli` exports under the same name)
cli_main = importlib.import_module("meshemu.cli.main")


@pytest.fixture
def cli_parser() -> argparse.ArgumentParser:
    """The whole command line's parser."""
    return cli_main.build_parser()


CliRun = Callable[..., tuple[int, str, str]]


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> CliRun:
    """`cli(ARGS...)`: `meshemu ARGS...` in this process; its exit code, stdout and stderr."""

    def run(*args: str) -> tuple[int, str, str]:
        code: int = cli_main.main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    return run
