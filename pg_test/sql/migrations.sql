-- The migration registry, loaders, tracking formats, status views and runs.
\i pg_test/helpers.sql

-- add_migration: idempotent for identical content, immutable otherwise.
SELECT mt.add_migration('0000_users', 'CREATE TABLE users (id serial PRIMARY KEY, email text NOT NULL);');
SELECT mt.add_migration('0000_users', 'CREATE TABLE users (id serial PRIMARY KEY, email text NOT NULL);');
SELECT pg_temp.attempt($$SELECT mt.add_migration('0000_users', 'CREATE TABLE users ();')$$) AS changed_content;
SELECT mt.add_migration('0001_posts', 'CREATE TABLE posts (id serial PRIMARY KEY, user_id int REFERENCES users);');
SELECT scope, idx, name, sha256 = encode(sha256(convert_to(sql, 'UTF8')), 'hex') AS hashed FROM mt.migrations ORDER BY idx;
SELECT label, pg_temp.attempt(sql) AS result
  FROM (VALUES ('bad scope', $$SELECT mt.add_migration('x', 'SELECT 1', scope => 'global')$$),
               ('null sql', $$SELECT mt.add_migration('x', NULL)$$),
               ('empty name', $$SELECT mt.add_migration('', 'SELECT 1')$$),
               ('idx taken', $$SELECT mt.add_migration('x', 'SELECT 1', idx => 0)$$)) AS v(label, sql);

-- Tenants are migrated when created, in the same transaction.
SELECT tenant_id, tracking_format FROM mt.create_tenant('alpha');
SELECT name FROM tenant_alpha.__drizzle_migrations ORDER BY id;
SELECT tenant_id, format, applied, pending, pending_names FROM mt.status;

-- A failing migration means the tenant is not created at all.
SELECT mt.add_migration('0002_fails_for_beta', $$DO $x$ BEGIN
    IF current_schema() = 'tenant_beta' THEN RAISE EXCEPTION 'beta cannot have this' USING ERRCODE = 'check_violation'; END IF;
END $x$;$$);
SELECT pg_temp.attempt('SELECT mt.create_tenant(''beta'')') AS create_beta;
SELECT count(*) AS beta_left_behind FROM pg_namespace WHERE nspname = 'tenant_beta';
SELECT count(*) AS beta_registered FROM mt.tenants WHERE tenant_id = 'beta';

-- migrate_all: one failing tenant among twenty stops at its last good migration; the
-- others are migrated; rerunning resumes. (The empty t1..t19 get a copy of the template;
-- beta holds a table of its own, so its migrations are applied one by one.)
SELECT count(*) FROM (SELECT mt.create_tenant(format('t%s', g), migrate => false) FROM generate_series(1, 19) g) s;
SELECT tenant_id FROM mt.create_tenant('beta', migrate => false);
CREATE TABLE tenant_beta.imported (id int);
SELECT status, count(*), sum(applied) AS applied, min(sqlstate) AS sqlstate, min(error) AS error
  FROM mt.migrate_all(concurrency => 3) GROUP BY status ORDER BY status;
SELECT tenant_id, applied, pending, pending_names FROM mt.status WHERE pending > 0;
SELECT name FROM tenant_beta.__drizzle_migrations ORDER BY id;
SELECT count(*) AS beta_has_posts FROM pg_tables WHERE schemaname = 'tenant_beta' AND tablename = 'posts';
SELECT status, count(*) FROM mt.migrate_all() GROUP BY status ORDER BY status;
SELECT operation, status, tenants, succeeded, failed FROM mt.runs WHERE operation = 'migrate' ORDER BY run_id DESC LIMIT 2;
-- Each migrate_all also brings the template schema, the reference for drift, up to date
-- (the 22nd item of those runs).
SELECT CASE WHEN tenant_id LIKE 'schema:%' THEN tenant_id ELSE 'tenants' END AS item, status, count(*) FROM mt.run_tenants
 WHERE run_id = (SELECT min(run_id) FROM mt.runs WHERE operation = 'migrate' AND tenants = 22)
 GROUP BY 1, 2 ORDER BY 1, 2;
SELECT name FROM mt_template.__drizzle_migrations ORDER BY id;

-- Fix the migration by hand for beta: mark it applied without running it.
SELECT tenant_id, applied, pending, status FROM mt.migrate_tenant('beta', mark_applied => true);
SELECT count(*) FILTER (WHERE pending = 0) AS current, count(*) AS tenants FROM mt.status;

-- dry_run changes nothing.
SELECT mt.add_migration('0003_comments', 'CREATE TABLE comments (id int);');
SELECT status, pending, count(*) FROM mt.migrate_all(dry_run => true) GROUP BY status, pending ORDER BY 1, 2;
SELECT count(*) AS comments_tables FROM pg_tables WHERE tablename = 'comments';
SELECT count(*) AS recorded FROM mt.tracking_records WHERE name = '0003_comments';

-- A subset of tenants; unknown ids are an error naming them.
SELECT tenant_id, status, applied FROM mt.migrate_all(tenant_ids => ARRAY['alpha', 't1']);
SELECT pg_temp.attempt('SELECT * FROM mt.migrate_all(tenant_ids => ARRAY[''alpha'', ''nobody'', ''ghost''])') AS unknown;
SELECT pg_temp.attempt('SELECT * FROM mt.migrate_all(concurrency => 0)') AS zero_workers;
SELECT pg_temp.attempt('SELECT * FROM mt.migrate_tenant(''nobody'')') AS unknown_tenant;

-- Workers cannot see uncommitted rows, so a transaction that wrote first is refused.
BEGIN;
SELECT tenant_id FROM mt.create_tenant('late', migrate => false);
SELECT pg_temp.attempt('SELECT * FROM mt.migrate_all()') AS after_write;
ROLLBACK;

-- sync_status, mark_missing and clean_orphans.
SELECT status, count(*) FROM mt.migrate_all() GROUP BY status ORDER BY status;
INSERT INTO tenant_t2.__drizzle_migrations (name) VALUES ('0099_removed_from_disk');
SELECT status, pending FROM mt.migrate_all(tenant_ids => ARRAY['t2'], dry_run => true);
SELECT status, applied FROM mt.migrate_all(tenant_ids => ARRAY['t2']);
SELECT tenant_id, missing, orphans FROM mt.sync_status WHERE missing <> '{}' OR orphans <> '{}' ORDER BY 1;
SELECT tenant_id, status, applied FROM mt.clean_orphans(dry_run => true) WHERE status <> 'unchanged' ORDER BY 1;
SELECT tenant_id, status, applied FROM mt.clean_orphans() WHERE status <> 'unchanged' ORDER BY 1;
SELECT name FROM tenant_t2.__drizzle_migrations WHERE name LIKE '0099%';
-- A record deleted behind the engine's back is never replayed: the tenant fails until
-- mt.repair_tracking writes the record back from the ledger...
DELETE FROM tenant_t3.__drizzle_migrations WHERE name = '0003_comments';
SELECT tenant_id, status, applied, sqlstate, migration FROM mt.migrate_all(tenant_ids => ARRAY['t3']);
SELECT tenant_id, status, sqlstate FROM mt.migrate_tenant('t3', dry_run => true);
SELECT * FROM mt.repair_tracking(ARRAY['t3']);
SELECT name FROM tenant_t3.__drizzle_migrations WHERE name = '0003_comments';
SELECT tenant_id, status, applied FROM mt.migrate_all(tenant_ids => ARRAY['t3']);
-- ...or accepts the table as it is (the ledger forgets; mark_missing records it again).
DELETE FROM tenant_t3.__drizzle_migrations WHERE name = '0003_comments';
SELECT * FROM mt.repair_tracking(ARRAY['t3'], source => 'tracking');
SELECT tenant_id, status, applied FROM mt.mark_missing(ARRAY['t3']);
SELECT count(*) AS comments_in_t3 FROM pg_tables WHERE schemaname = 'tenant_t3' AND tablename = 'comments';
-- A dropped tracking table is the same: nothing replayed, repaired from the ledger.
DROP TABLE tenant_t3.__drizzle_migrations;
SELECT tenant_id, status, sqlstate, left(error, 95) AS error FROM mt.migrate_all(tenant_ids => ARRAY['t3']);
SELECT * FROM mt.repair_tracking(ARRAY['t3']);
SELECT tenant_id, status, applied FROM mt.migrate_all(tenant_ids => ARRAY['t3']);
SELECT pg_temp.attempt($$SELECT * FROM mt.repair_tracking(ARRAY['t3'], source => 'nowhere')$$) AS bad_source;
-- Rows another tool writes reach the ledger (and mt.status) at once, without a run.
INSERT INTO tenant_t3.__drizzle_migrations (name) VALUES ('0004_by_another_tool');
SELECT tenant_id, orphans FROM mt.sync_status WHERE tenant_id = 't3';
DELETE FROM tenant_t3.__drizzle_migrations WHERE name = '0004_by_another_tool';
SELECT * FROM mt.repair_tracking(ARRAY['t3'], source => 'tracking');
SELECT tenant_id, missing, orphans FROM mt.sync_status WHERE missing <> '{}' OR orphans <> '{}';

-- convert_tracking round-trips name -> hash -> drizzle-kit -> name without losing a record.
SELECT array_agg(name ORDER BY id) AS before FROM tenant_t4.__drizzle_migrations;
SELECT tenant_id, status, applied FROM mt.convert_tracking('hash', ARRAY['t4']);
SELECT count(*) AS hashes_that_match FROM tenant_t4.__drizzle_migrations h JOIN mt.migrations m ON m.sha256 = h.hash;
SELECT tenant_id, status FROM mt.convert_tracking('hash', ARRAY['t4']);
SELECT tenant_id, format, applied, pending FROM mt.status WHERE tenant_id = 't4';
SELECT tenant_id, status, applied FROM mt.convert_tracking('drizzle-kit', ARRAY['t4']);
SELECT format_type(atttypid, atttypmod) AS created_at_type FROM pg_attribute
 WHERE attrelid = 'tenant_t4.__drizzle_migrations'::regclass AND attname = 'created_at';
SELECT tenant_id, format, applied, pending FROM mt.status WHERE tenant_id = 't4';
SELECT status FROM mt.migrate_all(tenant_ids => ARRAY['t4']);
SELECT tenant_id, status, applied FROM mt.convert_tracking('name', ARRAY['t4']);
SELECT array_agg(name ORDER BY id) AS after FROM tenant_t4.__drizzle_migrations;
-- The table is rebuilt with the usual names, and new records continue the ids.
SELECT pg_get_serial_sequence('tenant_t4.__drizzle_migrations', 'id') AS sequence,
       nextval(pg_get_serial_sequence('tenant_t4.__drizzle_migrations', 'id')) AS next_id;
SELECT pg_temp.attempt('SELECT * FROM mt.convert_tracking(''auto'')') AS bad_format;

-- A tenant whose tracking table is in hash format is detected and kept in that format.
SELECT tenant_id FROM mt.create_tenant('hashy', migrate => false);
CREATE TABLE tenant_hashy.users (id serial PRIMARY KEY, email text NOT NULL);
-- (the predecessor's tables belong to the tenant: its migrations run as its role)
ALTER TABLE tenant_hashy.users OWNER TO tenant_hashy;
CREATE TABLE tenant_hashy.__drizzle_migrations (id serial PRIMARY KEY, hash text NOT NULL, created_at timestamptz);
INSERT INTO tenant_hashy.__drizzle_migrations (hash, created_at)
SELECT sha256, now() FROM mt.migrations WHERE name = '0000_users';
SELECT tenant_id, status, applied FROM mt.migrate_tenant('hashy');
SELECT tenant_id, format, applied, pending FROM mt.status WHERE tenant_id = 'hashy';

-- A tracking table of unknown shape fails that tenant with a clear error.
SELECT tenant_id FROM mt.create_tenant('odd', migrate => false);
CREATE TABLE tenant_odd.__drizzle_migrations (version int);
SELECT tenant_id, status, sqlstate, error FROM mt.migrate_tenant('odd');

-- A tenant whose schema vanished fails alone.
SELECT tenant_id FROM mt.create_tenant('gone', migrate => false);
DROP SCHEMA tenant_gone;
SELECT tenant_id, status, sqlstate, error FROM mt.migrate_all() WHERE status = 'failed' ORDER BY 1;
SELECT mt.drop_tenant('gone');
SELECT mt.drop_tenant('odd', force => true);

-- drop_tenant does not count the tracking table as content.
SELECT tenant_id FROM mt.create_tenant('empty', migrate => false);
SELECT count(*) FROM mt.migrate_tenant('empty', dry_run => true);
SELECT * FROM mt.migrate_tenant('empty', mark_applied => true) \gset
SELECT mt.schema_object_count('tenant_empty') AS objects, mt.drop_tenant('empty') AS dropped;
SELECT pg_temp.attempt('SELECT mt.drop_tenant(''t5'')') AS t5_holds_tables;
