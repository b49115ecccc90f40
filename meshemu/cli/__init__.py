"""The meshemu command line (`meshemu`, `python -m meshemu.cli`): see `meshemu.cli.main`."""

from meshemu.cli.main import main

__all__ = ["main"]
