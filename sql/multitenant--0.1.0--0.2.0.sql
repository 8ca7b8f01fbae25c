-- multitenant 0.1.0 -> 0.2.0
--
-- Run by ALTER EXTENSION multitenant UPDATE (in a session that has not used the extension
-- yet: the 0.1.0 and 0.2.0 libraries define the same settings). The result must equal a fresh
-- 0.2.0 install; scripts/upgrade-test.sh proves it.
\echo Use "ALTER EXTENSION multitenant UPDATE TO '0.2.0'" to load this file. \quit

-- mt.health_check gains a third parameter (pools): the two-parameter function goes (before
-- the drift event triggers exist, which would note the drop), the new one is created below.
DROP FUNCTION mt.health_check(text[], boolean);

-- The 0.2.0 library has its own file name (multitenant-0.2.0.so in $libdir); every C function moves to it.

-- Internal helpers move out of the public API, into mt_internal.
CREATE SCHEMA mt_internal;
COMMENT ON SCHEMA mt_internal IS
    'multitenant: internal helpers of the extension (not API; may change in any release)';
ALTER FUNCTION mt.save_seed(text, text, text, regprocedure, boolean) SET SCHEMA mt_internal;
ALTER FUNCTION mt.run_seed(text, text, text, text, boolean) SET SCHEMA mt_internal;
ALTER FUNCTION mt.validate_config() SET SCHEMA mt_internal;
ALTER FUNCTION mt.strip_schema(text, text) SET SCHEMA mt_internal;
ALTER FUNCTION mt.strip_schema_setting(text[], text) SET SCHEMA mt_internal;
ALTER FUNCTION mt.is_extension_member(regclass, oid) SET SCHEMA mt_internal;
ALTER FUNCTION mt.anonymize_expression(jsonb, text, text, text) SET SCHEMA mt_internal;
ALTER FUNCTION mt.anonymize_error(text, text, text) SET SCHEMA mt_internal;
ALTER FUNCTION mt.clone_rows(text, text, boolean, jsonb) SET SCHEMA mt_internal;
ALTER FUNCTION mt.template_version() SET SCHEMA mt_internal;
ALTER FUNCTION mt.build_template_scripts(text) SET SCHEMA mt_internal;
ALTER FUNCTION mt.copy_template(text) SET SCHEMA mt_internal;
ALTER FUNCTION mt.is_migration_operation(text) SET SCHEMA mt_internal;
ALTER FUNCTION mt.prometheus_label(text) SET SCHEMA mt_internal;
ALTER FUNCTION mt.metric_family(text, text, text, text[]) SET SCHEMA mt_internal;

-- Roles of 0.2.0 (cluster-wide; another database's update may have made them).

DO $$
DECLARE
    wanted record;
BEGIN
    FOR wanted IN
        SELECT * FROM (VALUES
            ('mt_admin', 'multitenant: operators: provision, migrate, clone, seed, health and metrics; tenant code still runs as tenant roles, so members never gain superuser'),
            ('mt_monitor', 'multitenant: read-only: health, status, metrics, drift and runs, for dashboards and probes'),
            ('mt_tenant', 'multitenant: every tenant role is a member; grant shared tables to it'),
            ('mt_template_role', 'multitenant: owns the objects of mt_template, the schema every registered tenant migration is applied to')
        ) AS r(name, description)
    LOOP
        IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = wanted.name) THEN
            EXECUTE pg_catalog.format('CREATE ROLE %I NOLOGIN', wanted.name);
        END IF;
        EXECUTE pg_catalog.format('COMMENT ON ROLE %I IS %L', wanted.name, wanted.description);
    END LOOP;
END
$$;

-- New settings.
INSERT INTO mt.config_options (key, default_value, description)
SELECT o.key, o.default_value, o.description FROM (VALUES
    ('tenant_roles', 'on',
     'on: every new tenant gets a NOLOGIN role that its migrations, seeds and clones run as; off: tenant code runs as the schema''s owner (superuser only)'),
    ('tenant_role_template', '{schema}',
     'how a tenant''s schema name becomes its role name: {schema} is replaced by the schema name'),
    ('application_role', '',
     'the role the application logs in as; every tenant role is granted to it (set with mt.grant_application_role)'),
    ('shared_role', '',
     'role that shared-scope migrations and seeds run as; empty means the database owner'),
    ('extensions_schema', '',
     'schema that CREATE EXTENSION statements of tenant migrations install into; empty means the shared schema'),
    ('allowed_extensions',
     'btree_gin,btree_gist,citext,cube,dict_int,fuzzystrmatch,hstore,intarray,isn,lo,ltree,pg_trgm,pgcrypto,seg,tablefunc,tcn,tsm_system_rows,tsm_system_time,unaccent,uuid-ossp',
     'comma-separated extensions that tenant migrations may create (once, database-wide, by the extension owner)')
) AS o(key, default_value, description);

-- No foreign keys between dumped tables: pg_restore -j loads them in any order.
ALTER TABLE mt.tracking_records DROP CONSTRAINT tracking_records_tenant_id_fkey;
ALTER TABLE mt.run_tenants DROP CONSTRAINT run_tenants_run_id_fkey;
ALTER TABLE mt.seed_history DROP CONSTRAINT seed_history_seed_name_fkey;
ALTER TABLE mt.seed_history DROP CONSTRAINT seed_history_tenant_id_fkey;

-- Runs: who started them (a run whose caller died is abandoned), which migration failed.
ALTER TABLE mt.runs ADD COLUMN launcher_pid integer;
ALTER TABLE mt.runs DROP CONSTRAINT runs_status_check;
ALTER TABLE mt.runs ADD CONSTRAINT runs_status_check CHECK (status IN ('running', 'finished', 'cancelled', 'abandoned'));
COMMENT ON COLUMN mt.runs.status IS
    'running, finished, cancelled, or abandoned: its caller died (terminated, crashed, server restarted) before closing it';
COMMENT ON COLUMN mt.runs.launcher_pid IS
    'the backend that started the run; while it lives the run can be running';
ALTER TABLE mt.run_tenants ADD COLUMN migration text;
COMMENT ON COLUMN mt.run_tenants.migration IS 'the migration that failed, when one did (sqlstate and error say how)';
ALTER TYPE mt.run_result ADD ATTRIBUTE migration text;

-- Tenant roles.

ALTER TABLE mt.tenants ADD COLUMN role_name text UNIQUE;

DO $$
BEGIN
    IF NOT pg_catalog.pg_has_role('mt_template_role', 'mt_tenant', 'MEMBER') THEN
        GRANT mt_tenant TO mt_template_role;
    END IF;
END
$$;

-- adopt_tenants gained assign_roles and reports roles; row_copy_statements fresh_defaults.
DROP FUNCTION mt.adopt_tenants(text, boolean);
DROP FUNCTION mt.row_copy_statements(text, text, boolean, jsonb);

-- Functions: new ones, and 0.1.0's with their 0.2.0 bodies.

CREATE OR REPLACE FUNCTION mt.create_tenant(
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

CREATE OR REPLACE FUNCTION mt.drop_tenant(
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

CREATE OR REPLACE FUNCTION mt_internal.validate_config()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    template      text;
    shared_schema text;
BEGIN
    IF NOT EXISTS (SELECT FROM mt.config_options WHERE key = NEW.key) THEN
        RAISE EXCEPTION 'unknown multitenant setting "%"', NEW.key
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'SELECT key FROM mt.settings lists the settings.';
    END IF;

    -- These decide which role code runs as, or what the extension owner installs: changing
    -- them through the SECURITY DEFINER mt.set_config must not be a way up for mt_admin.
    IF NEW.key IN ('tenant_roles', 'schema_owner', 'shared_role', 'extensions_schema', 'allowed_extensions', 'application_role')
       AND NOT (SELECT r.rolsuper FROM pg_roles r WHERE r.rolname = session_user) THEN
        RAISE EXCEPTION 'only a superuser may change the setting "%"', NEW.key
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = 'It decides which role tenant or shared code runs as, or what the extension owner installs.';
    END IF;

    CASE NEW.key
    WHEN 'schema_template', 'shared_schema' THEN
        template := CASE WHEN NEW.key = 'schema_template' THEN NEW.value
                         ELSE mt.get_config('schema_template') END;
        shared_schema := CASE WHEN NEW.key = 'shared_schema' THEN NEW.value
                              ELSE mt.get_config('shared_schema') END;
        IF NEW.key = 'shared_schema' AND quote_ident(NEW.value) <> NEW.value THEN
            RAISE EXCEPTION 'shared_schema "%" is invalid: it must be a lowercase name that needs no quoting', NEW.value
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        PERFORM mt.validate_naming(template, shared_schema);
        IF NEW.key = 'shared_schema' AND EXISTS (SELECT FROM mt.tenants t WHERE t.schema_name = NEW.value) THEN
            RAISE EXCEPTION 'shared_schema "%" is invalid: it is the schema of a tenant', NEW.value
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF NEW.key = 'schema_template' AND EXISTS (SELECT FROM mt.tenants) THEN
            RAISE WARNING 'schema_template changed while tenants exist'
                USING DETAIL = 'Registered tenants keep their schemas; only new tenants use the new template.';
        END IF;
    WHEN 'tracking_table' THEN
        IF NEW.value = '' OR octet_length(NEW.value) > 63 OR NEW.value ~ '[^a-z0-9_]' OR NEW.value !~ '^[a-z_]' THEN
            RAISE EXCEPTION 'tracking_table "%" is invalid: it must be 1 to 63 lowercase ASCII letters, digits and "_", starting with a letter or "_"', NEW.value
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
    WHEN 'tracking_format' THEN
        IF NEW.value NOT IN ('name', 'hash', 'drizzle-kit') THEN
            RAISE EXCEPTION 'tracking_format "%" is invalid: it must be name, hash or drizzle-kit', NEW.value
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
    WHEN 'schema_owner', 'shared_role', 'application_role' THEN
        IF NEW.value <> '' AND NOT EXISTS (SELECT FROM pg_roles WHERE rolname = NEW.value) THEN
            RAISE EXCEPTION '% "%" is not an existing role', NEW.key, NEW.value
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF NEW.key = 'application_role' AND (SELECT r.rolsuper OR r.rolinherit FROM pg_roles r WHERE r.rolname = NEW.value) THEN
            RAISE EXCEPTION 'application_role "%" must be a NOINHERIT role that is not a superuser', NEW.value
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'ALTER ROLE ... NOINHERIT: the application then sees a tenant''s tables only after switching to its role.';
        END IF;
    WHEN 'tenant_roles' THEN
        IF NEW.value NOT IN ('on', 'off') THEN
            RAISE EXCEPTION 'tenant_roles "%" is invalid: it must be on or off', NEW.value
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
    WHEN 'tenant_role_template' THEN
        IF strpos(NEW.value, '{schema}') = 0 OR NEW.value !~ '^[a-z0-9_{}]+$' THEN
            RAISE EXCEPTION 'tenant_role_template "%" is invalid: it must contain {schema} and otherwise only lowercase letters, digits and "_"', NEW.value
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
    WHEN 'extensions_schema' THEN
        IF NEW.value <> '' AND NOT EXISTS (SELECT FROM pg_namespace WHERE nspname = NEW.value) THEN
            RAISE EXCEPTION 'extensions_schema "%" does not exist', NEW.value
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
    WHEN 'allowed_extensions' THEN
        IF NEW.value !~ '^([a-z0-9_-]+(,[a-z0-9_-]+)*)?$' THEN
            RAISE EXCEPTION 'allowed_extensions "%" is invalid: it must be extension names separated by commas', NEW.value
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
    END CASE;

    -- A new row keeps what it was given (the column defaults, or the dump a restore loads);
    -- a change is stamped.
    IF TG_OP = 'UPDATE' THEN
        NEW.updated_at := now();
        NEW.updated_by := session_user;
    END IF;
    RETURN NEW;
END
$$;

CREATE FUNCTION mt_internal.is_trusted(role oid)
RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT EXISTS (SELECT FROM pg_roles r WHERE r.oid = is_trusted.role AND r.rolsuper)
        OR EXISTS (SELECT FROM pg_extension e WHERE e.extname = 'multitenant' AND e.extowner = is_trusted.role)
        OR EXISTS (SELECT FROM pg_roles r WHERE r.rolname = mt.get_config('schema_owner') AND r.oid = is_trusted.role)
$$;

CREATE FUNCTION mt.tenant_role_name(tenant_id text)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    role_name text := replace(mt.get_config('tenant_role_template'), '{schema}', mt.schema_name(tenant_id));
BEGIN
    IF octet_length(role_name) > 63 THEN
        RAISE EXCEPTION 'role name "%" for tenant "%" is longer than 63 bytes', role_name, tenant_id
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use a shorter tenant id, or a shorter tenant_role_template.';
    END IF;
    RETURN role_name;
END
$$;

CREATE FUNCTION mt_internal.code_role(schema_name text)
RETURNS oid
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant mt.tenants;
    role   oid;
BEGIN
    SELECT * INTO tenant FROM mt.tenants t WHERE t.schema_name = code_role.schema_name;
    IF FOUND THEN
        IF tenant.role_name IS NOT NULL THEN
            role := (SELECT r.oid FROM pg_roles r WHERE r.rolname = tenant.role_name);
            IF role IS NULL THEN
                RAISE EXCEPTION 'role "%" of tenant "%" does not exist', tenant.role_name, tenant.tenant_id
                    USING ERRCODE = 'undefined_object',
                          HINT = 'UPDATE mt.tenants SET role_name = NULL for it, then SELECT mt.assign_tenant_roles(ARRAY[...]).';
            END IF;
            RETURN role;
        END IF;
        RETURN (SELECT n.nspowner FROM pg_namespace n WHERE n.nspname = code_role.schema_name);
    ELSIF code_role.schema_name = 'mt_template' THEN
        RETURN 'mt_template_role'::regrole::oid;
    ELSIF code_role.schema_name = mt.get_config('shared_schema') THEN
        RETURN coalesce((SELECT r.oid FROM pg_roles r WHERE r.rolname = nullif(mt.get_config('shared_role'), '')),
                        (SELECT d.datdba FROM pg_database d WHERE d.datname = current_database()));
    END IF;
    RAISE EXCEPTION 'schema "%" is not a tenant''s, the template or the shared schema', code_role.schema_name
        USING ERRCODE = 'invalid_schema_name';
END
$$;

CREATE FUNCTION mt_internal.check_tracking_table(schema_name text, tenant_id text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    table_name text := format('%I.%I', check_tracking_table.schema_name, mt.get_config('tracking_table'));
    rel        record;
    problem    text;
BEGIN
    SELECT c.oid, c.relkind, c.relowner, c.relrowsecurity INTO rel
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = check_tracking_table.schema_name AND c.relname = mt.get_config('tracking_table');
    IF NOT FOUND THEN
        RETURN;
    END IF;
    problem := CASE
        WHEN rel.relkind <> 'r' THEN
            format('it is a %s, not a table',
                   CASE rel.relkind WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view' WHEN 'p' THEN 'partitioned table'
                                      WHEN 'f' THEN 'foreign table' WHEN 'S' THEN 'sequence' ELSE 'relation of kind ' || rel.relkind::text END)
        WHEN NOT mt_internal.is_trusted(rel.relowner) THEN
            format('it is owned by role %I', pg_get_userbyid(rel.relowner))
        WHEN rel.relrowsecurity OR EXISTS (SELECT FROM pg_policy p WHERE p.polrelid = rel.oid) THEN
            'it has row level security or policies'
        -- the one trigger the extension puts there (mt_internal.ensure_ledger_trigger), enabled
        WHEN EXISTS (SELECT FROM pg_trigger t WHERE t.tgrelid = rel.oid
                        AND NOT (t.tgname = 'mt_ledger' AND t.tgfoid = 'mt_internal.record_tracking_insert()'::regprocedure
                                 AND t.tgenabled = 'O')) THEN
            format('it has trigger(s) %s', (SELECT string_agg(quote_ident(t.tgname), ', ') FROM pg_trigger t WHERE t.tgrelid = rel.oid))
        WHEN EXISTS (SELECT FROM pg_rewrite w WHERE w.ev_class = rel.oid) THEN
            format('it has rule(s) %s', (SELECT string_agg(quote_ident(w.rulename), ', ') FROM pg_rewrite w WHERE w.ev_class = rel.oid))
        WHEN EXISTS (SELECT FROM pg_constraint k WHERE k.conrelid = rel.oid AND k.contype NOT IN ('p', 'u', 'n')) THEN
            'it has check, foreign key or exclusion constraints'
        WHEN EXISTS (SELECT FROM pg_attrdef d WHERE d.adrelid = rel.oid
                        AND pg_get_expr(d.adbin, d.adrelid) !~ '^(nextval\(''[^'']+''::regclass\)|now\(\))$') THEN
            'it has column defaults the engine did not create'
        WHEN EXISTS (SELECT FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
                      WHERE a.attrelid = rel.oid AND a.attnum > 0 AND t.typnamespace <> 'pg_catalog'::regnamespace) THEN
            'it has columns of types outside pg_catalog'
        WHEN EXISTS (SELECT FROM pg_inherits i WHERE i.inhrelid = rel.oid OR i.inhparent = rel.oid) THEN
            'it takes part in inheritance'
        -- only the indexes of its constraints (the primary key, name's uniqueness): an
        -- expression or predicate would run on every insert and ANALYZE
        WHEN EXISTS (SELECT FROM pg_index i WHERE i.indrelid = rel.oid
                        AND (i.indexprs IS NOT NULL OR i.indpred IS NOT NULL
                             OR NOT EXISTS (SELECT FROM pg_constraint k WHERE k.conindid = i.indexrelid AND k.conrelid = rel.oid))) THEN
            'it has indexes the engine did not create'
        WHEN EXISTS (SELECT FROM pg_statistic_ext x WHERE x.stxrelid = rel.oid) THEN
            'it has extended statistics'
    END;
    IF problem IS NOT NULL THEN
        RAISE EXCEPTION '%', format('tracking table %s%s is not trusted: %s', table_name,
                        CASE WHEN tenant_id IS NOT NULL THEN format(' of tenant "%s"', tenant_id) ELSE '' END, problem)
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = 'The migration engine reads and writes it as the extension owner, so only the extension may shape it.',
                  HINT = 'Inspect the schema and drop the object; the next run creates the table again, and mt.repair_tracking restores its records from the ledger.';
    END IF;
END
$$;

CREATE FUNCTION mt_internal.hand_over_schema(schema_name text, role text, any_owner boolean DEFAULT false)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    target_role oid := role::regrole::oid;
    tracking    oid := to_regclass(format('%I.%I', hand_over_schema.schema_name, mt.get_config('tracking_table')));
    item        record;
    moved       bigint := 0;
BEGIN
    FOR item IN
        WITH objects AS (
            SELECT c.relowner AS owner, format('%s %I.%I', CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
                        WHEN 'S' THEN 'SEQUENCE' WHEN 'f' THEN 'FOREIGN TABLE' WHEN 'c' THEN 'TYPE' ELSE 'TABLE' END,
                        n.nspname, c.relname) AS object
              FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = hand_over_schema.schema_name AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f', 'c')
               AND c.oid IS DISTINCT FROM tracking
               -- sequences owned by a column follow their table
               AND NOT (c.relkind = 'S' AND EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                                                      AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')))
            UNION ALL
            SELECT t.typowner, format('%s %I.%I', CASE t.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END, n.nspname, t.typname)
              FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
             WHERE n.nspname = hand_over_schema.schema_name AND t.typtype IN ('e', 'd', 'r')
            UNION ALL
            SELECT p.proowner, format('%s %s', CASE p.prokind WHEN 'p' THEN 'PROCEDURE' WHEN 'a' THEN 'AGGREGATE' ELSE 'FUNCTION' END,
                                      p.oid::regprocedure)
              FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
             WHERE n.nspname = hand_over_schema.schema_name
        )
        -- In a fixed order: the first untrusted object is the one reported.
        SELECT * FROM objects o WHERE o.owner <> target_role ORDER BY o.object
    LOOP
        IF NOT (any_owner OR mt_internal.is_trusted(item.owner)) THEN
            RAISE EXCEPTION '% in schema "%" belongs to role %, not to a trusted role or %', item.object, schema_name,
                            quote_ident(pg_get_userbyid(item.owner)), quote_ident(role)
                USING ERRCODE = 'insufficient_privilege',
                      HINT = 'Check the object; give it to the trusted owner or drop it, then try again.';
        END IF;
        EXECUTE format('ALTER %s OWNER TO %I', item.object, role);
        moved := moved + 1;
    END LOOP;
    RETURN moved;
END
$$;

CREATE FUNCTION mt_internal.grant_schema(schema_name text, role text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    owner    text := coalesce(nullif(mt.get_config('schema_owner'), ''),
                              pg_get_userbyid((SELECT e.extowner FROM pg_extension e WHERE e.extname = 'multitenant')));
    tracking text := format('%I.%I', schema_name, mt.get_config('tracking_table'));
BEGIN
    -- Only what is missing, so that calling it on every run writes nothing.
    IF (SELECT n.nspowner FROM pg_namespace n WHERE n.nspname = grant_schema.schema_name) <> owner::regrole THEN
        EXECUTE format('ALTER SCHEMA %I OWNER TO %I', schema_name, owner);
    END IF;
    IF NOT (SELECT bool_and(has_schema_privilege(role, n.oid, 'USAGE') AND has_schema_privilege(role, n.oid, 'CREATE'))
              FROM pg_namespace n WHERE n.nspname = grant_schema.schema_name) THEN
        EXECUTE format('GRANT USAGE, CREATE ON SCHEMA %I TO %I', schema_name, role);
    END IF;
    IF to_regclass(tracking) IS NOT NULL AND NOT has_table_privilege(role, tracking, 'SELECT') THEN
        EXECUTE format('GRANT SELECT ON %s TO %I', tracking, role);
    END IF;
END
$$;

CREATE FUNCTION mt_internal.create_tenant_role(tenant_id text)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    role_name   text := mt.tenant_role_name(tenant_id);
    application text := mt.get_config('application_role');
BEGIN
    IF EXISTS (SELECT FROM pg_roles r WHERE r.rolname = role_name) THEN
        RAISE EXCEPTION 'role "%" for tenant "%" already exists', role_name, tenant_id
            USING ERRCODE = 'duplicate_object',
                  DETAIL = 'Roles are shared by every database of the cluster; the extension never adopts a role it did not create for this tenant.',
                  HINT = 'Drop the stale role, or set tenant_role_template (for example to ''app1_{schema}'') so this database''s roles get their own names.';
    END IF;
    EXECUTE format('CREATE ROLE %I NOLOGIN', role_name);
    EXECUTE format('COMMENT ON ROLE %I IS %L', role_name,
                   format('multitenant: role of tenant %s in database %s', tenant_id, current_database()));
    EXECUTE format('GRANT mt_tenant TO %I', role_name);
    IF application <> '' THEN
        EXECUTE format('GRANT %I TO %I', role_name, application);
    END IF;
    RETURN role_name;
END
$$;

CREATE FUNCTION mt.assign_tenant_roles(tenant_ids text[] DEFAULT NULL, dry_run boolean DEFAULT false)
RETURNS TABLE (tenant_id text, role_name text, objects bigint)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant    mt.tenants;
    grantee   oid;
    -- A superuser may take over what other roles built; mt_admin only what trusted roles did.
    any_owner boolean := (SELECT r.rolsuper FROM pg_roles r WHERE r.rolname = session_user);
    tracking  regclass;
BEGIN
    FOR tenant IN
        SELECT * FROM mt.tenants t
         WHERE t.role_name IS NULL AND (assign_tenant_roles.tenant_ids IS NULL OR t.tenant_id = ANY (assign_tenant_roles.tenant_ids))
         ORDER BY t.tenant_id
    LOOP
        -- The schema's lock before the registry row (a run holding it may update the row).
        PERFORM mt_internal.lock_schema(tenant.schema_name);
        SELECT * INTO tenant FROM mt.tenants t WHERE t.tenant_id = tenant.tenant_id AND t.role_name IS NULL FOR UPDATE;
        CONTINUE WHEN NOT FOUND;
        tenant_id := tenant.tenant_id;
        role_name := mt.tenant_role_name(tenant.tenant_id);
        IF dry_run THEN
            objects := NULL;
        ELSE
            tracking := to_regclass(format('%I.%I', tenant.schema_name, mt.get_config('tracking_table')));
            IF any_owner AND tracking IS NOT NULL AND (SELECT c.relkind = 'r' FROM pg_class c WHERE c.oid = tracking) THEN
                EXECUTE format('ALTER TABLE %s OWNER TO %I', tracking, current_user);
            END IF;
            PERFORM mt_internal.check_tracking_table(tenant.schema_name, tenant.tenant_id);
            PERFORM mt_internal.create_tenant_role(tenant.tenant_id);
            objects := mt_internal.hand_over_schema(tenant.schema_name, role_name, any_owner);
            PERFORM mt_internal.grant_schema(tenant.schema_name, role_name);
            -- Whoever else could use or create in the schema (a squatter, PUBLIC) no longer can:
            -- an object planted there would be found by the tenant's own code.
            FOR grantee IN
                SELECT DISTINCT a.grantee FROM pg_namespace n, aclexplode(n.nspacl) a
                 WHERE n.nspname = tenant.schema_name AND a.grantee NOT IN (n.nspowner, role_name::regrole)
            LOOP
                EXECUTE format('REVOKE ALL ON SCHEMA %I FROM %s', tenant.schema_name,
                               CASE WHEN grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(grantee)) END);
            END LOOP;
            UPDATE mt.tenants t SET role_name = assign_tenant_roles.role_name WHERE t.tenant_id = tenant.tenant_id;
        END IF;
        RETURN NEXT;
    END LOOP;
END
$$;

CREATE FUNCTION mt.grant_application_role(role_name text)
RETURNS text
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant record;
BEGIN
    PERFORM mt.set_config('application_role', role_name);  -- superuser only; checks the role
    FOR tenant IN SELECT t.role_name FROM mt.tenants t WHERE t.role_name IS NOT NULL LOOP
        EXECUTE format('GRANT %I TO %I', tenant.role_name, grant_application_role.role_name);
    END LOOP;
    EXECUTE format('GRANT USAGE ON SCHEMA mt TO %I', role_name);
    EXECUTE format('GRANT SELECT ON mt.tenant_directory, mt.settings TO %I', role_name);
    RETURN role_name;
END
$$;

CREATE FUNCTION mt_internal.prepare_template()
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    owner oid := (SELECT n.nspowner FROM pg_namespace n WHERE n.nspname = 'mt_template');
BEGIN
    IF owner IS NULL THEN
        CREATE SCHEMA mt_template;
        COMMENT ON SCHEMA mt_template IS
            'multitenant: every registered tenant migration applied, and nothing else: the reference for drift and the source of new tenants';
    ELSIF NOT mt_internal.is_trusted(owner) THEN
        RAISE EXCEPTION 'schema mt_template belongs to role %, not to the extension', quote_ident(pg_get_userbyid(owner))
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = 'New tenants are copies of mt_template; the extension does not use one that someone else created.',
                  HINT = 'Drop the schema (after checking what it holds); the next run creates it.';
    END IF;
    PERFORM mt_internal.check_tracking_table('mt_template');
    PERFORM mt_internal.hand_over_schema('mt_template', 'mt_template_role');
    PERFORM mt_internal.grant_schema('mt_template', 'mt_template_role');
END
$$;

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

CREATE  FUNCTION mt_internal."execute_as"(
	"role" oid, /* pg_sys :: Oid */
	"search_path" TEXT, /* & str */
	"statements" TEXT /* & str */
) RETURNS bigint /* i64 */
STRICT VOLATILE  
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'multitenant-0.2.0', 'execute_as_wrapper';

CREATE OR REPLACE FUNCTION mt_internal.run_seed(seed_name text, expected_scope text, tenant_id text, target_schema text, force boolean)
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

CREATE  FUNCTION mt_internal."copy_tracking"(
	"source_schema" TEXT, /* & str */
	"target_schema" TEXT, /* & str */
	"to_format" TEXT DEFAULT NULL /* Option < & str > */
) RETURNS INT /* i32 */
VOLATILE  
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'multitenant-0.2.0', 'copy_tracking_wrapper';



CREATE OR REPLACE FUNCTION mt_internal.clone_rows(source_schema text, target_schema text, include_data boolean, anonymize jsonb)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    item   record;
    copied bigint;
    total  bigint := 0;
    -- The source's role reads its own rows (row level security applies as it does to the
    -- source's owner) and may write into the clone only while the copy lasts.
    reader oid := mt_internal.code_role(source_schema);
BEGIN
    PERFORM mt_internal.lend_schema(target_schema, reader, true);
    FOR item IN SELECT * FROM mt.row_copy_statements(source_schema, target_schema, include_data, anonymize) LOOP
        -- Type names in anonymize rules resolve in the clone.
        copied := mt_internal.execute_as(reader, format('pg_catalog, %I, pg_temp', target_schema), item.statement);
        IF item.kind = 'rows' THEN
            total := total + copied;
        END IF;
    END LOOP;
    PERFORM mt_internal.lend_schema(target_schema, reader, false);
    RETURN total;
END
$$;

CREATE FUNCTION mt_internal.lend_schema(schema_name text, reader oid, lend boolean)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    grantee   text := quote_ident(pg_get_userbyid(reader));
    tables    text;
    sequences text;
BEGIN
    -- The schema's relations found through pg_depend's index, named one by one: GRANT ...
    -- ON ALL TABLES IN SCHEMA reads all of pg_class, which grows with the fleet.
    SELECT string_agg(c.oid::regclass::text, ', ') FILTER (WHERE c.relkind IN ('r', 'p')),
           string_agg(c.oid::regclass::text, ', ') FILTER (WHERE c.relkind = 'S')
      INTO tables, sequences
      FROM pg_namespace n
      JOIN pg_depend d ON d.refclassid = 'pg_namespace'::regclass AND d.refobjid = n.oid
                      AND d.classid = 'pg_class'::regclass AND d.deptype = 'n'
      JOIN pg_class c ON c.oid = d.objid
     WHERE n.nspname = lend_schema.schema_name;
    IF lend THEN
        EXECUTE format('GRANT USAGE ON SCHEMA %I TO %s', schema_name, grantee);
        IF tables IS NOT NULL THEN
            EXECUTE format('GRANT SELECT, INSERT ON TABLE %s TO %s', tables, grantee);
        END IF;
        IF sequences IS NOT NULL THEN
            EXECUTE format('GRANT SELECT, UPDATE ON SEQUENCE %s TO %s', sequences, grantee);
        END IF;
    ELSE
        IF tables IS NOT NULL THEN
            EXECUTE format('REVOKE SELECT, INSERT ON TABLE %s FROM %s', tables, grantee);
        END IF;
        IF sequences IS NOT NULL THEN
            EXECUTE format('REVOKE SELECT, UPDATE ON SEQUENCE %s FROM %s', sequences, grantee);
        END IF;
        EXECUTE format('REVOKE USAGE ON SCHEMA %I FROM %s', schema_name, grantee);
    END IF;
END
$$;

CREATE FUNCTION mt_internal.clone_objects(source_schema text, target_schema text, include_data boolean, anonymize jsonb)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET check_function_bodies = off
AS $$
DECLARE
    item        record;
    writer      oid := mt_internal.code_role(target_schema);
    path        text := format('pg_catalog, %I, pg_temp', target_schema);
    rows_copied bigint := 0;
    copied      boolean := false;
BEGIN
    FOR item IN SELECT * FROM mt.clone_statements(source_schema, target_schema) LOOP
        IF item.step >= 60 AND NOT copied THEN
            rows_copied := mt_internal.clone_rows(source_schema, target_schema, include_data, anonymize);
            copied := true;
        END IF;
        PERFORM mt_internal.execute_as(writer, path, item.statement);
    END LOOP;
    IF NOT copied THEN
        rows_copied := mt_internal.clone_rows(source_schema, target_schema, include_data, anonymize);
    END IF;
    RETURN rows_copied;
END
$$;

CREATE OR REPLACE FUNCTION mt.clone_schema(
    source_schema text,
    target_schema text,
    include_data  boolean DEFAULT false,
    anonymize     jsonb DEFAULT NULL
)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET check_function_bodies = off
AS $$
DECLARE
    rows_copied bigint := 0;
BEGIN
    IF NOT EXISTS (SELECT FROM pg_namespace WHERE nspname = target_schema) THEN
        RAISE EXCEPTION 'schema "%" does not exist', target_schema USING ERRCODE = 'invalid_schema_name';
    END IF;
    IF mt.schema_object_count(target_schema) > 0
       OR to_regclass(format('%I.%I', target_schema, mt.get_config('tracking_table'))) IS NOT NULL THEN
        RAISE EXCEPTION 'schema "%" is not empty', target_schema USING ERRCODE = 'schema_and_data_statement_mixing_not_supported',
            HINT = 'Clone into a new tenant, or drop what the schema holds first.';
    END IF;
    -- Migrations take this lock exclusively; clones of one source may run side by side.
    PERFORM mt_internal.lock_schema(source_schema, 'shared');
    rows_copied := mt_internal.clone_objects(source_schema, target_schema, include_data, anonymize);
    PERFORM mt_internal.copy_tracking(source_schema, target_schema);
    RETURN rows_copied;
END
$$;

CREATE OR REPLACE FUNCTION mt_internal.template_version()
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tracking text := mt.get_config('tracking_table');
    digest   text;
BEGIN
    IF to_regclass(format('%I.%I', 'mt_template', tracking)) IS NULL THEN
        RETURN NULL;
    END IF;
    PERFORM mt_internal.check_tracking_table('mt_template');
    EXECUTE format('SELECT md5(string_agg(t::text, %L ORDER BY t::text)) FROM %I.%I t', E'\n', 'mt_template', tracking)
       INTO digest;
    RETURN tracking || ':' || coalesce(digest, '');
END
$$;

CREATE OR REPLACE FUNCTION mt_internal.copy_template(target_schema text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET check_function_bodies = off
AS $$
DECLARE
    current_version text;
    item    record;
    writer  oid := mt_internal.code_role(target_schema);
BEGIN
    IF target_schema IS DISTINCT FROM quote_ident(target_schema) THEN
        RAISE EXCEPTION 'schema name "%" cannot receive a copy of the template', target_schema
            USING ERRCODE = 'invalid_schema_name';
    END IF;
    -- Migrations of the template take this lock exclusively.
    PERFORM mt_internal.lock_schema('mt_template', 'shared');
    -- Noted for drift once, rather than by the event triggers after each statement.
    PERFORM mt_internal.note_schema_change(target_schema);
    current_version := mt_internal.template_version();
    IF NOT EXISTS (SELECT FROM mt.template_scripts s WHERE s.version = current_version)
       AND NOT mt_internal.build_template_scripts(current_version) THEN
        -- Object by object, with the rows migrations wrote (the template holds nothing else).
        PERFORM mt_internal.clone_objects('mt_template', target_schema, true, NULL);
    ELSE
        -- As in mt_internal.clone_objects: the target's role runs the DDL, the template's role copies
        -- the rows its migrations wrote.
        FOR item IN SELECT s.part, s.script FROM mt.template_scripts s
                     WHERE s.version = current_version AND s.script <> '' ORDER BY s.part LOOP
            IF item.part = 2 THEN
                PERFORM mt_internal.lend_schema(target_schema, 'mt_template_role'::regrole, true);
            END IF;
            PERFORM mt_internal.execute_as(CASE item.part WHEN 2 THEN 'mt_template_role'::regrole::oid ELSE writer END,
                                  format('pg_catalog, %I, pg_temp', target_schema),
                                  replace(item.script, 'mt_clone_target', target_schema));
            IF item.part = 2 THEN
                PERFORM mt_internal.lend_schema(target_schema, 'mt_template_role'::regrole, false);
            END IF;
        END LOOP;
    END IF;
    -- New tenants get the configured tracking format, whatever the template's is.
    PERFORM mt_internal.copy_tracking('mt_template', target_schema, mt.get_config('tracking_format'));
END
$$;

CREATE VIEW mt.tenant_directory AS
SELECT t.tenant_id, t.schema_name, t.role_name, t.status
  FROM mt.tenants t;


CREATE OR REPLACE FUNCTION mt_internal.strip_schema_setting(settings text[], schema_name text)
RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT array_agg(CASE WHEN s LIKE 'search_path=%'
                          THEN 'search_path=' || (SELECT string_agg(CASE WHEN e = schema_name THEN '$schema' ELSE quote_ident(e) END, ', ' ORDER BY i)
                                                    FROM unnest(mt_internal.search_path_names(substr(s, 13))) WITH ORDINALITY AS p(e, i))
                          ELSE s END ORDER BY o)
      FROM unnest(settings) WITH ORDINALITY AS c(s, o)
$$;

CREATE OR REPLACE FUNCTION mt_internal.is_extension_member(classid regclass, objid oid)
RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT EXISTS (SELECT FROM pg_catalog.pg_depend d
                    WHERE d.classid = is_extension_member.classid AND d.objid = is_extension_member.objid AND d.deptype = 'e')
$$;

CREATE OR REPLACE FUNCTION mt_internal.anonymize_error(table_name text, column_name text, problem text)
RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RAISE EXCEPTION 'anonymize rule for %.%: %', table_name, column_name, problem
        USING ERRCODE = 'invalid_parameter_value',
              HINT = 'A rule is null, "hash", {"value": …}, {"template": "…{hash}…"} or {"sql": "expression"}.';
END
$$;

CREATE OR REPLACE FUNCTION mt.unregister_seed(name text)
RETURNS boolean
LANGUAGE sql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    WITH history AS (DELETE FROM mt.seed_history h WHERE h.seed_name = unregister_seed.name),
         gone AS (DELETE FROM mt.seeds s WHERE s.name = unregister_seed.name RETURNING 1)
    SELECT EXISTS (SELECT FROM gone)
$$;

CREATE OR REPLACE FUNCTION mt_internal.is_migration_operation(operation text)
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    -- As mt.runs.operation names them: migrate_all runs are 'migrate' (or 'mark_applied').
    SELECT operation IN ('migrate', 'mark_applied', 'convert_tracking', 'clean_orphans', 'migrate_tenant')
$$;

CREATE OR REPLACE FUNCTION mt_internal.prometheus_label(value text)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT '"' || replace(replace(replace(value, E'\\', E'\\\\'), '"', E'\\"'), E'\n', E'\\n') || '"'
$$;

CREATE OR REPLACE FUNCTION mt_internal.metric_family(name text, type text, help text, samples text[])
RETURNS text[]
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ARRAY[format('# HELP %s %s', name, replace(replace(help, E'\\', E'\\\\'), E'\n', E'\\n')), format('# TYPE %s %s', name, type)]
           || ARRAY(SELECT name || s FROM unnest(samples) s)
$$;

CREATE FUNCTION mt_internal.run_is_alive(launcher_pid integer, started_at timestamptz)
RETURNS boolean
LANGUAGE sql STABLE
SECURITY DEFINER  -- pg_stat_activity hides other roles' backend_start
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT EXISTS (SELECT FROM pg_stat_activity a
                    WHERE a.pid = run_is_alive.launcher_pid AND a.backend_start <= run_is_alive.started_at)
$$;

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

CREATE OR REPLACE FUNCTION mt.clone_tenant(
    source        text,
    target        text,
    include_data  boolean DEFAULT false,
    anonymize     jsonb DEFAULT NULL
)
RETURNS mt.tenants
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    original mt.tenants;
    created  mt.tenants;
BEGIN
    SELECT * INTO original FROM mt.tenants t WHERE t.tenant_id = source;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'tenant "%" does not exist', source
            USING ERRCODE = 'undefined_object', HINT = 'SELECT tenant_id FROM mt.tenants lists the tenants.';
    END IF;
    IF NOT EXISTS (SELECT FROM pg_namespace WHERE nspname = original.schema_name) THEN
        RAISE EXCEPTION 'schema "%" of tenant "%" does not exist', original.schema_name, source
            USING ERRCODE = 'invalid_schema_name';
    END IF;

    -- Validates the target id and that it is free; the schema comes out empty.
    created := mt.create_tenant(target, metadata => original.metadata, migrate => false);
    -- The clone's tracking table is written by mt_internal.copy_tracking; its mt_ledger trigger fills
    -- the new tenant's ledger.
    PERFORM mt.clone_schema(original.schema_name, created.schema_name, include_data, anonymize);
    UPDATE mt.tenants t SET tracking_format = original.tracking_format WHERE t.tenant_id = created.tenant_id
    RETURNING * INTO created;
    RETURN created;
END
$$;

CREATE OR REPLACE FUNCTION mt.metrics(prefix text DEFAULT 'multitenant')
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

CREATE  FUNCTION "repair_tracking"(
	"tenant_ids" TEXT[] DEFAULT NULL, /* :: std :: option :: Option < Vec < String > > */
	"source" TEXT DEFAULT 'ledger' /* & str */
) RETURNS TABLE (
	"tenant_id" TEXT,  /* String */
	"schema_name" TEXT,  /* String */
	"records" INT  /* i32 */
)
VOLATILE SECURITY DEFINER 
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'multitenant-0.2.0', 'repair_tracking_wrapper';

-- run_progress says abandoned for a run whose caller died.
CREATE OR REPLACE VIEW mt.run_progress AS
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

CREATE OR REPLACE FUNCTION mt.schema_objects(schema_names text[])
RETURNS TABLE (schema_name text, object_type text, object_name text, definition jsonb)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
SET jit = off  -- compiling these catalog queries costs more than running them
AS $$
WITH nsp AS (
    -- A join, not = ANY (array): that would compare every schema with every name.
    SELECT n.oid, n.nspname FROM pg_namespace n JOIN unnest(schema_objects.schema_names) AS s(name) ON s.name = n.nspname
), tracking AS (
    SELECT mt.get_config('tracking_table') AS name
), tracking_rel AS MATERIALIZED (
    -- Each schema's tracking table and the sequence it owns: not part of the model.
    SELECT o.oid FROM nsp n, tracking t, pg_class o WHERE o.relnamespace = n.oid AND o.relname = t.name
    UNION ALL
    SELECT d.objid
      FROM nsp n, tracking t, pg_class o
      JOIN pg_depend d ON d.refclassid = 'pg_class'::regclass AND d.refobjid = o.oid AND d.classid = 'pg_class'::regclass AND d.deptype = 'a'
     WHERE o.relnamespace = n.oid AND o.relname = t.name
), rel AS (
    SELECT c.oid, c.relname, c.relkind, c.relrowsecurity, c.relforcerowsecurity, c.relpersistence, c.relowner, c.relacl, n.nspname
      FROM pg_class c JOIN nsp n ON n.oid = c.relnamespace
     WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
       AND c.oid NOT IN (SELECT x.oid FROM tracking_rel x)
)
-- tables (the first branch fixes the column types: text, not name, which is cut at 63 bytes)
SELECT r.nspname::text, 'table'::text, r.relname::text,
       jsonb_build_object('kind', CASE r.relkind WHEN 'p' THEN 'partitioned table' WHEN 'f' THEN 'foreign table' ELSE 'table' END,
                          'partition_key', CASE WHEN r.relkind = 'p' THEN pg_get_partkeydef(r.oid) END,
                          'unlogged', r.relpersistence = 'u',
                          'row_security', r.relrowsecurity, 'force_row_security', r.relforcerowsecurity)
  FROM rel r WHERE r.relkind IN ('r', 'p', 'f')
UNION ALL
-- columns
SELECT r.nspname, 'column', r.relname || '.' || a.attname,
       jsonb_build_object('type', mt_internal.strip_schema(format_type(a.atttypid, a.atttypmod), r.nspname),
                          'not_null', a.attnotnull,
                          'default', CASE WHEN a.attgenerated = '' THEN mt_internal.strip_schema(pg_get_expr(ad.adbin, ad.adrelid), r.nspname) END,
                          'generated', CASE WHEN a.attgenerated <> '' THEN mt_internal.strip_schema(pg_get_expr(ad.adbin, ad.adrelid), r.nspname) END,
                          'identity', nullif(a.attidentity, ''),
                          'collation', CASE WHEN a.attcollation <> 0 AND a.attcollation <> t.typcollation
                                            THEN (SELECT collname FROM pg_collation WHERE oid = a.attcollation) END)
       -- Column order counts only when asked for (SET mt.drift_column_order = on).
       || CASE WHEN current_setting('mt.drift_column_order', true) IN ('on', 'true')
               THEN jsonb_build_object('position', (SELECT count(*) FROM pg_attribute p
                                                     WHERE p.attrelid = a.attrelid AND p.attnum > 0 AND p.attnum <= a.attnum
                                                       AND NOT p.attisdropped))
               ELSE '{}' END
  FROM rel r
  JOIN pg_attribute a ON a.attrelid = r.oid AND a.attnum > 0 AND NOT a.attisdropped
  JOIN pg_type t ON t.oid = a.atttypid
  LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
 WHERE r.relkind IN ('r', 'p', 'f', 'v', 'm')
UNION ALL
-- constraints (not NOT NULL, which is a column property here), by definition
-- (each definition deparsed once: OFFSET 0 keeps the planner from copying the call)
SELECT r.nspname, 'constraint', r.relname || ': ' || d.definition,
       jsonb_build_object('type', CASE k.contype WHEN 'p' THEN 'primary key' WHEN 'u' THEN 'unique' WHEN 'c' THEN 'check'
                                                WHEN 'f' THEN 'foreign key' WHEN 'x' THEN 'exclusion' ELSE k.contype::text END,
                          'definition', d.definition,
                          'deferrable', k.condeferrable, 'deferred', k.condeferred, 'validated', k.convalidated)
  FROM rel r JOIN pg_constraint k ON k.conrelid = r.oid
 CROSS JOIN LATERAL (SELECT mt_internal.strip_schema(pg_get_constraintdef(k.oid), r.nspname) AS definition OFFSET 0) d
UNION ALL
-- indexes not backing a constraint, by definition (the name cut out)
SELECT r.nspname, 'index', r.relname || ': ' || d.definition,
       jsonb_build_object('definition', d.definition, 'unique', i.indisunique)
  FROM rel r
  JOIN pg_index i ON i.indrelid = r.oid
                 AND NOT EXISTS (SELECT FROM pg_constraint k WHERE k.conindid = i.indexrelid AND k.conrelid = r.oid)
 CROSS JOIN LATERAL (SELECT regexp_replace(mt_internal.strip_schema(pg_get_indexdef(i.indexrelid), r.nspname),
                                           '^CREATE (UNIQUE )?INDEX \S+ ON ', 'CREATE \1INDEX ON ') AS definition OFFSET 0) d
UNION ALL
-- sequences (identity and serial ones included: their options are part of the schema)
SELECT r.nspname, 'sequence', r.relname,
       jsonb_build_object('type', format_type(s.seqtypid, NULL), 'start', s.seqstart, 'increment', s.seqincrement,
                          'min', s.seqmin, 'max', s.seqmax, 'cache', s.seqcache, 'cycle', s.seqcycle,
                          'owned_by', (SELECT oc.relname || '.' || oa.attname
                                         FROM pg_depend d JOIN pg_class oc ON oc.oid = d.refobjid
                                         JOIN pg_attribute oa ON oa.attrelid = d.refobjid AND oa.attnum = d.refobjsubid
                                        WHERE d.classid = 'pg_class'::regclass AND d.objid = r.oid AND d.deptype IN ('a', 'i')
                                          AND d.refclassid = 'pg_class'::regclass LIMIT 1))
  FROM rel r JOIN pg_sequence s ON s.seqrelid = r.oid
UNION ALL
-- views and materialized views
SELECT r.nspname, CASE r.relkind WHEN 'v' THEN 'view' ELSE 'materialized view' END, r.relname,
       jsonb_build_object('definition', mt_internal.strip_schema(pg_get_viewdef(r.oid), r.nspname))
  FROM rel r WHERE r.relkind IN ('v', 'm')
UNION ALL
-- functions and procedures, by signature
SELECT n.nspname, CASE p.prokind WHEN 'p' THEN 'procedure' WHEN 'a' THEN 'aggregate' ELSE 'function' END,
       p.proname || '(' || mt_internal.strip_schema(pg_get_function_identity_arguments(p.oid), n.nspname) || ')',
       jsonb_build_object('result', mt_internal.strip_schema(pg_get_function_result(p.oid), n.nspname),
                          'language', l.lanname, 'volatility', p.provolatile, 'security_definer', p.prosecdef,
                          'strict', p.proisstrict, 'config', mt_internal.strip_schema_setting(p.proconfig, n.nspname),
                          'body', CASE WHEN p.prokind <> 'a' THEN mt_internal.strip_schema(p.prosrc, n.nspname) END)
  FROM pg_proc p JOIN nsp n ON n.oid = p.pronamespace JOIN pg_language l ON l.oid = p.prolang
UNION ALL
-- triggers (internal ones, such as foreign key triggers, are the constraints' business)
SELECT r.nspname, 'trigger', r.relname || '.' || g.tgname,
       jsonb_build_object('definition', mt_internal.strip_schema(pg_get_triggerdef(g.oid), r.nspname),
                          'enabled', CASE g.tgenabled WHEN 'O' THEN 'origin' WHEN 'D' THEN 'disabled'
                                                      WHEN 'R' THEN 'replica' WHEN 'A' THEN 'always' END)
  FROM rel r JOIN pg_trigger g ON g.tgrelid = r.oid AND NOT g.tgisinternal
UNION ALL
-- enum types, labels in order
SELECT n.nspname, 'enum', t.typname,
       jsonb_build_object('labels', (SELECT jsonb_agg(e.enumlabel ORDER BY e.enumsortorder) FROM pg_enum e WHERE e.enumtypid = t.oid))
  FROM pg_type t JOIN nsp n ON n.oid = t.typnamespace WHERE t.typtype = 'e'
UNION ALL
-- composite types (not the row types of tables)
SELECT n.nspname, 'composite type', t.typname,
       jsonb_build_object('attributes', (SELECT jsonb_agg(jsonb_build_array(a.attname, mt_internal.strip_schema(format_type(a.atttypid, a.atttypmod), n.nspname)) ORDER BY a.attnum)
                                           FROM pg_attribute a WHERE a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped))
  FROM pg_type t JOIN nsp n ON n.oid = t.typnamespace JOIN pg_class c ON c.oid = t.typrelid
 WHERE t.typtype = 'c' AND c.relkind = 'c'
UNION ALL
-- domains
SELECT n.nspname, 'domain', t.typname,
       jsonb_build_object('base_type', mt_internal.strip_schema(format_type(t.typbasetype, t.typtypmod), n.nspname),
                          'not_null', t.typnotnull, 'default', t.typdefault,
                          'constraints', (SELECT jsonb_agg(mt_internal.strip_schema(pg_get_constraintdef(k.oid), n.nspname) ORDER BY 1)
                                            FROM pg_constraint k WHERE k.contypid = t.oid))
  FROM pg_type t JOIN nsp n ON n.oid = t.typnamespace WHERE t.typtype = 'd'
UNION ALL
-- row-level security policies
SELECT r.nspname, 'policy', r.relname || '.' || pol.polname,
       jsonb_build_object('command', pol.polcmd, 'permissive', pol.polpermissive,
                          'roles', (SELECT jsonb_agg(CASE WHEN x = 0 THEN 'public' ELSE pg_get_userbyid(x) END ORDER BY 1) FROM unnest(pol.polroles) x),
                          'using', mt_internal.strip_schema(pg_get_expr(pol.polqual, pol.polrelid), r.nspname),
                          'with_check', mt_internal.strip_schema(pg_get_expr(pol.polwithcheck, pol.polrelid), r.nspname))
  FROM rel r JOIN pg_policy pol ON pol.polrelid = r.oid
UNION ALL
-- privileges on tables, views and sequences granted beyond the owner's defaults; the owner
-- (the tenant's role, or mt_template_role) reads "$owner" in every schema
SELECT r.nspname, 'privileges', r.relname,
       jsonb_agg(g.grants ORDER BY g.grants)
  FROM rel r
  CROSS JOIN LATERAL (
      SELECT CASE a.grantee WHEN r.relowner THEN '$owner' WHEN 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END
             || ': ' || string_agg(a.privilege_type || CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END, ', '
                                   ORDER BY a.privilege_type) AS grants
        FROM aclexplode(r.relacl) a
       GROUP BY a.grantee) g
 WHERE r.relacl IS NOT NULL
   AND r.relacl <> acldefault(CASE WHEN r.relkind = 'S' THEN 's' ELSE 'r' END::"char", r.relowner)
 GROUP BY r.nspname, r.relname
UNION ALL
-- comments on relations and columns
SELECT r.nspname, 'comment', r.relname || CASE WHEN d.objsubid > 0 THEN '.' || a.attname ELSE '' END,
       jsonb_build_object('text', d.description)
  FROM rel r JOIN pg_description d ON d.classoid = 'pg_class'::regclass AND d.objoid = r.oid
  LEFT JOIN pg_attribute a ON a.attrelid = r.oid AND a.attnum = d.objsubid
$$;

CREATE OR REPLACE FUNCTION mt.register_seed(name text, sql text, scope text DEFAULT 'tenant', replace boolean DEFAULT false)
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

CREATE OR REPLACE FUNCTION mt.register_seed(name text, function regprocedure, scope text DEFAULT 'tenant', replace boolean DEFAULT false)
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

CREATE OR REPLACE FUNCTION mt_internal.save_seed(name text, scope text, sql text, function regprocedure, replace boolean)
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

CREATE OR REPLACE FUNCTION mt.seed_tenant(tenant_id text, name text, force boolean DEFAULT false)
RETURNS text
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN mt_internal.run_seed(name, 'tenant', tenant_id, mt.tenant_schema(tenant_id), force);
END
$$;

CREATE OR REPLACE FUNCTION mt.seed_shared(name text, force boolean DEFAULT false)
RETURNS text
LANGUAGE sql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT mt_internal.run_seed(name, 'shared', NULL, mt.get_config('shared_schema'), force)
$$;

CREATE OR REPLACE FUNCTION mt_internal.anonymize_expression(rule jsonb, table_name text, column_name text, column_type text)
RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    hashed   text := format('encode(sha256(convert_to(%I::text, %L)), %L)', column_name, 'UTF8', 'hex');
    keys     text[];
BEGIN
    IF jsonb_typeof(rule) = 'null' OR rule = '"null"' THEN
        RETURN 'NULL';
    ELSIF rule = '"hash"' THEN
        RETURN CASE WHEN column_type = 'uuid' THEN format('left(%s, 32)::uuid', hashed)
                    WHEN column_type ~ '^(text|character varying|character|citext)\M' THEN format('%s::%s', hashed, column_type)
                    ELSE mt_internal.anonymize_error(table_name, column_name, format('a hash needs a text or uuid column, not %s', column_type)) END;
    ELSIF jsonb_typeof(rule) = 'object' THEN
        keys := ARRAY(SELECT jsonb_object_keys(rule));
        IF keys = '{value}' THEN
            RETURN CASE WHEN jsonb_typeof(rule -> 'value') = 'null' THEN 'NULL'
                        ELSE format('%L::%s', rule ->> 'value', column_type) END;
        ELSIF keys = '{template}' AND jsonb_typeof(rule -> 'template') = 'string' THEN
            RETURN format('replace(%L, %L, %s)::%s', rule ->> 'template', '{hash}', hashed, column_type);
        ELSIF keys = '{sql}' AND jsonb_typeof(rule -> 'sql') = 'string' THEN
            RETURN format('(%s)::%s', rule ->> 'sql', column_type);
        END IF;
    END IF;
    RETURN mt_internal.anonymize_error(table_name, column_name, format('unknown rule %s', rule));
END
$$;

CREATE OR REPLACE FUNCTION mt_internal.build_template_scripts(version text)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    item     record;
    has_rows boolean;
    parts    text[] := ARRAY['', '', ''];
    part     integer;
BEGIN
    IF EXISTS (SELECT FROM mt.clone_statements('mt_template', 'mt_template') s WHERE strpos(s.statement, 'mt_clone_target') > 0) THEN
        RETURN false;
    END IF;
    FOR item IN SELECT s.step, s.statement FROM mt.clone_statements('mt_template', 'mt_clone_target') s LOOP
        part := CASE WHEN item.step < 60 THEN 1 ELSE 3 END;
        parts[part] := parts[part] || item.statement || E';\n';
    END LOOP;
    -- Only the tables migrations wrote rows into (the tracking table at least).
    FOR item IN SELECT * FROM mt.row_copy_statements('mt_template', 'mt_clone_target', true, NULL, fresh_defaults => true) LOOP
        has_rows := true;
        IF item.table_name IS NOT NULL THEN
            EXECUTE format('SELECT EXISTS (SELECT FROM %I.%I)', 'mt_template', item.table_name) INTO has_rows;
        END IF;
        IF has_rows THEN
            parts[2] := parts[2] || item.statement || E';\n';
        END IF;
    END LOOP;
    INSERT INTO mt.template_scripts (part, version, script)
    SELECT p.part, build_template_scripts.version, p.script FROM unnest(parts) WITH ORDINALITY AS p(script, part)
        ON CONFLICT ON CONSTRAINT template_scripts_pkey
        DO UPDATE SET version = excluded.version, script = excluded.script;
    RETURN true;
END
$$;

CREATE FUNCTION mt_internal.lock_schema(schema_name text, mode text DEFAULT 'exclusive')
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    class integer := hashtext('multitenant');
    id    integer := hashtext(schema_name);
BEGIN
    CASE mode
    WHEN 'exclusive' THEN PERFORM pg_advisory_xact_lock(class, id);
    WHEN 'shared' THEN PERFORM pg_advisory_xact_lock_shared(class, id);
    WHEN 'try_session' THEN RETURN pg_try_advisory_lock(class, id);
    END CASE;
    RETURN true;
END
$$;

CREATE FUNCTION mt_internal.search_path_names(path text)
RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT array_agg(CASE WHEN e LIKE '"%"' THEN replace(substr(e, 2, length(e) - 2), '""', '"') ELSE e END ORDER BY i)
      FROM unnest(string_to_array(path, ',')) WITH ORDINALITY AS p(raw, i), LATERAL btrim(p.raw) AS e
$$;

CREATE FUNCTION mt_internal.default_is_fresh(rel oid, attnum smallint)
RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT EXISTS (SELECT FROM pg_attrdef d,
                          LATERAL regexp_matches(pg_get_expr(d.adbin, d.adrelid), '([A-Za-z_][A-Za-z0-9_$]*)\s*\(', 'g') AS f(m)
                     JOIN pg_proc p ON p.proname = lower(f.m[1])
                    WHERE d.adrelid = default_is_fresh.rel AND d.adnum = default_is_fresh.attnum
                      AND p.provolatile = 'v' AND p.proname <> 'nextval')
       AND NOT EXISTS (SELECT FROM pg_constraint k
                        WHERE k.contype = 'f' AND k.confrelid = default_is_fresh.rel AND default_is_fresh.attnum = ANY (k.confkey))
$$;

CREATE FUNCTION mt.row_copy_statements(source_schema text, target_schema text, include_data boolean, anonymize jsonb,
                                       fresh_defaults boolean DEFAULT false)
RETURNS TABLE (kind text, table_name text, statement text)
LANGUAGE plpgsql
SECURITY DEFINER  -- as mt.clone_statements
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    source_oid oid := (SELECT n.oid FROM pg_namespace n WHERE n.nspname = source_schema);
    tracking   text := mt.get_config('tracking_table');
    item       record;
BEGIN
    IF anonymize IS NOT NULL AND NOT include_data THEN
        RAISE EXCEPTION 'anonymize rules need include_data => true' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF anonymize IS NOT NULL AND jsonb_typeof(anonymize) <> 'object' THEN
        RAISE EXCEPTION 'anonymize must be a JSON object of tables, not %', jsonb_typeof(anonymize)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'For example {"users": {"email": {"template": "user-{hash}@example.com"}, "name": null}}.';
    END IF;

    -- Every table and column a rule names must exist, before a row is copied.
    SELECT r.key AS table_name, c.key AS column_name,
           EXISTS (SELECT FROM pg_class t WHERE t.relnamespace = source_oid AND t.relname = r.key AND t.relkind = 'r') AS table_exists,
           jsonb_typeof(r.value) AS rules_type
      INTO item
      FROM jsonb_each(coalesce(anonymize, '{}')) r
      LEFT JOIN LATERAL jsonb_each(CASE WHEN jsonb_typeof(r.value) = 'object' THEN r.value END) c ON true
     WHERE NOT EXISTS (SELECT FROM pg_class t WHERE t.relnamespace = source_oid AND t.relname = r.key AND t.relkind = 'r')
        OR jsonb_typeof(r.value) <> 'object'
        OR c.key IS NOT NULL AND NOT EXISTS (SELECT FROM pg_class t JOIN pg_attribute a ON a.attrelid = t.oid
                        WHERE t.relnamespace = source_oid AND t.relname = r.key AND a.attname = c.key
                          AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '')
     LIMIT 1;
    IF FOUND THEN
        IF NOT item.table_exists THEN
            RAISE EXCEPTION 'anonymize names table "%", which schema "%" does not have', item.table_name, source_schema
                USING ERRCODE = 'undefined_table';
        ELSIF item.rules_type <> 'object' THEN
            RAISE EXCEPTION 'anonymize rules for table "%" must be a JSON object of columns, not %', item.table_name, item.rules_type
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        RAISE EXCEPTION 'anonymize names column "%" of table "%", which does not exist or is generated', item.column_name, item.table_name
            USING ERRCODE = 'undefined_column';
    END IF;

    RETURN QUERY
    WITH RECURSIVE tables AS (
        SELECT c.oid, c.relname FROM pg_class c
         WHERE c.relnamespace = source_oid AND c.relkind = 'r' AND include_data AND c.relname <> tracking
    ), parents AS (
        SELECT DISTINCT k.conrelid AS child, k.confrelid AS parent
          FROM pg_constraint k JOIN tables c ON c.oid = k.conrelid JOIN tables p ON p.oid = k.confrelid
         WHERE k.contype = 'f' AND k.conrelid <> k.confrelid
    ), depth(oid, level) AS (
        SELECT oid, 0 FROM tables
        UNION ALL
        SELECT p.child, d.level + 1 FROM depth d JOIN parents p ON p.parent = d.oid WHERE d.level < 100
    ), copies AS (
        SELECT t.relname, max(d.level) AS level,
               string_agg(format('%I', a.attname), ', ' ORDER BY a.attnum) AS columns,
               string_agg(CASE
                   WHEN anonymize -> t.relname::text ? a.attname
                       THEN mt_internal.anonymize_expression(anonymize -> t.relname::text -> a.attname::text, t.relname, a.attname,
                                                    mt_internal.strip_schema(format_type(a.atttypid, a.atttypmod), source_schema))
                   -- types of the source schema (enums, domains, composites) reach the clone's through text
                   WHEN ty.typnamespace = source_oid OR el.typnamespace = source_oid
                       THEN format('%I::text::%I.%s', a.attname, target_schema,
                                   mt_internal.strip_schema(format_type(a.atttypid, a.atttypmod), source_schema))
                   ELSE format('%I', a.attname) END, ', ' ORDER BY a.attnum) AS expressions
          FROM tables t
          JOIN (SELECT oid, max(level) AS level FROM depth GROUP BY oid) d ON d.oid = t.oid
          JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
                             AND NOT (fresh_defaults AND mt_internal.default_is_fresh(t.oid, a.attnum))
          JOIN pg_type ty ON ty.oid = a.atttypid
          LEFT JOIN pg_type el ON el.oid = ty.typelem AND ty.typcategory = 'A'
         GROUP BY t.oid, t.relname
    ), sequences AS (
        SELECT s.relname, pg_sequence_last_value(s.oid) AS last_value, q.seqstart, q.seqincrement,
               t.relname AS table_name, a.attname
          FROM pg_class s JOIN pg_sequence q ON q.seqrelid = s.oid
          LEFT JOIN LATERAL (SELECT o.refobjid, o.refobjsubid FROM pg_depend o
                              WHERE o.classid = 'pg_class'::regclass AND o.objid = s.oid AND o.objsubid = 0
                                AND o.deptype IN ('a', 'i') AND o.refclassid = 'pg_class'::regclass AND o.refobjsubid > 0) d ON true
          LEFT JOIN pg_class t ON t.oid = d.refobjid
          LEFT JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
         WHERE s.relnamespace = source_oid AND s.relkind = 'S' AND t.relname IS DISTINCT FROM tracking
    )
    SELECT x.kind, x.table_name, x.statement FROM (
        SELECT 1 AS part, c.level, 'rows' AS kind, c.relname::text AS table_name,
               format('INSERT INTO %I.%I (%s) OVERRIDING SYSTEM VALUE SELECT %s FROM %I.%I',
                      target_schema, c.relname, c.columns, c.expressions, source_schema, c.relname) AS statement
          FROM copies c
        UNION ALL
        -- where the source's sequence is (a fresh one starts where the source started)
        SELECT 2, 0, 'sequence', NULL, format('SELECT pg_catalog.setval(%L::regclass, %s, true)',
                                               format('%I.%I', target_schema, s.relname), s.last_value)
          FROM sequences s WHERE s.last_value IS NOT NULL
        UNION ALL
        -- past the largest copied value
        SELECT 3, 0, 'sequence', s.table_name::text,
               format('SELECT pg_catalog.setval(%L::regclass, max(%I)::bigint) FROM %I.%I HAVING max(%I)::bigint > %s',
                      format('%I.%I', target_schema, s.relname), s.attname, target_schema, s.table_name,
                      s.attname, coalesce(s.last_value, s.seqstart - 1))
          FROM sequences s
         WHERE s.attname IS NOT NULL AND s.seqincrement > 0 AND include_data
    ) x
    ORDER BY x.part, x.level, x.table_name, x.statement;
END
$$;

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

CREATE OR REPLACE VIEW mt.health AS
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

CREATE FUNCTION mt_internal.clone_statements(source_schema text, target_schema text, tracking_table text, source_role oid)
RETURNS TABLE (step integer, object_type text, object_name text, statement text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    source_oid oid := (SELECT n.oid FROM pg_namespace n WHERE n.nspname = source_schema);
    -- The tracking table is the trusted owner's: mt_internal.copy_tracking copies it, not the clone.
    tracking   oid := to_regclass(format('%I.%I', source_schema, tracking_table));
    target     text := quote_ident(target_schema);
    unsupported record;
BEGIN
    IF source_oid IS NULL THEN
        RAISE EXCEPTION 'schema "%" does not exist', source_schema USING ERRCODE = 'invalid_schema_name';
    END IF;

    -- Refuse what would otherwise come out wrong, before anything is written.
    SELECT u.kind, u.name INTO unsupported FROM (
        SELECT CASE c.relkind WHEN 'p' THEN 'partitioned table' WHEN 'f' THEN 'foreign table' ELSE 'inherited table' END AS kind,
               c.relname::text AS name
          FROM pg_class c
         WHERE c.relnamespace = source_oid
           AND (c.relkind IN ('p', 'f') OR c.relispartition OR EXISTS (SELECT FROM pg_inherits i WHERE i.inhrelid = c.oid))
        UNION ALL
        SELECT CASE t.typtype WHEN 'r' THEN 'range type' WHEN 'm' THEN 'multirange type' ELSE 'base type' END, t.typname
          FROM pg_type t
         WHERE t.typnamespace = source_oid AND t.typtype IN ('b', 'r', 'm')
           AND NOT (t.typtype = 'b' AND t.typcategory = 'A')                    -- implicit array types
           AND NOT (t.typtype = 'm' AND EXISTS (SELECT FROM pg_range r WHERE r.rngmultitypid = t.oid))
        UNION ALL
        SELECT 'aggregate', p.proname FROM pg_proc p WHERE p.pronamespace = source_oid AND p.prokind = 'a'
    ) u LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'schema "%" holds the % "%", which cannot be cloned', source_schema, unsupported.kind, unsupported.name
            USING ERRCODE = 'feature_not_supported';
    END IF;

    -- From here on the deparsers write the source's objects unqualified.
    PERFORM set_config('search_path', format('pg_catalog, %I, pg_temp', source_schema), true);

    RETURN QUERY
    -- Catalog lookups go through indexes (pg_depend by depender, pg_class by oid): the
    -- catalogs grow with every tenant, and a clone should not slow down as they do.
    WITH rel AS (
        SELECT c.oid, c.relname, c.relkind, c.relpersistence, c.reloptions, c.relowner, c.relacl,
               c.relrowsecurity, c.relforcerowsecurity, c.relispopulated,
               format('%s.%I', target, c.relname) AS qualified,
               -- the word ALTER, COMMENT ON and GRANT use for it
               CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'S' THEN 'SEQUENCE'
                              WHEN 'c' THEN 'TYPE' ELSE 'TABLE' END AS keyword
          FROM pg_class c
         WHERE c.relnamespace = source_oid AND c.relkind IN ('r', 'v', 'm', 'S', 'c')
           AND NOT mt_internal.is_extension_member('pg_class'::regclass, c.oid)
           AND c.oid IS DISTINCT FROM tracking
           AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                              AND d.refclassid = 'pg_class'::regclass AND d.refobjid = tracking)
    ), identity_seq AS (    -- sequences behind identity columns come with their column
        SELECT s.oid AS seq, o.rel, o.attnum
          FROM rel s, LATERAL (SELECT d.refobjid AS rel, d.refobjsubid AS attnum FROM pg_depend d
                                WHERE d.classid = 'pg_class'::regclass AND d.objid = s.oid AND d.objsubid = 0
                                  AND d.refclassid = 'pg_class'::regclass AND d.deptype = 'i') o
         WHERE s.relkind = 'S'
    ), typ AS (
        SELECT t.oid, t.typname, t.typtype, t.typowner, t.typacl, t.typrelid, format('%s.%I', target, t.typname) AS qualified,
               CASE t.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END AS keyword
          FROM pg_type t
         WHERE t.typnamespace = source_oid
           AND (t.typtype IN ('e', 'd') OR (t.typtype = 'c' AND EXISTS (SELECT FROM rel r WHERE r.oid = t.typrelid AND r.relkind = 'c')))
           AND NOT mt_internal.is_extension_member('pg_type'::regclass, t.oid)
    ), fn AS (
        SELECT p.oid, p.proname, p.prokind, p.proowner, p.proacl, p.proconfig,
               format('%s.%I(%s)', target, p.proname, pg_get_function_identity_arguments(p.oid)) AS qualified,
               CASE p.prokind WHEN 'p' THEN 'PROCEDURE' ELSE 'FUNCTION' END AS keyword,
               -- which relations of the schema it needs to exist first (through types or a SQL body)
               (SELECT max(CASE WHEN r.relkind IN ('v', 'm') THEN 2 ELSE 1 END)
                  FROM pg_depend d
                  LEFT JOIN pg_type t ON d.refclassid = 'pg_type'::regclass AND t.oid = d.refobjid
                  JOIN pg_class r ON r.oid = CASE WHEN d.refclassid = 'pg_class'::regclass THEN d.refobjid ELSE t.typrelid END
                 WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.objsubid = 0
                   AND r.relnamespace = source_oid AND r.relkind IN ('r', 'v', 'm')) AS needs
          FROM pg_proc p
         WHERE p.pronamespace = source_oid
           AND NOT mt_internal.is_extension_member('pg_proc'::regclass, p.oid)
    ), view_depth AS (      -- a view comes after the views it reads
        WITH RECURSIVE edges AS (
            SELECT DISTINCT v.oid AS view, u.uses
              FROM rel v, LATERAL (
                  SELECT d.refobjid AS uses
                    FROM pg_rewrite w
                    JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = w.oid AND d.objsubid = 0
                   WHERE w.ev_class = v.oid AND d.refclassid = 'pg_class'::regclass AND d.refobjid <> v.oid) u
              JOIN rel r ON r.oid = u.uses AND r.relkind IN ('v', 'm')
             WHERE v.relkind IN ('v', 'm')
        ), walk(view, depth) AS (
            SELECT oid, 0 FROM rel WHERE relkind IN ('v', 'm')
            UNION ALL
            SELECT e.view, w.depth + 1 FROM walk w JOIN edges e ON e.uses = w.view WHERE w.depth < 100
        )
        SELECT view, max(depth) AS depth FROM walk GROUP BY view
    ), statements(step, sort_key, object_type, object_name, statement) AS (
        -- 10: enums
        SELECT 10, t.oid::bigint, 'type', t.typname::text,
               format('CREATE TYPE %s AS ENUM (%s)', t.qualified,
                      (SELECT string_agg(quote_literal(e.enumlabel), ', ' ORDER BY e.enumsortorder) FROM pg_enum e WHERE e.enumtypid = t.oid))
          FROM typ t WHERE t.typtype = 'e'
        UNION ALL
        -- 11: domains and composite types, in creation order
        SELECT 11, t.oid::bigint, 'type', t.typname::text,
               CASE WHEN t.typtype = 'd' THEN
                   format('CREATE DOMAIN %s AS %s%s%s%s', t.qualified, format_type(b.typbasetype, b.typtypmod),
                          CASE WHEN b.typcollation <> 0 AND b.typcollation <> bt.typcollation
                               THEN ' COLLATE ' || b.typcollation::regcollation::text ELSE '' END,
                          CASE WHEN b.typdefault IS NOT NULL THEN ' DEFAULT ' || b.typdefault ELSE '' END,
                          CASE WHEN b.typnotnull THEN ' NOT NULL' ELSE '' END)
               ELSE
                   format('CREATE TYPE %s AS (%s)', t.qualified,
                          (SELECT string_agg(format('%I %s%s', a.attname, format_type(a.atttypid, a.atttypmod),
                                                    CASE WHEN a.attcollation <> 0 AND a.attcollation <> at.typcollation
                                                         THEN ' COLLATE ' || a.attcollation::regcollation::text ELSE '' END),
                                             ', ' ORDER BY a.attnum)
                             FROM pg_attribute a JOIN pg_type at ON at.oid = a.atttypid
                            WHERE a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped))
               END
          FROM typ t JOIN pg_type b ON b.oid = t.oid LEFT JOIN pg_type bt ON bt.oid = b.typbasetype
         WHERE t.typtype IN ('d', 'c')
        UNION ALL
        -- 20: sequences (not those of identity columns)
        SELECT 20, s.oid::bigint, 'sequence', s.relname::text,
               format('CREATE SEQUENCE %s AS %s INCREMENT BY %s MINVALUE %s MAXVALUE %s START WITH %s CACHE %s %s',
                      s.qualified, format_type(q.seqtypid, NULL), q.seqincrement, q.seqmin, q.seqmax, q.seqstart, q.seqcache,
                      CASE WHEN q.seqcycle THEN 'CYCLE' ELSE 'NO CYCLE' END)
          FROM rel s JOIN pg_sequence q ON q.seqrelid = s.oid
         WHERE s.relkind = 'S' AND NOT EXISTS (SELECT FROM identity_seq i WHERE i.seq = s.oid)
        UNION ALL
        -- 30, 65, 75: functions and procedures, by what they need
        SELECT CASE f.needs WHEN 1 THEN 65 WHEN 2 THEN 75 ELSE 30 END, f.oid::bigint,
               lower(f.keyword), f.proname::text,
               pg_get_functiondef(f.oid)
          FROM fn f
        UNION ALL
        -- 31: domain constraints (they may call the functions)
        SELECT 31, k.oid::bigint, 'constraint', t.typname || '.' || k.conname,
               format('ALTER DOMAIN %s ADD CONSTRAINT %I %s', t.qualified, k.conname, pg_get_constraintdef(k.oid))
          FROM typ t JOIN pg_constraint k ON k.contypid = t.oid
        UNION ALL
        -- 40: tables with their columns
        SELECT 40, r.oid::bigint, 'table', r.relname::text,
               format('CREATE %sTABLE %s (%s)%s', CASE WHEN r.relpersistence = 'u' THEN 'UNLOGGED ' ELSE '' END, r.qualified,
                      coalesce((SELECT string_agg(
                          format('%I %s', a.attname, format_type(a.atttypid, a.atttypmod))
                          || CASE WHEN a.attcollation <> 0 AND a.attcollation <> at.typcollation
                                  THEN ' COLLATE ' || a.attcollation::regcollation::text ELSE '' END
                          || CASE WHEN a.attgenerated = 's' THEN format(' GENERATED ALWAYS AS (%s) STORED', pg_get_expr(ad.adbin, ad.adrelid))
                                  WHEN a.attidentity <> '' THEN
                                      (SELECT format(' GENERATED %s AS IDENTITY (SEQUENCE NAME %s.%I INCREMENT BY %s MINVALUE %s MAXVALUE %s START WITH %s CACHE %s %s)',
                                                     CASE a.attidentity WHEN 'a' THEN 'ALWAYS' ELSE 'BY DEFAULT' END, target, sc.relname,
                                                     q.seqincrement, q.seqmin, q.seqmax, q.seqstart, q.seqcache, CASE WHEN q.seqcycle THEN 'CYCLE' ELSE 'NO CYCLE' END)
                                         FROM identity_seq i JOIN pg_class sc ON sc.oid = i.seq JOIN pg_sequence q ON q.seqrelid = i.seq
                                        WHERE i.rel = r.oid AND i.attnum = a.attnum)
                                  WHEN ad.adbin IS NOT NULL THEN ' DEFAULT ' || pg_get_expr(ad.adbin, ad.adrelid)
                                  ELSE '' END
                          || CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END,
                          ', ' ORDER BY a.attnum)
                         FROM pg_attribute a JOIN pg_type at ON at.oid = a.atttypid
                         LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
                        WHERE a.attrelid = r.oid AND a.attnum > 0 AND NOT a.attisdropped), ''),
                      CASE WHEN r.reloptions IS NOT NULL THEN format(' WITH (%s)', array_to_string(r.reloptions, ', ')) ELSE '' END)
          FROM rel r WHERE r.relkind = 'r'
        UNION ALL
        -- 60: constraints other than foreign keys; 80: foreign keys, after the rows
        SELECT CASE WHEN k.contype = 'f' THEN 80 ELSE 60 END, k.oid::bigint, 'constraint', r.relname || '.' || k.conname,
               format('ALTER TABLE %s ADD CONSTRAINT %I %s', r.qualified, k.conname, pg_get_constraintdef(k.oid))
          FROM rel r JOIN pg_constraint k ON k.conrelid = r.oid
         WHERE k.contype IN ('p', 'u', 'x', 'c', 'f') AND k.conislocal
        UNION ALL
        -- 61, 71: indexes that no constraint owns
        SELECT CASE WHEN r.relkind = 'm' THEN 71 ELSE 61 END, i.indexrelid::bigint, 'index', ic.relname::text,
               pg_get_indexdef(i.indexrelid)
          FROM rel r JOIN pg_index i ON i.indrelid = r.oid JOIN pg_class ic ON ic.oid = i.indexrelid
         WHERE NOT EXISTS (SELECT FROM pg_constraint k WHERE k.conindid = i.indexrelid AND k.conrelid = r.oid AND k.contype IN ('p', 'u', 'x'))
        UNION ALL
        -- 62: serial-style sequences owned by a column
        SELECT 62, s.oid::bigint, 'sequence', s.relname::text,
               format('ALTER SEQUENCE %s OWNED BY %s.%I', s.qualified, r.qualified, a.attname)
          FROM rel s
          CROSS JOIN LATERAL (SELECT d.refobjid, d.refobjsubid FROM pg_depend d
                               WHERE d.classid = 'pg_class'::regclass AND d.objid = s.oid AND d.objsubid = 0
                                 AND d.deptype = 'a' AND d.refclassid = 'pg_class'::regclass) d
          JOIN rel r ON r.oid = d.refobjid
          JOIN pg_attribute a ON a.attrelid = r.oid AND a.attnum = d.refobjsubid
         WHERE s.relkind = 'S'
        UNION ALL
        -- 70: views and materialized views, each after those it reads
        SELECT 70, v.depth * 4294967296 + r.oid::bigint, lower(r.keyword), r.relname::text,
               format('CREATE %s %s%s AS %s%s', r.keyword, r.qualified,
                      CASE WHEN r.reloptions IS NOT NULL THEN format(' WITH (%s)', array_to_string(r.reloptions, ', ')) ELSE '' END,
                      rtrim(pg_get_viewdef(r.oid), ';'), CASE r.relkind WHEN 'm' THEN ' WITH NO DATA' ELSE '' END)
          FROM rel r JOIN view_depth v ON v.view = r.oid
        UNION ALL
        -- 85: triggers (not the internal ones behind foreign keys), then their enabled state
        SELECT 85, g.oid::bigint, 'trigger', r.relname || '.' || g.tgname,
               pg_get_triggerdef(g.oid)
               || CASE g.tgenabled WHEN 'D' THEN format('; ALTER TABLE %s DISABLE TRIGGER %I', r.qualified, g.tgname)
                                   WHEN 'R' THEN format('; ALTER TABLE %s ENABLE REPLICA TRIGGER %I', r.qualified, g.tgname)
                                   WHEN 'A' THEN format('; ALTER TABLE %s ENABLE ALWAYS TRIGGER %I', r.qualified, g.tgname)
                                   ELSE '' END
          FROM rel r JOIN pg_trigger g ON g.tgrelid = r.oid
         WHERE NOT g.tgisinternal
        UNION ALL
        -- 86: row level security
        SELECT 86, r.oid::bigint, 'table', r.relname::text,
               format('ALTER TABLE %s %s ROW LEVEL SECURITY', r.qualified, CASE WHEN r.relforcerowsecurity THEN 'FORCE' ELSE 'ENABLE' END)
               || CASE WHEN r.relforcerowsecurity AND r.relrowsecurity THEN format('; ALTER TABLE %s ENABLE ROW LEVEL SECURITY', r.qualified) ELSE '' END
          FROM rel r WHERE r.relrowsecurity OR r.relforcerowsecurity
        UNION ALL
        SELECT 86, p.oid::bigint, 'policy', r.relname || '.' || p.polname,
               format('CREATE POLICY %I ON %s AS %s FOR %s TO %s%s%s', p.polname, r.qualified,
                      CASE WHEN p.polpermissive THEN 'PERMISSIVE' ELSE 'RESTRICTIVE' END,
                      CASE p.polcmd WHEN 'r' THEN 'SELECT' WHEN 'a' THEN 'INSERT' WHEN 'w' THEN 'UPDATE' WHEN 'd' THEN 'DELETE' ELSE 'ALL' END,
                      (SELECT string_agg(CASE WHEN role = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(role)) END, ', ') FROM unnest(p.polroles) AS role),
                      CASE WHEN p.polqual IS NOT NULL THEN format(' USING (%s)', pg_get_expr(p.polqual, p.polrelid)) ELSE '' END,
                      CASE WHEN p.polwithcheck IS NOT NULL THEN format(' WITH CHECK (%s)', pg_get_expr(p.polwithcheck, p.polrelid)) ELSE '' END)
          FROM rel r JOIN pg_policy p ON p.polrelid = r.oid
        UNION ALL
        -- 90: comments on every kind of object cloned
        SELECT 90, o.sort_key, 'comment', o.name, format('COMMENT ON %s IS %L', o.target_object, d.description)
          FROM (
            SELECT 'pg_class'::regclass AS classid, r.oid AS objid, 0 AS objsubid, r.oid::bigint AS sort_key, r.relname::text AS name,
                   r.keyword || ' ' || r.qualified AS target_object
              FROM rel r
            UNION ALL
            SELECT 'pg_class'::regclass, r.oid, a.attnum, r.oid::bigint, r.relname || '.' || a.attname, format('COLUMN %s.%I', r.qualified, a.attname)
              FROM rel r JOIN pg_attribute a ON a.attrelid = r.oid AND a.attnum > 0 AND NOT a.attisdropped
            UNION ALL
            SELECT 'pg_class'::regclass, ic.oid, 0, ic.oid::bigint, ic.relname::text, format('INDEX %s.%I', target, ic.relname)
              FROM rel r JOIN pg_index i ON i.indrelid = r.oid JOIN pg_class ic ON ic.oid = i.indexrelid
            UNION ALL
            SELECT 'pg_type'::regclass, t.oid, 0, t.oid::bigint, t.typname::text, t.keyword || ' ' || t.qualified
              FROM typ t WHERE t.typtype <> 'c'
            UNION ALL
            SELECT 'pg_proc'::regclass, f.oid, 0, f.oid::bigint, f.proname::text, f.keyword || ' ' || f.qualified
              FROM fn f
            UNION ALL
            SELECT 'pg_constraint'::regclass, k.oid, 0, k.oid::bigint, k.conname::text, format('CONSTRAINT %I ON %s', k.conname, r.qualified)
              FROM rel r JOIN pg_constraint k ON k.conrelid = r.oid
            UNION ALL
            SELECT 'pg_constraint'::regclass, k.oid, 0, k.oid::bigint, k.conname::text, format('CONSTRAINT %I ON DOMAIN %s', k.conname, t.qualified)
              FROM typ t JOIN pg_constraint k ON k.contypid = t.oid
            UNION ALL
            SELECT 'pg_trigger'::regclass, g.oid, 0, g.oid::bigint, g.tgname::text, format('TRIGGER %I ON %s', g.tgname, r.qualified)
              FROM rel r JOIN pg_trigger g ON g.tgrelid = r.oid WHERE NOT g.tgisinternal
            UNION ALL
            SELECT 'pg_policy'::regclass, p.oid, 0, p.oid::bigint, p.polname::text, format('POLICY %I ON %s', p.polname, r.qualified)
              FROM rel r JOIN pg_policy p ON p.polrelid = r.oid
          ) o
          JOIN pg_description d ON d.classoid = o.classid AND d.objoid = o.objid AND d.objsubid = o.objsubid
        UNION ALL
        -- 91: privileges as the source has them. The statements run as the target's role,
        -- which owns what they create: the source's owner (and the source's role) is CURRENT_USER.
        SELECT 91, o.sort_key, 'grant', o.name,
               format('REVOKE ALL ON %s %s FROM PUBLIC, CURRENT_USER', o.kind, o.target_object)
               || coalesce((SELECT string_agg(format('; GRANT %s%s ON %s %s TO %s%s', x.privilege_type,
                                                     CASE WHEN o.column_name IS NOT NULL THEN format(' (%I)', o.column_name) ELSE '' END,
                                                     o.kind, o.target_object,
                                                     CASE WHEN x.grantee = 0 THEN 'PUBLIC'
                                                          WHEN x.grantee IN (o.owner, source_role) THEN 'CURRENT_USER'
                                                          ELSE quote_ident(pg_get_userbyid(x.grantee)) END,
                                                     CASE WHEN x.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END), '')
                              FROM aclexplode(o.acl) x), '')
          FROM (
            SELECT r.oid::bigint AS sort_key, r.relname::text AS name, r.relowner AS owner, r.relacl AS acl, r.qualified AS target_object,
                   CASE WHEN r.keyword IN ('SEQUENCE', 'TYPE') THEN r.keyword ELSE 'TABLE' END AS kind, NULL::name AS column_name
              FROM rel r WHERE r.relacl IS NOT NULL
            UNION ALL
            SELECT t.oid::bigint, t.typname::text, t.typowner, t.typacl, t.qualified, t.keyword, NULL
              FROM typ t WHERE t.typacl IS NOT NULL AND t.typtype <> 'c'
            UNION ALL
            SELECT f.oid::bigint, f.proname::text, f.proowner, f.proacl, f.qualified, f.keyword, NULL
              FROM fn f WHERE f.proacl IS NOT NULL
          ) o
        UNION ALL
        -- column privileges add to the table's: grants only
        SELECT 91, r.oid::bigint, 'grant', r.relname || '.' || a.attname,
               (SELECT string_agg(format('GRANT %s (%I) ON TABLE %s TO %s%s', x.privilege_type, a.attname, r.qualified,
                                         CASE WHEN x.grantee = 0 THEN 'PUBLIC'
                                              WHEN x.grantee IN (r.relowner, source_role) THEN 'CURRENT_USER'
                                              ELSE quote_ident(pg_get_userbyid(x.grantee)) END,
                                         CASE WHEN x.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END), '; ')
                  FROM aclexplode(a.attacl) x)
          FROM rel r JOIN pg_attribute a ON a.attrelid = r.oid AND a.attnum > 0 AND NOT a.attisdropped
         WHERE a.attacl IS NOT NULL
        UNION ALL
        -- 92: function settings; a search_path naming the source names the target instead
        SELECT 92, f.oid::bigint, lower(f.keyword), f.proname::text,
               format('ALTER %s %s RESET ALL', f.keyword, f.qualified)
               || (SELECT string_agg(format('; ALTER %s %s SET %I = %s', f.keyword,
                                            f.qualified, split_part(setting, '=', 1),
                                            CASE WHEN split_part(setting, '=', 1) = 'search_path'
                                                 -- each entry unquoted ("public" is public; SET ... FROM CURRENT stores it so)
                                                 THEN (SELECT string_agg(quote_literal(CASE WHEN e = source_schema THEN target_schema ELSE e END), ', ' ORDER BY i)
                                                         FROM unnest(mt_internal.search_path_names(substr(setting, strpos(setting, '=') + 1)))
                                                              WITH ORDINALITY AS p(e, i))
                                                 ELSE quote_literal(substr(setting, strpos(setting, '=') + 1)) END), '')
                     FROM unnest(f.proconfig) AS setting)
          FROM fn f
         WHERE EXISTS (SELECT FROM unnest(f.proconfig) AS setting WHERE setting LIKE 'search\_path=%')
        UNION ALL
        -- 95: materialized views that hold rows in the source
        SELECT 95, v.depth * 4294967296 + r.oid::bigint, 'materialized view', r.relname::text,
               format('REFRESH MATERIALIZED VIEW %s', r.qualified)
          FROM rel r JOIN view_depth v ON v.view = r.oid
         WHERE r.relkind = 'm' AND r.relispopulated
    )
    -- Deparsers always qualify some names (function headers, the table of an index or a
    -- trigger) and bodies are text: mt.clone_statements makes whatever still names the
    -- source name the target (multitenant_core::sql_text::requalify).
    SELECT s.step, s.object_type, s.object_name, s.statement
      FROM statements s
     ORDER BY s.step, s.sort_key, s.statement;
END
$$;

CREATE OR REPLACE FUNCTION "clone_statements"(
	"source_schema" TEXT, /* & str */
	"target_schema" TEXT /* & str */
) RETURNS TABLE (
	"step" INT,  /* i32 */
	"object_type" TEXT,  /* String */
	"object_name" TEXT,  /* String */
	"statement" TEXT  /* String */
)
STRICT VOLATILE SECURITY DEFINER 
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'multitenant-0.2.0', 'clone_statements_wrapper';

-- mt_internal.strip_schema is Rust now: the drift views call it for most definitions.
CREATE OR REPLACE FUNCTION mt_internal."strip_schema"(
	"definition" TEXT, /* & str */
	"schema_name" TEXT /* & str */
) RETURNS TEXT /* String */
IMMUTABLE STRICT PARALLEL SAFE 
LANGUAGE c /* Rust */
AS 'multitenant-0.2.0', 'strip_schema_wrapper';
COMMENT ON FUNCTION mt_internal.strip_schema(text, text) IS
    'multitenant (internal): a deparsed definition with the given schema''s qualifier removed (what drift compares)';

-- Incremental drift (sql/drift.sql).
CREATE TABLE mt_internal.schema_changes (
    schema_name text PRIMARY KEY,
    -- The last transaction that changed it.
    changed_by  xid8 NOT NULL
);
COMMENT ON TABLE mt_internal.schema_changes IS
    'multitenant (internal): per schema, the last transaction whose DDL changed it (* for changes in no one schema); written by the mt_note_schema_changes event triggers';

CREATE TABLE mt_internal.schema_changes_seen (
    schema_name text PRIMARY KEY,
    changed_by  xid8 NOT NULL
);
COMMENT ON TABLE mt_internal.schema_changes_seen IS
    'multitenant (internal): the rows of mt_internal.schema_changes as the last drift refresh saw them';

CREATE TABLE mt_internal.drift_state (
    schema_name           text PRIMARY KEY,
    fingerprint           text NOT NULL,
    -- The template's fingerprint the differences were computed against.
    reference_fingerprint text NOT NULL,
    -- mt.drift_column_order as it was: the model depends on it.
    column_order          boolean NOT NULL,
    -- mt_internal.acl_digests as it was.
    acl_digest            text NOT NULL,
    refreshed_at          timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE mt_internal.drift_state IS
    'multitenant (internal): per tenant schema (and mt_template), its fingerprint as of its last refresh and the template fingerprint its differences were computed against';

CREATE TABLE mt_internal.drift_differences (
    schema_name text NOT NULL,
    object_type text NOT NULL,
    object_name text NOT NULL,
    change      text NOT NULL,
    expected    jsonb,
    actual      jsonb
);
CREATE INDEX drift_differences_schema_name_idx ON mt_internal.drift_differences (schema_name);
COMMENT ON TABLE mt_internal.drift_differences IS
    'multitenant (internal): the differences from the template of each drifted tenant schema, as of its last refresh';

CREATE  FUNCTION mt_internal."release_catalog_caches"() RETURNS void
STRICT VOLATILE 
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'multitenant-0.2.0', 'release_catalog_caches_wrapper';

CREATE  FUNCTION mt_internal."ddl_noted_schema"() RETURNS TEXT /* Option < String > */
STRICT STABLE 
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'multitenant-0.2.0', 'ddl_noted_schema_wrapper';

CREATE FUNCTION mt_internal.owning_schema(classid oid, objid oid)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT n.nspname::text FROM pg_namespace n
     WHERE n.oid = CASE owning_schema.classid
                   WHEN 'pg_namespace'::regclass THEN owning_schema.objid
                   ELSE (SELECT t.relnamespace FROM pg_class t
                          WHERE t.oid = CASE owning_schema.classid
                                        WHEN 'pg_trigger'::regclass THEN (SELECT g.tgrelid FROM pg_trigger g WHERE g.oid = owning_schema.objid)
                                        WHEN 'pg_policy'::regclass THEN (SELECT p.polrelid FROM pg_policy p WHERE p.oid = owning_schema.objid)
                                        WHEN 'pg_rewrite'::regclass THEN (SELECT r.ev_class FROM pg_rewrite r WHERE r.oid = owning_schema.objid)
                                        END)
                   END
$$;

-- One statement each, cheap when the schema is already noted for this transaction (no row
-- lock taken then): they run after every DDL command, and a migration runs hundreds.
CREATE FUNCTION mt_internal.note_schema_changes()
RETURNS event_trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    noted text := mt_internal.ddl_noted_schema();
BEGIN
    IF noted IS NOT NULL AND NOT EXISTS (SELECT FROM pg_event_trigger_ddl_commands() d
                                          WHERE d.schema_name IS DISTINCT FROM noted) THEN
        RETURN;   -- noted by the engine (mt_internal.note_schema_change)
    END IF;
    INSERT INTO mt_internal.schema_changes AS c (schema_name, changed_by)
    SELECT DISTINCT s.name, pg_current_xact_id()
      FROM pg_event_trigger_ddl_commands() d
     CROSS JOIN LATERAL (
         SELECT CASE WHEN d.classid IN ('pg_namespace'::regclass, 'pg_trigger'::regclass, 'pg_policy'::regclass, 'pg_rewrite'::regclass)
                     THEN mt_internal.owning_schema(d.classid, d.objid)
                     WHEN d.schema_name IS NOT NULL THEN d.schema_name
                     -- GRANT and REVOKE name no schema here: privileges are compared by
                     -- mt_internal.acl_digests instead.
                     WHEN d.command_tag IN ('GRANT', 'REVOKE') THEN NULL
                     ELSE '*' END) AS s(name)
     WHERE NOT d.in_extension AND s.name IS NOT NULL AND s.name !~ '^pg_(temp|toast)'
       -- A subquery per row: the planner, expecting 100 commands, would read the whole
       -- table (a row per tenant) for an anti join on every DDL statement.
       AND (SELECT x.changed_by FROM mt_internal.schema_changes x WHERE x.schema_name = s.name)
           IS DISTINCT FROM pg_current_xact_id()
        ON CONFLICT (schema_name) DO UPDATE SET changed_by = excluded.changed_by;
END
$$;
COMMENT ON FUNCTION mt_internal.note_schema_changes() IS
    'multitenant (internal): event trigger function (ddl_command_end): notes in mt_internal.schema_changes the schemas a DDL command changed';

-- Triggers, policies and rules have no schema of their own: their table's comes first in
-- their address.
CREATE FUNCTION mt_internal.note_schema_drops()
RETURNS event_trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    noted text := mt_internal.ddl_noted_schema();
BEGIN
    IF noted IS NOT NULL AND NOT EXISTS (SELECT FROM pg_event_trigger_dropped_objects() o
                                          WHERE o.schema_name IS DISTINCT FROM noted) THEN
        RETURN;   -- noted by the engine (mt_internal.note_schema_change)
    END IF;
    INSERT INTO mt_internal.schema_changes AS c (schema_name, changed_by)
    SELECT DISTINCT s.name, pg_current_xact_id()
      FROM pg_event_trigger_dropped_objects() o
     CROSS JOIN LATERAL (
         SELECT CASE WHEN o.object_type = 'schema' THEN o.object_name
                     ELSE coalesce(o.schema_name,
                                   CASE WHEN o.object_type IN ('trigger', 'policy', 'rule') THEN o.address_names[1] END,
                                   '*') END) AS s(name)
     WHERE NOT o.is_temporary AND s.name !~ '^pg_(temp|toast)'
       -- A subquery per row: the planner, expecting 100 commands, would read the whole
       -- table (a row per tenant) for an anti join on every DDL statement.
       AND (SELECT x.changed_by FROM mt_internal.schema_changes x WHERE x.schema_name = s.name)
           IS DISTINCT FROM pg_current_xact_id()
        ON CONFLICT (schema_name) DO UPDATE SET changed_by = excluded.changed_by;
END
$$;
COMMENT ON FUNCTION mt_internal.note_schema_drops() IS
    'multitenant (internal): event trigger function (sql_drop): notes in mt_internal.schema_changes the schemas a DROP changed';

CREATE EVENT TRIGGER mt_note_schema_changes ON ddl_command_end
    EXECUTE FUNCTION mt_internal.note_schema_changes();
COMMENT ON EVENT TRIGGER mt_note_schema_changes IS
    'multitenant: notes which schemas DDL changes, so that drift is recomputed only for them';
CREATE EVENT TRIGGER mt_note_schema_drops ON sql_drop
    EXECUTE FUNCTION mt_internal.note_schema_drops();
COMMENT ON EVENT TRIGGER mt_note_schema_drops IS
    'multitenant: notes which schemas DROP commands change, so that drift is recomputed only for them';


CREATE FUNCTION mt_internal.acl_digests(schema_names text[])
RETURNS TABLE (schema_name text, acl_digest text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT s.name, md5(coalesce(string_agg(c.relname || '=' || c.relacl::text, ',' ORDER BY c.relname), ''))
      FROM unnest(acl_digests.schema_names) AS s(name)
      LEFT JOIN pg_namespace n ON n.nspname = s.name
      LEFT JOIN pg_class c ON c.relnamespace = n.oid AND c.relacl IS NOT NULL
     GROUP BY s.name
$$;

CREATE  FUNCTION mt_internal."run_in_workers"(
	"statements" TEXT[] /* Vec < String > */
) RETURNS INT /* i32 */
STRICT VOLATILE 
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'multitenant-0.2.0', 'run_in_workers_wrapper';

-- One batch of a refresh: the schemas' old differences go, their new ones and their
-- fingerprints (against the given template fingerprint) are kept with their privilege
-- digests (mt_internal.acl_digests, as the refresh read them: {schema: digest}), in one
-- statement. Run by mt.refresh_drift, in-process or in background workers
-- (mt_internal.run_in_workers).
CREATE FUNCTION mt_internal.refresh_drift_batch(reference text, batch text[], template_fingerprint text, column_order boolean, digests jsonb)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
    WITH computed AS MATERIALIZED (
        SELECT * FROM mt.drift(refresh_drift_batch.reference, refresh_drift_batch.batch)
    ), cleared AS (
        DELETE FROM mt_internal.drift_differences d WHERE d.schema_name = ANY (refresh_drift_batch.batch)
    ), added AS (
        INSERT INTO mt_internal.drift_differences (schema_name, object_type, object_name, change, expected, actual)
        SELECT c.schema_name, c.object_type, c.object_name, c.change, c.expected, c.actual
          FROM computed c WHERE c.change IS NOT NULL
    )
    INSERT INTO mt_internal.drift_state AS s (schema_name, fingerprint, reference_fingerprint, column_order, acl_digest)
    SELECT c.schema_name, c.fingerprint, refresh_drift_batch.template_fingerprint, refresh_drift_batch.column_order,
           refresh_drift_batch.digests ->> c.schema_name
      FROM computed c WHERE c.change IS NULL
        ON CONFLICT (schema_name) DO UPDATE
       SET fingerprint = excluded.fingerprint, reference_fingerprint = excluded.reference_fingerprint,
           column_order = excluded.column_order, acl_digest = excluded.acl_digest, refreshed_at = excluded.refreshed_at
$$;
COMMENT ON FUNCTION mt_internal.refresh_drift_batch(text, text[], text, boolean, jsonb) IS
    'multitenant (internal): recompute and keep the fingerprints and differences of a batch of schemas against the reference (one batch of mt.refresh_drift)';

CREATE FUNCTION mt.refresh_drift(full_refresh boolean DEFAULT false)
RETURNS TABLE (schemas_checked integer, tenants_drifted integer, was_full boolean)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
DECLARE
    reference  constant text := 'mt_template';
    started    constant timestamptz := clock_timestamp();
    marks      mt_internal.schema_changes[];
    marked     text[];
    digests    jsonb;
    everything boolean;
    template_fingerprint text;
    template_changed boolean;
    stale      text[];
    checked    integer;
    batch_size integer;
    with_column_order constant boolean := coalesce(current_setting('mt.drift_column_order', true), '') IN ('on', 'true');
BEGIN
    -- One refresh at a time: a second one waits, then finds little left to do.
    PERFORM mt_internal.lock_schema('mt_internal.drift_state');
    -- Schemas changed since the last refresh, with the change as seen now.
    marks := ARRAY(SELECT c FROM mt_internal.schema_changes c
                     LEFT JOIN mt_internal.schema_changes_seen s ON s.schema_name = c.schema_name
                    WHERE s.changed_by IS DISTINCT FROM c.changed_by);
    marked := ARRAY(SELECT m.schema_name FROM unnest(marks) m);
    -- A change in a schema that is neither a tenant's nor the template's may change how
    -- tenant objects read (a type or function they use), unless that schema is gone (what a
    -- DROP ... CASCADE took from tenants is noted under the tenants' own schemas).
    everything := full_refresh
        OR EXISTS (SELECT FROM mt_internal.drift_state s WHERE s.column_order <> with_column_order)
        OR EXISTS (
        SELECT FROM unnest(marked) m(name)
         WHERE m.name NOT IN (reference, 'mt', 'mt_internal')
           AND (m.name = '*' OR EXISTS (SELECT FROM pg_namespace n WHERE n.nspname = m.name))
           AND NOT EXISTS (SELECT FROM mt.tenants t WHERE t.schema_name = m.name));

    -- Privileges changed since (GRANT and REVOKE leave no mark).
    digests := (SELECT jsonb_object_agg(a.schema_name, a.acl_digest)
                  FROM mt_internal.acl_digests(array_append(ARRAY(SELECT t.schema_name FROM mt.tenants t), reference)) a);
    marked := marked || ARRAY(SELECT d.key FROM jsonb_each_text(digests) d
                                LEFT JOIN mt_internal.drift_state s ON s.schema_name = d.key
                               WHERE s.acl_digest IS DISTINCT FROM d.value);

    -- Nothing is written before the schemas are compared: background workers may compare
    -- them, and they would wait for this transaction's row locks while it waits for them.
    SELECT s.fingerprint INTO template_fingerprint FROM mt_internal.drift_state s WHERE s.schema_name = reference;
    template_changed := everything OR reference = ANY (marked) OR template_fingerprint IS NULL;
    IF template_changed THEN
        SELECT d.fingerprint INTO template_fingerprint FROM mt.drift(reference, ARRAY[reference]) d;
    END IF;

    -- Unchanged schemas that equal a changed template need no comparison (below).
    stale := ARRAY(SELECT t.schema_name FROM mt.tenants t
                     LEFT JOIN mt_internal.drift_state s ON s.schema_name = t.schema_name
                    WHERE everything OR s.schema_name IS NULL OR t.schema_name = ANY (marked)
                       OR (s.reference_fingerprint <> template_fingerprint AND s.fingerprint <> template_fingerprint)
                    ORDER BY t.schema_name);
    checked := cardinality(stale);
    -- In batches whose models (about 100,000 objects, estimated from the template's relations
    -- and columns: 100 schemas of a real application) stay in mt.drift's work_mem instead of
    -- spilling to disk. Not smaller: every batch reads the catalogs whole (they have no index
    -- by schema), and 50,000 small schemas 100 at a time took longer than one read of all.
    batch_size := greatest(100, 100000 / greatest(1, (
        SELECT count(*) FROM pg_class c LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0
         WHERE c.relnamespace = (SELECT n.oid FROM pg_namespace n WHERE n.nspname = reference))))::integer;
    -- More than one batch: side by side in background workers (up to mt.max_workers at a
    -- time), when they can see what this transaction sees and it has written nothing.
    IF cardinality(stale) > batch_size AND pg_current_xact_id_if_assigned() IS NULL
       AND current_setting('transaction_isolation') = 'read committed' THEN
        PERFORM mt_internal.run_in_workers(ARRAY(
            SELECT format('SELECT mt_internal.refresh_drift_batch(%L, %L, %L, %L, %L)',
                          reference, x.batch, template_fingerprint, with_column_order,
                          (SELECT jsonb_object_agg(name, digests -> name) FROM unnest(x.batch) name))
              FROM generate_series(1, cardinality(stale), batch_size) b,
                   LATERAL (SELECT stale[b : b + batch_size - 1] AS batch) x));
        -- What the workers did not do (no free slot, an error) is done here: an error then
        -- says what it is.
        stale := ARRAY(SELECT x.name FROM unnest(stale) x(name)
                         LEFT JOIN mt_internal.drift_state s ON s.schema_name = x.name
                        WHERE s.refreshed_at IS NULL OR s.refreshed_at < started);
    END IF;
    FOR b IN 1 .. cardinality(stale) BY batch_size LOOP
        PERFORM mt_internal.refresh_drift_batch(reference, stale[b : b + batch_size - 1], template_fingerprint,
                                                with_column_order, digests);
        IF b + batch_size <= cardinality(stale) THEN
            PERFORM mt_internal.release_catalog_caches();   -- one batch's catalog entries at a time
        END IF;
    END LOOP;

    DELETE FROM mt_internal.drift_state s
     WHERE s.schema_name <> reference AND NOT EXISTS (SELECT FROM mt.tenants t WHERE t.schema_name = s.schema_name);
    DELETE FROM mt_internal.drift_differences d
     WHERE NOT EXISTS (SELECT FROM mt.tenants t WHERE t.schema_name = d.schema_name);
    IF template_changed THEN
        INSERT INTO mt_internal.drift_state AS s (schema_name, fingerprint, reference_fingerprint, column_order, acl_digest)
        VALUES (reference, template_fingerprint, template_fingerprint, with_column_order, digests ->> reference)
            ON CONFLICT (schema_name) DO UPDATE
           SET fingerprint = excluded.fingerprint, reference_fingerprint = excluded.reference_fingerprint,
               column_order = excluded.column_order, acl_digest = excluded.acl_digest, refreshed_at = excluded.refreshed_at;
    END IF;
    WITH same AS (
        UPDATE mt_internal.drift_state s SET reference_fingerprint = template_fingerprint
         WHERE s.reference_fingerprint <> template_fingerprint AND s.fingerprint = template_fingerprint
           AND NOT everything AND s.schema_name <> ALL (marked)
        RETURNING s.schema_name)
    DELETE FROM mt_internal.drift_differences d USING same WHERE d.schema_name = same.schema_name;

    INSERT INTO mt_internal.schema_changes_seen AS s (schema_name, changed_by)
    SELECT m.schema_name, m.changed_by FROM unnest(marks) m
        ON CONFLICT (schema_name) DO UPDATE SET changed_by = excluded.changed_by;
    -- Schemas that are gone for good (not tenants: a dropped tenant's is gone with it).
    WITH gone AS (
        SELECT s.schema_name FROM mt_internal.schema_changes_seen s
         WHERE s.schema_name <> '*' AND NOT EXISTS (SELECT FROM pg_namespace n WHERE n.nspname = s.schema_name)
    ), forgotten AS (
        DELETE FROM mt_internal.schema_changes_seen s USING gone WHERE s.schema_name = gone.schema_name
    )
    DELETE FROM mt_internal.schema_changes c USING gone WHERE c.schema_name = gone.schema_name;
    RETURN QUERY SELECT checked,
                        (SELECT count(DISTINCT d.schema_name)::integer FROM mt_internal.drift_differences d),
                        everything;
END
$$;

CREATE FUNCTION mt_internal.current_drift()
RETURNS TABLE (schema_name text, object_type text, object_name text, change text,
               expected jsonb, actual jsonb, fingerprint text)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
BEGIN
    IF current_setting('transaction_read_only') = 'on' THEN
        RETURN QUERY SELECT * FROM mt.drift('mt_template', ARRAY(SELECT t.schema_name FROM mt.tenants t));
        RETURN;
    END IF;
    PERFORM mt.refresh_drift();
    RETURN QUERY
    SELECT s.schema_name, NULL, NULL, NULL, NULL::jsonb, NULL::jsonb, s.fingerprint
      FROM mt_internal.drift_state s WHERE s.schema_name <> 'mt_template'
    UNION ALL
    SELECT d.schema_name, d.object_type, d.object_name, d.change, d.expected, d.actual, NULL
      FROM mt_internal.drift_differences d;
END
$$;

CREATE OR REPLACE VIEW mt.drift_report AS
SELECT t.tenant_id, d.schema_name, d.object_type, d.object_name, d.change, d.expected, d.actual
  FROM mt_internal.current_drift() d
  JOIN mt.tenants t ON t.schema_name = d.schema_name
 WHERE d.change IS NOT NULL;

CREATE OR REPLACE VIEW mt.drift_summary AS
SELECT t.tenant_id, d.schema_name,
       count(d.change) > 0 AS has_drift,
       count(d.change) AS differences,
       max(d.fingerprint) AS fingerprint
  FROM mt_internal.current_drift() d
  JOIN mt.tenants t ON t.schema_name = d.schema_name
 GROUP BY t.tenant_id, d.schema_name;

CREATE FUNCTION mt_internal.provision_from_template(target_schema text)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tracking text := mt.get_config('tracking_table');
    records  integer;
BEGIN
    IF mt.schema_object_count(target_schema) > 0 OR NOT mt.template_is_current() THEN
        RETURN NULL;
    END IF;
    IF to_regclass(format('%I.%I', target_schema, tracking)) IS NOT NULL THEN
        PERFORM mt_internal.check_tracking_table(target_schema);
        EXECUTE format('SELECT count(*) FROM %I.%I', target_schema, tracking) INTO records;
        IF records > 0 THEN
            RETURN NULL;
        END IF;
        -- Kept, and filled by copy_template: dropping it would make the commit wait for the
        -- disk (PostgreSQL flushes every commit that drops a relation).
    END IF;
    PERFORM mt_internal.copy_template(target_schema);
    EXECUTE format('SELECT count(*) FROM %I.%I', target_schema, tracking) INTO records;
    RETURN records;
END
$$;

-- The health check answers from a snapshot (sql/health.sql).
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

CREATE  FUNCTION mt_internal."health_max_age"() RETURNS INT /* i32 */
STRICT STABLE 
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'multitenant-0.2.0', 'health_max_age_wrapper';

CREATE  FUNCTION mt_internal."request_health_refresh"() RETURNS bool /* bool */
STRICT VOLATILE 
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'multitenant-0.2.0', 'request_health_refresh_wrapper';

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

CREATE OR REPLACE FUNCTION mt.drift(reference_schema text, schema_names text[])
RETURNS TABLE (schema_name text, object_type text, object_name text, change text,
               expected jsonb, actual jsonb, fingerprint text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
SET jit = off
SET work_mem = '128MB'
AS $$
WITH schemas AS MATERIALIZED (
    SELECT DISTINCT name FROM unnest(drift.schema_names) AS s(name)
), objects AS MATERIALIZED (
    SELECT * FROM mt.schema_objects(array_append(drift.schema_names, drift.reference_schema))
), fingerprints AS (
    SELECT s.name AS schema_name,
           encode(sha256(convert_to(coalesce(string_agg(o.object_type || E'\n' || o.object_name || E'\n' || o.definition::text, E'\n\n'
                                                        ORDER BY o.object_type COLLATE "C", o.object_name COLLATE "C"), ''), 'UTF8')), 'hex') AS fingerprint
      FROM (SELECT name FROM schemas UNION SELECT drift.reference_schema) AS s(name)
      LEFT JOIN objects o ON o.schema_name = s.name
     GROUP BY s.name
), reference AS (
    SELECT f.fingerprint FROM fingerprints f WHERE f.schema_name = drift.reference_schema
), expected AS (
    SELECT o.object_type, o.object_name, o.definition FROM objects o WHERE o.schema_name = drift.reference_schema
), drifted AS (
    SELECT f.schema_name FROM fingerprints f JOIN schemas s ON s.name = f.schema_name, reference r
     WHERE f.fingerprint <> r.fingerprint
)
SELECT f.schema_name, NULL, NULL, NULL, NULL::jsonb, NULL::jsonb, f.fingerprint
  FROM fingerprints f JOIN schemas s ON s.name = f.schema_name
UNION ALL
SELECT d.schema_name, e.object_type, e.object_name, 'missing', e.definition, NULL, NULL
  FROM drifted d CROSS JOIN expected e
 WHERE NOT EXISTS (SELECT FROM objects a
                    WHERE a.schema_name = d.schema_name AND a.object_type = e.object_type AND a.object_name = e.object_name)
UNION ALL
SELECT a.schema_name, a.object_type, a.object_name,
       CASE WHEN e.object_name IS NULL THEN 'extra' ELSE 'changed' END, e.definition, a.definition, NULL
  FROM objects a
  JOIN drifted d ON d.schema_name = a.schema_name
  LEFT JOIN expected e ON e.object_type = a.object_type AND e.object_name = a.object_name
 WHERE e.definition IS DISTINCT FROM a.definition
$$;

CREATE FUNCTION mt_internal.note_schema_change(schema_name text)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO mt_internal.schema_changes (schema_name, changed_by)
    VALUES (note_schema_change.schema_name, pg_current_xact_id())
        ON CONFLICT (schema_name) DO UPDATE SET changed_by = excluded.changed_by;
    SELECT pg_catalog.set_config('mt.ddl_noted_schema', note_schema_change.schema_name, true);
$$;

-- Comments of what is new or changed.

COMMENT ON FUNCTION mt.adopt_tenants(text, boolean, boolean) IS
    'multitenant: register existing schemas whose names follow schema_template (and match the LIKE pattern) as tenants, without moving data, and (assign_roles, with tenant_roles on) give each a role of its own that takes over its objects; returns what was (or, with dry_run, would be) adopted and changed';

COMMENT ON COLUMN mt.tenants.role_name IS
    'the tenant''s NOLOGIN role, which owns what its migrations create and which its code runs as; NULL: none (tenant_roles off, or not yet assigned: see mt.assign_tenant_roles)';

COMMENT ON FUNCTION mt.tenant_role_name(text) IS
    'multitenant: the role name a tenant gets (tenant_role_template applied to its schema name); 22023 when it would not fit in 63 bytes';

COMMENT ON VIEW mt.tenant_directory IS
    'multitenant: what an application needs to switch to a tenant: its schema, its role and whether it is active (readable by the application role)';

COMMENT ON FUNCTION mt.assign_tenant_roles(text[], boolean) IS
    'multitenant: give tenants without a role (adopted, or created before 0.2.0) their own role: it gets the objects of their schemas, the schema and tracking table go to the trusted owner; returns what changed (objects NULL with dry_run)';

COMMENT ON FUNCTION mt.grant_application_role(text) IS
    'multitenant: make a NOINHERIT login role the application role: it becomes a member of every tenant role (now and later) and may read mt.tenant_directory; superuser only';

COMMENT ON COLUMN mt.seeds.sql IS 'SQL run as the schema''s role (the tenant''s) with search_path = <schema>, <shared schema>, public';

COMMENT ON COLUMN mt.seeds.function IS 'a function called as f(tenant_id text, schema_name text), as the same role with the same search_path';

COMMENT ON FUNCTION mt.close_abandoned_runs() IS
    'multitenant: mark runs whose caller died as abandoned, with their unfinished tenants; every run calls it first; returns how many it closed';
COMMENT ON FUNCTION mt.repair_tracking(text[], text) IS
    'multitenant: put tracking tables and the ledger back in step after a table was dropped, emptied or edited by hand: source ledger writes back lost records, source tracking makes the ledger forget them; one row per tenant';

COMMENT ON FUNCTION mt_internal.strip_schema_setting(text[], text) IS
    'multitenant: function settings with the given schema''s name in search_path replaced by $schema';
COMMENT ON FUNCTION mt_internal.validate_config() IS
    'multitenant: trigger function that refuses invalid settings written to mt.config';
COMMENT ON FUNCTION mt_internal.is_trusted(oid) IS
    'multitenant: whether a role is trusted to own tenant schemas and tracking tables: a superuser, the extension owner or the schema_owner setting';
COMMENT ON FUNCTION mt_internal.code_role(text) IS
    'multitenant (internal): the role that migrations, seeds and copies into a schema run as';
COMMENT ON FUNCTION mt_internal.check_tracking_table(text, text) IS
    'multitenant (internal): raise 42501 unless a schema''s tracking table is a plain table only the trusted owner shaped';
COMMENT ON FUNCTION mt_internal.hand_over_schema(text, text, boolean) IS
    'multitenant (internal): give every object of a schema but the tracking table to a role; refuses objects of untrusted owners';
COMMENT ON FUNCTION mt_internal.grant_schema(text, text) IS
    'multitenant (internal): the trusted owner owns the schema; the role may use it and create in it, and read the tracking table';
COMMENT ON FUNCTION mt_internal.create_tenant_role(text) IS
    'multitenant (internal): create a new tenant''s NOLOGIN role, a member of mt_tenant, granted to the application role';
COMMENT ON FUNCTION mt_internal.prepare_template() IS
    'multitenant (internal): create mt_template, or refuse one an untrusted role owns or holds objects in';
COMMENT ON FUNCTION mt_internal.run_is_alive(integer, timestamptz) IS
    'multitenant: whether the backend that started a run (pid, and started before the run) is still there';
COMMENT ON FUNCTION mt_internal.ensure_extension(text, text) IS
    'multitenant (internal): create an extension a tenant migration asks for, once, in the shared schema, if allowed_extensions names it';
COMMENT ON FUNCTION mt_internal.record_tracking_insert() IS
    'multitenant (internal): trigger on every tracking table: copies each new record into the ledger mt.tracking_records';
COMMENT ON FUNCTION mt_internal.ensure_ledger_trigger(text) IS
    'multitenant (internal): give a schema''s tracking table the trigger that keeps the ledger informed, if it lacks it';
COMMENT ON FUNCTION mt_internal.is_migration_operation(text) IS
    'multitenant: whether runs of this operation count for a tenant''s health (migration runs do; seeds and provisioning do not)';
COMMENT ON FUNCTION mt_internal.prometheus_label(text) IS
    'multitenant: a Prometheus label value, quoted and escaped';
COMMENT ON FUNCTION mt_internal.metric_family(text, text, text, text[]) IS
    'multitenant: the exposition lines of one metric family: HELP, TYPE and its samples';
COMMENT ON FUNCTION mt_internal.save_seed(text, text, text, regprocedure, boolean) IS
    'multitenant: the checks and upsert behind both forms of mt.register_seed';
COMMENT ON FUNCTION mt_internal.run_seed(text, text, text, text, boolean) IS
    'multitenant: run one seed in one schema and record it, or skip it when it ran there before and force is off';
COMMENT ON FUNCTION mt_internal.is_extension_member(regclass, oid) IS
    'multitenant: whether an extension owns the object';
COMMENT ON FUNCTION mt_internal.anonymize_expression(jsonb, text, text, text) IS
    'multitenant: the SQL expression an anonymize rule puts in place of a column when rows are cloned';
COMMENT ON FUNCTION mt_internal.anonymize_error(text, text, text) IS
    'multitenant: raises the 22023 error for a bad anonymize rule';
COMMENT ON FUNCTION mt_internal.clone_rows(text, text, boolean, jsonb) IS
    'multitenant (internal): copy rows from one schema''s tables into its clone''s as the source''s role, applying anonymize rules; returns the rows copied';
COMMENT ON FUNCTION mt_internal.lend_schema(text, oid, boolean) IS
    'multitenant (internal): grant a copy''s source role the right to fill a new schema, or revoke it';
COMMENT ON FUNCTION mt_internal.clone_objects(text, text, boolean, jsonb) IS
    'multitenant (internal): run mt.clone_statements as the target''s role and copy the rows as the source''s; returns the rows copied';
COMMENT ON COLUMN mt.template_scripts.version IS
    'mt_internal.template_version() when the script was built; a script of another version is stale';
COMMENT ON FUNCTION mt_internal.template_version() IS
    'multitenant: a digest of mt_template''s tracking records; mt.template_scripts built under another one are stale';
COMMENT ON FUNCTION mt_internal.build_template_scripts(text) IS
    'multitenant: deparse mt_template into mt.template_scripts under the given version; false when the template mentions mt_clone_target itself';
COMMENT ON FUNCTION mt_internal.copy_template(text) IS
    'multitenant: copy mt_template (objects, tracking records and the rows migrations wrote) into a new empty schema, from cached statements';
COMMENT ON FUNCTION mt_internal.execute_as(oid, text, text) IS
    'multitenant (internal): run statements as a role with a search_path, as a SECURITY DEFINER function would; never as a superuser for a non-superuser caller';
COMMENT ON FUNCTION mt_internal.copy_tracking(text, text, text) IS
    'multitenant (internal): give a clone its source''s tracking records (in a chosen format), written by the extension owner';

COMMENT ON FUNCTION mt_internal.lock_schema(text, text) IS
    'multitenant (internal): take a schema''s advisory lock (exclusive, shared, or try_session); the one definition of its key';
COMMENT ON FUNCTION mt_internal.search_path_names(text) IS
    'multitenant (internal): the unquoted schema names of a stored search_path value';
COMMENT ON FUNCTION mt_internal.default_is_fresh(oid, smallint) IS
    'multitenant (internal): whether a template copy leaves a column to its default (a volatile one, not a sequence, no foreign key pointing at it)';
COMMENT ON FUNCTION mt.row_copy_statements(text, text, boolean, jsonb, boolean) IS
    'multitenant: the statements that copy one schema''s rows into its clone and move its sequences past them (fresh_defaults: columns with volatile defaults are left to the clone''s defaults, as template copies do); what mt_internal.clone_rows runs';

COMMENT ON FUNCTION mt_internal.close_run(bigint, text) IS
    'multitenant (internal): close a running run as finished, cancelled or abandoned, with its counts';

COMMENT ON FUNCTION mt_internal.clone_statements(text, text, text, oid) IS
    'multitenant (internal): the DDL of a clone, computed as the source schema''s role (see mt.clone_statements)';
COMMENT ON FUNCTION mt.clone_statements(text, text) IS
    'multitenant: the DDL that clones one schema into another, step by step (rows are copied between steps 40 and 60), computed as the source schema''s role; what mt.clone_schema runs';

COMMENT ON TABLE mt_internal.schema_changes IS
    'multitenant (internal): per schema, the last transaction whose DDL changed it (* for changes in no one schema); written by the mt_note_schema_changes event triggers';
COMMENT ON TABLE mt_internal.schema_changes_seen IS
    'multitenant (internal): the rows of mt_internal.schema_changes as the last drift refresh saw them';
COMMENT ON TABLE mt_internal.drift_state IS
    'multitenant (internal): per tenant schema (and mt_template), its fingerprint as of its last refresh and the template fingerprint its differences were computed against';
COMMENT ON TABLE mt_internal.drift_differences IS
    'multitenant (internal): the differences from the template of each drifted tenant schema, as of its last refresh';
COMMENT ON FUNCTION mt_internal.acl_digests(text[]) IS
    'multitenant (internal): per schema, a digest of the privileges on its relations; a drift refresh recomputes the schemas whose digest changed';
COMMENT ON FUNCTION mt.refresh_drift(boolean) IS
    'multitenant: bring the kept drift state up to date: recompute the schemas whose DDL changed since the last refresh (all of them with full_refresh => true, or after a change outside any tenant schema); the drift views do it first';
COMMENT ON FUNCTION mt_internal.current_drift() IS
    'multitenant (internal): what mt.drift(''mt_template'', every tenant) returns, answered from the kept state after a refresh';
COMMENT ON VIEW mt.drift_report IS
    'multitenant: every difference between each tenant''s schema and mt_template, the schema the registered migrations produce (kept per schema, recomputed for schemas changed since)';
COMMENT ON VIEW mt.drift_summary IS
    'multitenant: per tenant, whether and how much its schema differs from mt_template, and its schema fingerprint (kept per schema, recomputed for schemas changed since)';

COMMENT ON FUNCTION mt_internal.provision_from_template(text) IS
    'multitenant (internal): give an empty tenant schema a copy of the current mt_template (what migrate_all does instead of replaying every migration); NULL when the schema holds something or the template is not current';

COMMENT ON FUNCTION mt_internal.health_pools(text[]) IS
    'multitenant (internal): mt.health of every (or the listed) tenant as the health check''s pools (a JSON array, by tenant id)';

COMMENT ON FUNCTION mt_internal.store_health(timestamptz, jsonb) IS
    'multitenant (internal): keep a health computation as the snapshot, unless a newer one is kept already';
COMMENT ON FUNCTION mt_internal.refresh_health() IS
    'multitenant (internal): compute the health of every tenant and keep it as the snapshot mt.health_check answers from; NULL when another computation is at work';
COMMENT ON FUNCTION mt_internal.owning_schema(oid, oid) IS
    'multitenant (internal): the schema of a schema (pg_namespace) or of the table of a trigger, policy or rule; what DDL on it changes';

COMMENT ON FUNCTION mt_internal.note_schema_change(text) IS
    'multitenant (internal): note a schema the engine is about to change by DDL, for the rest of the transaction (the event triggers then skip its commands)';

-- Privileges, as sql/privileges.sql leaves them.

REVOKE ALL ON SCHEMA mt FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA mt FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA mt FROM PUBLIC;

GRANT USAGE ON SCHEMA mt TO mt_admin, mt_monitor;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA mt TO mt_admin;
GRANT SELECT ON ALL TABLES IN SCHEMA mt TO mt_admin;

-- Internal helpers: nobody may call them but the extension's own functions (as the owner),
-- except the few that the public views call, whose callers need them.
REVOKE ALL ON SCHEMA mt_internal FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA mt_internal FROM PUBLIC, mt_admin, mt_monitor;
GRANT USAGE ON SCHEMA mt_internal TO mt_admin, mt_monitor;
GRANT EXECUTE ON FUNCTION
    mt_internal.run_is_alive(integer, timestamptz),
    mt_internal.is_migration_operation(text),
    mt_internal.strip_schema(text, text),
    mt_internal.strip_schema_setting(text[], text),
    mt_internal.search_path_names(text),
    mt_internal.is_extension_member(regclass, oid),
    mt_internal.current_drift()
   TO mt_admin, mt_monitor;

-- mt.clone_statements computes a clone's DDL as the source schema's role (a tenant's or
-- the template's, all members of mt_tenant), which needs these.
GRANT USAGE ON SCHEMA mt_internal TO mt_tenant;
GRANT EXECUTE ON FUNCTION
    mt_internal.clone_statements(text, text, text, oid),
    mt_internal.is_extension_member(regclass, oid),
    mt_internal.search_path_names(text)
   TO mt_tenant;

GRANT SELECT ON mt.config, mt.config_options, mt.status, mt.sync_status, mt.health, mt.activity, mt.run_progress, mt.runs, mt.run_tenants,
                mt.drift_report, mt.drift_summary, mt.applied_migrations, mt.tenants, mt.tenant_directory, mt.settings
   TO mt_monitor;
GRANT EXECUTE ON FUNCTION
    mt.health_check(text[], boolean, text),
    mt.metrics(text),
    mt.tenant_drift(text, text),
    mt.drift(text, text[]),
    mt.introspect(text),
    mt.schema_objects(text[]),
    mt.tenant_schema(text, text),
    mt.template_is_current(),
    mt.shared_pending(),
    mt.get_config(text),
    mt.schema_name(text),
    mt.tenant_id_of(text),
    mt.fingerprint(jsonb),
    mt.diff_models(jsonb, jsonb)
   TO mt_monitor;

-- Template copies are now written differently (the tracking table is copied by the extension).
DELETE FROM mt.template_scripts;

-- Every function of the extension resolves names through pg_catalog first.
ALTER FUNCTION mt.diff_models(jsonb, jsonb) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION mt.fingerprint(jsonb) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION mt.read_migration_folder(text) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION mt.requalify(text, text, text) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION mt.schema_name(text) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION mt.tenant_id_of(text) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION mt.validate_naming(text, text) SET search_path = pg_catalog, pg_temp;

-- BEGIN SECTION drop guard
--
-- DROP EXTENSION multitenant is refused while tenants are registered (sql/guard.sql, the same
-- objects), with the privileges sql/privileges.sql leaves on mt_internal's functions.

CREATE FUNCTION mt_internal.drop_guard()
RETURNS event_trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    -- an identifier: quoted ("" inside), or plain (PostgreSQL folds it to lower case)
    ident     constant text := '(?:"(?:[^"]|"")+"|[[:alpha:]_][[:alnum:]_$]*)';
    owner     oid;
    tenants   bigint;
    context   text;
    statement text;
    drop_list text[];
    target    text;
    seen      boolean := false;  -- the text shows a DROP EXTENSION
    drops_mt  boolean := false;  -- ... that names multitenant
    allowed   boolean := lower(coalesce(current_setting('mt.allow_drop', true), '')) IN ('on', 'true', 'yes', '1');
    n_text    text;
BEGIN
    SELECT e.extowner INTO owner FROM pg_extension e WHERE e.extname = 'multitenant';
    IF owner IS NULL OR NOT pg_has_role(current_user, owner, 'USAGE') THEN
        RETURN;  -- cannot drop it anyway: PostgreSQL refuses with "must be owner"
    END IF;
    SELECT count(*) INTO tenants FROM mt.tenants;
    IF tenants = 0 THEN
        RETURN;
    END IF;

    -- The first line of PG_CONTEXT is this function; the next one, if any, the statement
    -- that fired it.
    GET DIAGNOSTICS context = PG_CONTEXT;
    IF strpos(context, E'\n') = 0 THEN
        statement := current_query();
    ELSE
        context := substr(context, strpos(context, E'\n') + 1);
        IF starts_with(context, 'SQL statement "') THEN
            statement := substr(context, length('SQL statement "') + 1);
        END IF;
    END IF;

    -- Comments out of the way, then every DROP EXTENSION list in the text.
    statement := regexp_replace(coalesce(statement, ''), E'/\\*.*?\\*/', ' ', 'g');
    statement := regexp_replace(statement, E'--[^\\n]*', ' ', 'g');
    FOR drop_list IN
        SELECT regexp_matches(statement,
                              E'\\mdrop\\s+extension\\s+(?:if\\s+exists\\s+)?(' || ident || E'(?:\\s*,\\s*' || ident || ')*)', 'gi')
    LOOP
        seen := true;
        FOR target IN SELECT (regexp_matches(drop_list[1], ident, 'g'))[1] LOOP
            IF starts_with(target, '"') THEN
                target := replace(substr(target, 2, length(target) - 2), '""', '"');
            ELSE
                target := lower(target);
            END IF;
            drops_mt := drops_mt OR target = 'multitenant';
        END LOOP;
    END LOOP;

    IF seen AND NOT drops_mt THEN
        RETURN;  -- another extension
    END IF;
    n_text := CASE tenants WHEN 1 THEN '1 tenant is' ELSE tenants || ' tenants are' END;
    IF allowed THEN
        IF drops_mt THEN
            RAISE WARNING 'dropping extension multitenant while % registered (mt.allow_drop is on)', n_text
                USING DETAIL = 'The tenant schemas and roles stay; the registry, migrations, ledger, runs, seeds, seed history and settings are deleted.';
        END IF;
        RETURN;
    END IF;
    IF drops_mt THEN
        RAISE EXCEPTION 'cannot drop extension multitenant: % registered', n_text
            USING ERRCODE = 'dependent_objects_still_exist',
                  DETAIL = 'Dropping it deletes the tenant registry (mt.tenants), the migrations, the ledger, runs, seeds, seed history and settings; the tenant schemas and roles would stay behind, unregistered.',
                  HINT = E'Back up first (pg_dump -Fc keeps all of it; or \\copy mt.tenants TO ''tenants.csv'' CSV HEADER), then drop the tenants with mt.drop_tenant, or SET mt.allow_drop = on to drop the extension anyway (for pg_restore --clean: PGOPTIONS=''-c mt.allow_drop=on'').';
    END IF;
    RAISE EXCEPTION 'DROP EXTENSION refused: % registered in multitenant and this statement may drop it', n_text
        USING ERRCODE = 'dependent_objects_still_exist',
              DETAIL = 'The statement''s text is not visible here (DROP EXTENSION inside a SQL-language function?), so it cannot tell which extensions are dropped.',
              HINT = 'Run DROP EXTENSION as a statement of its own or from PL/pgSQL, or SET mt.allow_drop = on.';
END
$$;
COMMENT ON FUNCTION mt_internal.drop_guard() IS
    'multitenant (internal): event trigger function: refuses DROP EXTENSION multitenant while tenants are registered, unless mt.allow_drop is on';

CREATE EVENT TRIGGER multitenant_drop_guard ON ddl_command_start
    WHEN TAG IN ('DROP EXTENSION')
    EXECUTE FUNCTION mt_internal.drop_guard();
COMMENT ON EVENT TRIGGER multitenant_drop_guard IS
    'multitenant: refuses DROP EXTENSION multitenant while tenants are registered (SET mt.allow_drop = on to drop anyway)';
REVOKE ALL ON FUNCTION mt_internal.drop_guard() FROM PUBLIC, mt_admin, mt_monitor;
-- END SECTION drop guard

-- ===========================================================================================
-- BEGIN SECTION library relink (keep it LAST: changes of tables and functions go ABOVE it)
--
-- A 0.1.0 database binds its C functions to 'multitenant' (0.1.0's module_pathname), the file
-- $libdir/multitenant.so, which stays installed for databases not yet updated. A fresh 0.2.0
-- install binds them to 'multitenant-0.2.0' (pgrx's versioned library name, no $libdir prefix).
-- Every C function of the extension still bound to the old library ('$libdir/multitenant' is
-- accepted too) is re-created from its own definition with only the library changed:
-- CREATE OR REPLACE keeps its oid, owner, privileges, comment and extension membership.
-- A function the 0.2.0 library no longer exports fails here: drop or replace it above.
DO $mt_relink$
DECLARE
    new_library constant text := 'multitenant-0.2.0';
    saved_path  text := pg_catalog.current_setting('search_path');
    f           record;
    def         text;
    old_as      text;
    hits        integer;
BEGIN
    -- With nothing on the search path, pg_get_functiondef qualifies every name it prints and
    -- EXECUTE resolves them the same way.
    PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    FOR f IN
        SELECT p.oid, p.probin
          FROM pg_catalog.pg_depend d
          JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid
          JOIN pg_catalog.pg_proc p ON p.oid = d.objid
          JOIN pg_catalog.pg_language l ON l.oid = p.prolang
         WHERE d.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass
           AND d.refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass
           AND d.deptype = 'e'
           AND e.extname = 'multitenant'
           AND l.lanname = 'c'
           AND p.probin IS DISTINCT FROM new_library
         ORDER BY p.oid
    LOOP
        IF f.probin IS NULL OR f.probin NOT IN ('multitenant', '$libdir/multitenant') THEN
            RAISE EXCEPTION 'multitenant update: function % is bound to library %, expected multitenant',
                f.oid::pg_catalog.regprocedure, f.probin;
        END IF;
        def := pg_catalog.pg_get_functiondef(f.oid);
        old_as := 'AS ' || pg_catalog.quote_literal(f.probin) || ', ';
        hits := (pg_catalog.length(def) - pg_catalog.length(pg_catalog.replace(def, old_as, '')))
                / pg_catalog.length(old_as);
        IF hits <> 1 THEN
            RAISE EXCEPTION 'multitenant update: cannot find the library of % in its definition',
                f.oid::pg_catalog.regprocedure
                USING DETAIL = def;
        END IF;
        EXECUTE pg_catalog.replace(def, old_as, 'AS ' || pg_catalog.quote_literal(new_library) || ', ');
    END LOOP;

    IF EXISTS (SELECT FROM pg_catalog.pg_depend d
                 JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid
                 JOIN pg_catalog.pg_proc p ON p.oid = d.objid
                WHERE d.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass
                  AND d.refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass
                  AND d.deptype = 'e'
                  AND e.extname = 'multitenant'
                  AND p.probin IN ('multitenant', '$libdir/multitenant')) THEN
        RAISE EXCEPTION 'multitenant update: functions are still bound to the 0.1.0 library';
    END IF;
    PERFORM pg_catalog.set_config('search_path', saved_path, true);
END
$mt_relink$;
-- END SECTION library relink
