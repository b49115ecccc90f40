#!/usr/bin/env bash
# The whole test suite: set up, then lint (ruff), types (mypy --strict), and pytest over unit,
# conformance and (as root) integration tests.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
echo "== ruff"
.venv/bin/ruff check meshemu tests bench scripts
.venv/bin/ruff format --check meshemu tests bench scripts
echo "== mypy --strict"
.venv/bin/mypy meshemu bench
echo "== pytest"
exec .venv/bin/python -m pytest -ra "$@"
