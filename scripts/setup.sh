#!/usr/bin/env bash
# Prepares a fresh Debian machine with Python 3.11: Debian packages, then a virtualenv (.venv) with Tollway.
#   scripts/setup.sh        what the gateway needs
#   scripts/setup.sh dev    plus what the tests need (etcd, PostgreSQL, Chromium, systemd-analyze, the dev extras)
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

need_apt=()
PY=$(command -v python3.11 || command -v python3 || true)
if [ -z "$PY" ]; then need_apt+=(python3); fi
if [ -n "$PY" ] && ! "$PY" -c 'import ensurepip, venv' >/dev/null 2>&1; then need_apt+=(python3-venv); fi
if [ "${1:-}" = dev ]; then
  command -v etcd >/dev/null 2>&1 || need_apt+=(etcd-server)
  command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)   # the dashboard's browser tests
  command -v systemd-analyze >/dev/null 2>&1 || need_apt+=(systemd)   # verifies the units of deploy/systemd
  # The shared usage store's tests start a real PostgreSQL (as an unprivileged user when run as root).
  compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null || need_apt+=(postgresql)
  command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)   # the TLS tests' certificates
fi
# The request path compiled by mypyc (dataplane/compiled.py) needs a C compiler and the Python headers.
command -v gcc >/dev/null 2>&1 || need_apt+=(gcc)
if [ -n "$PY" ] && ! "$PY" -c 'import os, sysconfig; assert os.path.exists(sysconfig.get_paths()["include"] + "/Python.h")' \
    >/dev/null 2>&1; then need_apt+=(python3-dev); fi
if [ ${#need_apt[@]} -gt 0 ]; then
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${need_apt[@]}" >/dev/null
  PY=$(command -v python3.11 || command -v python3)
fi

[ -x .venv/bin/python ] || "$PY" -m venv .venv
if [ "${1:-}" = dev ]; then
  .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]'
else
  .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[compile]'
fi
# Compile the request path (a minute; nothing when the build matches the sources). The tests run the compiled
# modules, so for them it must succeed; the gateway alone runs from source without it, slower.
# (TOLLWAY_SETUP_COMPILE=0: scripts/test.sh builds it itself, next to the linters.)
if [ "${TOLLWAY_SETUP_COMPILE:-1}" = 1 ]; then
  if [ "${1:-}" = dev ]; then
    .venv/bin/python -m dataplane.compile
  else
    .venv/bin/python -m dataplane.compile || echo "setup: the compiled request path was not built; running from source" >&2
  fi
fi
