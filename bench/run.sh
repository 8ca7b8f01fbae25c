#!/usr/bin/env bash
# Runs a benchmark against a throwaway cluster with a release build of the extension.
#   bench/run.sh migrate [N ...]        bench/run.sh migrate --noop 10000
#   bench/run.sh provision [N ...]      bench/run.sh drift [N ...]      bench/run.sh client ...
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PORT="${BENCH_PORT:-54353}"
cd "$ROOT"
scripts/prereqs.sh >/dev/null
cargo pgrx install --release --pg-config /usr/lib/postgresql/15/bin/pg_config >target/pgrx-install-release.log 2>&1 ||
  { cat target/pgrx-install-release.log; exit 1; }
# On tmpfs when there is one: the figures should measure CPU and locking, not the disk.
if [ -d /dev/shm ]; then export MT_CLUSTER_BASE=/dev/shm/multitenant-bench; fi
scripts/cluster.sh start bench "$PORT"
trap 'scripts/cluster.sh stop bench' EXIT
bench="$1"; shift
MT_BENCH_URL="postgresql://postgres@127.0.0.1:$PORT" cargo run --release -q -p multitenant-bench --bin "$bench" -- "$@"
