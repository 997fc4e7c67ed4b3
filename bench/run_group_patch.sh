#!/usr/bin/env bash
# Fresh database, one `web`, then bench/group_patch.py: 1,000-change membership
# PATCHes on a group of MEMBERS users, RUNS times.
# Usage: bash bench/run_group_patch.sh [MEMBERS] [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
MEMBERS=${1:-100000}; RUNS=${2:-3}; PORT=${PORT:-8807}
for run in $(seq 1 "$RUNS"); do
  fresh_database simpleams_bench_groups
  token=$(.venv/bin/simpleams demo | tail -1)
  start_web "$PORT"
  echo "run $run"
  .venv/bin/python -m bench.group_patch --url "http://127.0.0.1:$PORT/scim/v2" --token "$token" \
    --database-url "$DATABASE_URL" --members "$MEMBERS"
  stop_web
done
