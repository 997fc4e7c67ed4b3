#!/usr/bin/env bash
# The PostgreSQL ceiling for a SCIM create: bench/pgbench/create_user.sql at each
# concurrency, RUNS times, on a fresh migrated database with one tenant.
# Usage: bash bench/pgbench_ceiling.sh [SECONDS] [RUNS] [CLIENTS...]
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_RUN=${1:-20}; RUNS=${2:-3}; shift 2 || true
CLIENTS=("${@:-1 16}")
DB=simpleams_bench_pgbench
export DATABASE_URL=postgresql+psycopg://root@127.0.0.1:5432/$DB
psql -h 127.0.0.1 -U root -d test -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB"
.venv/bin/simpleams migrate >/dev/null
.venv/bin/simpleams tenant create ceiling --plan business >/dev/null
tenant=$(psql -h 127.0.0.1 -U root -d "$DB" -tAc "SELECT id FROM tenants WHERE slug = 'ceiling'")
# As the gateway connects (gateway/db.py): every statement planned with its values.
export PGOPTIONS="-c plan_cache_mode=force_custom_plan"
# A directory of 10,000 users with statistics, so that the plans are the ones
# a tenant mid-sync gets once autovacuum has analysed the table.
pgbench -h 127.0.0.1 -U root -n -M prepared -c 4 -j 2 -t 2500 -D tenant="$tenant" \
  -f bench/pgbench/create_user.sql "$DB" >/dev/null 2>&1
psql -h 127.0.0.1 -U root -d "$DB" -qc "VACUUM ANALYZE users" -c "VACUUM ANALYZE provisioning_events"
for clients in ${CLIENTS[*]}; do
  for run in $(seq 1 "$RUNS"); do
    tps=$(pgbench -h 127.0.0.1 -U root -n -M prepared -c "$clients" -j "$(( clients < 2 ? 1 : 2 ))" \
      -T "$SECONDS_PER_RUN" -D tenant="$tenant" -f bench/pgbench/create_user.sql "$DB" 2>/dev/null \
      | awk '/^tps/ {print $3}')
    echo "clients $clients run $run: $tps creates/s"
  done
done
echo "users in the table: $(psql -h 127.0.0.1 -U root -d "$DB" -tAc "SELECT count(*) FROM users")"
