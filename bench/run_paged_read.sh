#!/usr/bin/env bash
# Fresh database, one `web` (as the Procfile runs it), then bench/paged_read.py, RUNS times.
# Usage: bash bench/run_paged_read.sh [USERS] [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
USERS=${1:-100000}; RUNS=${2:-3}; PORT=${PORT:-8804}
export DATABASE_URL=postgresql+psycopg://root@127.0.0.1:5432/simpleams_bench_read
for run in $(seq 1 "$RUNS"); do
  psql -h 127.0.0.1 -U root -d test -qc "DROP DATABASE IF EXISTS simpleams_bench_read WITH (FORCE)" \
    -c "CREATE DATABASE simpleams_bench_read"
  .venv/bin/simpleams migrate >/dev/null
  .venv/bin/uvicorn --factory gateway.app:app_from_env --host 127.0.0.1 --port "$PORT" \
    --log-level warning & pid=$!
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done
  echo "run $run"
  .venv/bin/python -m bench.paged_read --url "http://127.0.0.1:$PORT/scim/v2" --users "$USERS"
  kill "$pid"; wait "$pid" 2>/dev/null || true
done
