-- Seeds: SQL run once per tenant (or in the shared schema), with a history, so a seed runs
-- once unless forced.

CREATE TABLE mt.seeds (
    name          text PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,62}$'),
    scope         text NOT NULL DEFAULT 'tenant' CHECK (scope IN ('tenant', 'shared')),
    sql           text,
    function      regprocedure,
    registered_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CONSTRAINT sql_or_function CHECK (num_nonnulls(sql, function) = 1)
);
COMMENT ON TABLE mt.seeds IS
    'multitenant: registered seeds (kept by pg_dump); write it through mt.register_seed and mt.unregister_seed';
COMMENT ON COLUMN mt.seeds.scope IS 'tenant: run in a tenant''s schema; shared: run in the shared schema';
COMMENT ON COLUMN mt.seeds.sql IS 'SQL run as the schema''s role (the tenant''s) with search_path = <schema>, <shared schema>, public';
COMMENT ON COLUMN mt.seeds.function IS 'a function called as f(tenant_id text, schema_name text), as the same role with the same search_path';
SELECT pg_catalog.pg_extension_config_dump('mt.seeds', '');

-- No foreign keys (pg_restore -j loads dumped tables in any order): mt.unregister_seed and
-- mt.drop_tenant delete the history they end.
CREATE TABLE mt.seed_history (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    seed_name   text NOT NULL,
    tenant_id   text,
    schema_name text NOT NULL,
    forced      boolean NOT NULL DEFAULT false,
    ran_at      timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    duration_ms double precision NOT NULL
);
CREATE INDEX seed_history_tenant ON mt.seed_history (seed_name, tenant_id);
COMMENT ON TABLE mt.seed_history IS
    'multitenant: every time a seed ran, per tenant (tenant_id NULL: the shared schema); a seed in here is skipped unless forced';
SELECT pg_catalog.pg_extension_config_dump('mt.seed_history', '');
SELECT pg_catalog.pg_extension_config_dump('mt.seed_history_id_seq', '');

CREATE FUNCTION mt.register_seed(name text, sql text, scope text DEFAULT 'tenant', replace boolean DEFAULT false)
RETURNS mt.seeds
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    registered mt.seeds;
BEGIN
    IF sql IS NULL OR btrim(sql) = '' THEN
        RAISE EXCEPTION 'seed "%" has no SQL', name USING ERRCODE = 'invalid_parameter_value';
    END IF;
    registered := mt_internal.save_seed(name, scope, sql, NULL, replace);
    RETURN registered;
END
$$;
COMMENT ON FUNCTION mt.register_seed(text, text, text, boolean) IS
    'multitenant: register SQL to seed tenants (scope tenant) or the shared schema (scope shared); replace => true overwrites';

CREATE FUNCTION mt.register_seed(name text, function regprocedure, scope text DEFAULT 'tenant', replace boolean DEFAULT false)
RETURNS mt.seeds
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF function IS NULL OR (SELECT p.pronargs <> 2 OR p.proargtypes[0] <> 'text'::regtype OR p.proargtypes[1] <> 'text'::regtype
                                   OR p.prokind <> 'f'
                              FROM pg_proc p WHERE p.oid = function) THEN
        RAISE EXCEPTION 'seed function % must take (tenant_id text, schema_name text)', coalesce(function::text, 'NULL')
            USING ERRCODE = 'invalid_function_definition';
    END IF;
    RETURN mt_internal.save_seed(name, scope, NULL, function, replace);
END
$$;
COMMENT ON FUNCTION mt.register_seed(text, regprocedure, text, boolean) IS
    'multitenant: register a function f(tenant_id text, schema_name text) that seeds a tenant (or, scope shared, the shared schema)';

CREATE FUNCTION mt_internal.save_seed(name text, scope text, sql text, function regprocedure, replace boolean)
RETURNS mt.seeds
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    saved mt.seeds;
BEGIN
    IF name IS NULL OR name !~ '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,62}$' THEN
        RAISE EXCEPTION 'invalid seed name "%"', name
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'A seed name is 1 to 63 letters, digits, "_", ".", ":" or "-", starting with a letter or digit.';
    END IF;
    IF scope IS NULL OR scope NOT IN ('tenant', 'shared') THEN
        RAISE EXCEPTION 'seed scope must be tenant or shared, not %', coalesce(quote_literal(scope), 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT coalesce(replace, false) AND EXISTS (SELECT FROM mt.seeds s WHERE s.name = save_seed.name) THEN
        RAISE EXCEPTION 'seed "%" is already registered', name
            USING ERRCODE = 'duplicate_object', HINT = 'Pass replace => true to overwrite it.';
    END IF;
    INSERT INTO mt.seeds AS s (name, scope, sql, function) VALUES (save_seed.name, save_seed.scope, save_seed.sql, save_seed.function)
    ON CONFLICT ON CONSTRAINT seeds_pkey DO UPDATE
       SET scope = EXCLUDED.scope, sql = EXCLUDED.sql, function = EXCLUDED.function, registered_at = pg_catalog.now()
    RETURNING * INTO saved;
    RETURN saved;
END
$$;
COMMENT ON FUNCTION mt_internal.save_seed(text, text, text, regprocedure, boolean) IS
    'multitenant: the checks and upsert behind both forms of mt.register_seed';

CREATE FUNCTION mt.unregister_seed(name text)
RETURNS boolean
LANGUAGE sql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    WITH history AS (DELETE FROM mt.seed_history h WHERE h.seed_name = unregister_seed.name),
         gone AS (DELETE FROM mt.seeds s WHERE s.name = unregister_seed.name RETURNING 1)
    SELECT EXISTS (SELECT FROM gone)
$$;
COMMENT ON FUNCTION mt.unregister_seed(text) IS
    'multitenant: forget a seed and its history; returns false when it was not registered';

-- Runs one seed in one schema, unless its history says it ran there (and force is off).
CREATE FUNCTION mt_internal.run_seed(seed_name text, expected_scope text, tenant_id text, target_schema text, force boolean)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    seed    mt.seeds;
    started timestamptz := clock_timestamp();
    shared  text := mt.get_config('shared_schema');
BEGIN
    SELECT * INTO seed FROM mt.seeds s WHERE s.name = seed_name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'seed "%" is not registered', seed_name
            USING ERRCODE = 'undefined_object', HINT = 'SELECT name FROM mt.seeds lists the seeds.';
    ELSIF seed.scope <> expected_scope THEN
        RAISE EXCEPTION 'seed "%" is for the % schema', seed_name, CASE seed.scope WHEN 'shared' THEN 'shared' ELSE 'tenants''' END
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = CASE seed.scope WHEN 'shared' THEN 'Run it with mt.seed_shared.' ELSE 'Run it with mt.seed_tenant or mt.seed_all.' END;
    END IF;

    -- One seeding of a schema at a time, so that two runs never both see "not yet".
    PERFORM pg_advisory_xact_lock(hashtextextended('mt.seed:' || target_schema || ':' || seed_name, 0));
    IF NOT force AND EXISTS (SELECT FROM mt.seed_history h
                              WHERE h.seed_name = seed.name AND h.schema_name = target_schema
                                AND h.tenant_id IS NOT DISTINCT FROM run_seed.tenant_id) THEN
        RETURN 'skipped';
    END IF;

    -- Seeds are tenant code whoever wrote them: they run as the schema's role (mt_internal.code_role),
    -- so a seed function whose body was replaced later gains nothing.
    PERFORM mt_internal.execute_as(mt_internal.code_role(target_schema),
                          concat_ws(', ', quote_ident(target_schema), nullif(quote_ident(shared), quote_ident(target_schema)),
                                    'public', 'pg_temp'),
                          coalesce(seed.sql, format('SELECT %s(%L::text, %L::text)', seed.function::regproc, tenant_id, target_schema)));

    INSERT INTO mt.seed_history (seed_name, tenant_id, schema_name, forced, duration_ms)
    VALUES (seed.name, run_seed.tenant_id, target_schema, force,
            1000 * extract(epoch FROM clock_timestamp() - started));
    RETURN 'seeded';
END
$$;
COMMENT ON FUNCTION mt_internal.run_seed(text, text, text, text, boolean) IS
    'multitenant: run one seed in one schema and record it, or skip it when it ran there before and force is off';

CREATE FUNCTION mt.seed_tenant(tenant_id text, name text, force boolean DEFAULT false)
RETURNS text
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN mt_internal.run_seed(name, 'tenant', tenant_id, mt.tenant_schema(tenant_id), force);
END
$$;
COMMENT ON FUNCTION mt.seed_tenant(text, text, boolean) IS
    'multitenant: run a tenant seed in one tenant''s schema in the caller''s transaction; returns seeded, or skipped when it ran before (unless force)';

CREATE FUNCTION mt.seed_shared(name text, force boolean DEFAULT false)
RETURNS text
LANGUAGE sql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT mt_internal.run_seed(name, 'shared', NULL, mt.get_config('shared_schema'), force)
$$;
COMMENT ON FUNCTION mt.seed_shared(text, boolean) IS
    'multitenant: run a shared seed in the shared schema; returns seeded, or skipped when it ran before (unless force)';
