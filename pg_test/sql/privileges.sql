-- Nothing in mt is usable by PUBLIC; mt_admin may use everything.
\i pg_test/helpers.sql

SELECT rolname, rolcanlogin FROM pg_roles WHERE rolname = 'mt_admin';

-- No function of the extension is executable by PUBLIC; mt_admin may execute every one in
-- mt. The internal helpers in mt_internal are for the extension's own functions (which
-- call them as the extension owner); operators get only those the public views call.
SELECT count(*) AS public_executable
  FROM pg_proc p
 WHERE p.pronamespace IN ('mt'::regnamespace, 'mt_internal'::regnamespace)
   AND has_function_privilege('public', p.oid, 'EXECUTE');
SELECT count(*) AS not_granted_to_admin
  FROM pg_proc p
 WHERE p.pronamespace = 'mt'::regnamespace
   AND NOT has_function_privilege('mt_admin', p.oid, 'EXECUTE');
SELECT p.oid::regprocedure AS internal_granted_to_admin
  FROM pg_proc p
 WHERE p.pronamespace = 'mt_internal'::regnamespace
   AND has_function_privilege('mt_admin', p.oid, 'EXECUTE')
 ORDER BY 1::text;

CREATE ROLE regress_app LOGIN;
CREATE ROLE regress_operator LOGIN IN ROLE mt_admin;

-- A role outside mt_admin is refused.
SET ROLE regress_app;
SELECT pg_temp.attempt('SELECT mt.create_tenant(''acme'')') AS app_create;
SELECT pg_temp.attempt('SELECT mt.schema_name(''acme'')') AS app_schema_name;
SELECT pg_temp.attempt('SELECT * FROM mt.tenants') AS app_read;
SELECT pg_temp.attempt('SELECT mt.set_config(''schema_template'', ''x_{id}'')') AS app_config;
RESET ROLE;

-- A member of mt_admin manages tenants without being superuser, but cannot write the
-- registry behind the functions' back.
SET ROLE regress_operator;
SELECT tenant_id, schema_name FROM mt.create_tenant('acme');
SELECT tenant_id FROM mt.tenants;
SELECT pg_temp.attempt('DELETE FROM mt.tenants') AS operator_delete;
SELECT pg_temp.attempt('INSERT INTO mt.config (key, value) VALUES (''schema_owner'', '''')') AS operator_config_insert;
SELECT mt.drop_tenant('acme');
RESET ROLE;

DROP ROLE regress_app;
DROP ROLE regress_operator;

-- Every function of the extension resolves names through pg_catalog first, whoever calls it;
-- but mt_internal.strip_schema, pure Rust that looks no name up, called for every row the
-- drift views read.
SELECT p.oid::regprocedure AS without_pinned_search_path
  FROM pg_proc p
 WHERE p.pronamespace IN ('mt'::regnamespace, 'mt_internal'::regnamespace)
   AND p.oid <> 'mt_internal.strip_schema(text, text)'::regprocedure
   AND NOT EXISTS (SELECT FROM unnest(p.proconfig) c WHERE c LIKE 'search\_path=pg\_catalog, pg\_temp');

-- mt_monitor reads health, status, drift and metrics, and nothing that writes or shows SQL.
CREATE ROLE regress_probe LOGIN IN ROLE mt_monitor;
SET ROLE regress_probe;
SELECT count(*) >= 0 AS health FROM mt.health;
SELECT count(*) >= 0 AS status FROM mt.status;
SELECT count(*) >= 0 AS drift FROM mt.drift_summary;
SELECT mt.metrics() LIKE '%multitenant_%' AS metrics;
SELECT (mt.health_check() ->> 'healthy') IS NOT NULL AS health_check;
SELECT pg_temp.attempt('SELECT * FROM mt.migrations') AS migration_sql;
SELECT pg_temp.attempt('SELECT * FROM mt.template_scripts') AS template_sql;
SELECT pg_temp.attempt('SELECT * FROM mt.migrate_all()') AS migrate;
SELECT pg_temp.attempt('SELECT mt.create_tenant(''probe'')') AS create_tenant;
SELECT pg_temp.attempt('SELECT mt.set_config(''tracking_format'', ''hash'')') AS set_config;
RESET ROLE;
DROP ROLE regress_probe;
