# Shared by the bench/run_*.sh scripts: a fresh migrated database, one `web`.
# Source it after `cd` to the repository root.

# fresh_database NAME: drop and create NAME, point DATABASE_URL at it, migrate.
fresh_database() {
  export DATABASE_URL="postgresql+psycopg://root@127.0.0.1:5432/$1"
  psql -h 127.0.0.1 -U root -d test -qc "DROP DATABASE IF EXISTS $1 WITH (FORCE)" \
    -c "CREATE DATABASE $1" 2>/dev/null
  .venv/bin/simpleams migrate >/dev/null
}

# start_web PORT: uvicorn as the Procfile's web runs it (plus $WEB_ARGS, e.g.
# "--workers 2"); sets WEB_PID once /healthz answers.
start_web() {
  # shellcheck disable=SC2086  # WEB_ARGS is a list of options
  .venv/bin/uvicorn --factory gateway.app:app_from_env --host 127.0.0.1 --port "$1" \
    --log-level warning ${WEB_ARGS:-} & WEB_PID=$!
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$1/healthz" >/dev/null && return; sleep 0.1; done
  echo "web did not become healthy on port $1" >&2
  return 1
}

stop_web() {
  kill "$WEB_PID"; wait "$WEB_PID" 2>/dev/null || true
}
