#!/usr/bin/env bash
# Runs the predecessor, the drizzle-multitenant 1.3.5 CLI (npm), on the benchmark's corpus, so
# that the benchmark can time it in the same run as ours.
#
#   bench/predecessor/run.sh install                  npm ci (skipped when node_modules matches package-lock.json)
#   bench/predecessor/run.sh migrate DATABASE_URL N   prepare (untimed, see below), then time
#                                                     `drizzle-multitenant migrate --all --concurrency 10`
#                                                     over tenants t1..tN; run it again for the no-op rerun
#   bench/predecessor/run.sh status DATABASE_URL N    time `drizzle-multitenant status`
#   bench/predecessor/run.sh diff DATABASE_URL N      time `drizzle-multitenant diff` (schema drift of every
#                                                     tenant against the first, concurrency 10). On PostgreSQL < 18
#                                                     it reports every tenant but the first as drifted, from NOT NULL
#                                                     "constraints" whose names hold table oids: the summary counts
#                                                     those apart and fails when the number of tenants with
#                                                     other drift is not $MT_PRED_DIFF_EXPECT (default 0)
#   bench/predecessor/run.sh verify DATABASE_URL N    check every tenant schema against bench/corpus/<corpus>.expected.json
#                                                     (tables, columns, enums, FKs, indexes, ...) and that its
#                                                     tracking table has one row per migration
#   bench/predecessor/run.sh drop DATABASE_URL        drop every schema named $MT_PRED_SCHEMA_PREFIX* (CASCADE)
#
# N may be `db` (or left out for status/diff/verify): the tenants are then discovered from the database,
# every schema named <MT_PRED_SCHEMA_PREFIX><id>. Otherwise the tenant ids are
# <MT_PRED_TENANT_ID_PREFIX>1..N, i.e. t1..tN, schemas pred_t1..pred_tN.
# migrate/status/diff print the CLI's summary and, on the last line, `elapsed_s=S.SSS`: the wall time of
# the CLI process alone (node start, config, tenant discovery and the work). They exit non-zero when the
# CLI fails or reports a failed tenant (status: a tenant in error; diff: an error, or real drift, see above).
#
# What must exist beforehand, done by `migrate` before the clock starts (prints `setup_s=`):
#   - the database (DATABASE_URL) and a role that may create schemas and extensions (we use postgres);
#   - every extension the migrations create (pg_trgm for saas), created once in public. The CLI runs each
#     migration with search_path "<schema>",public, so `CREATE EXTENSION IF NOT EXISTS pg_trgm` in 0002 would
#     otherwise put pg_trgm into the first tenant's schema and fail in the others (gin_trgm_ops not found, or
#     a unique violation on pg_extension when two tenants race);
#   - the tenant schemas: `migrate` does NOT create them (its first statement is
#     CREATE TABLE IF NOT EXISTS "<schema>"."__drizzle_migrations", which fails on a missing schema; only
#     `tenant:create --id X`, one tenant per process, creates one). We CREATE SCHEMA IF NOT EXISTS them;
#   - a copy of the migration folder without drizzle-kit's `"public".` qualifiers (prepare-migrations.mjs):
#     the CLI runs the files verbatim, and REFERENCES "public"."organizations" in 0000 fails in every tenant
#     ("relation public.organizations does not exist"). The corpus itself is never changed.
#
# Environment:
#   MT_PRED_CORPUS            migration folder (default bench/corpus/saas; bench/corpus/small works too)
#   MT_PRED_REWRITE           tenant (default): unqualify every object the folder creates, tables and enums
#                             alike, as our engine does: each tenant gets its own enums;
#                             tables: enums stay shared in public (fails: concurrent CREATE TYPE races, and
#                             0024's ALTER TYPE ... ADD VALUE fails in the second tenant);
#                             none: the files as they are (fails, see above)
#   MT_PRED_SCHEMA_PREFIX     schema of tenant <id> is <prefix><id> (default pred_)
#   MT_PRED_TENANT_ID_PREFIX  tenant ids are <prefix>1..N (default t)
#   MT_PRED_CONCURRENCY       tenants migrated at once, one connection each (default 10)
#   MT_PRED_MIGRATIONS_TABLE  tracking table in each tenant schema (default __drizzle_migrations)
#   MT_PRED_WORKDIR           where the prepared folder and the CLI's JSON output go (default bench/predecessor/work)
# (tenant.config.js also reads MT_PRED_TENANTS, MT_PRED_TENANTS_FILE, MT_PRED_TENANT_COUNT, MT_PRED_POOL_MAX.)
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
BENCH="$(cd "$HERE/.." && pwd)"
cd "$HERE"

usage() { sed -n '2,/^set -euo/p' "$HERE/run.sh" | sed '$d' | sed 's/^# \{0,1\}//' >&2; exit 2; }

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.3f", b - a }'; }

install() {
  local stamp=node_modules/.mt-pred-lock.sha256 want
  want="$(sha256sum package-lock.json | cut -d' ' -f1)"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x node_modules/.bin/drizzle-multitenant ]; then
    return 0
  fi
  npm ci --no-audit --no-fund --loglevel=error >&2
  echo "$want" >"$stamp"
}

cmd="${1:-}"
[ -n "$cmd" ] || usage
shift
if [ "$cmd" = install ]; then install; exit 0; fi
case "$cmd" in migrate | status | diff | verify | drop) ;; *) usage ;; esac
[ $# -ge 1 ] || usage
export MT_PRED_DATABASE_URL="$1"
N="${2:-db}"
if [ "$N" = db ]; then
  unset MT_PRED_TENANT_COUNT MT_PRED_TENANTS MT_PRED_TENANTS_FILE
  [ "$cmd" != migrate ] || { echo "run.sh migrate needs N (the schemas are made for t1..tN)" >&2; exit 2; }
else
  [[ "$N" =~ ^[0-9]+$ ]] || usage
  export MT_PRED_TENANT_COUNT="$N"
fi

CORPUS="$(cd "${MT_PRED_CORPUS:-$BENCH/corpus/saas}" && pwd)"
MODE="${MT_PRED_REWRITE:-tenant}"
WORK="${MT_PRED_WORKDIR:-$HERE/work}"
CONCURRENCY="${MT_PRED_CONCURRENCY:-10}"
export MT_PRED_MIGRATIONS="$WORK/migrations-$(basename "$CORPUS")-$MODE"
mkdir -p "$WORK"
install

# The CLI, timed; its --json output goes to $WORK/$cmd.json and is summarised.
cli() {
  local kind="$1" out="$WORK/$1.json" start status=0 elapsed
  shift
  start="$(now)"
  node node_modules/drizzle-multitenant/bin/drizzle-multitenant.js --json --no-color "$@" \
    --config tenant.config.js >"$out" 2>"$WORK/$kind.stderr" || status=$?
  elapsed="$(since "$start")"
  if node harness.mjs summary "$kind" "$out"; then
    # diff exits 1 whenever it reports drift; the summary tells real drift from spurious (see harness.mjs).
    if [ "$kind" = diff ] && [ "$status" = 1 ]; then status=0; fi
  else
    status=1
  fi
  if [ "$status" != 0 ]; then
    echo "run.sh $kind: the CLI exited $status (stderr: $WORK/$kind.stderr, output: $out)" >&2
    tail -5 "$WORK/$kind.stderr" >&2 || true
  fi
  echo "elapsed_s=$elapsed"
  return "$status"
}

case "$cmd" in
  migrate)
    start="$(now)"
    node prepare-migrations.mjs "$CORPUS" "$MT_PRED_MIGRATIONS" "$MODE"
    node harness.mjs setup "$MT_PRED_MIGRATIONS"
    echo "setup_s=$(since "$start")"
    cli migrate migrate --all --concurrency "$CONCURRENCY"
    ;;
  status)
    [ -d "$MT_PRED_MIGRATIONS" ] || node prepare-migrations.mjs "$CORPUS" "$MT_PRED_MIGRATIONS" "$MODE"
    cli status status
    ;;
  diff)
    [ -d "$MT_PRED_MIGRATIONS" ] || node prepare-migrations.mjs "$CORPUS" "$MT_PRED_MIGRATIONS" "$MODE"
    cli diff diff --concurrency "$CONCURRENCY"
    ;;
  verify)
    node harness.mjs verify "$(dirname "$CORPUS")/$(basename "$CORPUS").expected.json"
    ;;
  drop)
    node harness.mjs drop
    ;;
esac
