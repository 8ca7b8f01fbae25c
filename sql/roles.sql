-- Roles: who is trusted, which role tenant code runs as, and the role of each tenant.
--
-- The trusted owner (the extension owner, a superuser, or the superuser-chosen schema_owner)
-- owns every tenant schema and tracking table; a tenant's own NOLOGIN role owns what its
-- migrations, seeds and clones create, and that code runs as it (src/roles.rs switches the
-- user id the way a SECURITY DEFINER function does). See docs/security.md.

ALTER TABLE mt.tenants ADD COLUMN role_name text UNIQUE;
COMMENT ON COLUMN mt.tenants.role_name IS
    'the tenant''s NOLOGIN role, which owns what its migrations create and which its code runs as; NULL: none (tenant_roles off, or not yet assigned: see mt.assign_tenant_roles)';

DO $$
BEGIN
    IF NOT pg_catalog.pg_has_role('mt_template_role', 'mt_tenant', 'MEMBER') THEN
        GRANT mt_tenant TO mt_template_role;
    END IF;
END
$$;

-- The advisory lock of a schema, the one key every run, provisioning, clone, repair and drop
-- of that schema takes: exclusive (in this transaction), shared (clones read a source while
-- other clones do), or try_session (workers: held across their transactions, not waited for).
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
COMMENT ON FUNCTION mt_internal.lock_schema(text, text) IS
    'multitenant (internal): take a schema''s advisory lock (exclusive, shared, or try_session); the one definition of its key';

CREATE FUNCTION mt_internal.is_trusted(role oid)
RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT EXISTS (SELECT FROM pg_roles r WHERE r.oid = is_trusted.role AND r.rolsuper)
        OR EXISTS (SELECT FROM pg_extension e WHERE e.extname = 'multitenant' AND e.extowner = is_trusted.role)
        OR EXISTS (SELECT FROM pg_roles r WHERE r.rolname = mt.get_config('schema_owner') AND r.oid = is_trusted.role)
$$;
COMMENT ON FUNCTION mt_internal.is_trusted(oid) IS
    'multitenant: whether a role is trusted to own tenant schemas and tracking tables: a superuser, the extension owner or the schema_owner setting';

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
COMMENT ON FUNCTION mt.tenant_role_name(text) IS
    'multitenant: the role name a tenant gets (tenant_role_template applied to its schema name); 22023 when it would not fit in 63 bytes';

CREATE VIEW mt.tenant_directory AS
SELECT t.tenant_id, t.schema_name, t.role_name, t.status
  FROM mt.tenants t;
COMMENT ON VIEW mt.tenant_directory IS
    'multitenant: what an application needs to switch to a tenant: its schema, its role and whether it is active (readable by the application role)';

-- Which role code touching `schema_name` runs as: the tenant's role; the template's; the
-- shared role; or, for a tenant without a role, its schema's owner.
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
COMMENT ON FUNCTION mt_internal.code_role(text) IS
    'multitenant (internal): the role that migrations, seeds and copies into a schema run as';

-- Refuses (42501) a tracking table that someone other than the trusted owner could have
-- shaped: only then may the engine read and write it as the trusted owner.
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
COMMENT ON FUNCTION mt_internal.check_tracking_table(text, text) IS
    'multitenant (internal): raise 42501 unless a schema''s tracking table is a plain table only the trusted owner shaped';

-- Makes `role` the owner of everything in `schema_name` except the tracking table, which
-- stays with the trusted owner; returns how many objects changed hands. Only objects of
-- trusted owners or of `role` are expected: anything else is refused, unless any_owner
-- (a superuser adopting schemas an application role built).
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
COMMENT ON FUNCTION mt_internal.hand_over_schema(text, text, boolean) IS
    'multitenant (internal): give every object of a schema but the tracking table to a role; refuses objects of untrusted owners';

-- The grants that let a role work in a schema the trusted owner owns.
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
COMMENT ON FUNCTION mt_internal.grant_schema(text, text) IS
    'multitenant (internal): the trusted owner owns the schema; the role may use it and create in it, and read the tracking table';

-- Creates the role of a new tenant; 42710 when the name is taken by a role that is not
-- this tenant's (another database of the cluster may use the same tenant ids).
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
COMMENT ON FUNCTION mt_internal.create_tenant_role(text) IS
    'multitenant (internal): create a new tenant''s NOLOGIN role, a member of mt_tenant, granted to the application role';

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
COMMENT ON FUNCTION mt.assign_tenant_roles(text[], boolean) IS
    'multitenant: give tenants without a role (adopted, or created before 0.2.0) their own role: it gets the objects of their schemas, the schema and tracking table go to the trusted owner; returns what changed (objects NULL with dry_run)';

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
COMMENT ON FUNCTION mt.grant_application_role(text) IS
    'multitenant: make a NOINHERIT login role the application role: it becomes a member of every tenant role (now and later) and may read mt.tenant_directory; superuser only';

-- mt_template is the extension's: created by it, or refused when someone else could have
-- shaped it. Its objects belong to mt_template_role, which its migrations run as.
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
COMMENT ON FUNCTION mt_internal.prepare_template() IS
    'multitenant (internal): create mt_template, or refuse one an untrusted role owns or holds objects in';
