"""Lab commands of the CLI (up, down, status, routes, exec); filled in by the lab issue."""

from __future__ import annotations

import argparse
from typing import Any


def add_commands(sub: Any) -> None:
    del sub
    _ = argparse
