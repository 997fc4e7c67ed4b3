#!/usr/bin/env bash
# Our gateway and the peer, scim2-server (in memory, no durability, one process),
# under the same load generator in the same run, alternately, RUNS times.
# Usage: bash bench/run_peer.sh [USERS] [CONCURRENCY] [RUNS]
# The peer lives in its own virtualenv (.bench-peer/, not committed), created on first use.
set -euo pipefail
cd "$(dirname "$0")/.."
USERS=${1:-3000}; CONCURRENCY=${2:-16}; RUNS=${3:-3}; PORT=${PEER_PORT:-8805}
if [ ! -x .bench-peer/bin/scim2-server ]; then
  python3 -m venv .bench-peer
  .bench-peer/bin/pip install -q scim2-server
fi
token=peer-bench-token
for run in $(seq 1 "$RUNS"); do
  echo "== run $run: ours"
  bash bench/run_initial_sync.sh "$USERS" "$CONCURRENCY" 1 | grep -E "initial sync|CPU ms|slice|paged read|outbox|caught up|lag"
  echo "== run $run: scim2-server $(.bench-peer/bin/pip show scim2-server | awk '/^Version/ {print $2}')"
  .bench-peer/bin/scim2-server --port "$PORT" --bearer-token "$token" >/dev/null 2>&1 & pid=$!
  for _ in $(seq 1 100); do
    curl -sf -H "Authorization: Bearer $token" "http://127.0.0.1:$PORT/ServiceProviderConfig" >/dev/null && break
    sleep 0.1
  done
  .venv/bin/python -m bench.initial_sync --url "http://127.0.0.1:$PORT" --token "$token" \
    --users "$USERS" --concurrency "$CONCURRENCY" --cpu "peer=$pid" \
    | grep -E "initial sync|CPU ms|slice|paged read|outbox|caught up|lag"
  kill "$pid"; wait "$pid" 2>/dev/null || true
done
