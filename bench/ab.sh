#!/usr/bin/env bash
# A/B of an uncommitted change: run a bench on the working tree, then on HEAD
# (the change stashed), ROUNDS times alternately, so both see the same noise.
# Usage: bash bench/ab.sh ROUNDS COMMAND...   e.g. bash bench/ab.sh 3 bash bench/run_initial_sync.sh 5000 16 1
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=$1; shift
restore() { git stash list | grep -q "bench/ab.sh" && git stash pop -q; }
for round in $(seq 1 "$ROUNDS"); do
  echo "=== round $round: working tree"
  "$@"
  git stash push -u -q -m "bench/ab.sh"
  trap restore EXIT
  echo "=== round $round: HEAD"
  "$@"
  git stash pop -q
  trap - EXIT
done
