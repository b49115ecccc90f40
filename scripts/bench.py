#!/usr/bin/env python3
"""The benchmark's one command (as root, from anywhere): `.venv/bin/python scripts/bench.py`.

`--quick` runs meshes of 10 and 20 nodes and a 20-node reflector lab once (under 3 minutes);
with no option, the full set (meshes of 10, 20, 50, 100 nodes, 100 and 200 behind two
reflectors, ExaBGP and BIRD speakers, 3 repetitions). `--help` lists the options. See
docs/bench.md.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.__main__ import main

if __name__ == "__main__":
    sys.exit(main())
