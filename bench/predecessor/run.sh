#!/usr/bin/env bash
# The predecessor, drizzle-multitenant 1.3.5 (npm), for the corpus benchmark's comparison
# (bench/src/bin/corpus.rs runs its CLI, times it and checks what it made).
#
#   bench/predecessor/run.sh install    npm ci (skipped when node_modules matches package-lock.json)
#
# tenant.config.js is its config: the database from MT_PRED_DATABASE_URL, the tenants t1..tN
# (MT_PRED_TENANT_COUNT; schemas pred_t1..pred_tN, which its CLI does not create), the folder
# from MT_PRED_MIGRATIONS, one connection per tenant. By hand, after the benchmark's setup:
#   cd bench/predecessor && MT_PRED_DATABASE_URL=... MT_PRED_TENANT_COUNT=100 MT_PRED_MIGRATIONS=... \
#     node node_modules/drizzle-multitenant/bin/drizzle-multitenant.js migrate --all --concurrency 10 --config tenant.config.js
# Needs Node.js 20.17 or later (one of its dependencies requires it).
set -euo pipefail
cd "$(dirname "$0")"
case "${1:-}" in
  install)
    stamp=node_modules/.mt-pred-lock.sha256
    want="$(sha256sum package-lock.json | cut -d' ' -f1)"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -d node_modules/drizzle-multitenant ]; then
      exit 0
    fi
    npm ci --no-audit --no-fund --loglevel=error >&2
    echo "$want" >"$stamp"
    ;;
  *) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
