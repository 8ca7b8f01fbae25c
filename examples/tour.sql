-- The multitenant tour: run by `make demo` against a fresh database.
\set SHOW_CONTEXT never
\pset footer off
-- Roles are cluster-wide and outlive a dropped database: drop the tenant roles an earlier run
-- of the tour left behind for a database of this name (this one is new, so none are its own).
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT a.rolname FROM pg_authid a JOIN pg_shdescription d ON d.objoid = a.oid AND d.classoid = 'pg_authid'::regclass
              WHERE d.description LIKE 'multitenant: role of tenant % in database ' || current_database() LOOP
        EXECUTE format('DROP ROLE %I', r.rolname);
    END LOOP;
END
$$;
\echo '== 1. Install the extension: everything lives in schema mt'
CREATE EXTENSION IF NOT EXISTS multitenant;
\dx multitenant

\echo '== 2. Settings: read them from mt.settings, change them with mt.set_config()'
SELECT key, value, is_default FROM mt.settings;

\echo '== 3. Naming: a tenant id becomes a schema name that never needs quoting'
SELECT id, mt.schema_name(id) AS schema_name
  FROM (VALUES ('acme'), ('globex-eu'), ('0b0e4a3c-9d4f-4d1a-8f5e-6a1b2c3d4e5f')) AS v(id);

\echo '== 4. Hostile ids are refused with SQLSTATE 22023 and a message naming the rule'
\set ON_ERROR_STOP 0
SELECT mt.schema_name('x; drop table t');
\echo '   -> SQLSTATE' :LAST_ERROR_SQLSTATE
SELECT mt.create_tenant(repeat('a', 64));
\echo '   -> SQLSTATE' :LAST_ERROR_SQLSTATE
\set ON_ERROR_STOP 1

\echo '== 5. Provision tenants: schema + role + registry row, atomically'
SELECT tenant_id, schema_name, metadata FROM mt.create_tenant('acme', '{"plan": "pro"}');
SELECT tenant_id, schema_name FROM mt.create_tenant('globex-eu');
SELECT tenant_id, schema_name FROM mt.create_tenant('acme', if_not_exists => true);
SELECT tenant_id, schema_name, role_name, status, metadata FROM mt.tenants ORDER BY tenant_id;

\echo '== 6. Adopt schemas made by another tool (e.g. drizzle-multitenant) without moving data'
CREATE SCHEMA tenant_legacy_co;
CREATE TABLE tenant_legacy_co.invoices (id int PRIMARY KEY, total numeric(12,2));
SELECT * FROM mt.adopt_tenants();

\echo '== 7. Dropping refuses a schema that still holds objects unless force => true'
\set ON_ERROR_STOP 0
SELECT mt.drop_tenant('legacy_co');
\echo '   -> SQLSTATE' :LAST_ERROR_SQLSTATE
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SELECT mt.drop_tenant('legacy_co', force => true) AS objects_dropped;
RESET client_min_messages;
SELECT tenant_id, schema_name FROM mt.tenants ORDER BY tenant_id;

\echo '== 8. Register a drizzle-kit migration folder (22 migrations: enums in DO blocks, "public". qualifiers, breakpoints)'
SELECT action, count(*) FROM mt.load_migrations(:'drizzle_dir') GROUP BY action;
SELECT idx, name, left(sha256, 12) AS sha256, journal_when FROM mt.migrations ORDER BY idx LIMIT 5;

\echo '== 9. New tenants are created already migrated, in one transaction'
SELECT tenant_id, schema_name, tracking_format FROM mt.create_tenant('initech');
SELECT tenant_id, format, applied, pending FROM mt.status ORDER BY tenant_id;

\echo '== 10. Migrate every tenant in parallel background workers'
SELECT tenant_id, applied, pending, status, error FROM mt.migrate_all(concurrency => 2);
SELECT * FROM mt.migrate_all(dry_run => true);
\echo '   Each tenant got its own enum types; nothing was created in public:'
SELECT n.nspname AS schema, count(*) AS enum_types
  FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
 WHERE t.typtype = 'e' GROUP BY 1 ORDER BY 1;
SELECT run_id, operation, status, tenants, done, failed, migrations_applied FROM mt.run_progress;

\echo '== 11. A migration that fails in one tenant stops that tenant only'
CREATE TABLE tenant_acme.legacy_flags (id int);
SELECT mt.add_migration('0022_legacy_flags', 'CREATE TABLE legacy_flags (id int PRIMARY KEY);') AS registered;
SELECT tenant_id, applied, status, sqlstate, error FROM mt.migrate_all();
SELECT tenant_id, applied, pending, pending_names FROM mt.status WHERE pending > 0;
DROP TABLE tenant_acme.legacy_flags;
SELECT tenant_id, applied, status FROM mt.migrate_all(tenant_ids => ARRAY['acme']);

\echo '== 12. Tracking formats: convert one tenant to drizzle-orm''s own format and back'
SELECT tenant_id, status, applied FROM mt.convert_tracking('drizzle-kit', ARRAY['initech']);
SELECT id, left(hash, 12) AS hash, created_at FROM tenant_initech.__drizzle_migrations ORDER BY id LIMIT 3;
SELECT tenant_id, status, applied FROM mt.convert_tracking('name', ARRAY['initech']);

\echo '== 13. Drift: a hand-made change in one tenant, found against mt_template'
ALTER TABLE tenant_globex_eu.users ALTER COLUMN name TYPE varchar(100);
DROP INDEX tenant_globex_eu.tasks_open_idx;
SELECT tenant_id, has_drift, differences, left(fingerprint, 12) AS fingerprint FROM mt.drift_summary ORDER BY tenant_id;
SELECT tenant_id, object_type, object_name, change, expected ->> 'type' AS expected_type, actual ->> 'type' AS actual_type
  FROM mt.drift_report ORDER BY tenant_id, object_type;

\echo '== 14. Clone a tenant with its rows, personal data anonymized; drift proves the copy exact'
INSERT INTO tenant_acme.users (email, name) VALUES ('ann@acme.test', 'Ann Archer'), ('bob@acme.test', 'Bob Baker');
SELECT tenant_id, schema_name FROM mt.clone_tenant('acme', 'acme-staging', include_data => true, anonymize => '{
    "users": {"email": {"template": "user-{hash}@example.com"}, "name": null}}');
SELECT id, left(email, 20) || '…' AS email, name FROM tenant_acme_staging.users ORDER BY id;
SELECT count(*) AS differences FROM mt.tenant_drift('acme-staging', 'acme');

\echo '== 15. New tenants are copies of mt_template when it is current (no migration replay)'
SELECT mt.template_is_current();
SELECT tenant_id FROM mt.create_tenant('hooli');
SELECT tenant_id, status, sqlstate FROM mt.create_tenants(ARRAY['pied-piper', 'raviga', 'bad id!'], concurrency => 2);

\echo '== 16. Seeds: run once per tenant, with a history; forced reruns are recorded'
SELECT name, scope FROM mt.register_seed('starter-teams',
    $$INSERT INTO teams (name, slug) VALUES ('Everyone', 'everyone') ON CONFLICT DO NOTHING$$);
SELECT tenant_id, status FROM mt.seed_all('starter-teams', concurrency => 2) ORDER BY tenant_id;
SELECT tenant_id, status FROM mt.seed_all('starter-teams', tenant_ids => ARRAY['hooli']);
SELECT seed_name, count(*) AS tenants_seeded FROM mt.seed_history GROUP BY 1;

\echo '== 17. Health: one verdict per tenant, a JSON check for load balancers, Prometheus metrics'
DROP TABLE tenant_raviga.__drizzle_migrations;
SELECT tenant_id, status, reasons FROM mt.health ORDER BY tenant_id;
SELECT h -> 'healthy' AS healthy, h -> 'totalPools' AS pools, h -> 'degradedPools' AS degraded,
       h -> 'unhealthyPools' AS unhealthy, h -> 'sharedDb' AS shared_db
  FROM mt.health_check() h;
SELECT line FROM regexp_split_to_table(mt.metrics(), E'\n') AS line
 WHERE line ~ '^(# TYPE )?multitenant_(tenants|pending_migrations|drift_tenants|background_workers)[ {]';

\echo '== 18. Isolation by role: every tenant has its own role; the application logs in as a role that sees no tenant until it switches'
SELECT t.tenant_id, t.role_name, r.rolsuper, r.rolcanlogin, pg_has_role(t.role_name, 'mt_tenant', 'MEMBER') AS in_mt_tenant
  FROM mt.tenants t JOIN pg_roles r ON r.rolname = t.role_name ORDER BY t.tenant_id;
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'tour_app') THEN
        CREATE ROLE tour_app LOGIN NOINHERIT;
    END IF;
END
$$;
SELECT mt.grant_application_role('tour_app');
SET ROLE tour_app;
\echo '   tour_app itself (NOINHERIT) reads no tenant:'
DO $$
BEGIN
    PERFORM count(*) FROM tenant_acme.users;
    RAISE EXCEPTION 'as %, tenant_acme.users was readable without switching: isolation is broken', current_user;
EXCEPTION WHEN insufficient_privilege THEN
    RAISE NOTICE 'as %, reading tenant_acme.users fails: % (SQLSTATE %)', current_user, SQLERRM, SQLSTATE;
END
$$;
\echo '   Switched to acme for one transaction, unqualified names are acme''s tables:'
BEGIN;
SELECT set_config('role', role_name, true) AS role, set_config('search_path', quote_ident(schema_name), true) AS search_path
  FROM mt.tenant_directory WHERE tenant_id = 'acme';
SELECT current_user, id, email FROM users ORDER BY id;
\echo '   Another tenant''s table, even schema-qualified, is out of reach:'
DO $$
BEGIN
    PERFORM count(*) FROM tenant_globex_eu.users;
    RAISE EXCEPTION 'as %, tenant_globex_eu.users was readable: isolation is broken', current_user;
EXCEPTION WHEN insufficient_privilege THEN
    RAISE NOTICE 'as %, reading tenant_globex_eu.users fails: % (SQLSTATE %)', current_user, SQLERRM, SQLSTATE;
END
$$;
COMMIT;
RESET ROLE;
