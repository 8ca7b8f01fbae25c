-- Health: each status transition with its reason, the JSON health check, the metrics text.
\i pg_test/helpers.sql

SELECT action, count(*) FROM mt.load_migrations('/tmp/mt_regress_fixtures/drizzle') GROUP BY action;
SELECT count(*) AS tenants FROM mt.create_tenants(ARRAY['a', 'b', 'c', 'd', 'e']);
SELECT schema_name, status FROM mt.refresh_template();
SELECT tenant_id, status, reasons, pending_migrations, last_run_status, has_drift, schema_bytes > 0 AS has_size
  FROM mt.health ORDER BY tenant_id;

-- Broken on purpose: b loses its schema, c its tracking table (unhealthy); d drifts, e
-- fails a migration that the others take (degraded).
DROP SCHEMA tenant_b CASCADE;
DROP TABLE tenant_c.__drizzle_migrations;
-- (d drifts: a column added by hand)
ALTER TABLE tenant_d.users ADD COLUMN nickname text;
SELECT mt.add_migration('0022_fussy', $$
    DO $d$ BEGIN IF current_schema() = 'tenant_e' THEN RAISE EXCEPTION 'tenant e refuses'; END IF; END $d$;
    CREATE TABLE fussy (id int);
$$);
SELECT tenant_id, status, reasons FROM mt.health ORDER BY tenant_id;
SELECT tenant_id, status, sqlstate FROM mt.migrate_all(tenant_ids => ARRAY['a', 'd', 'e']) ORDER BY tenant_id;
SELECT mt.template_is_current() AS template_current;
SELECT tenant_id, status, reasons, pending_migrations, last_run_status, has_drift
  FROM mt.health ORDER BY tenant_id;

-- A migration registered and not yet applied: everyone is behind (drift is not measured
-- while the template is behind too).
SELECT mt.add_migration('0023_later', 'CREATE TABLE later (id int)');
SELECT tenant_id, status, reasons FROM mt.health WHERE tenant_id IN ('a', 'd') ORDER BY tenant_id;
SELECT count(*) FROM mt.migrate_all(tenant_ids => ARRAY['a', 'd']);
SELECT tenant_id, status, reasons FROM mt.health WHERE tenant_id IN ('a', 'd') ORDER BY tenant_id;

-- The health check, in the shape load balancers and the predecessor's users expect.
SELECT jsonb_object_keys(mt.health_check()) AS keys ORDER BY 1;
SELECT h ->> 'healthy' AS healthy, h -> 'totalPools' AS total, h -> 'degradedPools' AS degraded,
       h -> 'unhealthyPools' AS unhealthy, h ->> 'sharedDb' AS shared,
       h ->> 'timestamp' ~ '^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$' AS iso_timestamp,
       jsonb_typeof(h -> 'durationMs') AS duration
  FROM mt.health_check() h;
SELECT p ->> 'tenantId' AS tenant, p ->> 'status' AS status, p ->> 'error' AS error
  FROM jsonb_array_elements(mt.health_check() -> 'pools') p ORDER BY 1;
SELECT h ->> 'healthy' AS healthy, h -> 'totalPools' AS total, h -> 'sharedDb' IS NULL AS no_shared
  FROM mt.health_check(tenant_ids => ARRAY['a'], include_shared => false) h;
SELECT pg_temp.attempt($$SELECT mt.health_check(ARRAY['a', 'nobody'])$$) AS unknown_tenant;
-- A big fleet's probe asks for the failing pools only, or for the counts only.
SELECT h -> 'totalPools' AS total, h -> 'degradedPools' AS degraded, h -> 'unhealthyPools' AS unhealthy,
       (SELECT string_agg(p ->> 'tenantId' || ': ' || (p ->> 'status'), ', ' ORDER BY p ->> 'tenantId')
          FROM jsonb_array_elements(h -> 'pools') p) AS listed
  FROM mt.health_check(pools => 'failing') h;
SELECT h ? 'pools' AS has_pools, h -> 'totalPools' AS total, h -> 'degradedPools' AS degraded, h ->> 'healthy' AS healthy
  FROM mt.health_check(pools => 'none') h;
SELECT jsonb_array_length(h -> 'pools') AS listed, h -> 'totalPools' AS total
  FROM mt.health_check(tenant_ids => ARRAY['a', 'b'], pools => 'failing') h;
SELECT pg_temp.attempt($$SELECT mt.health_check(pools => 'some')$$) AS bad_pools;
SELECT mt.set_config('shared_schema', 'gone');
SELECT h ->> 'healthy' AS healthy, h ->> 'sharedDb' AS shared, h ->> 'sharedDbError' AS error
  FROM mt.health_check(tenant_ids => ARRAY['a']) h;
SELECT mt.reset_config('shared_schema');

-- Metrics: every line is a HELP, a TYPE or a sample of a family declared before it.
CREATE TEMP TABLE metric_lines AS
SELECT n, line FROM unnest(string_to_array(rtrim(mt.metrics(), E'\n'), E'\n')) WITH ORDINALITY AS l(line, n);
SELECT count(*) AS malformed FROM metric_lines
 WHERE line !~ '^# (HELP|TYPE) [a-zA-Z_:][a-zA-Z0-9_:]* .+$'
   AND line !~ '^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*",?)*\})? -?[0-9.e+]+$';
SELECT count(*) AS samples_without_type FROM metric_lines s
 WHERE s.line !~ '^#' AND NOT EXISTS (
     SELECT FROM metric_lines t WHERE t.n < s.n AND t.line LIKE '# TYPE %'
        AND split_part(s.line, '{', 1) ~ ('^' || split_part(t.line, ' ', 3) || '(_bucket|_sum|_count)?( |$)'));
SELECT split_part(line, ' ', 3) AS family, split_part(line, ' ', 4) AS type FROM metric_lines WHERE line LIKE '# TYPE %' ORDER BY n;
SELECT line FROM metric_lines WHERE line ~ '^multitenant_(tenants|drift_tenants|tenants_behind|pending_migrations)[ {]' ORDER BY n;
SELECT count(*) AS buckets_not_cumulative FROM (
    SELECT split_part(line, ' ', 2)::bigint AS v, lag(split_part(line, ' ', 2)::bigint) OVER (ORDER BY n) AS prev
      FROM metric_lines WHERE line LIKE 'multitenant_migration_duration_seconds_bucket%') b WHERE v < prev;
SELECT line LIKE 'app_tenants%' AS prefixed FROM unnest(string_to_array(mt.metrics('app'), E'\n')) line WHERE line NOT LIKE '#%' LIMIT 1;
SELECT mt_internal.prometheus_label(E'a"b\\c\nd') AS escaped;
SELECT pg_temp.attempt($$SELECT mt.metrics('bad-prefix')$$) AS bad_prefix;

-- Nothing is running now.
SELECT count(*) AS active FROM mt.activity;

-- The probe answers from the last computation while it is younger than mt.health_max_age
-- (its computedAt says when that was); past half that age it has a background worker
-- compute the next one; 0 computes on every call.
SET mt.health_max_age = '1h';
SELECT mt.health_check() ->> 'computedAt' AS first_computed \gset
SELECT mt.add_migration('0024_even_later', 'CREATE TABLE even_later (id int)');
SELECT h ->> 'computedAt' = :'first_computed' AS same_computation, h -> 'degradedPools' AS degraded
  FROM mt.health_check() h;
-- The snapshot keeps its failing pools and counts apart: the other forms answer from it too.
SELECT h ->> 'computedAt' = :'first_computed' AS same_computation, h ? 'pools' AS has_pools, h -> 'totalPools' AS total
  FROM mt.health_check(pools => 'none') h;
SELECT h ->> 'computedAt' = :'first_computed' AS same_computation,
       jsonb_array_length(h -> 'pools') = (h ->> 'degradedPools')::int + (h ->> 'unhealthyPools')::int AS failing_listed
  FROM mt.health_check(pools => 'failing') h;
-- A listed tenant the snapshot does not know (created since) is computed afresh, with the rest.
SELECT count(*) AS created FROM mt.create_tenants(ARRAY['f']);
SELECT h ->> 'computedAt' = :'first_computed' AS same_computation,
       (SELECT string_agg(p ->> 'tenantId' || ': ' || (p ->> 'pendingMigrations'), ', ' ORDER BY p ->> 'tenantId')
          FROM jsonb_array_elements(h -> 'pools') p) AS pending
  FROM mt.health_check(ARRAY['f', 'a']) h;
SET mt.health_max_age = 0;
SELECT h ->> 'computedAt' = :'first_computed' AS same_computation, h -> 'degradedPools' AS degraded
  FROM mt.health_check() h;
-- (and keeps nothing)
SELECT count(*) AS kept FROM mt_internal.health_snapshot WHERE date_trunc('milliseconds', computed_at) > :'first_computed';
SELECT mt_internal.refresh_health() IS NOT NULL AS refreshed;
SET mt.health_max_age = 4;
SELECT mt.health_check() ->> 'computedAt' AS second_computed \gset
SET client_min_messages = warning;
SELECT count(*) AS dropped FROM mt.drop_tenant('f', force => true);
RESET client_min_messages;
SELECT pg_sleep(2.2);
SELECT h -> 'totalPools' AS total, h ->> 'computedAt' = :'second_computed' AS same_computation
  FROM mt.health_check() h;
SET regress.second_computed = :'second_computed';
DO $$
BEGIN
    FOR i IN 1..200 LOOP
        EXIT WHEN (SELECT date_trunc('milliseconds', computed_at) FROM mt_internal.health_snapshot)
                  > current_setting('regress.second_computed')::timestamptz;
        PERFORM pg_sleep(0.05);
    END LOOP;
END
$$;
SELECT h -> 'totalPools' AS total, (h ->> 'computedAt')::timestamptz > :'second_computed' AS refreshed
  FROM mt.health_check() h;
