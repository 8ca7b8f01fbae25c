-- The migration registry, the ledger of what each tenant has applied, and run history.

CREATE TABLE mt.migrations (
    scope         text NOT NULL DEFAULT 'tenant' CHECK (scope IN ('tenant', 'shared')),
    idx      integer NOT NULL CHECK (idx >= 0),
    name          text NOT NULL CHECK (octet_length(name) BETWEEN 1 AND 255),
    sql           text NOT NULL,
    sha256        text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    journal_when  bigint,
    registered_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (scope, name),
    UNIQUE (scope, idx)
);
COMMENT ON TABLE mt.migrations IS
    'multitenant: registered migrations, applied in idx order (kept by pg_dump); fill it with mt.add_migration or mt.load_migrations';
COMMENT ON COLUMN mt.migrations.scope IS 'tenant (every tenant schema) or shared (the shared schema)';
COMMENT ON COLUMN mt.migrations.idx IS 'order of application: the drizzle-kit journal idx or the file number';
COMMENT ON COLUMN mt.migrations.name IS 'the drizzle-kit tag or file name without .sql; what the name tracking format records';
COMMENT ON COLUMN mt.migrations.sha256 IS 'SHA-256 hex of the raw file, as drizzle-orm hashes it; what the hash formats record';
COMMENT ON COLUMN mt.migrations.journal_when IS 'the drizzle-kit journal''s when (ms); created_at in the drizzle-kit format';
SELECT pg_catalog.pg_extension_config_dump('mt.migrations', '');

-- Mirror of every tenant's tracking table, written in the same transaction as the tracking
-- row itself. It lets mt.status answer for 10,000 tenants with one join instead of reading
-- 10,000 tables (which would also need 10,000 locks in one transaction).
-- No foreign keys between the extension's dumped tables: pg_restore -j loads them in any
-- order. mt.drop_tenant deletes a tenant's rows here itself.
CREATE TABLE mt.tracking_records (
    tenant_id    text NOT NULL,
    record_id    integer NOT NULL,
    name         text,
    hash         text,
    journal_when bigint,
    applied_at   timestamptz,
    PRIMARY KEY (tenant_id, record_id)
);
CREATE INDEX ON mt.tracking_records (hash);
COMMENT ON TABLE mt.tracking_records IS
    'multitenant: copy of each tenant''s tracking table rows, kept in step by the migration engine (re-read on every run)';
SELECT pg_catalog.pg_extension_config_dump('mt.tracking_records', '');

CREATE SEQUENCE mt.runs_run_id_seq;
CREATE TABLE mt.runs (
    run_id      bigint PRIMARY KEY DEFAULT nextval('mt.runs_run_id_seq'),
    operation   text NOT NULL,
    options     jsonb NOT NULL DEFAULT '{}',
    started_at  timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    finished_at timestamptz,
    status      text NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'finished', 'cancelled', 'abandoned')),
    tenants     integer NOT NULL DEFAULT 0,
    succeeded   integer,
    failed      integer,
    launcher_pid integer
);
COMMENT ON COLUMN mt.runs.status IS
    'running, finished, cancelled, or abandoned: its caller died (terminated, crashed, server restarted) before closing it';
COMMENT ON COLUMN mt.runs.launcher_pid IS
    'the backend that started the run; while it lives the run can be running';
ALTER SEQUENCE mt.runs_run_id_seq OWNED BY mt.runs.run_id;
COMMENT ON TABLE mt.runs IS
    'multitenant: one row per migration run (migrate_all, migrate_tenant, mark_missing, ...), written as the run goes';
SELECT pg_catalog.pg_extension_config_dump('mt.runs', '');
SELECT pg_catalog.pg_extension_config_dump('mt.runs_run_id_seq', '');

CREATE TABLE mt.run_tenants (
    run_id            bigint NOT NULL,
    tenant_id         text NOT NULL,
    schema_name       text NOT NULL,
    status            text NOT NULL,
    applied           integer NOT NULL DEFAULT 0,
    pending           integer NOT NULL DEFAULT 0,
    current_migration text,
    started_at        timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    finished_at       timestamptz,
    sqlstate          text,
    error             text,
    pid               integer DEFAULT pg_catalog.pg_backend_pid(),
    migration         text,
    PRIMARY KEY (run_id, tenant_id)
);
COMMENT ON TABLE mt.run_tenants IS
    'multitenant: per-tenant progress and outcome of each run; rows appear while the run is going';
COMMENT ON COLUMN mt.run_tenants.migration IS 'the migration that failed, when one did (sqlstate and error say how)';
SELECT pg_catalog.pg_extension_config_dump('mt.run_tenants', '');

CREATE TYPE mt.run_result AS (
    tenant_id   text,
    schema_name text,
    applied     integer,
    pending     integer,
    status      text,
    sqlstate    text,
    error       text,
    duration_ms bigint,
    migration   text
);
COMMENT ON TYPE mt.run_result IS
    'multitenant: one schema''s outcome of a run: status is migrated, up_to_date, dry_run, marked, converted, unchanged, cleaned, created, seeded, skipped, failed or cancelled';

-- Whether the backend that started a run still exists (and is the same session): a run whose
-- caller is gone is abandoned, whatever its row still says.
CREATE FUNCTION mt_internal.run_is_alive(launcher_pid integer, started_at timestamptz)
RETURNS boolean
LANGUAGE sql STABLE
SECURITY DEFINER  -- pg_stat_activity hides other roles' backend_start
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT EXISTS (SELECT FROM pg_stat_activity a
                    WHERE a.pid = run_is_alive.launcher_pid AND a.backend_start <= run_is_alive.started_at)
$$;
COMMENT ON FUNCTION mt_internal.run_is_alive(integer, timestamptz) IS
    'multitenant: whether the backend that started a run (pid, and started before the run) is still there';

-- Closes a run that is still running as `status`, with how many schemas succeeded and
-- failed: the one definition of success for every kind of run.
CREATE FUNCTION mt_internal.close_run(run_id bigint, status text)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    UPDATE mt.runs r
       SET status = close_run.status, finished_at = clock_timestamp(),
           succeeded = (SELECT count(*) FROM mt.run_tenants t
                         WHERE t.run_id = r.run_id AND t.status <> ALL ('{failed,cancelled,running,abandoned}')),
           failed = (SELECT count(*) FROM mt.run_tenants t WHERE t.run_id = r.run_id AND t.status = 'failed')
     WHERE r.run_id = close_run.run_id AND r.status = 'running'
$$;
COMMENT ON FUNCTION mt_internal.close_run(bigint, text) IS
    'multitenant (internal): close a running run as finished, cancelled or abandoned, with its counts';

-- Closes runs whose caller died, with their unfinished tenants; called before every run.
CREATE FUNCTION mt.close_abandoned_runs()
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    dead   record;
    closed integer := 0;
BEGIN
    FOR dead IN
        SELECT r.run_id FROM mt.runs r
         WHERE r.status = 'running' AND NOT mt_internal.run_is_alive(r.launcher_pid, r.started_at)
           FOR UPDATE SKIP LOCKED
    LOOP
        UPDATE mt.run_tenants t SET status = 'abandoned', finished_at = clock_timestamp(), current_migration = NULL
         WHERE t.run_id = dead.run_id AND t.finished_at IS NULL;
        PERFORM mt_internal.close_run(dead.run_id, 'abandoned');
        closed := closed + 1;
    END LOOP;
    RETURN closed;
END
$$;
COMMENT ON FUNCTION mt.close_abandoned_runs() IS
    'multitenant: mark runs whose caller died as abandoned, with their unfinished tenants; every run calls it first; returns how many it closed';

CREATE VIEW mt.run_progress AS
SELECT r.run_id, r.operation,
       CASE WHEN r.status = 'running' AND NOT mt_internal.run_is_alive(r.launcher_pid, r.started_at) THEN 'abandoned' ELSE r.status END
           AS status,
       r.tenants,
       count(t.tenant_id) FILTER (WHERE t.finished_at IS NOT NULL) AS done,
       count(t.tenant_id) FILTER (WHERE t.finished_at IS NULL) AS in_progress,
       count(t.tenant_id) FILTER (WHERE t.status = 'failed') AS failed,
       coalesce(sum(t.applied), 0) AS migrations_applied,
       r.started_at, r.finished_at,
       coalesce(r.finished_at, clock_timestamp()) - r.started_at AS elapsed
  FROM mt.runs r
  LEFT JOIN mt.run_tenants t USING (run_id)
 GROUP BY r.run_id
 ORDER BY r.run_id DESC;
COMMENT ON VIEW mt.run_progress IS
    'multitenant: every run with how many schemas are done, in progress and failed; watch it from another session while a run goes';

CREATE FUNCTION mt.add_migration(
    name         text,
    sql          text,
    scope        text DEFAULT 'tenant',
    idx     integer DEFAULT NULL,
    journal_when bigint DEFAULT NULL,
    replace      boolean DEFAULT false
)
RETURNS text
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    existing mt.migrations;
    digest   text;
BEGIN
    IF name IS NULL OR sql IS NULL OR scope IS NULL THEN
        RAISE EXCEPTION 'name, sql and scope must not be NULL' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF scope NOT IN ('tenant', 'shared') THEN
        RAISE EXCEPTION 'scope "%" is invalid: it must be tenant or shared', scope
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF name = '' OR octet_length(name) > 255 THEN
        RAISE EXCEPTION 'migration name "%" is invalid: it must be 1 to 255 bytes', left(name, 80)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    digest := encode(sha256(convert_to(sql, 'UTF8')), 'hex');

    PERFORM pg_advisory_xact_lock(hashtextextended('mt.migrations:' || scope, 0));
    SELECT * INTO existing FROM mt.migrations m WHERE m.scope = add_migration.scope AND m.name = add_migration.name;
    IF FOUND THEN
        IF existing.sha256 = digest AND (idx IS NULL OR existing.idx = idx) THEN
            RETURN 'unchanged';
        END IF;
        IF NOT replace THEN
            RAISE EXCEPTION '% migration "%" is already registered with different content', scope, name
                USING ERRCODE = 'unique_violation',
                      DETAIL = format('registered sha256 %s, new sha256 %s', existing.sha256, digest),
                      HINT = 'Migrations are immutable once registered; pass replace => true to overwrite it anyway.';
        END IF;
        UPDATE mt.migrations m
           SET sql = add_migration.sql, sha256 = digest,
               idx = coalesce(add_migration.idx, m.idx),
               journal_when = coalesce(add_migration.journal_when, m.journal_when),
               registered_at = now()
         WHERE m.scope = add_migration.scope AND m.name = add_migration.name;
        RETURN 'replaced';
    END IF;

    IF idx IS NULL THEN
        SELECT coalesce(max(m.idx) + 1, 0) INTO idx FROM mt.migrations m WHERE m.scope = add_migration.scope;
    ELSIF EXISTS (SELECT FROM mt.migrations m WHERE m.scope = add_migration.scope AND m.idx = add_migration.idx) THEN
        RAISE EXCEPTION '% migration idx % is already taken by "%"', scope, idx,
                        (SELECT m.name FROM mt.migrations m WHERE m.scope = add_migration.scope AND m.idx = add_migration.idx)
            USING ERRCODE = 'unique_violation';
    END IF;
    INSERT INTO mt.migrations (scope, idx, name, sql, sha256, journal_when)
    VALUES (scope, idx, name, sql, digest, journal_when);
    RETURN 'added';
END
$$;
COMMENT ON FUNCTION mt.add_migration(text, text, text, integer, bigint, boolean) IS
    'multitenant: register one migration (idempotent for identical content); returns added, unchanged or replaced';

CREATE FUNCTION mt.load_migrations(
    folder  text,
    scope   text DEFAULT 'tenant',
    replace boolean DEFAULT false
)
RETURNS TABLE (idx integer, name text, sha256 text, action text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    f record;
BEGIN
    -- mt.read_migration_folder checks that the caller may read server files and raises
    -- for a malformed folder before anything is registered.
    FOR f IN SELECT * FROM mt.read_migration_folder(folder) LOOP
        idx := f.idx;
        name := f.name;
        sha256 := f.sha256;
        action := mt.add_migration(f.name, f.sql, scope, f.idx, f.journal_when, replace);
        RETURN NEXT;
    END LOOP;
END
$$;
COMMENT ON FUNCTION mt.load_migrations(text, text, boolean) IS
    'multitenant: register every migration of a drizzle-kit or numbered folder on the server (superuser or pg_read_server_files); loading it again changes nothing';

-- Which registered tenant migrations each tenant has recorded. A record is a migration when
-- it has the same name (name format), hash (hash formats) or journal when (drizzle-kit);
-- three equality joins rather than one OR, so each is a hash join.
CREATE VIEW mt.applied_migrations AS
SELECT r.tenant_id, m.name, m.idx
  FROM mt.tracking_records r JOIN mt.migrations m ON m.scope = 'tenant' AND m.name = r.name
UNION
SELECT r.tenant_id, m.name, m.idx
  FROM mt.tracking_records r JOIN mt.migrations m ON m.scope = 'tenant' AND m.sha256 = r.hash
UNION
SELECT r.tenant_id, m.name, m.idx
  FROM mt.tracking_records r JOIN mt.migrations m ON m.scope = 'tenant' AND m.journal_when = r.journal_when;
COMMENT ON VIEW mt.applied_migrations IS
    'multitenant: (tenant, registered tenant migration) pairs the tenant has recorded as applied, by name, hash or journal when';

CREATE VIEW mt.status AS
WITH pending AS (
    SELECT t.tenant_id, count(*)::integer AS n, array_agg(m.name ORDER BY m.idx) AS names
      FROM mt.tenants t
      JOIN mt.migrations m ON m.scope = 'tenant'
     WHERE NOT EXISTS (SELECT FROM mt.applied_migrations a WHERE a.tenant_id = t.tenant_id AND a.name = m.name)
     GROUP BY t.tenant_id
), last_applied AS (
    SELECT tenant_id, max(applied_at) AS at FROM mt.tracking_records GROUP BY tenant_id
)
SELECT t.tenant_id,
       t.schema_name,
       t.tracking_format AS format,
       (SELECT count(*) FROM mt.migrations WHERE scope = 'tenant')::integer - coalesce(p.n, 0) AS applied,
       coalesce(p.n, 0) AS pending,
       l.at AS last_applied_at,
       coalesce(p.names, '{}') AS pending_names
  FROM mt.tenants t
  LEFT JOIN pending p USING (tenant_id)
  LEFT JOIN last_applied l USING (tenant_id);
COMMENT ON VIEW mt.status IS
    'multitenant: per tenant, how many registered tenant migrations are applied and which are pending';

CREATE VIEW mt.sync_status AS
WITH orphans AS (
    SELECT r.tenant_id, array_agg(coalesce(r.name, r.hash, r.journal_when::text) ORDER BY r.record_id) AS records
      FROM mt.tracking_records r
     WHERE NOT EXISTS (SELECT FROM mt.migrations m WHERE m.scope = 'tenant' AND m.name = r.name)
       AND NOT EXISTS (SELECT FROM mt.migrations m WHERE m.scope = 'tenant' AND m.sha256 = r.hash)
       AND NOT EXISTS (SELECT FROM mt.migrations m WHERE m.scope = 'tenant' AND m.journal_when = r.journal_when)
     GROUP BY r.tenant_id
)
SELECT s.tenant_id, s.schema_name, s.format, s.pending_names AS missing, coalesce(o.records, '{}') AS orphans
  FROM mt.status s
  LEFT JOIN orphans o USING (tenant_id);
COMMENT ON VIEW mt.sync_status IS
    'multitenant: per tenant, registered migrations not recorded (missing) and records of migrations no longer registered (orphans)';

-- CREATE EXTENSION in a tenant migration: the engine takes the statement out and calls this
-- (as the extension owner, in the migration's transaction) before the rest runs as the
-- tenant's role. Extensions are database-wide, so each is created once, into the shared
-- schema (or extensions_schema), and only when allowed_extensions names it.
CREATE FUNCTION mt_internal.ensure_extension(extension text, migration text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    target_schema text := coalesce(nullif(mt.get_config('extensions_schema'), ''), mt.get_config('shared_schema'));
BEGIN
    IF NOT extension = ANY (string_to_array(mt.get_config('allowed_extensions'), ',')) THEN
        RAISE EXCEPTION 'migration "%" creates extension "%", which tenant migrations may not create', migration, extension
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = 'Extensions are database-wide and are created by the extension owner, once, for every tenant.',
                  HINT = format('A superuser can allow it: SELECT mt.set_config(''allowed_extensions'', %L); or create it in a shared migration.',
                                concat_ws(',', nullif(mt.get_config('allowed_extensions'), ''), extension));
    END IF;
    -- Workers migrating other tenants may get here at the same time (no schema is named so).
    PERFORM mt_internal.lock_schema('extension:' || extension);
    IF NOT EXISTS (SELECT FROM pg_extension e WHERE e.extname = extension) THEN
        EXECUTE format('CREATE EXTENSION %I SCHEMA %I', extension, target_schema);
    END IF;
END
$$;
COMMENT ON FUNCTION mt_internal.ensure_extension(text, text) IS
    'multitenant (internal): create an extension a tenant migration asks for, once, in the shared schema, if allowed_extensions names it';

-- The ledger learns of records other tools write (drizzle-orm, the predecessor, a person with
-- psql) as they write them, so mt.status, mt.sync_status and mt.health tell the truth without
-- waiting for a run. Only insertions: a record deleted from a tracking table (or a table
-- emptied or dropped) stays in the ledger, and the engine then refuses to replay the
-- migration (see mt.repair_tracking).
CREATE FUNCTION mt_internal.record_tracking_insert()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER  -- whoever may write the tracking table may not write the ledger
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := (SELECT t.tenant_id FROM mt.tenants t WHERE t.schema_name = TG_TABLE_SCHEMA);
    rec    jsonb := to_jsonb(NEW);
BEGIN
    IF tenant IS NOT NULL THEN
        INSERT INTO mt.tracking_records AS r (tenant_id, record_id, name, hash, journal_when, applied_at)
        VALUES (tenant, (rec ->> 'id')::integer, rec ->> 'name', rec ->> 'hash',
                CASE WHEN jsonb_typeof(rec -> 'created_at') = 'number' THEN (rec ->> 'created_at')::bigint END,
                coalesce((rec ->> 'applied_at')::timestamptz,
                         CASE WHEN jsonb_typeof(rec -> 'created_at') = 'string' THEN (rec ->> 'created_at')::timestamptz END))
        -- A record the ledger holds under this id already stays as it is: a different row
        -- written by hand under a lost record's id must not make the ledger forget it.
        ON CONFLICT (tenant_id, record_id) DO NOTHING;
    END IF;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION mt_internal.record_tracking_insert() IS
    'multitenant (internal): trigger on every tracking table: copies each new record into the ledger mt.tracking_records';

CREATE FUNCTION mt_internal.ensure_ledger_trigger(schema_name text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tracking regclass := to_regclass(format('%I.%I', ensure_ledger_trigger.schema_name, mt.get_config('tracking_table')));
BEGIN
    IF tracking IS NOT NULL AND NOT EXISTS (SELECT FROM pg_trigger g WHERE g.tgrelid = tracking AND g.tgname = 'mt_ledger') THEN
        EXECUTE format('CREATE TRIGGER mt_ledger AFTER INSERT ON %s FOR EACH ROW EXECUTE FUNCTION mt_internal.record_tracking_insert()', tracking);
    END IF;
END
$$;
COMMENT ON FUNCTION mt_internal.ensure_ledger_trigger(text) IS
    'multitenant (internal): give a schema''s tracking table the trigger that keeps the ledger informed, if it lacks it';
