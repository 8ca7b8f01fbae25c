-- multitenant bootstrap: the admin role and persistent configuration.
--
-- Runs first in the extension script (search_path = mt). Everything is schema-qualified
-- anyway, so the file reads the same in psql.

-- Roles are cluster-wide: another database's install may have created them already.
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

COMMENT ON SCHEMA mt IS
    'multitenant: schema-per-tenant multi-tenancy (tenant registry, naming, configuration)';

-- CREATE EXTENSION uses a schema mt that exists already. One a non-superuser created (in
-- PostgreSQL 15 the database owner may create schemas) could later be renamed away and
-- replaced with look-alike functions that administrators would call: refuse it.
DO $$
BEGIN
    IF NOT (SELECT r.rolsuper FROM pg_catalog.pg_namespace n JOIN pg_catalog.pg_roles r ON r.oid = n.nspowner
             WHERE n.nspname = 'mt') THEN
        RAISE EXCEPTION 'schema mt exists and belongs to %, who is not a superuser',
                        (SELECT pg_catalog.pg_get_userbyid(n.nspowner) FROM pg_catalog.pg_namespace n WHERE n.nspname = 'mt')
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'Drop or rename that schema (after checking what it holds), then CREATE EXTENSION multitenant again.';
    END IF;
END
$$;

-- What the public functions call and nobody else should: not API, granted to no one but
-- the few helpers the public views need, free to change between releases.
CREATE SCHEMA mt_internal;
COMMENT ON SCHEMA mt_internal IS
    'multitenant: internal helpers of the extension (not API; may change in any release)';

-- The settings the extension knows, with their defaults. Owned by the extension and
-- rewritten by upgrade scripts, so it is not dumped; user choices live in mt.config.
CREATE TABLE mt.config_options (
    key           text PRIMARY KEY,
    default_value text NOT NULL,
    description   text NOT NULL
);
COMMENT ON TABLE mt.config_options IS
    'multitenant: every setting the extension knows, its default and what it does';

INSERT INTO mt.config_options (key, default_value, description) VALUES
    ('schema_template', 'tenant_{id}',
     'how a tenant id becomes a schema name: {id} is replaced by the id with "-" mapped to "_"'),
    ('shared_schema', 'public',
     'the schema holding shared (non-tenant) tables; never used as a tenant schema'),
    ('schema_owner', '',
     'role that owns new tenant schemas; empty means the extension owner'),
    ('tracking_table', '__drizzle_migrations',
     'name of the table, in each tenant schema and in the shared schema, that records applied migrations'),
    ('tracking_format', 'name',
     'format of new tracking tables: name, hash or drizzle-kit (existing tables keep theirs, detected per schema)'),
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
     'comma-separated extensions that tenant migrations may create (once, database-wide, by the extension owner)');

-- User choices only: a key absent here has its default. pg_dump keeps the rows, and a
-- restore cannot collide with defaults written by CREATE EXTENSION.
CREATE TABLE mt.config (
    key        text PRIMARY KEY REFERENCES mt.config_options (key),
    value      text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    updated_by name NOT NULL DEFAULT session_user
);
COMMENT ON TABLE mt.config IS
    'multitenant: settings changed from their defaults (kept by pg_dump); change them with mt.set_config()';
SELECT pg_catalog.pg_extension_config_dump('mt.config', '');

CREATE VIEW mt.settings AS
SELECT o.key,
       coalesce(c.value, o.default_value) AS value,
       o.default_value,
       c.key IS NULL                      AS is_default,
       c.updated_at,
       c.updated_by,
       o.description
  FROM mt.config_options o
  LEFT JOIN mt.config c USING (key)
 ORDER BY o.key;
COMMENT ON VIEW mt.settings IS
    'multitenant: the effective value of every setting, whether it is the default, and what it does';

CREATE FUNCTION mt.get_config(key text)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result text;
BEGIN
    SELECT coalesce(c.value, o.default_value)
      INTO result
      FROM mt.config_options o
      LEFT JOIN mt.config c ON c.key = o.key
     WHERE o.key = get_config.key;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown multitenant setting "%"', get_config.key
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'SELECT key FROM mt.settings lists the settings.';
    END IF;
    RETURN result;
END
$$;
COMMENT ON FUNCTION mt.get_config(text) IS
    'multitenant: the effective value of a setting (its default unless changed)';
