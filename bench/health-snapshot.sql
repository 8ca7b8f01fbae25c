-- The health probe on a synthetic snapshot of 50,000 tenants (500 degraded), in a database
-- of its own: the three forms of mt.health_check, three calls each, timed by psql.
--   psql -X -d postgres -f bench/health-snapshot.sql      (as a superuser; drops health50k first)
\set QUIET on
SET client_min_messages = warning;
DROP DATABASE IF EXISTS health50k;
CREATE DATABASE health50k;
\c health50k
CREATE EXTENSION multitenant;
SET mt.health_max_age = 3600;
-- 50,000 pools as mt_internal.health_pools writes them, 1% degraded.
SELECT mt_internal.store_health(now(), (
    SELECT jsonb_agg(jsonb_strip_nulls(jsonb_build_object(
               'tenantId', 't' || g, 'schemaName', 'tenant_t' || g,
               'status', CASE WHEN g % 100 = 0 THEN 'degraded' ELSE 'ok' END,
               'reasons', CASE WHEN g % 100 = 0 THEN '["1 pending migration(s)"]'::jsonb ELSE '[]'::jsonb END,
               'pendingMigrations', CASE WHEN g % 100 = 0 THEN 1 ELSE 0 END,
               'lastMigrationAt', '2026-12-02T12:00:00.000Z', 'hasDrift', false, 'schemaBytes', 180224,
               'error', CASE WHEN g % 100 = 0 THEN '1 pending migration(s)' END)) ORDER BY g)
      FROM generate_series(1, 50000) g));
SELECT total, degraded, unhealthy, jsonb_array_length(failing) AS failing, pg_column_size(pools) AS pools_bytes FROM mt_internal.health_snapshot;
\timing on
\o /dev/null
SELECT mt.health_check();
SELECT mt.health_check();
SELECT mt.health_check();
SELECT mt.health_check(pools => 'failing');
SELECT mt.health_check(pools => 'failing');
SELECT mt.health_check(pools => 'failing');
SELECT mt.health_check(pools => 'none');
SELECT mt.health_check(pools => 'none');
SELECT mt.health_check(pools => 'none');
\o
SELECT mt.health_check(pools => 'none');
