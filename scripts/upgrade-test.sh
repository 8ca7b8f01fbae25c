#!/usr/bin/env bash
# The upgrade test: a database created at the previous release, filled, then updated with
# ALTER EXTENSION multitenant UPDATE, must
#   (a) keep every row of the extension's tables (and its sequences' positions),
#   (b) hold exactly what a fresh CREATE EXTENSION holds: the extension's members, its config
#       tables, a normalized pg_dump --schema-only of every schema it owns, and the rows of the
#       tables the extension itself fills (mt.config_options),
#   (c) pass the pg_regress suites of pg_test/ (each suite on a copy of a database created at
#       the previous release and updated),
#   (d) keep working: a migration run and a seed run afterwards replay nothing.
# Filling the old database happens with the new files installed, so it also proves that a
# database still on the old release keeps working until it is updated.
#
#   scripts/upgrade-test.sh      expects the current tree installed (`make install`)
#
# The previous release's library is built from its commit in a git worktree under
# target/upgrade (in the same CARGO_TARGET_DIR, so dependencies are not rebuilt) and installed
# as $libdir/multitenant.so, the file 0.1.0 databases load; its frozen install script
# sql/released/multitenant--0.1.0.sql goes next to the current control file. Neither clashes
# with the current install ($libdir/multitenant-<version>.so). The worktree's crate is renamed
# (multitenant_v0_1_0) so that its build does not overwrite target/debug/libmultitenant.so,
# the current build's artifact (a cdylib's file name carries no hash).
#
# Environment: UPGRADE_PORT (25355), UPGRADE_SKIP_REGRESS=1 skips (c),
# UPGRADE_KEEP=1 leaves the cluster running for a look (scripts/cluster.sh stop upgrade).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PG_BIN="${PG_BIN:-/usr/lib/postgresql/15/bin}"
PG_CONFIG="$PG_BIN/pg_config"
PORT="${UPGRADE_PORT:-25355}"
OLD_VERSION=0.1.0
OLD_COMMIT=0cc5e7ffd0a718e2219c8e19748fb72f604ac35e   # v0.1.0 (a fresh clone may lack the tag)
OLD_CRATE=multitenant_v0_1_0
EXTNAME=multitenant
# Tables the extension uses as a cache: an update may keep their rows or empty them.
CACHE_TABLES=" mt.template_scripts "

cd "$ROOT"
WORK="$ROOT/target/upgrade"
OLD_TREE="$WORK/v$OLD_VERSION"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
case "$TARGET_DIR" in /*) ;; *) TARGET_DIR="$ROOT/$TARGET_DIR" ;; esac
PKGLIBDIR="$("$PG_CONFIG" --pkglibdir)"
EXTDIR="$("$PG_CONFIG" --sharedir)/extension"
PG_REGRESS="$PKGLIBDIR/pgxs/src/test/regress/pg_regress"
export PGTZ=UTC PGDATESTYLE=ISO
unset RUST_BACKTRACE RUST_LIB_BACKTRACE

passed=0
failed=0
failures=()
pass() { echo "upgrade: PASS $1"; passed=$((passed + 1)); }
fail() { echo "upgrade: FAIL $1" >&2; failed=$((failed + 1)); failures+=("$1"); }
die() { echo "upgrade: $*" >&2; echo "upgrade: $passed passed, $((failed + 1)) failed" >&2; exit 1; }
step() { echo "upgrade: [$((SECONDS - START))s] $*"; }
START=$SECONDS
trap 'echo "upgrade: aborted at line $LINENO: $passed passed, $((failed + 1)) failed" >&2' ERR

psql_() { "$PG_BIN/psql" -X -q -h 127.0.0.1 -p "$PORT" -U postgres -v ON_ERROR_STOP=1 "$@"; }
# one value, unaligned
value() { psql_ -At -d "$1" -c "$2"; }

# ---------------------------------------------------------------------------------------------
# The current install
NEW_VERSION="$(sed -n "s/^default_version *= *'\(.*\)'/\1/p" "$EXTDIR/$EXTNAME.control" 2>/dev/null || true)"
[ -n "$NEW_VERSION" ] || die "no $EXTDIR/$EXTNAME.control: run make install first"
[ -f "$EXTDIR/$EXTNAME--$NEW_VERSION.sql" ] || die "no $EXTNAME--$NEW_VERSION.sql installed: run make install"
[ -f "$EXTDIR/$EXTNAME--$OLD_VERSION--$NEW_VERSION.sql" ] ||
  die "no update script $EXTNAME--$OLD_VERSION--$NEW_VERSION.sql installed: run make install"
[ "$NEW_VERSION" != "$OLD_VERSION" ] || die "the installed version is still $OLD_VERSION"
step "updating $OLD_VERSION -> $NEW_VERSION (installed: $EXTDIR/$EXTNAME.control)"

# ---------------------------------------------------------------------------------------------
# The previous release: its library, built from its commit, and its frozen install script
step "building the $OLD_VERSION library from commit ${OLD_COMMIT:0:7}"
mkdir -p "$WORK"
if ! git cat-file -e "$OLD_COMMIT^{commit}" 2>/dev/null; then
  git fetch --quiet origin "$OLD_COMMIT" ||
    die "commit $OLD_COMMIT ($OLD_VERSION) is not in this clone and cannot be fetched (a shallow clone? git fetch --unshallow)"
fi
tree_ok() {
  [ -e "$OLD_TREE/.git" ] &&
    [ "$(git -C "$OLD_TREE" rev-parse HEAD 2>/dev/null)" = "$OLD_COMMIT" ] &&
    git -C "$OLD_TREE" diff --quiet HEAD -- . ':(exclude)Cargo.toml' &&
    grep -q "^name = \"$OLD_CRATE\"" "$OLD_TREE/Cargo.toml"
}
if ! tree_ok; then
  git worktree prune
  if [ -e "$OLD_TREE" ]; then git worktree remove --force "$OLD_TREE" 2>/dev/null || rm -rf "$OLD_TREE"; fi
  git worktree prune
  git worktree add --quiet --force --detach "$OLD_TREE" "$OLD_COMMIT"
  sed -i "s/^\[lib\]\$/[lib]\nname = \"$OLD_CRATE\"/" "$OLD_TREE/Cargo.toml"
  tree_ok || die "could not prepare the $OLD_VERSION worktree in $OLD_TREE"
fi
build_start=$SECONDS
(cd "$OLD_TREE" && CARGO_TARGET_DIR="$TARGET_DIR" cargo build --locked --quiet --lib -p "$EXTNAME" \
   --no-default-features --features pg15) || die "building $OLD_VERSION failed"
step "built $TARGET_DIR/debug/lib$OLD_CRATE.so in $((SECONDS - build_start))s"

# Atomic replace: a running backend may have the old file mapped.
install_file() {
  local src="$1" dest="$2" mode="$3"
  if ! cmp -s "$src" "$dest"; then
    cp "$src" "$dest.tmp.$$" && chmod "$mode" "$dest.tmp.$$" && mv -f "$dest.tmp.$$" "$dest"
  fi
}
install_file "$TARGET_DIR/debug/lib$OLD_CRATE.so" "$PKGLIBDIR/$EXTNAME.so" 755
install_file "sql/released/$EXTNAME--$OLD_VERSION.sql" "$EXTDIR/$EXTNAME--$OLD_VERSION.sql" 644
step "installed $PKGLIBDIR/$EXTNAME.so and $EXTDIR/$EXTNAME--$OLD_VERSION.sql"

# ---------------------------------------------------------------------------------------------
# A throwaway cluster, new each run
DATA="$(scripts/cluster.sh dir upgrade)"
scripts/cluster.sh stop upgrade
rm -rf "$DATA"
scripts/cluster.sh start upgrade "$PORT"
if [ "${UPGRADE_KEEP:-0}" != 1 ]; then trap 'scripts/cluster.sh stop upgrade' EXIT; fi
DRIZZLE="$DATA-drizzle"
rm -rf "$DRIZZLE" && cp -r examples/drizzle "$DRIZZLE" && chmod -R a+rX "$DRIZZLE"
rm -rf "$WORK/before" "$WORK/after" "$WORK/schema" "$WORK/regress"
mkdir -p "$WORK/before" "$WORK/after" "$WORK/schema"

psql_ -d postgres -c "CREATE DATABASE upgraded" -c "CREATE DATABASE fresh" -c "CREATE DATABASE regress_template"

# ---------------------------------------------------------------------------------------------
# A 0.1.0 database with a bit of everything, made through 0.1.0's own API
step "filling a $OLD_VERSION database (the $NEW_VERSION files are installed: proves $OLD_VERSION keeps working)"
fill_log="$WORK/fill.log"
if ! psql_ -d upgraded -v drizzle_dir="$DRIZZLE" -v old_version="$OLD_VERSION" >"$fill_log" 2>&1 <<'SQL'
\set SHOW_CONTEXT errors
SET client_min_messages = warning;
CREATE EXTENSION multitenant VERSION :'old_version';
SELECT extversion FROM pg_extension WHERE extname = 'multitenant';
-- settings changed from their defaults (more below)
SELECT mt.set_config('tracking_table', '__upg_migrations');

-- migrations: a drizzle-kit folder and a shared one (a plain tenant one comes below)
SELECT action, count(*) FROM mt.load_migrations(:'drizzle_dir') GROUP BY 1;
SELECT mt.add_migration('0000_countries', 'CREATE TABLE IF NOT EXISTS upg_countries (code text PRIMARY KEY, name text);', scope => 'shared');
SELECT * FROM mt.migrate_shared();

-- tenants: created migrated (from the template), created bare, in bulk, adopted, suspended
SELECT tenant_id, schema_name FROM mt.create_tenant('upg-alpha', '{"plan": "pro", "seats": 12}');
SELECT tenant_id, schema_name FROM mt.create_tenant('upg-beta', migrate => false);
SELECT mt.set_config('tracking_format', 'drizzle-kit');
SELECT tenant_id, schema_name FROM mt.create_tenant('upg-gamma', use_template => false);
SELECT tenant_id, status FROM mt.create_tenants(ARRAY['upg-delta', 'upg-epsilon', 'bad id!'], concurrency => 2);
SELECT mt.set_config('tracking_format', 'hash');
CREATE SCHEMA tenant_upg_legacy;
CREATE TABLE tenant_upg_legacy.legacy_notes (id int PRIMARY KEY, body text);
SELECT * FROM mt.adopt_tenants('tenant\_upg\_legacy');
UPDATE mt.tenants SET status = 'suspended' WHERE tenant_id = 'upg-epsilon';

-- runs: one with a failing tenant, then the fix; a dry run; bookkeeping runs
CREATE TABLE tenant_upg_alpha.legacy_flags (id int);
SELECT mt.add_migration('0022_legacy_flags', 'CREATE TABLE legacy_flags (id int PRIMARY KEY);') AS registered;
SELECT tenant_id, applied, status, sqlstate FROM mt.migrate_all(concurrency => 2);
DROP TABLE tenant_upg_alpha.legacy_flags;
SELECT tenant_id, applied, status FROM mt.migrate_all(tenant_ids => ARRAY['upg-alpha']);
SELECT count(*) FROM mt.migrate_all(dry_run => true);
SELECT tenant_id, status FROM mt.mark_missing(ARRAY['upg-alpha']);
SELECT tenant_id, status FROM mt.convert_tracking('name', ARRAY['upg-gamma']);
SELECT tenant_id, status FROM mt.clean_orphans(dry_run => true);

-- data in tenants, a clone with it, template copies
INSERT INTO tenant_upg_alpha.users (email, name) VALUES ('ann@alpha.test', 'Ann'), ('bob@alpha.test', 'Bob');
SELECT tenant_id FROM mt.clone_tenant('upg-alpha', 'upg-alpha-copy', include_data => true,
       anonymize => '{"users": {"email": {"template": "user-{hash}@example.com"}}}');
SELECT mt.template_is_current();
SELECT tenant_id FROM mt.create_tenant('upg-zeta');

-- seeds: SQL and a function, tenant and shared scope, forced reruns
CREATE FUNCTION public.upg_seed(tenant_id text, schema_name text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('INSERT INTO %I.teams (name, slug) VALUES (%L, %L)', schema_name, tenant_id, 'owner-' || tenant_id);
END
$$;
SELECT name FROM mt.register_seed('starter-teams', $$INSERT INTO teams (name, slug) VALUES ('Everyone', 'everyone') ON CONFLICT DO NOTHING$$);
SELECT name FROM mt.register_seed('owner-team', 'public.upg_seed(text, text)'::regprocedure);
SELECT name FROM mt.register_seed('countries', $$INSERT INTO upg_countries VALUES ('fr', 'France') ON CONFLICT DO NOTHING$$, scope => 'shared');
SELECT tenant_id, status FROM mt.seed_all('starter-teams', concurrency => 2) ORDER BY 1;
SELECT mt.seed_tenant('upg-alpha', 'owner-team');
SELECT mt.seed_tenant('upg-alpha', 'starter-teams', force => true);
SELECT mt.seed_shared('countries');

-- drift: hand-made changes the drift views report
ALTER TABLE tenant_upg_delta.users ALTER COLUMN name TYPE varchar(100);
DROP INDEX tenant_upg_delta.tasks_open_idx;
SELECT tenant_id, differences FROM mt.drift_summary WHERE has_drift;

-- what there is now
SELECT 'tenants' AS t, count(*) FROM mt.tenants UNION ALL
SELECT 'migrations', count(*) FROM mt.migrations UNION ALL
SELECT 'tracking_records', count(*) FROM mt.tracking_records UNION ALL
SELECT 'runs', count(*) FROM mt.runs UNION ALL
SELECT 'run_tenants', count(*) FROM mt.run_tenants UNION ALL
SELECT 'seeds', count(*) FROM mt.seeds UNION ALL
SELECT 'seed_history', count(*) FROM mt.seed_history UNION ALL
SELECT 'config', count(*) FROM mt.config UNION ALL
SELECT 'template_scripts', count(*) FROM mt.template_scripts;
SQL
then
  cat "$fill_log" >&2
  die "filling the $OLD_VERSION database failed (log: $fill_log)"
fi
[ "$(value upgraded "SELECT extversion FROM pg_extension WHERE extname = '$EXTNAME'")" = "$OLD_VERSION" ] ||
  die "the filled database is not at $OLD_VERSION"
pass "a $OLD_VERSION database works with the $NEW_VERSION files installed (fill: $fill_log)"

# ---------------------------------------------------------------------------------------------
# Snapshots of the extension's tables: one file of sorted COPY lines per table
# "schema|table|relkind|dumped|col,col,..." for every table (and sequence) of the extension
members_sql="
SELECT n.nspname, c.relname, c.relkind,
       c.oid = ANY (coalesce(e.extconfig, '{}')) AS dumped,
       (SELECT string_agg(quote_ident(a.attname), ',' ORDER BY a.attnum)
          FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped)
  FROM pg_depend d
  JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = '$EXTNAME'
  JOIN pg_class c ON c.oid = d.objid
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_extension'::regclass
   AND d.deptype = 'e' AND c.relkind IN ('r', 'p', 'S')
 ORDER BY 1, 2"
# snapshot DB SCHEMA.TABLE RELKIND COLS FILE
snapshot() {
  local db="$1" rel="$2" kind="$3" cols="$4" out="$5"
  if [ "$kind" = S ]; then
    value "$db" "SELECT last_value || ' ' || is_called FROM $rel" >"$out"
  else
    psql_ -d "$db" -c "COPY (SELECT $cols FROM $rel) TO STDOUT" | LC_ALL=C sort >"$out"
  fi
}
step "snapshotting every row of the extension's tables"
value upgraded "$members_sql" -F '|' >"$WORK/before/tables"
while IFS='|' read -r schema table kind dumped cols; do
  snapshot upgraded "$schema.$table" "$kind" "$cols" "$WORK/before/$schema.$table"
done <"$WORK/before/tables"
snapshot_rows=$(cat "$WORK"/before/*.* 2>/dev/null | wc -l)
step "$(wc -l <"$WORK/before/tables") tables and sequences, $snapshot_rows lines"

# ---------------------------------------------------------------------------------------------
# The update, each in a new session that has not loaded the old library
psql_ -d fresh -c "SET client_min_messages = warning" -c "CREATE EXTENSION $EXTNAME"
psql_ -d regress_template -c "SET client_min_messages = warning" -c "CREATE EXTENSION $EXTNAME VERSION '$OLD_VERSION'"
update_ok=1
for db in upgraded regress_template; do
  t0=$SECONDS
  if ! psql_ -d "$db" -c "ALTER EXTENSION $EXTNAME UPDATE" >"$WORK/update-$db.log" 2>&1; then
    cat "$WORK/update-$db.log" >&2
    update_ok=0
    continue
  fi
  v="$(value "$db" "SELECT extversion FROM pg_extension WHERE extname = '$EXTNAME'")"
  if [ "$v" != "$NEW_VERSION" ]; then
    echo "upgrade: database $db is at $v after the update, not $NEW_VERSION" >&2
    update_ok=0
  fi
  step "ALTER EXTENSION $EXTNAME UPDATE in $db: $((SECONDS - t0))s"
done
if [ "$update_ok" = 1 ]; then
  pass "ALTER EXTENSION $EXTNAME UPDATE takes $OLD_VERSION to $NEW_VERSION"
else
  fail "ALTER EXTENSION $EXTNAME UPDATE takes $OLD_VERSION to $NEW_VERSION"
  echo "upgrade: $passed passed, $failed failed (${failures[*]})" >&2
  exit 1
fi

# ---------------------------------------------------------------------------------------------
# (a) every row kept; (b, data) the tables the extension fills equal a fresh install's
step "(a) comparing the rows"
value upgraded "$members_sql" -F '|' >"$WORK/after/tables"
value fresh "$members_sql" -F '|' >"$WORK/after/fresh-tables"
rows_ok=1
while IFS='|' read -r schema table kind dumped cols; do
  rel="$schema.$table"
  now="$(awk -F'|' -v r="$rel" '$1 "." $2 == r' "$WORK/after/tables")"
  if [ -z "$now" ]; then
    # moved to another schema of the extension?
    now="$(awk -F'|' -v t="$table" '$2 == t' "$WORK/after/tables")"
    if [ "$(printf '%s' "$now" | grep -c '^')" -ne 1 ]; then
      echo "upgrade: $rel is gone after the update: its $(wc -l <"$WORK/before/$rel") row(s) are lost" >&2
      rows_ok=0
      continue
    fi
    echo "upgrade: $rel moved to $(printf '%s' "$now" | cut -d'|' -f1).$table"
  fi
  new_rel="$(printf '%s' "$now" | cut -d'|' -f1).$table"
  new_cols=",$(printf '%s' "$now" | cut -d'|' -f5),"
  missing=""
  if [ "$kind" != S ]; then
    for c in ${cols//,/ }; do
      case "$new_cols" in *",$c,"*) ;; *) missing="$missing $c" ;; esac
    done
  fi
  if [ -n "$missing" ]; then
    echo "upgrade: $rel lost column(s):$missing" >&2
    rows_ok=0
    continue
  fi
  if ! snapshot upgraded "$new_rel" "$kind" "$cols" "$WORK/after/$rel"; then
    echo "upgrade: cannot read the rows of $rel after the update" >&2
    rows_ok=0
    continue
  fi
  if [ "$dumped" = f ] && [ "$kind" != S ]; then
    case "$CACHE_TABLES" in
      *" $rel "*)
        # a cache: kept or emptied
        if [ -s "$WORK/after/$rel" ] && ! cmp -s "$WORK/before/$rel" "$WORK/after/$rel"; then
          echo "upgrade: cache $rel neither kept nor emptied:" >&2
          diff -u "$WORK/before/$rel" "$WORK/after/$rel" | head -n 20 >&2
          rows_ok=0
        fi
        continue ;;
    esac
    continue   # filled by the extension itself: compared with a fresh install below
  fi
  if ! cmp -s "$WORK/before/$rel" "$WORK/after/$rel"; then
    echo "upgrade: rows of $rel changed ($(wc -l <"$WORK/before/$rel") before, $(wc -l <"$WORK/after/$rel") after):" >&2
    diff -u "$WORK/before/$rel" "$WORK/after/$rel" | head -n 40 >&2
    rows_ok=0
  fi
done <"$WORK/before/tables"
if [ "$rows_ok" = 1 ]; then
  pass "(a) every row of the extension's tables kept ($snapshot_rows lines, $(wc -l <"$WORK/before/tables") tables and sequences)"
else
  fail "(a) every row of the extension's tables kept"
fi

step "(b) comparing the extension's own data with a fresh install"
data_ok=1
compared=""
while IFS='|' read -r schema table kind dumped cols; do
  rel="$schema.$table"
  [ "$kind" != S ] && [ "$dumped" = f ] || continue
  case "$CACHE_TABLES" in *" $rel "*) continue ;; esac
  snapshot fresh "$rel" "$kind" "$cols" "$WORK/schema/fresh-data.$rel"
  if ! grep -q "^$schema|$table|" "$WORK/after/tables"; then
    echo "upgrade: $rel is missing after the update" >&2
    data_ok=0
    continue
  fi
  if ! snapshot upgraded "$rel" "$kind" "$cols" "$WORK/schema/upgraded-data.$rel"; then
    echo "upgrade: cannot read $rel after the update as a fresh install has it ($cols)" >&2
    data_ok=0
    continue
  fi
  if ! diff -u --label "fresh $rel" --label "updated $rel" \
      "$WORK/schema/fresh-data.$rel" "$WORK/schema/upgraded-data.$rel" >"$WORK/schema/data.$rel.diff"; then
    echo "upgrade: rows of $rel differ from a fresh install:" >&2
    head -n 40 "$WORK/schema/data.$rel.diff" >&2
    data_ok=0
  fi
  compared="$compared $rel"
done <"$WORK/after/fresh-tables"
if [ "$data_ok" = 1 ]; then
  pass "(b) the rows the extension defines equal a fresh install's:${compared:- none}"
else
  fail "(b) the rows the extension defines equal a fresh install's"
fi

# ---------------------------------------------------------------------------------------------
# (b) the extension's objects: members, config tables and a normalized pg_dump --schema-only
# of every schema it owns, in a scratch copy where the extension lets go of its members
# (pg_dump never dumps extension members) and every other schema is dropped.
dissolve_sql="
SET client_min_messages = warning;
SET session_replication_role = replica;   -- no event trigger fires here
CREATE TEMP TABLE ext_schemas AS
SELECT extnamespace AS oid FROM pg_extension WHERE extname = '$EXTNAME'
UNION
SELECT d.objid FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = '$EXTNAME'
 WHERE d.classid = 'pg_namespace'::regclass AND d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e';
DO \$\$
DECLARE r record;
BEGIN
    FOR r IN SELECT (pg_identify_object(d.classid, d.objid, d.objsubid)).*
               FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = '$EXTNAME'
              WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e' LOOP
        EXECUTE format('ALTER EXTENSION $EXTNAME DROP %s %s', r.type, r.identity);
    END LOOP;
    FOR r IN SELECT nspname FROM pg_namespace
              WHERE nspname !~ '^pg_' AND nspname <> 'information_schema'
                AND oid NOT IN (SELECT oid FROM ext_schemas) LOOP
        EXECUTE format('DROP SCHEMA %I CASCADE', r.nspname);
    END LOOP;
END
\$\$;"
describe_sql="
SELECT 'member: ' || (pg_identify_object(d.classid, d.objid, d.objsubid)).type || ' '
       || (pg_identify_object(d.classid, d.objid, d.objsubid)).identity
  FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = '$EXTNAME'
 WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
UNION ALL
SELECT 'config table: ' || c::regclass::text || ' WHERE ' || coalesce(nullif(w, ''), 'true')
  FROM pg_extension e, unnest(e.extconfig, e.extcondition) AS u(c, w)
 WHERE e.extname = '$EXTNAME'
UNION ALL
SELECT 'schema: ' || n.nspname
  FROM pg_namespace n
 WHERE n.oid = (SELECT extnamespace FROM pg_extension WHERE extname = '$EXTNAME')
    OR n.oid IN (SELECT objid FROM pg_depend WHERE classid = 'pg_namespace'::regclass
                    AND refclassid = 'pg_extension'::regclass AND deptype = 'e'
                    AND refobjid = (SELECT oid FROM pg_extension WHERE extname = '$EXTNAME'))
ORDER BY 1"
# pg_dump text -> one line per dumped object (its header, then its statements joined by \037),
# sorted; pg_dump's own comments, the preamble's SET lines and blank lines dropped.
normalize_dump() {
  awk '
    function flush() { if (key != "" || body != "") print key body; key = ""; body = "" }
    /^-- Name: /                                            { flush(); key = substr($0, 4); started = 1; next }
    /^--$/ || /^-- (PostgreSQL database dump|Dumped (from|by) )/ { next }
    /^\\(un)?restrict /                                     { next }
    !started && (/^SET / || /^SELECT pg_catalog.set_config\(/) { next }
    /^[[:space:]]*$/                                        { next }
    { body = body "\037" $0 }
    END { flush() }' | LC_ALL=C sort | awk '{ gsub("\037", "\n    "); print }'
}
# extension_objects DB OUT
extension_objects() {
  local db="$1" out="$2" scratch="upgrade_scratch_$1"
  psql_ -d postgres -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS $scratch" -c "CREATE DATABASE $scratch TEMPLATE $db" &&
    value "$scratch" "$describe_sql" >"$out" &&
    psql_ -d "$scratch" -c "$dissolve_sql" &&
    "$PG_BIN/pg_dump" -h 127.0.0.1 -p "$PORT" -U postgres --schema-only "$scratch" | normalize_dump >>"$out" &&
    psql_ -d postgres -c "DROP DATABASE $scratch"
}
step "(b) comparing the extension's objects with a fresh install (pg_dump --schema-only)"
if extension_objects fresh "$WORK/schema/fresh.sql" && extension_objects upgraded "$WORK/schema/upgraded.sql"; then
  if diff -u --label "fresh CREATE EXTENSION $EXTNAME ($NEW_VERSION)" \
      --label "$OLD_VERSION + ALTER EXTENSION $EXTNAME UPDATE" \
      "$WORK/schema/fresh.sql" "$WORK/schema/upgraded.sql" >"$WORK/schema/schema.diff"; then
    pass "(b) the extension's objects equal a fresh install's ($(grep -c '^member: ' "$WORK/schema/fresh.sql") members)"
  else
    cat "$WORK/schema/schema.diff" >&2
    echo "upgrade: schema diff: $WORK/schema/schema.diff ($(grep -c '^[-+][^-+]' "$WORK/schema/schema.diff") lines differ)" >&2
    fail "(b) the extension's objects equal a fresh install's"
  fi
else
  fail "(b) the extension's objects equal a fresh install's (could not dump them)"
fi

# ---------------------------------------------------------------------------------------------
# (d) the updated database keeps working, and replays nothing it has done already
step "(d) a migration run and a seed run on the updated database"
if psql_ -d upgraded >"$WORK/after-runs.log" 2>&1 <<'SQL'
\set SHOW_CONTEXT errors
SET client_min_messages = warning;
DO $$
DECLARE
    bad text;
BEGIN
    SELECT string_agg(format('%s: %s, %s applied %s', tenant_id, status, applied, error), '; ') INTO bad
      FROM mt.migrate_all() WHERE applied > 0 OR status = 'failed';
    IF bad IS NOT NULL THEN RAISE EXCEPTION 'migrate_all after the update: %', bad; END IF;
END
$$;
-- its own transaction: runs with workers refuse one that has written already
DO $$
DECLARE
    bad text;
BEGIN
    SELECT string_agg(format('%s: %s', tenant_id, status), '; ') INTO bad
      FROM mt.seed_all('starter-teams') WHERE status <> 'skipped';
    IF bad IS NOT NULL THEN RAISE EXCEPTION 'seed_all after the update ran again: %', bad; END IF;
END
$$;
SQL
then
  pass "(d) after the update a migration run applies nothing and a seed run skips every tenant"
else
  cat "$WORK/after-runs.log" >&2
  fail "(d) after the update a migration run applies nothing and a seed run skips every tenant"
fi

# ---------------------------------------------------------------------------------------------
# (c) the pg_regress suites, each on a copy of a database created at 0.1.0 and updated. The
# suites install the extension themselves (pg_test/helpers.sql: CREATE EXTENSION multitenant);
# a copy of pg_test/ says CREATE EXTENSION IF NOT EXISTS instead, in the input and in the
# expected output, and nothing else changes.
if [ "${UPGRADE_SKIP_REGRESS:-0}" = 1 ]; then
  step "(c) skipped (UPGRADE_SKIP_REGRESS=1)"
else
  step "(c) the pg_regress suites on updated databases"
  REG="$WORK/regress"
  mkdir -p "$REG/out"
  cp -r pg_test "$REG/pg_test"
  rm -rf "$REG/pg_test/results" "$REG/pg_test/regression."*
  sed -i 's/^CREATE EXTENSION multitenant;$/CREATE EXTENSION IF NOT EXISTS multitenant;/' \
    "$REG/pg_test/helpers.sql" "$REG/pg_test/expected/"*.out
  grep -q '^CREATE EXTENSION IF NOT EXISTS multitenant;$' "$REG/pg_test/helpers.sql" ||
    fail "(c) pg_test/helpers.sql no longer says CREATE EXTENSION multitenant; (update this script)"
  # The suites read their migration folders from this fixed path (see scripts/regress.sh).
  FIXTURES=/tmp/mt_regress_fixtures
  mkdir -p "$FIXTURES"
  cp -r pg_test/fixtures/. "$FIXTURES/"
  cp -r examples/drizzle/. "$FIXTURES/drizzle/"
  chmod -R a+rX "$FIXTURES"
  suites=$(ls pg_test/sql/*.sql | xargs -n1 basename | sed 's/\.sql$//')
  # Tenant roles are cluster-wide and every suite reuses tenant ids: as scripts/regress.sh
  # does, the roles a suite's tenants got go before the next suite (those of the databases
  # above, tenants upg-*, stay: they still own objects).
  drop_tenant_roles() {
    psql_ -d postgres -c "SET client_min_messages = warning" -c "DO \$\$ DECLARE r record; BEGIN
        FOR r IN SELECT a.rolname FROM pg_authid a JOIN pg_shdescription d ON d.objoid = a.oid AND d.classoid = 'pg_authid'::regclass
                  WHERE d.description LIKE 'multitenant: role of tenant %' LOOP
            BEGIN
                EXECUTE format('DROP ROLE %I', r.rolname);
            EXCEPTION WHEN dependent_objects_still_exist THEN NULL;
            END;
        END LOOP; END \$\$"
  }
  drop_tenant_roles
  regress_failed=()
  for suite in $suites; do
    db="regress_$suite"
    # what pg_regress does to the databases it creates
    psql_ -d postgres -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" \
      -c "CREATE DATABASE $db TEMPLATE regress_template" \
      -c "ALTER DATABASE $db SET lc_messages TO 'C'" -c "ALTER DATABASE $db SET lc_monetary TO 'C'" \
      -c "ALTER DATABASE $db SET lc_numeric TO 'C'" -c "ALTER DATABASE $db SET lc_time TO 'C'" \
      -c "ALTER DATABASE $db SET bytea_output TO 'hex'" -c "ALTER DATABASE $db SET timezone_abbreviations TO 'Default'"
    mkdir -p "$REG/out/$suite"
    if ! (cd "$REG" && "$PG_REGRESS" --bindir="$PG_BIN" --host=127.0.0.1 --port="$PORT" --user=postgres \
          --use-existing --inputdir=pg_test --outputdir="$REG/out/$suite" --dbname="$db" "$suite") \
          >"$REG/out/$suite.log" 2>&1; then
      regress_failed+=("$suite")
      cat "$REG/out/$suite.log"
      if [ -f "$REG/out/$suite/regression.diffs" ]; then
        head -n 80 "$REG/out/$suite/regression.diffs"
        echo "upgrade: (all of it: $REG/out/$suite/regression.diffs)"
      fi
    fi
    psql_ -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)"
    drop_tenant_roles
  done
  if [ "${#regress_failed[@]}" -eq 0 ]; then
    pass "(c) the pg_regress suites pass on updated databases ($(echo $suites | wc -w) suites)"
  else
    fail "(c) the pg_regress suites pass on updated databases (failing: ${regress_failed[*]})"
  fi
fi

step "done"
if [ "$failed" -gt 0 ]; then
  echo "upgrade: $passed passed, $failed failed" >&2
  printf 'upgrade: failed: %s\n' "${failures[@]}" >&2
  exit 1
fi
echo "upgrade: $passed passed, 0 failed"
