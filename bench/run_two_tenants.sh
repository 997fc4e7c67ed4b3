#!/usr/bin/env bash
# Fresh database, one web, two Business tenants; bench/two_tenants.py, RUNS times.
# Usage: [WEB_ARGS=...] bash bench/run_two_tenants.sh [SMALL_USERS] [LARGE_CONCURRENCY] [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
source bench/lib.sh
SMALL_USERS=${1:-500}; CONCURRENCY=${2:-16}; RUNS=${3:-3}; PORT=${PORT:-8805}
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379/14}
for run in $(seq 1 "$RUNS"); do
  fresh_database simpleams_bench_fair
  large=$(.venv/bin/simpleams demo large | tail -1)
  small=$(.venv/bin/simpleams demo small | tail -1)
  start_web "$PORT"
  echo "run $run: small tenant $SMALL_USERS users at concurrency 2, large tenant at $CONCURRENCY ${WEB_ARGS:-}"
  .venv/bin/python -m bench.two_tenants --url "http://127.0.0.1:$PORT/scim/v2" \
    --large-token "$large" --small-token "$small" --small-users "$SMALL_USERS" \
    --large-concurrency "$CONCURRENCY"
  stop_web
done
