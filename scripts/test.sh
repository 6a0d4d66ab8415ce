#!/usr/bin/env bash
# Sets up everything the tests need (etcd, Chromium, a virtualenv with the dev extras) and runs lint, types and
# tests. Works on a fresh Debian machine with Python 3.11; safe to re-run. Arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
TOLLWAY_SETUP_COMPILE=0 bash scripts/setup.sh dev

# The compiled request path (what scripts/setup.sh dev builds) is built while the linters run: both are mostly
# one core's work, and the machine has two. The tests run the compiled modules, so they wait for it.
log=$(mktemp)
.venv/bin/python -m dataplane.compile >"$log" 2>&1 &
build=$!
trap 'kill "$build" 2>/dev/null || true' EXIT   # a linter failing stops the build too
echo "== ruff"
.venv/bin/ruff check .
echo "== mypy"
.venv/bin/mypy
echo "== compile"
if ! wait "$build"; then cat "$log"; exit 1; fi
tail -n 1 "$log"; rm -f "$log"
echo "== pytest"
.venv/bin/python -m pytest "$@"
