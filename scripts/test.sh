#!/usr/bin/env bash
# Sets up everything the tests need (etcd, Chromium, a virtualenv with the dev extras) and runs lint, types and
# tests. Works on a fresh Debian machine with Python 3.11; safe to re-run. Arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh dev

echo "== ruff"
.venv/bin/ruff check .
echo "== mypy"
.venv/bin/mypy
echo "== pytest"
.venv/bin/python -m pytest "$@"
