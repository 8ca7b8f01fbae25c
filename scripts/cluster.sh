#!/usr/bin/env bash
# Throwaway PostgreSQL clusters owned by the postgres user, for the demo and the tests.
#
#   scripts/cluster.sh start NAME PORT   initdb (once) and start target/clusters/NAME on 127.0.0.1:PORT
#   scripts/cluster.sh stop NAME         stop it (no error when it is not running)
#   scripts/cluster.sh dir NAME          print its data directory
#   scripts/cluster.sh workdir NAME      make an empty directory owned by postgres and print it
#                                        (for `cargo pgrx test --pgdata`, which runs its own initdb)
#
# PostgreSQL refuses to run as root, so initdb and pg_ctl run as `postgres`. When the
# checkout lies where `postgres` cannot reach (say under /root), the cluster lives under
# /tmp instead; `dir` tells where. MT_CLUSTER_BASE overrides the parent directory (the
# benchmarks put their cluster on tmpfs to keep disk noise out of the figures).
set -euo pipefail

PG_BIN="${PG_BIN:-/usr/lib/postgresql/15/bin}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"

# RUST_BACKTRACE would make pgrx append backtraces to error details.
as_postgres() {
  if [ "$(id -un)" = postgres ]; then env -u RUST_BACKTRACE -u RUST_LIB_BACKTRACE "$@";
  else env -u RUST_BACKTRACE -u RUST_LIB_BACKTRACE runuser -u postgres -- "$@"; fi
}

cluster_dir() {
  local name="$1" base="${MT_CLUSTER_BASE:-$ROOT/target/clusters}"
  mkdir -p "$base"
  if ! as_postgres test -x "$base" 2>/dev/null; then
    base="/tmp/multitenant-clusters-$(printf '%s' "$ROOT" | md5sum | cut -c1-8)"
    mkdir -p "$base"
  fi
  chmod 755 "$base"
  echo "$base/$name"
}

start() {
  local name="$1" port="$2" dir
  dir="$(cluster_dir "$name")"
  if [ ! -f "$dir/PG_VERSION" ]; then
    rm -rf "$dir"
    mkdir -p "$dir"
    chown postgres: "$dir"
    as_postgres "$PG_BIN/initdb" -D "$dir" -U postgres -A trust --no-sync -E UTF8 --locale=C.UTF-8 >"$dir.initdb.log" 2>&1 ||
      { cat "$dir.initdb.log"; exit 1; }
    cat >>"$dir/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = ''
fsync = off
synchronous_commit = off
full_page_writes = off
max_worker_processes = 16
max_connections = 200
shared_buffers = 256MB
CONF
  fi
  if as_postgres "$PG_BIN/pg_ctl" -D "$dir" status >/dev/null 2>&1; then
    return 0
  fi
  # PostgreSQL refuses a data directory others may read; keep it so whatever touched it.
  chmod 700 "$dir"
  # The port is given at every start (a cluster made by an earlier run may have had another).
  # Our ports lie below Linux's ephemeral range (32768-60999), so no client connection holds
  # one; the retries cover a listener of a run that is just shutting down.
  local attempt
  for attempt in 1 2 3 4 5; do
    if as_postgres "$PG_BIN/pg_ctl" -D "$dir" -l "$dir/server.log" -o "-p $port" -w -t 60 start >/dev/null; then
      return 0
    fi
    tail -n 8 "$dir/server.log" | grep -q "Address already in use" || break
    sleep 2
  done
  tail -n 30 "$dir/server.log"
  exit 1
}

stop() {
  local dir
  dir="$(cluster_dir "$1")"
  if [ -f "$dir/PG_VERSION" ] && as_postgres "$PG_BIN/pg_ctl" -D "$dir" status >/dev/null 2>&1; then
    as_postgres "$PG_BIN/pg_ctl" -D "$dir" -m fast -w stop >/dev/null
  fi
}

case "${1:-}" in
  start) start "$2" "$3" ;;
  stop) stop "$2" ;;
  dir) cluster_dir "$2" ;;
  workdir)
    dir="$(cluster_dir "$2")"
    mkdir -p "$dir"
    chown postgres: "$dir"
    echo "$dir"
    ;;
  *) echo "usage: $0 start NAME PORT | stop NAME | dir NAME | workdir NAME" >&2; exit 2 ;;
esac
