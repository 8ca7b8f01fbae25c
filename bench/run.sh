#!/usr/bin/env bash
# Runs a benchmark against a throwaway cluster with a release build of the extension.
#   bench/run.sh migrate [N ...]        bench/run.sh migrate --noop 10000
#   bench/run.sh provision [N ...]      bench/run.sh drift [N ...]
#   bench/run.sh corpus [N ...]         the realistic drizzle-kit corpus (bench/corpus/saas) against the psql floor
#                                       and the predecessor (bench/predecessor, installed here when npm is there)
#   bench/run.sh corpus-small [N ...]   the same with the 5-table corpus (bench/corpus/small), for 10,000+ tenants
#                                       (BENCH_TMPFS=1: the durable cluster's data directory on tmpfs)
#   bench/run.sh client [TENANTS] [SECONDS] [--hop]
# BENCH_PORT picks the cluster's port; BENCH_SKIP_INSTALL=1 uses the extension as installed.
# The client benchmark measures the client library, not the extension: it always uses the
# extension as installed (`make install` first), and starts a PgBouncer in transaction mode in
# front of the cluster (Debian's `pgbouncer`, as the postgres user, on 127.0.0.1:
# $BENCH_PGBOUNCER_PORT, default 25363).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PORT="${BENCH_PORT:-25353}"
cd "$ROOT"
bench="$1"; shift
scripts/prereqs.sh >/dev/null
if [ "$bench" != client ] && [ "${BENCH_SKIP_INSTALL:-0}" != 1 ]; then
  cargo pgrx install --release --pg-config /usr/lib/postgresql/15/bin/pg_config >target/pgrx-install-release.log 2>&1 ||
    { cat target/pgrx-install-release.log; exit 1; }
fi

case "$bench" in
  corpus | corpus-small)
    # Durable settings, on the checkout's disk: migrations are writes, the figures include
    # them. BENCH_TMPFS=1 keeps the settings but puts the data directory on tmpfs, where an
    # fsync costs nothing: the floors and mt alike are then measured on CPU alone.
    CLUSTER=bench-durable
    if [ "${BENCH_TMPFS:-0}" = 1 ] && [ -d /dev/shm ]; then
      export MT_CLUSTER_BASE=/dev/shm/multitenant-bench
      CLUSTER=bench-durable-tmpfs
    fi
    # The predecessor (drizzle-multitenant from npm) for the comparison, where npm is.
    if command -v npm >/dev/null; then bench/predecessor/run.sh install; fi
    scripts/cluster.sh start "$CLUSTER" "$PORT"
    runuser -u postgres -- psql -X -q -h 127.0.0.1 -p "$PORT" -U postgres -d postgres \
      -c "ALTER SYSTEM SET fsync = on" -c "ALTER SYSTEM SET synchronous_commit = on" \
      -c "ALTER SYSTEM SET full_page_writes = on" -c "SELECT pg_reload_conf()" >/dev/null
    ;;
  *)
    # On tmpfs when there is one: the figures should measure CPU and locking, not the disk.
    if [ -d /dev/shm ]; then export MT_CLUSTER_BASE=/dev/shm/multitenant-bench; fi
    CLUSTER=bench
    # The client benchmark's cluster is its own (its port is fixed when it is first made).
    if [ "$bench" = client ]; then CLUSTER="bench-client-$PORT"; fi
    scripts/cluster.sh start "$CLUSTER" "$PORT"
    ;;
esac
cleanup() { scripts/cluster.sh stop "$CLUSTER"; }
trap 'cleanup' EXIT

args=("$@")
case "$bench" in
  corpus) bin=corpus ;;
  corpus-small) bin=corpus; args=(--small "$@") ;;
  *) bin="$bench" ;;
esac

if [ "$bench" = client ]; then
  # PgBouncer in transaction mode, 16 server connections (the benchmark's pool size), trust
  # authentication for the postgres user; sqlx sends extra_float_digits at startup.
  BOUNCER_PORT="${BENCH_PGBOUNCER_PORT:-25363}"
  BOUNCER_DIR="$(mktemp -d /tmp/mt-bench-pgbouncer.XXXXXX)"
  chmod 755 "$BOUNCER_DIR"
  echo '"postgres" ""' >"$BOUNCER_DIR/userlist.txt"
  RUN_AS=""
  if [ "$(id -u)" = 0 ]; then RUN_AS="user = postgres"; fi
  cat >"$BOUNCER_DIR/pgbouncer.ini" <<INI
[databases]
* = host=127.0.0.1 port=$PORT
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $BOUNCER_PORT
unix_socket_dir =
$RUN_AS
auth_type = trust
auth_file = $BOUNCER_DIR/userlist.txt
pool_mode = transaction
default_pool_size = 16
max_client_conn = 2000
ignore_startup_parameters = extra_float_digits
server_reset_query =
log_connections = 0
log_disconnections = 0
INI
  pgbouncer "$BOUNCER_DIR/pgbouncer.ini" 2>"$BOUNCER_DIR/pgbouncer.log" &
  BOUNCER_PID=$!
  cleanup() {
    kill "$BOUNCER_PID" 2>/dev/null || true
    wait "$BOUNCER_PID" 2>/dev/null || true
    rm -rf "$BOUNCER_DIR"
    scripts/cluster.sh stop "$CLUSTER"
  }
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$BOUNCER_PORT") 2>/dev/null && break
    kill -0 "$BOUNCER_PID" 2>/dev/null || { cat "$BOUNCER_DIR/pgbouncer.log"; exit 1; }
    sleep 0.1
  done
  export MT_BENCH_PGBOUNCER_URL="postgresql://postgres@127.0.0.1:$BOUNCER_PORT"
  echo "$(pgbouncer --version | head -n 1) in transaction mode on port $BOUNCER_PORT"
fi
MT_BENCH_URL="postgresql://postgres@127.0.0.1:$PORT" cargo run --release -q -p multitenant-bench --bin "$bin" -- "${args[@]}"
