-- Health: one verdict per tenant, a JSON health check for load balancers, Prometheus
-- metrics, and what the background workers are doing.

-- Runs that change a tenant's migrations; a failure in one of them degrades the tenant
-- (a failed seed or a refused mt.create_tenants id says nothing about an existing tenant).
CREATE FUNCTION mt_internal.is_migration_operation(operation text)
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    -- As mt.runs.operation names them: migrate_all runs are 'migrate' (or 'mark_applied').
    SELECT operation IN ('migrate', 'mark_applied', 'convert_tracking', 'clean_orphans', 'migrate_tenant')
$$;
COMMENT ON FUNCTION mt_internal.is_migration_operation(text) IS
    'multitenant: whether runs of this operation count for a tenant''s health (migration runs do; seeds and provisioning do not)';

CREATE VIEW mt.health AS
WITH last_run AS (
    SELECT DISTINCT ON (rt.tenant_id) rt.tenant_id, rt.status, rt.sqlstate, rt.error, rt.finished_at
      FROM mt.run_tenants rt JOIN mt.runs r ON r.run_id = rt.run_id
     WHERE mt_internal.is_migration_operation(r.operation) AND rt.finished_at IS NOT NULL
     ORDER BY rt.tenant_id, rt.run_id DESC
), drift AS (
    -- Measured against mt_template only while it has exactly the registered migrations;
    -- otherwise every tenant ahead of or behind it would look drifted.
    SELECT d.tenant_id, d.differences FROM mt.drift_summary d WHERE mt.template_is_current()
), size AS (
    -- From pg_class.relpages (as of the last VACUUM, ANALYZE, CREATE INDEX or rewrite):
    -- pg_total_relation_size opens every relation, and a backend that opened every relation
    -- of 50,000 tenants keeps them all in its caches.
    SELECT c.relnamespace, (sum(c.relpages::bigint + coalesce(t.relpages, 0)) * current_setting('block_size')::bigint)::bigint AS bytes
      FROM pg_class c LEFT JOIN pg_class t ON t.oid = c.reltoastrelid
     WHERE c.relkind IN ('r', 'm', 'i') GROUP BY c.relnamespace
), facts AS (
    SELECT t.tenant_id, t.schema_name, t.status AS tenant_status, n.oid IS NOT NULL AS schema_exists,
           -- a catalog join, not to_regclass: readers need no rights on tenant schemas
           EXISTS (SELECT FROM pg_class c WHERE c.relnamespace = n.oid AND c.relname = mt.get_config('tracking_table')) AS tracking_exists,
           EXISTS (SELECT FROM mt.migrations m WHERE m.scope = 'tenant') AS migrations_registered,
           s.pending, s.last_applied_at, l.status AS last_run_status, l.sqlstate AS last_run_sqlstate, l.error AS last_run_error,
           d.differences, z.bytes
      FROM mt.tenants t
      JOIN mt.status s ON s.tenant_id = t.tenant_id
      LEFT JOIN pg_namespace n ON n.nspname = t.schema_name
      LEFT JOIN last_run l ON l.tenant_id = t.tenant_id
      LEFT JOIN drift d ON d.tenant_id = t.tenant_id
      LEFT JOIN size z ON z.relnamespace = n.oid
), verdicts AS (
    SELECT f.*,
           array_remove(ARRAY[
               CASE WHEN NOT f.schema_exists THEN format('schema %s is missing', f.schema_name) END,
               CASE WHEN f.schema_exists AND NOT f.tracking_exists AND f.migrations_registered
                    THEN format('tracking table %s is missing', mt.get_config('tracking_table')) END
           ], NULL) AS unhealthy_reasons,
           -- A tenant without its schema or tracking table is unhealthy for that alone.
           CASE WHEN f.schema_exists AND (f.tracking_exists OR NOT f.migrations_registered) THEN array_remove(ARRAY[
               CASE WHEN f.pending > 0 THEN format('%s pending migration(s)', f.pending) END,
               CASE WHEN f.last_run_status = 'failed' THEN format('last migration run failed (%s: %s)', f.last_run_sqlstate, f.last_run_error) END,
               CASE WHEN f.differences > 0 THEN format('schema differs from mt_template (%s difference(s))', f.differences) END
           ], NULL) ELSE '{}' END AS degraded_reasons
      FROM facts f
)
SELECT v.tenant_id,
       v.schema_name,
       CASE WHEN cardinality(v.unhealthy_reasons) > 0 THEN 'unhealthy'
            WHEN cardinality(v.degraded_reasons) > 0 THEN 'degraded'
            ELSE 'ok' END AS status,
       v.unhealthy_reasons || v.degraded_reasons AS reasons,
       v.tenant_status,
       CASE WHEN v.schema_exists AND (v.tracking_exists OR NOT v.migrations_registered) THEN v.pending END AS pending_migrations,
       v.last_applied_at AS last_migration_at,
       v.last_run_status,
       CASE WHEN v.schema_exists THEN v.differences > 0 END AS has_drift,
       v.bytes AS schema_bytes
  FROM verdicts v;
COMMENT ON VIEW mt.health IS
    'multitenant: per tenant, ok / degraded (pending migrations, failed last run, drift) / unhealthy (schema or tracking table missing), with the reasons';

-- The health check's pools, as JSON, for every (or the listed) tenant.
CREATE FUNCTION mt_internal.health_pools(tenant_ids text[] DEFAULT NULL)
RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
SET jit = off  -- compiling these catalog queries costs more than running them
AS $$
    SELECT coalesce(jsonb_agg(jsonb_strip_nulls(jsonb_build_object(
               'tenantId', h.tenant_id, 'schemaName', h.schema_name, 'status', h.status,
               'reasons', to_jsonb(h.reasons), 'pendingMigrations', h.pending_migrations,
               'lastMigrationAt', h.last_migration_at, 'hasDrift', h.has_drift, 'schemaBytes', h.schema_bytes,
               'error', CASE WHEN h.status <> 'ok' THEN array_to_string(h.reasons, '; ') END))
             ORDER BY h.tenant_id), '[]')
      FROM mt.health h
     WHERE health_pools.tenant_ids IS NULL OR h.tenant_id = ANY (health_pools.tenant_ids)
$$;
COMMENT ON FUNCTION mt_internal.health_pools(text[]) IS
    'multitenant (internal): mt.health of every (or the listed) tenant as the health check''s pools (a JSON array, by tenant id)';

-- mt.health over 10,000 tenants takes seconds (schema sizes, last runs, drift); a load
-- balancer probes every few seconds. The probe answers from the last computation while it is
-- younger than mt.health_max_age, and past half that age has a background worker compute
-- the next one, so a steady probe never waits for it.
CREATE TABLE mt_internal.health_snapshot (
    singleton   boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    computed_at timestamptz NOT NULL,
    pools       jsonb NOT NULL,
    -- Summed up once here: walking 50,000 pools on every probe cost 300 ms, and a probe that
    -- asks for the failing pools or none must not read (detoast) all of them.
    failing     jsonb NOT NULL,
    total       integer NOT NULL,
    degraded    integer NOT NULL,
    unhealthy   integer NOT NULL
);
COMMENT ON TABLE mt_internal.health_snapshot IS
    'multitenant (internal): the last health check of every tenant (mt_internal.health_pools), its failing pools and counts, and when it was computed; derived, not dumped';

CREATE FUNCTION mt_internal.pool_summary(pools jsonb, OUT total integer, OUT degraded integer, OUT unhealthy integer, OUT failing jsonb)
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT count(*)::integer,
           (count(*) FILTER (WHERE p ->> 'status' = 'degraded'))::integer,
           (count(*) FILTER (WHERE p ->> 'status' = 'unhealthy'))::integer,
           coalesce(jsonb_agg(p ORDER BY n) FILTER (WHERE p ->> 'status' <> 'ok'), '[]')
      FROM jsonb_array_elements(pool_summary.pools) WITH ORDINALITY AS e(p, n)
$$;
COMMENT ON FUNCTION mt_internal.pool_summary(jsonb) IS
    'multitenant (internal): of the health check''s pools, how many there are, how many are degraded and unhealthy, and those that are not ok';

CREATE FUNCTION mt_internal.store_health(computed_at timestamptz, pools jsonb)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO mt_internal.health_snapshot AS s (computed_at, pools, failing, total, degraded, unhealthy)
    SELECT store_health.computed_at, store_health.pools, c.failing, c.total, c.degraded, c.unhealthy
      FROM mt_internal.pool_summary(store_health.pools) c
    ON CONFLICT (singleton) DO UPDATE
       SET computed_at = EXCLUDED.computed_at, pools = EXCLUDED.pools, failing = EXCLUDED.failing,
           total = EXCLUDED.total, degraded = EXCLUDED.degraded, unhealthy = EXCLUDED.unhealthy
     WHERE s.computed_at < EXCLUDED.computed_at
$$;
COMMENT ON FUNCTION mt_internal.store_health(timestamptz, jsonb) IS
    'multitenant (internal): keep a health computation as the snapshot, unless a newer one is kept already';

-- What the background worker started by mt_internal.request_health_refresh runs.
CREATE FUNCTION mt_internal.refresh_health()
RETURNS timestamptz
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- One computation at a time; a second request finds this one at work.
    IF NOT pg_try_advisory_xact_lock(hashtextextended('mt.health', 0)) THEN
        RETURN NULL;
    END IF;
    PERFORM mt_internal.store_health(now(), mt_internal.health_pools());
    RETURN now();
END
$$;
COMMENT ON FUNCTION mt_internal.refresh_health() IS
    'multitenant (internal): compute the health of every tenant and keep it as the snapshot mt.health_check answers from; NULL when another computation is at work';

CREATE FUNCTION mt.health_check(tenant_ids text[] DEFAULT NULL, include_shared boolean DEFAULT true, pools text DEFAULT 'all')
RETURNS jsonb
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    started    timestamptz := clock_timestamp();
    max_age    interval := make_interval(secs => mt_internal.health_max_age());
    computed_at timestamptz;
    listed     jsonb;   -- the pools the answer lists, as the pools parameter asks
    total      integer;
    degraded   integer;
    unhealthy  integer;
    shared     text := mt.get_config('shared_schema');
    shared_at  timestamptz;
    shared_status text;
    shared_error  text;
    shared_ms  numeric;
BEGIN
    IF pools IS NULL OR pools NOT IN ('all', 'failing', 'none') THEN
        RAISE EXCEPTION 'invalid pools %', coalesce(quote_literal(pools), 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'pools is ''all'' (every tenant), ''failing'' (the degraded and unhealthy ones) or ''none'' (the counts only).';
    END IF;
    PERFORM mt.tenant_schema(id) FROM unnest(tenant_ids) AS id;   -- 42704 for an unknown id

    -- One read of the snapshot, if it is young enough, and of only what the answer needs:
    -- the pools of 50,000 tenants are 10 MB.
    SELECT s.computed_at,
           CASE WHEN tenant_ids IS NOT NULL OR health_check.pools = 'all' THEN s.pools
                WHEN health_check.pools = 'failing' THEN s.failing END,
           s.total, s.degraded, s.unhealthy
      INTO computed_at, listed, total, degraded, unhealthy
      FROM mt_internal.health_snapshot s
     WHERE started - s.computed_at <= max_age;
    IF computed_at IS NOT NULL AND tenant_ids IS NOT NULL THEN
        total := NULL;   -- the listed tenants' counts, below
        SELECT jsonb_agg(p ORDER BY n) FILTER (WHERE p ->> 'tenantId' = ANY (tenant_ids))
          INTO listed
          FROM jsonb_array_elements(listed) WITH ORDINALITY AS e(p, n);
        -- A listed tenant created since is computed afresh, with the others listed.
        IF coalesce(jsonb_array_length(listed), 0) < (SELECT count(DISTINCT id) FROM unnest(tenant_ids) AS id) THEN
            computed_at := NULL;
        ELSE
            listed := coalesce(listed, '[]');
        END IF;
    END IF;
    IF computed_at IS NOT NULL THEN
        IF started - computed_at > max_age / 2 AND NOT pg_is_in_recovery() THEN
            PERFORM mt_internal.request_health_refresh();
        END IF;
    ELSE
        listed := mt_internal.health_pools(tenant_ids);
        computed_at := now();
        IF tenant_ids IS NULL AND max_age > '0' AND NOT pg_is_in_recovery()
           AND current_setting('transaction_read_only') = 'off' THEN
            PERFORM mt_internal.store_health(computed_at, listed);
        END IF;
    END IF;

    IF total IS NULL THEN
        SELECT c.total, c.degraded, c.unhealthy,
               CASE health_check.pools WHEN 'all' THEN listed WHEN 'failing' THEN c.failing END
          INTO total, degraded, unhealthy, listed
          FROM mt_internal.pool_summary(listed) c;
    END IF;

    IF include_shared THEN
        shared_at := clock_timestamp();
        IF NOT EXISTS (SELECT FROM pg_namespace WHERE nspname = shared) THEN
            shared_status := 'unhealthy';
            shared_error := format('shared schema %s is missing', shared);
        -- Read-only: a probe must not write (a dry run would record a run each time).
        ELSIF EXISTS (SELECT FROM mt.migrations m WHERE m.scope = 'shared') AND coalesce(mt.shared_pending(), 1) > 0 THEN
            shared_status := 'degraded';
            shared_error := 'shared migrations are pending';
        ELSE
            shared_status := 'ok';
        END IF;
        shared_ms := round(extract(epoch FROM clock_timestamp() - shared_at) * 1000, 3);
    END IF;

    -- The pools have no nulls (mt_internal.health_pools strips them): stripping the whole
    -- object would walk every pool again on every probe.
    RETURN CASE WHEN listed IS NOT NULL THEN jsonb_build_object('pools', listed) ELSE '{}' END
        || jsonb_strip_nulls(jsonb_build_object(
        'healthy', unhealthy = 0 AND coalesce(shared_status, 'ok') <> 'unhealthy',
        'sharedDb', shared_status,
        'sharedDbResponseTimeMs', shared_ms,
        'sharedDbError', shared_error,
        'totalPools', total,
        'degradedPools', degraded,
        'unhealthyPools', unhealthy,
        'timestamp', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
        'computedAt', to_char(computed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
        'durationMs', round(extract(epoch FROM clock_timestamp() - started) * 1000, 3)));
END
$$;
COMMENT ON FUNCTION mt.health_check(text[], boolean, text) IS
    'multitenant: health of every (or the listed) tenant and the shared schema as JSON (healthy, pools, sharedDb, totals, timestamp, computedAt, durationMs); healthy is false when anything is unhealthy; pools => ''failing'' lists only the degraded and unhealthy tenants, ''none'' only counts them (a cheap probe for a big fleet); tenants'' health may be up to mt.health_max_age old (computedAt says when it was computed)';

-- What is running: multitenant background workers, and any backend working on a run.
CREATE VIEW mt.activity AS
SELECT a.pid,
       a.backend_type,
       rt.run_id,
       r.operation,
       rt.tenant_id,
       rt.schema_name,
       rt.current_migration AS last_applied_migration,
       coalesce(rt.started_at, a.backend_start) AS started_at,
       a.state,
       a.wait_event_type,
       a.wait_event,
       a.wait_event_type = 'Lock' AS waiting,
       a.query AS activity
  FROM pg_stat_activity a
  LEFT JOIN mt.run_tenants rt ON rt.pid = a.pid AND rt.finished_at IS NULL
  LEFT JOIN mt.runs r ON r.run_id = rt.run_id
 WHERE a.backend_type = 'multitenant worker' OR rt.run_id IS NOT NULL;
COMMENT ON VIEW mt.activity IS
    'multitenant: background workers and backends working on a run: tenant, the migration last applied, since when, what they wait for, and activity naming the migration in progress (needs pg_read_all_stats to see other roles'' queries)';

-- Prometheus label value: backslash, double quote and newline escaped.
CREATE FUNCTION mt_internal.prometheus_label(value text)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT '"' || replace(replace(replace(value, E'\\', E'\\\\'), '"', E'\\"'), E'\n', E'\\n') || '"'
$$;
COMMENT ON FUNCTION mt_internal.prometheus_label(text) IS
    'multitenant: a Prometheus label value, quoted and escaped';

CREATE FUNCTION mt.metrics(prefix text DEFAULT 'multitenant')
RETURNS text
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
DECLARE
    lines text[] := '{}';
    healths mt.health[];
    buckets numeric[] := '{0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300}';
BEGIN
    IF prefix IS NULL OR prefix !~ '^[a-zA-Z_:][a-zA-Z0-9_:]*$' THEN
        RAISE EXCEPTION 'invalid metric prefix %', coalesce(quote_literal(prefix), 'NULL')
            USING ERRCODE = 'invalid_parameter_value', HINT = 'A prefix matches [a-zA-Z_:][a-zA-Z0-9_:]*.';
    END IF;

    -- Read once: the view measures drift and sizes, which is the expensive part.
    healths := ARRAY(SELECT h FROM mt.health h);

    lines := lines || mt_internal.metric_family(prefix || '_tenants', 'gauge', 'Tenants by health status',
        ARRAY(SELECT format('{status=%s} %s', mt_internal.prometheus_label(s), (SELECT count(*) FROM unnest(healths) h WHERE h.status = s))
                FROM unnest(ARRAY['ok', 'degraded', 'unhealthy']) s));
    lines := lines || mt_internal.metric_family(prefix || '_pending_migrations', 'gauge', 'Registered tenant migrations not yet applied, summed over tenants',
        ARRAY[format(' %s', (SELECT coalesce(sum(pending_migrations), 0) FROM unnest(healths)))]);
    lines := lines || mt_internal.metric_family(prefix || '_tenants_behind', 'gauge', 'Tenants with at least one pending migration',
        ARRAY[format(' %s', (SELECT count(*) FROM unnest(healths) WHERE pending_migrations > 0))]);
    lines := lines || mt_internal.metric_family(prefix || '_drift_tenants', 'gauge', 'Tenants whose schema differs from mt_template',
        ARRAY[format(' %s', (SELECT count(*) FROM unnest(healths) WHERE has_drift))]);
    lines := lines || mt_internal.metric_family(prefix || '_schema_size_bytes', 'gauge', 'Size of each tenant''s tables, indexes and TOAST (from pg_class.relpages)',
        ARRAY(SELECT format('{tenant=%s} %s', mt_internal.prometheus_label(tenant_id), coalesce(schema_bytes, 0))
                FROM unnest(healths) ORDER BY tenant_id));
    lines := lines || mt_internal.metric_family(prefix || '_runs_total', 'counter', 'Runs recorded in mt.runs, by operation and status',
        ARRAY(SELECT format('{operation=%s,status=%s} %s', mt_internal.prometheus_label(operation), mt_internal.prometheus_label(status), count(*))
                FROM (SELECT r.operation,
                             CASE WHEN r.status = 'running' AND NOT mt_internal.run_is_alive(r.launcher_pid, r.started_at)
                                  THEN 'abandoned' ELSE r.status END AS status
                        FROM mt.runs r) r
               GROUP BY operation, status ORDER BY 1));
    lines := lines || mt_internal.metric_family(prefix || '_tenant_runs_total', 'counter', 'Per-tenant outcomes of finished migration runs',
        ARRAY(SELECT format('{outcome=%s} %s', mt_internal.prometheus_label(rt.status), count(*))
                FROM mt.run_tenants rt JOIN mt.runs r USING (run_id)
               WHERE mt_internal.is_migration_operation(r.operation) AND rt.finished_at IS NOT NULL
               GROUP BY rt.status ORDER BY 1));
    lines := lines || mt_internal.metric_family(prefix || '_migration_duration_seconds', 'histogram', 'Time a finished migration run spent on one tenant',
        (WITH d AS (
            SELECT extract(epoch FROM rt.finished_at - rt.started_at) AS seconds
              FROM mt.run_tenants rt JOIN mt.runs r USING (run_id)
             WHERE mt_internal.is_migration_operation(r.operation) AND rt.finished_at IS NOT NULL
         )
         SELECT ARRAY(SELECT format('_bucket{le=%s} %s', mt_internal.prometheus_label(b::text), (SELECT count(*) FROM d WHERE d.seconds <= b))
                        FROM unnest(buckets) b)
             || format('_bucket{le="+Inf"} %s', (SELECT count(*) FROM d))
             || format('_sum %s', (SELECT coalesce(round(sum(seconds), 6), 0) FROM d))
             || format('_count %s', (SELECT count(*) FROM d))));
    lines := lines || mt_internal.metric_family(prefix || '_last_run_timestamp_seconds', 'gauge', 'When the latest run started, as a Unix timestamp',
        ARRAY(SELECT format(' %s', round(extract(epoch FROM max(started_at)), 3)) FROM mt.runs HAVING count(*) > 0));
    lines := lines || mt_internal.metric_family(prefix || '_background_workers', 'gauge', 'multitenant background workers running',
        ARRAY[format(' %s', (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'multitenant worker'))]);
    lines := lines || mt_internal.metric_family(prefix || '_connections', 'gauge', 'Client connections per database and state, from pg_stat_activity',
        ARRAY(SELECT format('{database=%s,state=%s} %s', mt_internal.prometheus_label(datname), mt_internal.prometheus_label(coalesce(state, 'unknown')), count(*))
                FROM pg_stat_activity WHERE backend_type = 'client backend' AND datname IS NOT NULL
               GROUP BY datname, state ORDER BY 1));
    RETURN array_to_string(lines, E'\n') || E'\n';
END
$$;
COMMENT ON FUNCTION mt.metrics(text) IS
    'multitenant: Prometheus text exposition of tenant health, pending migrations, runs, run durations, drift, schema sizes, workers and connections';

-- One metric family: HELP and TYPE lines, then each sample as name || suffix.
CREATE FUNCTION mt_internal.metric_family(name text, type text, help text, samples text[])
RETURNS text[]
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ARRAY[format('# HELP %s %s', name, replace(replace(help, E'\\', E'\\\\'), E'\n', E'\\n')), format('# TYPE %s %s', name, type)]
           || ARRAY(SELECT name || s FROM unnest(samples) s)
$$;
COMMENT ON FUNCTION mt_internal.metric_family(text, text, text, text[]) IS
    'multitenant: the exposition lines of one metric family: HELP, TYPE and its samples';
