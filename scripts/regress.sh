#!/usr/bin/env bash
# Runs the pg_regress suites in pg_test/ with PostgreSQL's own pg_regress against a
# throwaway cluster. Each suite gets a fresh database. Any diff fails the run and is printed.
#
#   scripts/regress.sh [SUITE ...]     default: every pg_test/sql/*.sql
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PG_BIN="${PG_BIN:-/usr/lib/postgresql/15/bin}"
PG_REGRESS="$("$PG_BIN/pg_config" --pkglibdir)/pgxs/src/test/regress/pg_regress"
PORT="${REGRESS_PORT:-25351}"
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

# Tenant roles are cluster-wide and named after schemas, which every suite reuses: a suite's
# database and the roles its tenants got go before the next suite starts.
PSQL=("$PG_BIN/psql" -X -q -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -v ON_ERROR_STOP=1)
drop_tenant_roles() {
  "${PSQL[@]}" -c "SET client_min_messages = warning" -c "DO \$\$ DECLARE r record; BEGIN
      FOR r IN SELECT a.rolname FROM pg_authid a JOIN pg_shdescription d ON d.objoid = a.oid AND d.classoid = 'pg_authid'::regclass
                WHERE d.description LIKE 'multitenant: role of tenant %' LOOP
          EXECUTE format('DROP ROLE %I', r.rolname);
      END LOOP; END \$\$"
}

rm -rf "$OUT"
failed=()
for db in $("${PSQL[@]}" -At -c "SELECT datname FROM pg_database WHERE datname LIKE 'regress\_%'"); do
  "${PSQL[@]}" -c "DROP DATABASE \"$db\" WITH (FORCE)"
done
drop_tenant_roles
for suite in "$@"; do
  mkdir -p "$OUT/$suite"
  if ! "$PG_REGRESS" --bindir="$PG_BIN" --host=127.0.0.1 --port="$PORT" --user=postgres \
      --inputdir=pg_test --outputdir="$OUT/$suite" --dbname="regress_$suite" "$suite"; then
    failed+=("$suite")
    cat "$OUT/$suite/regression.diffs" 2>/dev/null || true
  fi
  "${PSQL[@]}" -c "DROP DATABASE IF EXISTS \"regress_$suite\" WITH (FORCE)"
  drop_tenant_roles
done

if [ "${#failed[@]}" -gt 0 ]; then
  echo "pg_regress: failing suites: ${failed[*]}" >&2
  exit 1
fi
echo "pg_regress: $# suites passed"
