#!/usr/bin/env bash
# Fresh database, one `web` (as the Procfile runs it), then bench/admin_pages.py, RUNS times.
# Usage: bash bench/run_admin_pages.sh [USERS] [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
USERS=${1:-100000}; RUNS=${2:-3}; PORT=${PORT:-8802}
for run in $(seq 1 "$RUNS"); do
  fresh_database simpleams_bench_admin
  start_web "$PORT"
  echo "run $run"
  .venv/bin/python -m bench.admin_pages --url "http://127.0.0.1:$PORT" --users "$USERS"
  stop_web
done
