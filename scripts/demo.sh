#!/usr/bin/env bash
# The main job: set up, then bring up the flagship lab, verify it with real packets (sessions,
# RIBs, FIBs, every pod to every pod with the path seen on the wire), show the result and take
# it down; then run the flagship scenario end to end (timed expectations, JUnit report).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
topology=${1:-topologies/flagship.yaml}
.venv/bin/meshemu demo "$topology"
mkdir -p reports
.venv/bin/meshemu run scenarios/flagship.yaml --junit reports/flagship.xml --json reports/flagship.json
