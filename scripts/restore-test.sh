#!/usr/bin/env bash
# The restore test: a `pg_dump -Fc` of a database with the extension, tenants, migrations,
# runs, seeds and settings restores, with `pg_restore -j 4` as well as serially, into a fresh
# database, and there
#   (a) pg_restore exits 0,
#   (b) every row of the extension's dumped tables (the registry, migrations, the ledger, runs,
#       run tenants, seeds, seed history, settings) and its sequences' positions are kept,
#   (c) the rest of the database dumps exactly as the original does (tenant schemas and their
#       rows, mt_template, owners, grants to tenant roles, triggers, sequences),
#   (d) mt.status shows nothing pending, mt.drift_summary no drift, mt.health what it showed
#       before, mt.migrate_all() and mt.migrate_shared() apply nothing, mt.seed_all and
#       mt.seed_shared skip what was seeded,
#   (e) work goes on: a new tenant (template copy, role, seed) gets a run id and a seed history
#       id after the restored ones;
#   (f) pg_restore --clean over a database with tenants meets the DROP EXTENSION guard: refused
#       (in one transaction, so nothing changes), and done with PGOPTIONS='-c mt.allow_drop=on'.
# Roles are cluster-wide: the restores go into the same cluster, where the tenant roles and
# mt_admin & co. still exist (to move a database elsewhere, restore pg_dumpall --roles-only
# first: docs/operations.md).
#
#   scripts/restore-test.sh      expects the current tree installed (`make install`)
#
# Environment: RESTORE_PORT (25366), RESTORE_KEEP=1 leaves the cluster running for a look
# (scripts/cluster.sh stop restore). Files: target/restore/.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PG_BIN="${PG_BIN:-/usr/lib/postgresql/15/bin}"
PORT="${RESTORE_PORT:-25366}"
EXTNAME=multitenant
# Every table of the extension that a backup must keep (issue 13).
REQUIRED_TABLES="mt.tenants mt.migrations mt.tracking_records mt.runs mt.run_tenants mt.seeds mt.seed_history mt.config"

cd "$ROOT"
WORK="$ROOT/target/restore"
export PGTZ=UTC PGDATESTYLE=ISO
unset RUST_BACKTRACE RUST_LIB_BACKTRACE

passed=0
failed=0
failures=()
pass() { echo "restore: PASS $1"; passed=$((passed + 1)); }
fail() { echo "restore: FAIL $1" >&2; failed=$((failed + 1)); failures+=("$1"); }
die() { echo "restore: $*" >&2; echo "restore: $passed passed, $((failed + 1)) failed" >&2; exit 1; }
step() { echo "restore: [$((SECONDS - START))s] $*"; }
START=$SECONDS
trap 'echo "restore: aborted at line $LINENO: $passed passed, $((failed + 1)) failed" >&2' ERR

CONN=(-h 127.0.0.1 -p "$PORT" -U postgres)
psql_() { "$PG_BIN/psql" -X -q "${CONN[@]}" -v ON_ERROR_STOP=1 "$@"; }
value() { psql_ -At -d "$1" -c "$2"; }

EXTDIR="$("$PG_BIN/pg_config" --sharedir)/extension"
[ -f "$EXTDIR/$EXTNAME.control" ] || die "no $EXTDIR/$EXTNAME.control: run make install first"

# ---------------------------------------------------------------------------------------------
# A throwaway cluster, new each run
DATA="$(scripts/cluster.sh dir restore)"
scripts/cluster.sh stop restore
rm -rf "$DATA"
scripts/cluster.sh start restore "$PORT"
if [ "${RESTORE_KEEP:-0}" != 1 ]; then trap 'scripts/cluster.sh stop restore' EXIT; fi
DRIZZLE="$DATA-drizzle"
rm -rf "$DRIZZLE" && cp -r examples/drizzle "$DRIZZLE" && chmod -R a+rX "$DRIZZLE"
rm -rf "$WORK"
mkdir -p "$WORK"
step "cluster restore on port $PORT"

# ---------------------------------------------------------------------------------------------
# The original: a bit of everything, made through the API
psql_ -d postgres -c "CREATE DATABASE original"
fill_log="$WORK/fill.log"
if ! psql_ -d original -v drizzle_dir="$DRIZZLE" >"$fill_log" 2>&1 <<'SQL'
\set SHOW_CONTEXT errors
SET client_min_messages = warning;
CREATE EXTENSION multitenant;
-- settings changed from their defaults, one of them superuser-only
SELECT mt.set_config('schema_template', 'tenant_{id}');
SELECT mt.set_config('tracking_table', '__rst_migrations');
SELECT mt.set_config('allowed_extensions', 'citext,hstore,pg_trgm,pgcrypto,uuid-ossp');

-- migrations: a drizzle-kit folder, a shared one
SELECT action, count(*) FROM mt.load_migrations(:'drizzle_dir') GROUP BY 1;
SELECT mt.add_migration('0000_countries', 'CREATE TABLE IF NOT EXISTS rst_countries (code text PRIMARY KEY, name text);', scope => 'shared');
SELECT tenant_id, status FROM mt.migrate_shared();

-- tenants: from the template, bare then migrated, replayed, in bulk, adopted, suspended, cloned
SELECT tenant_id, schema_name FROM mt.create_tenant('rst-alpha', '{"plan": "pro", "seats": 12}');
SELECT tenant_id, schema_name FROM mt.create_tenant('rst-beta', migrate => false);
SELECT mt.set_config('tracking_format', 'drizzle-kit');
SELECT tenant_id, schema_name FROM mt.create_tenant('rst-gamma', use_template => false);
SELECT tenant_id, status FROM mt.create_tenants(ARRAY['rst-delta', 'rst-epsilon', 'bad id!'], concurrency => 2);
SELECT mt.set_config('tracking_format', 'hash');
CREATE SCHEMA tenant_rst_legacy;
SELECT * FROM mt.adopt_tenants('tenant\_rst\_legacy');
UPDATE mt.tenants SET status = 'suspended' WHERE tenant_id = 'rst-epsilon';

-- runs: one with a failing tenant, then the fix; a dry run
CREATE TABLE tenant_rst_alpha.legacy_flags (id int);
SELECT mt.add_migration('0022_legacy_flags', 'CREATE TABLE legacy_flags (id int PRIMARY KEY);') AS registered;
SELECT tenant_id, applied, status, sqlstate FROM mt.migrate_all(concurrency => 2);
DROP TABLE tenant_rst_alpha.legacy_flags;
SELECT tenant_id, applied, status FROM mt.migrate_all(tenant_ids => ARRAY['rst-alpha']);
SELECT count(*) FROM mt.migrate_all(dry_run => true);

-- rows in tenants, a clone with them, a template copy
INSERT INTO tenant_rst_alpha.users (email, name) VALUES ('ann@alpha.test', 'Ann'), ('bob@alpha.test', 'Bob');
SELECT tenant_id FROM mt.clone_tenant('rst-alpha', 'rst-alpha-copy', include_data => true,
       anonymize => '{"users": {"email": {"template": "user-{hash}@example.com"}}}');
SELECT mt.template_is_current();
SELECT tenant_id FROM mt.create_tenant('rst-zeta');

-- seeds: SQL and a function, tenant and shared scope, a forced rerun
CREATE FUNCTION public.rst_seed(tenant_id text, schema_name text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('INSERT INTO %I.teams (name, slug) VALUES (%L, %L)', schema_name, tenant_id, 'owner-' || tenant_id);
END
$$;
SELECT name FROM mt.register_seed('starter-teams', $$INSERT INTO teams (name, slug) VALUES ('Everyone', 'everyone') ON CONFLICT DO NOTHING$$);
SELECT name FROM mt.register_seed('owner-team', 'public.rst_seed(text, text)'::regprocedure);
SELECT name FROM mt.register_seed('countries', $$INSERT INTO rst_countries VALUES ('fr', 'France') ON CONFLICT DO NOTHING$$, scope => 'shared');
SELECT tenant_id, status FROM mt.seed_all('starter-teams', concurrency => 2) ORDER BY 1;
SELECT tenant_id, status FROM mt.seed_all('owner-team', concurrency => 2) ORDER BY 1;
SELECT mt.seed_tenant('rst-alpha', 'starter-teams', force => true);
SELECT mt.seed_shared('countries');

-- what there is
SELECT 'tenants' AS t, count(*) FROM mt.tenants UNION ALL
SELECT 'migrations', count(*) FROM mt.migrations UNION ALL
SELECT 'tracking_records', count(*) FROM mt.tracking_records UNION ALL
SELECT 'runs', count(*) FROM mt.runs UNION ALL
SELECT 'run_tenants', count(*) FROM mt.run_tenants UNION ALL
SELECT 'seeds', count(*) FROM mt.seeds UNION ALL
SELECT 'seed_history', count(*) FROM mt.seed_history UNION ALL
SELECT 'config', count(*) FROM mt.config;
SQL
then
  cat "$fill_log" >&2
  die "filling the original database failed (log: $fill_log)"
fi

# The original is clean: what the restored copies must show too.
[ "$(value original "SELECT count(*) FROM mt.status WHERE pending > 0")" = 0 ] ||
  die "the original database has pending migrations (log: $fill_log)"
[ "$(value original "SELECT count(*) FROM mt.drift_summary WHERE has_drift")" = 0 ] ||
  die "the original database has drift: $(value original "SELECT string_agg(tenant_id, ', ') FROM mt.drift_summary WHERE has_drift")"
health_sql="SELECT tenant_id || ' ' || status FROM mt.health ORDER BY 1"
value original "$health_sql" >"$WORK/original.health"
step "original filled: $(value original "SELECT count(*) FROM mt.tenants") tenants, $(value original "SELECT count(*) FROM mt.runs") runs (log: $fill_log)"

# ---------------------------------------------------------------------------------------------
# Snapshots: one file of sorted COPY lines per dumped table of the extension, and
# "last_value is_called" per dumped sequence
# "schema|name|relkind|cols" for every table and sequence pg_extension_config_dump registered
dumped_sql="
SELECT n.nspname, c.relname, c.relkind,
       (SELECT string_agg(quote_ident(a.attname), ',' ORDER BY a.attnum)
          FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped)
  FROM pg_extension e, unnest(e.extconfig) AS cfg(oid)
  JOIN pg_class c ON c.oid = cfg.oid
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE e.extname = '$EXTNAME'
 ORDER BY 1, 2"
# snapshot DB DIR: every dumped table and sequence of DB into DIR
snapshot() {
  local db="$1" dir="$2" schema table kind cols
  mkdir -p "$dir"
  value "$db" "$dumped_sql" -F '|' >"$dir/tables"
  while IFS='|' read -r schema table kind cols; do
    if [ "$kind" = S ]; then
      value "$db" "SELECT last_value || ' ' || is_called FROM $schema.$table" >"$dir/$schema.$table"
    else
      psql_ -d "$db" -c "COPY (SELECT $cols FROM $schema.$table) TO STDOUT" | LC_ALL=C sort >"$dir/$schema.$table"
    fi
  done <"$dir/tables"
}
# The whole database as pg_dump prints it, without pg_dump's own header lines and without
# the rows of the extension's tables and its sequences' positions (compared one by one above).
full_dump() {
  "$PG_BIN/pg_dump" "${CONN[@]}" "$1" |
    grep -v -e '^-- Dumped from' -e '^-- Dumped by' -e '^\\restrict ' -e '^\\unrestrict ' -e "^SELECT pg_catalog.setval('mt\\." |
    awk '/^COPY mt\./ { skip = 1; next } skip && /^\\\.$/ { skip = 0; next } !skip' >"$2"
}
snapshot original "$WORK/original"
full_dump original "$WORK/original.sql"
missing=""
for rel in $REQUIRED_TABLES; do
  grep -q "^${rel%%.*}|${rel#*.}|" "$WORK/original/tables" || missing="$missing $rel"
done
if [ -z "$missing" ]; then
  pass "every table a backup must keep is registered with pg_extension_config_dump ($(wc -l <"$WORK/original/tables") tables and sequences)"
else
  fail "not registered with pg_extension_config_dump, so pg_dump loses their rows:$missing"
fi

"$PG_BIN/pg_dump" "${CONN[@]}" -Fc -f "$WORK/original.dump" original
step "pg_dump -Fc: $(du -k "$WORK/original.dump" | cut -f1) kB"

# ---------------------------------------------------------------------------------------------
# restore_and_check NAME PG_RESTORE_OPTIONS...
restore_and_check() {
  local name="$1" db="restored_$1" t0=$SECONDS rc=0 how
  shift
  how="pg_restore ${*:-(serial)}"
  psql_ -d postgres -c "CREATE DATABASE $db"
  "$PG_BIN/pg_restore" "${CONN[@]}" -d "$db" "$@" "$WORK/original.dump" >"$WORK/$name.log" 2>&1 || rc=$?
  step "$how into $db: rc $rc in $((SECONDS - t0))s"
  if [ "$rc" = 0 ]; then
    pass "$how exits 0$(grep -q . "$WORK/$name.log" && echo " (it said: $(grep -c . "$WORK/$name.log") line(s), $WORK/$name.log)")"
  else
    cat "$WORK/$name.log" >&2
    fail "$how exits 0 (rc $rc)"
  fi

  # (b) the extension's rows
  snapshot "$db" "$WORK/$name"
  local rows_ok=1 rel lines=0 kept=""
  if ! cmp -s "$WORK/original/tables" "$WORK/$name/tables"; then
    echo "restore: the dumped tables of the extension differ after $how:" >&2
    diff -u "$WORK/original/tables" "$WORK/$name/tables" >&2 || true
    rows_ok=0
  fi
  while IFS='|' read -r schema table kind cols; do
    rel="$schema.$table"
    lines=$((lines + $(wc -l <"$WORK/original/$rel")))
    if [ "$kind" = S ]; then
      kept="$kept $table=$(cut -d' ' -f1 "$WORK/original/$rel")"
    else
      kept="$kept $table:$(wc -l <"$WORK/original/$rel" | tr -d ' ')"
    fi
    if ! cmp -s "$WORK/original/$rel" "$WORK/$name/$rel"; then
      echo "restore: $rel differs after $how ($(wc -l <"$WORK/original/$rel") line(s) before, $(wc -l <"$WORK/$name/$rel" 2>/dev/null || echo 0) after):" >&2
      diff -u --label "original $rel" --label "$db $rel" "$WORK/original/$rel" "$WORK/$name/$rel" | head -n 20 >&2 || true
      rows_ok=0
    fi
  done <"$WORK/original/tables"
  if [ "$rows_ok" = 1 ]; then
    pass "$how keeps every row of the extension's tables ($lines lines:$kept)"
  else
    fail "$how keeps every row of the extension's tables ($lines lines:$kept)"
  fi

  # (c) everything else
  full_dump "$db" "$WORK/$name.sql"
  if diff -u --label "original" --label "$db" "$WORK/original.sql" "$WORK/$name.sql" >"$WORK/$name.diff"; then
    pass "$how: the rest of the restored database dumps exactly as the original ($(grep -c . "$WORK/original.sql") lines)"
  else
    head -n 30 "$WORK/$name.diff" >&2
    fail "$how: the rest of the restored database dumps exactly as the original (diff: $WORK/$name.diff)"
  fi

  # (d) nothing to do, nothing replayed; (e) new work goes on
  value "$db" "$health_sql" >"$WORK/$name.health"
  if cmp -s "$WORK/original.health" "$WORK/$name.health"; then
    pass "$how: mt.health as in the original ($(grep -c ' ok$' "$WORK/$name.health") of $(grep -c . "$WORK/$name.health") ok)"
  else
    diff -u --label "original mt.health" --label "$db mt.health" "$WORK/original.health" "$WORK/$name.health" >&2 || true
    fail "$how: mt.health as in the original"
  fi
  if psql_ -d "$db" -v tenant="after-$name" >"$WORK/$name.checks.log" 2>&1 <<'SQL'
\set SHOW_CONTEXT errors
SET client_min_messages = warning;
CREATE TEMP TABLE before AS
SELECT (SELECT max(run_id) FROM mt.runs) AS run_id, (SELECT max(id) FROM mt.seed_history) AS seed_id;
DO $$
DECLARE
    bad text;
BEGIN
    SELECT string_agg(format('%s: %s pending', tenant_id, pending), '; ') INTO bad FROM mt.status WHERE pending > 0;
    IF bad IS NOT NULL THEN RAISE EXCEPTION 'mt.status after the restore: %', bad; END IF;
    SELECT string_agg(format('%s: %s difference(s)', tenant_id, differences), '; ') INTO bad FROM mt.drift_summary WHERE has_drift;
    IF bad IS NOT NULL THEN RAISE EXCEPTION 'mt.drift_summary after the restore: %', bad; END IF;
    IF mt.shared_pending() <> 0 THEN RAISE EXCEPTION 'shared migrations pending after the restore'; END IF;
END
$$;
DO $$
DECLARE
    bad text;
BEGIN
    SELECT string_agg(format('%s: %s, %s applied %s', tenant_id, status, applied, error), '; ') INTO bad
      FROM mt.migrate_all() WHERE applied > 0 OR status NOT IN ('up_to_date', 'skipped');
    IF bad IS NOT NULL THEN RAISE EXCEPTION 'mt.migrate_all after the restore: %', bad; END IF;
    SELECT string_agg(format('%s: %s, %s applied', tenant_id, status, applied), '; ') INTO bad
      FROM mt.migrate_shared() WHERE applied > 0 OR status <> 'up_to_date';
    IF bad IS NOT NULL THEN RAISE EXCEPTION 'mt.migrate_shared after the restore: %', bad; END IF;
END
$$;
-- each in its own transaction: runs with workers refuse one that has written already
DO $$
DECLARE
    bad text;
BEGIN
    SELECT string_agg(format('%s: %s', tenant_id, status), '; ') INTO bad
      FROM mt.seed_all('starter-teams') WHERE status <> 'skipped';
    IF bad IS NOT NULL THEN RAISE EXCEPTION 'seed_all(starter-teams) after the restore ran again: %', bad; END IF;
END
$$;
DO $$
DECLARE
    bad text;
BEGIN
    SELECT string_agg(format('%s: %s', tenant_id, status), '; ') INTO bad
      FROM mt.seed_all('owner-team') WHERE status <> 'skipped';
    IF bad IS NOT NULL THEN RAISE EXCEPTION 'seed_all(owner-team) after the restore ran again: %', bad; END IF;
    IF mt.seed_shared('countries') <> 'skipped' THEN RAISE EXCEPTION 'seed_shared(countries) after the restore ran again'; END IF;
END
$$;
-- new work: a template copy with a role and a seed; ids continue after the restored ones
SELECT tenant_id, role_name IS NOT NULL AS has_role FROM mt.create_tenant(:'tenant', seed => 'starter-teams');
DO $$
DECLARE
    old record;
BEGIN
    SELECT * INTO old FROM before;
    IF (SELECT max(run_id) FROM mt.runs) <= old.run_id THEN RAISE EXCEPTION 'mt.runs: no run id after %', old.run_id; END IF;
    IF (SELECT max(id) FROM mt.seed_history) <= old.seed_id THEN RAISE EXCEPTION 'mt.seed_history: no id after %', old.seed_id; END IF;
END
$$;
SELECT tenant_id, pending FROM mt.status WHERE pending > 0;
SQL
  then
    pass "$how: nothing pending, no drift, migrate_all and migrate_shared apply nothing, seeds skip, a new tenant gets the next ids"
  else
    cat "$WORK/$name.checks.log" >&2
    fail "$how: nothing pending, no drift, migrate_all and migrate_shared apply nothing, seeds skip, a new tenant gets the next ids"
  fi
  return 0
}

restore_and_check serial
restore_and_check parallel -j 4

# ---------------------------------------------------------------------------------------------
# (f) pg_restore --clean over a database that has the extension and tenants
psql_ -d postgres -c "CREATE DATABASE restored_clean TEMPLATE original"
counts_sql="SELECT (SELECT count(*) FROM mt.tenants) || ' ' || (SELECT count(*) FROM mt.tracking_records) || ' '
                   || (SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'tenant\_%')"
before="$(value restored_clean "$counts_sql")"
rc=0
"$PG_BIN/pg_restore" "${CONN[@]}" --clean --if-exists --single-transaction -d restored_clean "$WORK/original.dump" \
  >"$WORK/clean-refused.log" 2>&1 || rc=$?
if [ "$rc" != 0 ] && grep -q 'cannot drop extension multitenant' "$WORK/clean-refused.log" &&
    [ "$(value restored_clean "$counts_sql")" = "$before" ]; then
  pass "pg_restore --clean --single-transaction over a database with tenants: DROP EXTENSION refused (rc $rc), nothing changed"
else
  cat "$WORK/clean-refused.log" >&2
  fail "pg_restore --clean --single-transaction over a database with tenants: DROP EXTENSION refused, nothing changed (rc $rc)"
fi
rc=0
PGOPTIONS='-c mt.allow_drop=on' "$PG_BIN/pg_restore" "${CONN[@]}" --clean --if-exists --single-transaction \
  -d restored_clean "$WORK/original.dump" >"$WORK/clean.log" 2>&1 || rc=$?
if [ "$rc" = 0 ] && [ "$(value restored_clean "$counts_sql")" = "$before" ] &&
    [ "$(value restored_clean "SELECT count(*) FROM mt.status WHERE pending > 0")" = 0 ]; then
  pass "PGOPTIONS='-c mt.allow_drop=on' pg_restore --clean --single-transaction: rc 0, tenants, ledger and schemas as before ($before)"
else
  cat "$WORK/clean.log" >&2
  fail "PGOPTIONS='-c mt.allow_drop=on' pg_restore --clean --single-transaction: rc 0, tenants, ledger and schemas as before (rc $rc)"
fi

step "done"
if [ "$failed" -gt 0 ]; then
  printf 'restore: failed: %s\n' "${failures[@]}" >&2
  echo "restore: $passed passed, $failed failed" >&2
  exit 1
fi
echo "restore: $passed passed, 0 failed"
