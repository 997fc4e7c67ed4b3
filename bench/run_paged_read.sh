#!/usr/bin/env bash
# Fresh database, one `web` (as the Procfile runs it), then bench/paged_read.py, RUNS times.
# Usage: bash bench/run_paged_read.sh [USERS] [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
USERS=${1:-100000}; RUNS=${2:-3}; PORT=${PORT:-8804}
for run in $(seq 1 "$RUNS"); do
  fresh_database simpleams_bench_read
  start_web "$PORT"
  echo "run $run"
  .venv/bin/python -m bench.paged_read --url "http://127.0.0.1:$PORT/scim/v2" --users "$USERS"
  stop_web
done
