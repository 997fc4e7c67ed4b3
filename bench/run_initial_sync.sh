#!/usr/bin/env bash
# Fresh database, the Procfile's web (and, with EFFECTS=1, relay + worker),
# then bench/initial_sync.py, RUNS times.
# Usage: [EFFECTS=1] [WORKER_ARGS="--concurrency=2"] [WEB_ARGS="--workers 2"] bash bench/run_initial_sync.sh [USERS] [CONCURRENCY] [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
USERS=${1:-3000}; CONCURRENCY=${2:-16}; RUNS=${3:-3}; PORT=${PORT:-8801}
export DATABASE_URL=postgresql+psycopg://root@127.0.0.1:5432/simpleams_bench
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379/14}
PSQL="psql -h 127.0.0.1 -U root -d simpleams_bench -tAc"
# CPU seconds (user + system) used so far by a process tree: a process and its
# descendants, with the children they reaped (uvicorn's or celery's workers,
# PostgreSQL's exited backends); "postgres" is the postmaster's tree.
cpu_seconds_of_tree() { .venv/bin/python -m bench.cpu "$1"; }
cpu_seconds_of_postgres() { cpu_seconds_of_tree postgres; }
for run in $(seq 1 "$RUNS"); do
  psql -h 127.0.0.1 -U root -d test -qc "DROP DATABASE IF EXISTS simpleams_bench WITH (FORCE)" \
    -c "CREATE DATABASE simpleams_bench"
  redis-cli -n "${REDIS_URL##*/}" flushdb >/dev/null
  .venv/bin/simpleams migrate >/dev/null
  token=$(.venv/bin/simpleams demo | tail -1)
  pids=()
  # shellcheck disable=SC2086  # WEB_ARGS is a list of options (e.g. --workers 2)
  .venv/bin/uvicorn --factory gateway.app:app_from_env --host 127.0.0.1 --port "$PORT" \
    --log-level warning ${WEB_ARGS:-} & pids+=($!)
  if [ "${EFFECTS:-0}" = 1 ]; then
    .venv/bin/python -m workers.relay >/dev/null 2>&1 & pids+=($!)
    # shellcheck disable=SC2086  # WORKER_ARGS is a list of options
    .venv/bin/celery -A workers.app worker ${WORKER_ARGS:---concurrency=2} \
      --loglevel=WARNING >/dev/null 2>&1 & pids+=($!)
  fi
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done
  echo "run $run: $USERS users, concurrency $CONCURRENCY, side effects ${EFFECTS:-0} ${WORKER_ARGS:-} ${WEB_ARGS:-}"
  echo "  web memory (RSS) before the sync: $(ps -o rss= -p "${pids[0]}" | awk '{printf "%.1f MiB", $1/1024}')"
  postgres_cpu_before=$(cpu_seconds_of_postgres)
  watched=(--cpu "web=${pids[0]}" --postgres-cpu)
  if [ "${EFFECTS:-0}" = 1 ]; then watched+=(--cpu "relay=${pids[1]}" --cpu "worker=${pids[2]}"); fi
  .venv/bin/python -m bench.initial_sync --url "http://127.0.0.1:$PORT/scim/v2" --token "$token" \
    --users "$USERS" --concurrency "$CONCURRENCY" "${watched[@]}"
  echo "  web memory (RSS) after the sync and paged read: $(ps -o rss= -p "${pids[0]}" | awk '{printf "%.1f MiB", $1/1024}')"
  # Where the 2 cores went during the sync and paged read (CPU seconds; a
  # process's figure includes its children, e.g. uvicorn's or celery's workers).
  cpu="  CPU seconds: web $(cpu_seconds_of_tree "${pids[0]}")"
  if [ "${EFFECTS:-0}" = 1 ]; then
    cpu="$cpu, relay $(cpu_seconds_of_tree "${pids[1]}"), worker $(cpu_seconds_of_tree "${pids[2]}")"
  fi
  echo "$cpu, postgres $(echo "$(cpu_seconds_of_postgres) - $postgres_cpu_before" | bc)"
  echo "  database sessions opened: $($PSQL "SELECT sessions FROM pg_stat_database WHERE datname = 'simpleams_bench'")"
  if [ "${EFFECTS:-0}" = 1 ]; then
    echo "  outbox at the end of the sync: $($PSQL "SELECT count(*) FROM provisioning_events WHERE settled_at IS NULL") events unsettled"
    start=$(date +%s.%N); deadline=$(( $(date +%s) + ${CATCH_UP_SECONDS:-900} ))
    unsettled=$($PSQL "SELECT count(*) FROM provisioning_events WHERE settled_at IS NULL")
    while [ "$unsettled" != 0 ] && [ "$(date +%s)" -lt "$deadline" ]; do
      sleep 0.5  # polling the outbox until it drains
      unsettled=$($PSQL "SELECT count(*) FROM provisioning_events WHERE settled_at IS NULL")
    done
    took=$(echo "$(date +%s.%N) - $start" | bc)
    if [ "$unsettled" = 0 ]; then
      echo "  side effects caught up $took s after the paged read ended"
      # Lag of each event: from its write (occurred_at, the write's transaction)
      # to its last side effect (settled_at); and from the last write to the last settle.
      $PSQL "SELECT format('  side-effect lag per event: p50 %s ms, p99 %s ms, max %s ms; last effect %s ms after the last write',
               round(percentile_cont(0.5) WITHIN GROUP (ORDER BY lag)),
               round(percentile_cont(0.99) WITHIN GROUP (ORDER BY lag)), round(max(lag)),
               round(extract(epoch FROM max(settled_at) - max(occurred_at)) * 1000))
             FROM (SELECT settled_at, occurred_at,
                          extract(epoch FROM settled_at - occurred_at) * 1000 AS lag
                   FROM provisioning_events) e"
    else
      echo "  side effects NOT caught up: $unsettled events still unsettled $took s after the paged read"
    fi
  fi
  kill "${pids[@]}"; wait "${pids[@]}" 2>/dev/null || true
done
