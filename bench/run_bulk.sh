#!/usr/bin/env bash
# Fresh database, one `web`, then BULKS 1,000-operation /Bulk creates, RUNS times.
# Usage: bash bench/run_bulk.sh [BULKS] [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
BULKS=${1:-5}; RUNS=${2:-3}; PORT=${PORT:-8806}
for run in $(seq 1 "$RUNS"); do
  fresh_database simpleams_bench_bulk
  token=$(.venv/bin/simpleams demo | tail -1)
  start_web "$PORT"
  echo "run $run"
  .venv/bin/python -m bench.bulk_create --url "http://127.0.0.1:$PORT/scim/v2" --token "$token" \
    --bulks "$BULKS"
  stop_web
done
