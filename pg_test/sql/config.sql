-- mt.config, mt.settings, mt.get_config / mt.set_config / mt.reset_config.
\i pg_test/helpers.sql

SELECT key, value, default_value, is_default FROM mt.settings;

-- Changing and resetting.
SELECT mt.set_config('schema_template', 'customer_{id}');
SELECT mt.get_config('schema_template');
SELECT key, value FROM mt.config;
SELECT key, value, is_default FROM mt.settings WHERE key = 'schema_template';
SELECT mt.reset_config('schema_template');
SELECT count(*) AS overrides FROM mt.config;

-- Invalid values are refused with 22023 and change nothing.
SELECT pg_temp.attempt(format('SELECT mt.set_config(%L, %L)', k, v)) AS result
  FROM (VALUES ('schema_template', 'tenant_'),
               ('schema_template', '{id}_{id}'),
               ('schema_template', 'Tenant_{id}'),
               ('schema_template', 't-{id}'),
               ('schema_template', 'pg_{id}'),
               ('schema_template', 'tenant"; drop table x; --{id}'),
               ('schema_template', repeat('t', 63) || '{id}'),
               ('shared_schema', 'Shared'),
               ('schema_owner', 'no_such_role'),
               ('no_such_key', 'x'),
               ('schema_template', NULL)) AS v(k, v);
SELECT pg_temp.attempt('SELECT mt.get_config(''no_such_key'')') AS unknown_key;
SELECT count(*) AS overrides FROM mt.config;

-- Writing mt.config directly is held to the same rules.
SELECT pg_temp.attempt('INSERT INTO mt.config (key, value) VALUES (''schema_template'', ''x'')') AS direct_insert;

-- A shared schema may not be a tenant's schema.
SELECT tenant_id FROM mt.create_tenant('acme');
SELECT pg_temp.attempt('SELECT mt.set_config(''shared_schema'', ''tenant_acme'')') AS shared_is_tenant;

-- Changing the template with tenants registered warns; they keep their schemas.
SELECT mt.set_config('schema_template', 'customer_{id}');
SELECT tenant_id, schema_name FROM mt.tenants;
SELECT mt.schema_name('beta');

-- schema_owner: new tenant schemas belong to that role.
CREATE ROLE regress_owner NOLOGIN;
SELECT mt.set_config('schema_owner', 'regress_owner');
SELECT schema_name FROM mt.create_tenant('beta');
SELECT nspname, pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = 'customer_beta';
SELECT mt.drop_tenant('beta');
SELECT mt.reset_config('schema_owner');
DROP ROLE regress_owner;

-- mt.config is dumped by pg_dump; mt.config_options (defaults) and mt.template_scripts (a cache) are not.
SELECT c.relname, c.oid = ANY (e.extconfig) AS dumped
  FROM pg_extension e, pg_class c
 WHERE e.extname = 'multitenant' AND c.relnamespace = 'mt'::regnamespace AND c.relkind = 'r'
 ORDER BY 1;
