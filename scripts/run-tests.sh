#!/usr/bin/env bash
# Install into .venv (as run-platform.sh does) and run the whole test suite.
# Without DATABASE_URL / CELERY_BROKER_URL it uses the embedded default (SQLite, filesystem broker);
# CI points them at PostgreSQL and Redis. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/bootstrap.sh
VENV="${VENV:-.venv}"
export PLATFORM_VAR_DIR="${PLATFORM_VAR_DIR:-$PWD/var/test}"
exec "$VENV/bin/python" -m pytest "$@"
