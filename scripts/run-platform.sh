#!/usr/bin/env bash
# Run the whole platform on the embedded default: SQLite, a filesystem Celery broker, media under
# var/. Installs into .venv, migrates, creates demo users (printing their logins), registers the
# bundled sandbox model and its prompt sets, starts a Celery worker (queues default and gpu) and
# serves http://127.0.0.1:${PORT:-8000}. Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/bootstrap.sh
VENV="${VENV:-.venv}"
PORT="${PORT:-8000}"
export PLATFORM_VAR_DIR="${PLATFORM_VAR_DIR:-$PWD/var}"
mkdir -p "$PLATFORM_VAR_DIR/log"
PY="$VENV/bin/python"

"$PY" manage.py migrate --no-input
"$PY" manage.py collectstatic --no-input --verbosity 0
"$PY" manage.py demo_setup
"$PY" manage.py sandbox_setup

# The sandbox's models are tiny: one torch thread per run is about twice as fast here as one per core, and two
# runs at once (WORKER_CONCURRENCY) use two cores: the cycle's DDPO and Diffusion-DPO tune side by side.
WORKER_TORCH_THREADS="${WORKER_TORCH_THREADS:-1}" "$PY" -m celery -A config worker -Q default,gpu \
  --concurrency "${WORKER_CONCURRENCY:-2}" \
  --loglevel INFO \
  >>"$PLATFORM_VAR_DIR/log/worker.log" 2>&1 &
worker=$!
trap 'kill "$worker" 2>/dev/null || true; wait "$worker" 2>/dev/null || true' EXIT INT TERM
echo "==> Celery worker started (pid $worker, log $PLATFORM_VAR_DIR/log/worker.log)"
echo "==> serving http://127.0.0.1:$PORT/"
"$PY" -m gunicorn config.wsgi --bind "127.0.0.1:$PORT" --workers 2 --threads 4 --access-logfile - &
web=$!
trap 'kill "$web" "$worker" 2>/dev/null || true; wait 2>/dev/null || true' EXIT INT TERM
wait "$web"
