#!/usr/bin/env bash
# The whole test suite: set up, then lint (ruff), types (mypy --strict), and pytest over unit,
# conformance and (as root) integration tests.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
echo "== ruff"
.venv/bin/ruff check meshemu tests
.venv/bin/ruff format --check meshemu tests
echo "== mypy --strict"
.venv/bin/mypy meshemu
echo "== pytest"
exec .venv/bin/python -m pytest -ra "$@"
