#!/usr/bin/env bash
# Runs the Rust integration tests in tests/ against a throwaway cluster with the extension
# installed. The cluster has few worker slots on purpose (runs must wait, not fail).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PORT="${INTEGRATION_PORT:-25352}"
cd "$ROOT"

scripts/cluster.sh start integration "$PORT"
trap 'scripts/cluster.sh stop integration' EXIT
DATA="$(scripts/cluster.sh dir integration)"
if ! grep -q "^max_worker_processes = 4" "$DATA/postgresql.conf"; then
  echo "max_worker_processes = 4" >>"$DATA/postgresql.conf"
  scripts/cluster.sh stop integration
  scripts/cluster.sh start integration "$PORT"
fi

MT_TEST_URL="postgresql://postgres@127.0.0.1:$PORT" cargo test -p multitenant-integration "$@" -- --test-threads=1
