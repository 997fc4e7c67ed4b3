#!/usr/bin/env bash
# Fresh database, one `web`, then BULKS 1,000-operation /Bulk creates, RUNS times.
# Usage: bash bench/run_bulk.sh [BULKS] [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
BULKS=${1:-5}; RUNS=${2:-3}; PORT=${PORT:-8806}
export DATABASE_URL=postgresql+psycopg://root@127.0.0.1:5432/simpleams_bench_bulk
for run in $(seq 1 "$RUNS"); do
  psql -h 127.0.0.1 -U root -d test -qc "DROP DATABASE IF EXISTS simpleams_bench_bulk WITH (FORCE)" \
    -c "CREATE DATABASE simpleams_bench_bulk"
  .venv/bin/simpleams migrate >/dev/null
  token=$(.venv/bin/simpleams demo | tail -1)
  .venv/bin/uvicorn --factory gateway.app:app_from_env --host 127.0.0.1 --port "$PORT" \
    --log-level warning & pid=$!
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done
  echo "run $run"
  .venv/bin/python -m bench.bulk_create --url "http://127.0.0.1:$PORT/scim/v2" --token "$token" \
    --bulks "$BULKS"
  kill "$pid"; wait "$pid" 2>/dev/null || true
done
