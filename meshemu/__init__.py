"""meshemu: emulate the BGP route mesh of a Calico-networked Kubernetes cluster on one machine.

`from meshemu import Lab` is the Python API (`meshemu.api`, docs/python-api.md). It is imported
on first use, not here: the CLI starts without it, and so does pytest with meshemu's plugin.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from meshemu.api import Lab

__version__ = "0.1.0"
__all__ = ["Lab", "__version__"]


def __getattr__(name: str) -> object:
    # PEP 562: called only for names the module lacks, so `Lab` costs nothing until asked for.
    if name == "Lab":
        from meshemu.api import Lab

        return Lab
    raise AttributeError(f"module 'meshemu' has no attribute {name!r}")
