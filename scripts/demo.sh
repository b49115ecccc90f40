#!/usr/bin/env bash
# The main job: set up, then plan and bring up the flagship lab, verify it, show it, take it down.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
topology=${1:-topologies/flagship.yaml}
exec .venv/bin/meshemu demo "$topology"
