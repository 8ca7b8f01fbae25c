-- The tenant registry: one row per tenant, one schema per row.

CREATE TABLE mt.tenants (
    tenant_id   text PRIMARY KEY CHECK (octet_length(tenant_id) BETWEEN 1 AND 63),
    schema_name text NOT NULL UNIQUE,
    status      text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended')),
    created_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    metadata    jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(metadata) = 'object'),
    tracking_format text CHECK (tracking_format IN ('name', 'hash', 'drizzle-kit')),
    -- Rows are written by mt.create_tenant / mt.adopt_tenants, which apply the naming rules;
    -- this re-check keeps a hand-written row from smuggling in a name that needs quoting.
    CONSTRAINT schema_name_is_plain CHECK (schema_name = quote_ident(schema_name) AND octet_length(schema_name) <= 63)
);
COMMENT ON TABLE mt.tenants IS
    'multitenant: the tenant registry (kept by pg_dump); write it through mt.create_tenant, mt.drop_tenant, mt.adopt_tenants';
COMMENT ON COLUMN mt.tenants.tenant_id IS 'the application''s id for the tenant';
COMMENT ON COLUMN mt.tenants.schema_name IS 'the tenant''s schema, from mt.schema_name(tenant_id) when it was created';
COMMENT ON COLUMN mt.tenants.status IS 'active or suspended';
COMMENT ON COLUMN mt.tenants.metadata IS 'free-form JSON object for the application';
COMMENT ON COLUMN mt.tenants.tracking_format IS 'format of the tenant''s tracking table as last read by the migration engine; NULL until then';
SELECT pg_catalog.pg_extension_config_dump('mt.tenants', '');

-- Objects that live in a schema each have a normal dependency on it; this is what
-- DROP SCHEMA ... RESTRICT looks at. The tracking table (and its id sequence) is the
-- extension's own bookkeeping and does not count.
CREATE FUNCTION mt.schema_object_count(schema_name text)
RETURNS bigint
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH tracking AS (
        SELECT oid FROM pg_class
         WHERE oid = to_regclass(format('%I.%I', schema_object_count.schema_name, mt.get_config('tracking_table')))
    )
    SELECT count(*)
      FROM pg_depend d
      JOIN pg_namespace n ON n.oid = d.refobjid
     WHERE d.refclassid = 'pg_namespace'::regclass
       AND d.deptype = 'n'
       AND n.nspname = schema_object_count.schema_name
       AND NOT (d.classid = 'pg_class'::regclass AND d.objid IN (
                SELECT oid FROM tracking
                UNION ALL
                SELECT s.objid FROM pg_depend s, tracking
                 WHERE s.refclassid = 'pg_class'::regclass AND s.refobjid = tracking.oid
                   AND s.classid = 'pg_class'::regclass AND s.deptype = 'a'))
$$;
COMMENT ON FUNCTION mt.schema_object_count(text) IS
    'multitenant: how many objects (tables, types, functions, ...) a schema holds, not counting the migration tracking table';

CREATE FUNCTION mt.create_tenant(
    tenant_id     text,
    metadata      jsonb DEFAULT '{}',
    if_not_exists boolean DEFAULT false,
    migrate       boolean DEFAULT true,
    seed          text DEFAULT NULL,
    use_template  boolean DEFAULT true
)
RETURNS mt.tenants
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    new_schema text := mt.schema_name(tenant_id);  -- raises 22023 for a bad id
    owner      text := mt.get_config('schema_owner');
    role_name  text;
    existing   mt.tenants;
    created    mt.tenants;
    outcome    mt.run_result;
BEGIN
    IF metadata IS NULL OR jsonb_typeof(metadata) <> 'object' THEN
        RAISE EXCEPTION 'metadata for tenant "%" must be a JSON object, not %', tenant_id, coalesce(jsonb_typeof(metadata), 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    -- Serialise creators of the same schema, so that "a-b" and "a_b" created at the same
    -- time get the collision error below rather than a unique violation; it is the engine's
    -- lock of the schema, which a drop or run of it waits for too.
    PERFORM mt_internal.lock_schema(new_schema);

    SELECT * INTO existing FROM mt.tenants t WHERE t.tenant_id = create_tenant.tenant_id;
    IF FOUND THEN
        IF if_not_exists THEN
            RAISE NOTICE 'tenant "%" already exists, skipping', tenant_id;
            RETURN existing;
        END IF;
        RAISE EXCEPTION 'tenant "%" already exists', tenant_id
            USING ERRCODE = 'duplicate_object',
                  HINT = 'Pass if_not_exists => true to skip existing tenants.';
    END IF;

    SELECT * INTO existing FROM mt.tenants t WHERE t.schema_name = new_schema;
    IF FOUND THEN
        RAISE EXCEPTION 'tenant id "%" maps to schema "%", which belongs to tenant "%"',
                        tenant_id, new_schema, existing.tenant_id
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'Ids that differ only by "-" and "_" map to the same schema.';
    END IF;

    -- A tenant of this id dropped by hand (not with mt.drop_tenant) may have left history.
    DELETE FROM mt.tracking_records r WHERE r.tenant_id = create_tenant.tenant_id;
    DELETE FROM mt.seed_history h WHERE h.tenant_id = create_tenant.tenant_id;

    IF EXISTS (SELECT FROM pg_namespace WHERE nspname = new_schema) THEN
        RAISE EXCEPTION 'schema "%" for tenant "%" already exists but is not a registered tenant', new_schema, tenant_id
            USING ERRCODE = 'duplicate_schema',
                  HINT = 'mt.adopt_tenants() registers existing schemas that follow the template.';
    END IF;

    IF owner = '' THEN
        EXECUTE format('CREATE SCHEMA %I', new_schema);
    ELSE
        EXECUTE format('CREATE SCHEMA %I AUTHORIZATION %I', new_schema, owner);
    END IF;
    -- The schema stays the trusted owner's; the tenant's role may use it and create in it,
    -- and owns what its migrations create.
    IF mt.get_config('tenant_roles') = 'on' THEN
        role_name := mt_internal.create_tenant_role(tenant_id);
        PERFORM mt_internal.grant_schema(new_schema, role_name);
    END IF;

    INSERT INTO mt.tenants (tenant_id, schema_name, metadata, role_name)
    VALUES (create_tenant.tenant_id, new_schema, create_tenant.metadata, role_name)
    RETURNING * INTO created;

    IF migrate THEN
        -- Copying the template is much faster than replaying every migration; it is used
        -- only when the template has exactly the registered migrations applied.
        IF use_template AND mt.template_is_current() THEN
            PERFORM mt_internal.copy_template(new_schema);
        END IF;
        -- In this transaction: if a migration fails, the tenant is not created at all. After
        -- a clone this finds nothing to apply and records the cloned migrations in the ledger.
        SELECT * INTO outcome FROM mt.migrate_tenant(create_tenant.tenant_id);
        IF outcome.status = 'failed' THEN
            RAISE EXCEPTION 'tenant "%" was not created: migration % failed: %', tenant_id, coalesce(outcome.migration, '(none)'), outcome.error
                USING ERRCODE = outcome.sqlstate;
        END IF;
        SELECT * INTO created FROM mt.tenants t WHERE t.tenant_id = create_tenant.tenant_id;
    END IF;
    IF seed IS NOT NULL THEN
        PERFORM mt.seed_tenant(create_tenant.tenant_id, seed);
    END IF;
    RETURN created;
END
$$;
COMMENT ON FUNCTION mt.create_tenant(text, jsonb, boolean, boolean, text, boolean) IS
    'multitenant: create a tenant''s schema (a copy of mt_template when it is current, else by applying the tenant migrations), register it and run a seed, atomically; returns the registry row';

CREATE FUNCTION mt.drop_tenant(
    tenant_id text,
    force     boolean DEFAULT false,
    if_exists boolean DEFAULT false
)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    victim  mt.tenants;
    objects bigint;
BEGIN
    -- The schema's lock first, then the registry row: a run holding the lock may update the
    -- row, so the other order could deadlock with it.
    PERFORM mt_internal.lock_schema(t.schema_name) FROM mt.tenants t WHERE t.tenant_id = drop_tenant.tenant_id;
    SELECT * INTO victim FROM mt.tenants t WHERE t.tenant_id = drop_tenant.tenant_id FOR UPDATE;
    IF NOT FOUND THEN
        IF if_exists THEN
            RAISE NOTICE 'tenant "%" does not exist, skipping', tenant_id;
            RETURN 0;
        END IF;
        RAISE EXCEPTION 'tenant "%" does not exist', tenant_id
            USING ERRCODE = 'undefined_object',
                  HINT = 'SELECT tenant_id FROM mt.tenants lists the tenants.';
    END IF;

    objects := mt.schema_object_count(victim.schema_name);
    IF objects > 0 AND NOT force THEN
        RAISE EXCEPTION 'schema "%" of tenant "%" still holds % object(s)', victim.schema_name, tenant_id, objects
            USING ERRCODE = 'dependent_objects_still_exist',
                  HINT = 'Pass force => true to drop the schema with everything in it.';
    END IF;

    IF EXISTS (SELECT FROM pg_namespace WHERE nspname = victim.schema_name) THEN
        -- The tracking table first, so CASCADE's notice lists only the tenant's own objects.
        IF (SELECT c.relkind = 'r' FROM pg_class c
             WHERE c.oid = to_regclass(format('%I.%I', victim.schema_name, mt.get_config('tracking_table')))) THEN
            EXECUTE format('DROP TABLE %I.%I', victim.schema_name, mt.get_config('tracking_table'));
        END IF;
        EXECUTE format('DROP SCHEMA %I CASCADE', victim.schema_name);
    ELSE
        RAISE NOTICE 'schema "%" of tenant "%" was already gone; unregistering the tenant', victim.schema_name, tenant_id;
    END IF;
    DELETE FROM mt.tenants t WHERE t.tenant_id = victim.tenant_id;
    DELETE FROM mt.tracking_records r WHERE r.tenant_id = victim.tenant_id;
    DELETE FROM mt.seed_history h WHERE h.tenant_id = victim.tenant_id;
    IF victim.role_name IS NOT NULL AND EXISTS (SELECT FROM pg_roles r WHERE r.rolname = victim.role_name) THEN
        -- What the role still owns or was granted in this database (outside its schema).
        EXECUTE format('DROP OWNED BY %I', victim.role_name);
        BEGIN
            EXECUTE format('DROP ROLE %I', victim.role_name);
        EXCEPTION WHEN dependent_objects_still_exist THEN
            RAISE WARNING 'role "%" of tenant "%" was kept: it still owns objects in another database', victim.role_name, tenant_id
                USING HINT = 'Drop or reassign them there, then DROP ROLE it.';
        END;
    END IF;
    RETURN objects;
END
$$;
COMMENT ON FUNCTION mt.drop_tenant(text, boolean, boolean) IS
    'multitenant: drop a tenant''s schema and unregister it; refuses a non-empty schema unless force => true; returns the number of objects dropped';

CREATE FUNCTION mt.adopt_tenants(
    pattern      text DEFAULT '%',
    dry_run      boolean DEFAULT false,
    assign_roles boolean DEFAULT true
)
RETURNS TABLE (tenant_id text, schema_name text, role_name text, objects_reassigned bigint)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    adopted text[];
BEGIN
    IF pattern IS NULL THEN
        RAISE EXCEPTION 'pattern must not be NULL' USING ERRCODE = 'invalid_parameter_value';
    END IF;

    WITH candidates AS (
        SELECT mt.tenant_id_of(n.nspname) AS tenant_id, n.nspname::text AS schema_name
          FROM pg_namespace n
         WHERE n.nspname LIKE adopt_tenants.pattern
           AND NOT EXISTS (SELECT FROM mt.tenants t WHERE t.schema_name = n.nspname)
    ), adoptable AS (
        SELECT c.tenant_id, c.schema_name
          FROM candidates c
         WHERE c.tenant_id IS NOT NULL
           AND NOT EXISTS (SELECT FROM mt.tenants t WHERE t.tenant_id = c.tenant_id)
    ), inserted AS (
        INSERT INTO mt.tenants AS t (tenant_id, schema_name, metadata)
        SELECT a.tenant_id, a.schema_name, '{"adopted": true}'::jsonb
          FROM adoptable a
         WHERE NOT dry_run
        RETURNING t.tenant_id
    )
    SELECT array_agg(a.tenant_id ORDER BY a.schema_name) INTO adopted FROM adoptable a;

    -- What is inside an adopted schema is untrusted: it gets a role of its own, its
    -- objects go to that role, and the schema and tracking table to the trusted owner.
    RETURN QUERY
    WITH assigned AS (
        SELECT * FROM mt.assign_tenant_roles(
            CASE WHEN assign_roles AND NOT dry_run AND mt.get_config('tenant_roles') = 'on' THEN coalesce(adopted, '{}') ELSE '{}' END)
    )
    SELECT a.tenant_id, mt.schema_name(a.tenant_id),
           CASE WHEN dry_run AND assign_roles AND mt.get_config('tenant_roles') = 'on' THEN mt.tenant_role_name(a.tenant_id)
                ELSE s.role_name END,
           s.objects
      FROM unnest(coalesce(adopted, '{}')) AS a(tenant_id)
      LEFT JOIN assigned s ON s.tenant_id = a.tenant_id
     ORDER BY 2;

    -- What the adopted tracking tables record is in mt.status at once, not after a first
    -- run (read only once the trusted owner has them).
    IF assign_roles AND NOT dry_run AND mt.get_config('tenant_roles') = 'on' THEN
        PERFORM mt.repair_tracking(ARRAY(SELECT a FROM unnest(adopted) a
                                          WHERE to_regclass(format('%I.%I', mt.schema_name(a), mt.get_config('tracking_table'))) IS NOT NULL),
                                   source => 'tracking');
    END IF;
END
$$;
COMMENT ON FUNCTION mt.adopt_tenants(text, boolean, boolean) IS
    'multitenant: register existing schemas whose names follow schema_template (and match the LIKE pattern) as tenants, without moving data, and (assign_roles, with tenant_roles on) give each a role of its own that takes over its objects; returns what was (or, with dry_run, would be) adopted and changed';
