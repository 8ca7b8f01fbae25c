#!/usr/bin/env bash
# Runs the pg_regress suites in pg_test/ with PostgreSQL's own pg_regress against a
# throwaway cluster. Each suite gets a fresh database. Any diff fails the run and is printed.
#
#   scripts/regress.sh [SUITE ...]     default: every pg_test/sql/*.sql
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PG_BIN="${PG_BIN:-/usr/lib/postgresql/15/bin}"
PG_REGRESS="$("$PG_BIN/pg_config" --pkglibdir)/pgxs/src/test/regress/pg_regress"
PORT="${REGRESS_PORT:-54351}"
OUT="$ROOT/target/regress"

cd "$ROOT"
if [ "$#" -eq 0 ]; then
  set -- $(ls pg_test/sql/*.sql | xargs -n1 basename | sed 's/\.sql$//')
fi

# Migration folders are read by the server (as postgres) from a fixed path, so expected
# output does not depend on where the checkout lives or who may read it.
FIXTURES=/tmp/mt_regress_fixtures
rm -rf "$FIXTURES"
mkdir -p "$FIXTURES"
cp -r pg_test/fixtures/. "$FIXTURES/"
cp -r examples/drizzle "$FIXTURES/drizzle"
chmod -R a+rX "$FIXTURES"

scripts/cluster.sh start regress "$PORT"
trap 'scripts/cluster.sh stop regress' EXIT

rm -rf "$OUT"
failed=()
for suite in "$@"; do
  mkdir -p "$OUT/$suite"
  if ! "$PG_REGRESS" --bindir="$PG_BIN" --host=127.0.0.1 --port="$PORT" --user=postgres \
      --inputdir=pg_test --outputdir="$OUT/$suite" --dbname="regress_$suite" "$suite"; then
    failed+=("$suite")
    cat "$OUT/$suite/regression.diffs" 2>/dev/null || true
  fi
done

if [ "${#failed[@]}" -gt 0 ]; then
  echo "pg_regress: failing suites: ${failed[*]}" >&2
  exit 1
fi
echo "pg_regress: $# suites passed"
