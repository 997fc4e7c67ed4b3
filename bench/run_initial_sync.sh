#!/usr/bin/env bash
# Fresh database, the Procfile's web process, then bench/initial_sync.py, RUNS times.
# Usage: bash bench/run_initial_sync.sh [USERS] [CONCURRENCY] [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
USERS=${1:-3000}; CONCURRENCY=${2:-16}; RUNS=${3:-3}; PORT=${PORT:-8801}
export DATABASE_URL=postgresql+psycopg://root@127.0.0.1:5432/simpleams_bench
for run in $(seq 1 "$RUNS"); do
  psql -h 127.0.0.1 -U root -d test -qc "DROP DATABASE IF EXISTS simpleams_bench WITH (FORCE)" \
    -c "CREATE DATABASE simpleams_bench"
  .venv/bin/simpleams migrate >/dev/null
  token=$(.venv/bin/simpleams demo | tail -1)
  PORT=$PORT .venv/bin/uvicorn --factory gateway.app:app_from_env --host 127.0.0.1 --port "$PORT" \
    --log-level warning &
  web=$!
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done
  echo "run $run: $USERS users, concurrency $CONCURRENCY"
  .venv/bin/python -m bench.initial_sync --url "http://127.0.0.1:$PORT/scim/v2" --token "$token" \
    --users "$USERS" --concurrency "$CONCURRENCY"
  kill "$web"; wait "$web" 2>/dev/null || true
done
