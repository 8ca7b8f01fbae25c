-- Loading migration folders from the server's filesystem: drizzle-kit and numbered.
\i pg_test/helpers.sql

-- A realistic drizzle-kit folder: enums in DO blocks, "public". qualifiers, breakpoints.
SELECT count(*) AS migrations, min(idx), max(idx), bool_and(action = 'added') AS all_added
  FROM mt.load_migrations('/tmp/mt_regress_fixtures/drizzle');
SELECT action, count(*) FROM mt.load_migrations('/tmp/mt_regress_fixtures/drizzle') GROUP BY action ORDER BY action;
SELECT name, journal_when FROM mt.migrations WHERE idx IN (0, 21) ORDER BY idx;
SELECT name, sha256 = encode(sha256(convert_to(sql, 'UTF8')), 'hex') AS drizzle_hash
  FROM mt.read_migration_folder('/tmp/mt_regress_fixtures/drizzle') WHERE idx = 0;

-- Applied to many tenants: every tenant gets its own enums, tables and foreign keys, and
-- nothing is created in public.
SELECT count(*) FROM (SELECT mt.create_tenant(format('shop%s', g), migrate => false) FROM generate_series(1, 12) g) s;
SELECT status, count(*), sum(applied) FROM mt.migrate_all(concurrency => 4) GROUP BY status ORDER BY status;
SELECT count(*) AS objects_in_public FROM pg_class WHERE relnamespace = 'public'::regnamespace;
SELECT count(*) AS types_in_public FROM pg_type WHERE typnamespace = 'public'::regnamespace;
SELECT n.nspname, count(*) FILTER (WHERE t.typtype = 'e') AS enums
  FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
 WHERE n.nspname IN ('tenant_shop1', 'tenant_shop12') GROUP BY 1 ORDER BY 1;
SELECT conrelid::regclass, confrelid::regclass
  FROM pg_constraint WHERE conname = 'tasks_project_id_projects_id_fk' AND conrelid::regclass::text LIKE 'tenant%'
 ORDER BY conrelid::regclass::text LIMIT 2;
SELECT format_type(a.atttypid, a.atttypmod) AS priority_type
  FROM pg_attribute a WHERE a.attrelid = 'tenant_shop3.tasks'::regclass AND a.attname = 'priority';
INSERT INTO tenant_shop3.teams (name, slug) VALUES ('a', 'a') RETURNING id;
SELECT count(*) FROM tenant_shop4.teams;
SELECT count(*) FILTER (WHERE pending = 0) AS current, count(*) FROM mt.status;

-- Shared migrations go to the shared schema with their own tracking table; tenant
-- migrations keep "public". qualifiers that name shared objects.
SELECT mt.add_migration('0000_countries',
    'CREATE TABLE countries (code char(2) PRIMARY KEY); INSERT INTO countries VALUES (''de''), (''fr'');
     CREATE FUNCTION order_ref() RETURNS text LANGUAGE sql AS $$SELECT ''ord-'' || md5(random()::text)$$;
     -- tenant code runs as tenant roles: what they may use of the shared schema is granted
     GRANT SELECT, REFERENCES ON countries TO mt_tenant;',
    scope => 'shared');
SELECT tenant_id, schema_name, status, applied FROM mt.migrate_shared(dry_run => true);
SELECT tenant_id, schema_name, status, applied FROM mt.migrate_shared();
SELECT tenant_id, schema_name, status, applied FROM mt.migrate_shared();
SELECT name FROM public.__drizzle_migrations;
SELECT pg_temp.attempt('SELECT * FROM mt.load_migrations(''/tmp/mt_regress_fixtures/shared_refs'')') AS idx_clash;
DELETE FROM mt.migrations WHERE scope = 'tenant';
SELECT count(*) FROM mt.load_migrations('/tmp/mt_regress_fixtures/shared_refs');
SELECT tenant_id, status, applied FROM mt.migrate_tenant('shop1');
SELECT conrelid::regclass::text AS tenant_table, n.nspname || '.' || c.relname AS references
  FROM pg_constraint k JOIN pg_class c ON c.oid = k.confrelid JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE k.conname = 'orders_country_code_countries_code_fk';
INSERT INTO tenant_shop1.orders (country_code) VALUES ('de') RETURNING ref LIKE 'ord-%' AS shared_default;
SELECT pg_temp.attempt('INSERT INTO tenant_shop1.orders (country_code) VALUES (''xx'')') AS fk_to_shared;

-- Numbered folders.
SELECT idx, name, action FROM mt.load_migrations('/tmp/mt_regress_fixtures/numbered', scope => 'shared');

-- Malformed folders are errors (nothing registered) or warnings, never silent.
SELECT count(*) AS before FROM mt.migrations \gset
SELECT label, pg_temp.attempt(format('SELECT * FROM mt.load_migrations(%L)', '/tmp/mt_regress_fixtures/' || dir)) AS result
  FROM (VALUES ('malformed json', 'bad_json'),
               ('journal entry without file', 'missing_file'),
               ('duplicate numbers', 'dup_numbers'),
               ('unnumbered file', 'unnumbered'),
               ('no such folder', 'nope')) AS v(label, dir);
SELECT count(*) - :before AS registered FROM mt.migrations;
SELECT name FROM mt.read_migration_folder('/tmp/mt_regress_fixtures/unlisted');

-- Changed content under a registered name is an error naming it, unless replace.
SELECT pg_temp.attempt($$SELECT mt.add_migration('0001_items', 'CREATE TABLE items ();', scope => 'shared')$$) AS changed;
SELECT mt.add_migration('0001_items', 'CREATE TABLE items ();', scope => 'shared', replace => true);

-- Reading server files needs superuser or pg_read_server_files.
CREATE ROLE regress_folder_reader;
GRANT mt_admin TO regress_folder_reader;
SET ROLE regress_folder_reader;
SELECT pg_temp.attempt('SELECT * FROM mt.load_migrations(''/tmp/mt_regress_fixtures/numbered'')') AS not_allowed;
RESET ROLE;
GRANT pg_read_server_files TO regress_folder_reader;
SET ROLE regress_folder_reader;
SELECT count(*) FROM mt.read_migration_folder('/tmp/mt_regress_fixtures/numbered');
RESET ROLE;
DROP ROLE regress_folder_reader;
