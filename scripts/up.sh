#!/usr/bin/env bash
# Sets up Tollway (scripts/setup.sh) and runs a whole gateway on this machine: `gatectl up` (arguments go to it).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/gatectl up "$@"
