-- mt.tenants, mt.create_tenant, mt.drop_tenant, mt.adopt_tenants.
\i pg_test/helpers.sql

SELECT tenant_id, schema_name, status, metadata FROM mt.create_tenant('acme', '{"plan": "pro"}');
SELECT tenant_id, schema_name FROM mt.create_tenant('0b0e4a3c-9d4f-4d1a-8f5e-6a1b2c3d4e5f');
SELECT nspname FROM pg_namespace WHERE nspname LIKE 'tenant\_%' ORDER BY 1;
SELECT tenant_id, schema_name, status, metadata FROM mt.tenants ORDER BY tenant_id;

-- An existing tenant is an error, unless if_not_exists.
SELECT pg_temp.attempt('SELECT mt.create_tenant(''acme'')') AS again;
SELECT tenant_id, metadata FROM mt.create_tenant('acme', if_not_exists => true);

-- Two ids that map to one schema never share it.
SELECT tenant_id FROM mt.create_tenant('acme-eu');
SELECT pg_temp.attempt('SELECT mt.create_tenant(''acme_eu'')') AS collision;

-- A schema that exists but is not registered is not silently taken over.
CREATE SCHEMA tenant_legacy;
SELECT pg_temp.attempt('SELECT mt.create_tenant(''legacy'')') AS unregistered_schema;

-- Metadata must be an object.
SELECT pg_temp.attempt('SELECT mt.create_tenant(''meta'', ''[1]'')') AS array_metadata;
SELECT pg_temp.attempt('SELECT mt.create_tenant(''meta'', NULL)') AS null_metadata;

-- Hostile ids: 22023, and no schema appears.
SELECT count(*) AS schemas_before FROM pg_namespace \gset
SELECT label, pg_temp.attempt(format('SELECT mt.create_tenant(%L)', id)) AS result
  FROM (VALUES ('injection', 'x; drop table t'),
               ('quotes', 'a''"b'),
               ('backslash', 'a\b'),
               ('unicode', 'tenänt'),
               ('empty', ''),
               ('64 bytes', repeat('a', 64)),
               ('null', NULL)) AS v(label, id);
SELECT mt.set_config('schema_template', '{id}');
SELECT id, pg_temp.attempt(format('SELECT mt.create_tenant(%L)', id)) AS result
  FROM (VALUES ('public'), ('pg_catalog'), ('information_schema'), ('mt'), ('mt_x'), ('select')) AS v(id);
SELECT mt.reset_config('schema_template');
SELECT count(*) - :schemas_before AS schemas_created FROM pg_namespace;
SELECT count(*) AS tenants FROM mt.tenants;

-- drop_tenant: an empty schema goes quietly; a non-empty one needs force.
SELECT mt.drop_tenant('0b0e4a3c-9d4f-4d1a-8f5e-6a1b2c3d4e5f');
CREATE TABLE tenant_acme.users (id int PRIMARY KEY, email text);
CREATE TYPE tenant_acme.mood AS ENUM ('ok');
SELECT pg_temp.attempt('SELECT mt.drop_tenant(''acme'')') AS not_empty;
SELECT count(*) AS still_there FROM pg_namespace WHERE nspname = 'tenant_acme';
SELECT mt.drop_tenant('acme', force => true) AS objects_dropped;
SELECT count(*) AS gone FROM pg_namespace WHERE nspname = 'tenant_acme';

-- Unknown tenants.
SELECT pg_temp.attempt('SELECT mt.drop_tenant(''nobody'')') AS unknown;
SELECT mt.drop_tenant('nobody', if_exists => true);

-- A tenant whose schema was dropped behind our back can still be unregistered.
DROP SCHEMA tenant_acme_eu CASCADE;
SELECT mt.drop_tenant('acme-eu');
SELECT count(*) AS tenants FROM mt.tenants;

-- adopt_tenants registers existing schemas that follow the template, keeping their data.
CREATE SCHEMA tenant_old_one;
CREATE TABLE tenant_old_one.t (x int);
INSERT INTO tenant_old_one.t VALUES (1);
CREATE SCHEMA tenant_old_two;
CREATE SCHEMA "tenant_Bad";
CREATE SCHEMA other_schema;
SELECT * FROM mt.adopt_tenants(dry_run => true);
SELECT count(*) AS tenants_after_dry_run FROM mt.tenants;
SELECT * FROM mt.adopt_tenants('tenant\_old\_%');
SELECT * FROM mt.adopt_tenants();
SELECT tenant_id, schema_name, metadata FROM mt.tenants ORDER BY tenant_id;
SELECT x FROM tenant_old_one.t;
-- An adopted schema has no tracking table yet; its objects still count.
SELECT mt.schema_object_count('tenant_old_one') AS objects;
SELECT pg_temp.attempt('SELECT mt.drop_tenant(''old_one'')') AS adopted_not_empty;
SELECT count(*) AS still_there FROM pg_namespace WHERE nspname = 'tenant_old_one';
SELECT pg_temp.attempt('SELECT * FROM mt.adopt_tenants(NULL)') AS null_pattern;

-- The tenant table rejects a hand-written schema name that would need quoting.
SELECT pg_temp.attempt('INSERT INTO mt.tenants (tenant_id, schema_name) VALUES (''evil'', ''Evil Schema'')') AS hand_written;

-- Every public object has a comment.
SELECT c.relname AS uncommented_relation
  FROM pg_class c
 WHERE c.relnamespace = 'mt'::regnamespace AND c.relkind IN ('r', 'v', 'm')
   AND obj_description(c.oid, 'pg_class') IS NULL;
SELECT p.oid::regprocedure AS uncommented_function
  FROM pg_proc p
 WHERE p.pronamespace = 'mt'::regnamespace AND obj_description(p.oid, 'pg_proc') IS NULL;
