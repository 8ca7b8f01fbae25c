-- Template provisioning, parallel creation and seeds.
\i pg_test/helpers.sql

SELECT action, count(*) FROM mt.load_migrations('/tmp/mt_regress_fixtures/drizzle') GROUP BY action;

-- Until the template has every registered migration, tenants are migrated one by one.
SELECT mt.template_is_current() AS before_refresh;
SELECT tenant_id FROM mt.create_tenant('replayed');
SELECT schema_name, status, applied FROM mt.refresh_template();
SELECT mt.template_is_current() AS after_refresh;

-- Then they are copies of the template: the migration run that follows finds nothing to do.
SELECT tenant_id FROM mt.create_tenant('cloned');
SELECT tenant_id FROM mt.create_tenant('replayed_again', use_template => false);
SELECT tenant_id, status, applied FROM mt.run_tenants WHERE tenant_id IN ('replayed', 'cloned', 'replayed_again') ORDER BY run_id;
SELECT tenant_id, applied, pending FROM mt.status ORDER BY tenant_id;
SELECT tenant_id, has_drift FROM mt.drift_summary ORDER BY tenant_id;
SELECT count(*) AS differences FROM mt.tenant_drift('cloned', 'replayed');

-- A migration registered later makes the template stale until the next migrate_all; new
-- tenants are migrated meanwhile, and still get every migration.
SELECT mt.add_migration('0022_notes', 'CREATE TABLE notes (id serial PRIMARY KEY, body text)');
SELECT mt.template_is_current() AS with_new_migration;
SELECT tenant_id FROM mt.create_tenant('while_stale');
SELECT tenant_id, status, applied FROM mt.migrate_all() ORDER BY tenant_id;
SELECT mt.template_is_current() AS after_migrate_all;
SELECT tenant_id FROM mt.create_tenant('cloned_again');
SELECT tenant_id, applied, pending FROM mt.status ORDER BY tenant_id;
SELECT count(*) FILTER (WHERE has_drift) AS drifted FROM mt.drift_summary;

-- Many at once, in background workers: each tenant atomic, failures reported per tenant.
SELECT tenant_id, schema_name, status, sqlstate, error
  FROM mt.create_tenants(ARRAY['bulk-1', 'bulk_2', 'x; drop table t', 'cloned', NULL, repeat('y', 64), 'bulk-3'], concurrency => 2);
SELECT tenant_id, applied, pending FROM mt.status WHERE tenant_id LIKE 'bulk%' ORDER BY tenant_id;
SELECT operation, status, tenants, succeeded, failed FROM mt.runs WHERE operation = 'create_tenants';
SELECT pg_temp.attempt('SELECT * FROM mt.create_tenants(ARRAY[''z''], concurrency => 0)') AS zero_workers;

-- Seeds: SQL or a function, once per tenant unless forced, with a history.
SELECT name, scope FROM mt.register_seed('demo-data', $$INSERT INTO teams (name, slug) SELECT 'team ' || n, format('team-%s-%s', n, (SELECT count(*) FROM teams)) FROM generate_series(1, 2) n$$);
CREATE FUNCTION public.seed_owner(tenant_id text, schema_name text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO users (email, name) VALUES (tenant_id || '@example.org', 'owner of ' || schema_name);
END
$$;
SELECT name, function FROM mt.register_seed('owner', 'public.seed_owner(text, text)'::regprocedure);
CREATE TABLE public.seeded_log (note text);
SELECT name, scope FROM mt.register_seed('shared-log', 'INSERT INTO seeded_log VALUES (''shared seed ran'')', scope => 'shared');
SELECT mt.seed_tenant('cloned', 'demo-data') AS first, mt.seed_tenant('cloned', 'demo-data') AS second;
SELECT mt.seed_tenant('cloned', 'demo-data', force => true) AS forced;
SELECT count(*) AS teams FROM tenant_cloned.teams;
SELECT mt.seed_tenant('cloned', 'owner');
SELECT email, name FROM tenant_cloned.users;
SELECT mt.seed_shared('shared-log') AS first, mt.seed_shared('shared-log') AS second;
SELECT * FROM public.seeded_log;
SELECT seed_name, tenant_id, schema_name, forced FROM mt.seed_history ORDER BY id;
-- In parallel, in workers: tenants seeded before are skipped.
SELECT tenant_id, status, error FROM mt.seed_all('demo-data', concurrency => 2) ORDER BY tenant_id;
SELECT tenant_id, status FROM mt.seed_all('demo-data', tenant_ids => ARRAY['bulk-1']);
SELECT tenant_id, status FROM mt.seed_all('demo-data', tenant_ids => ARRAY['bulk-1'], force => true);
SELECT count(*) AS teams FROM tenant_bulk_1.teams;
-- A seed that fails in one tenant fails there only.
SELECT (mt.register_seed('picky', $$DO $d$ BEGIN IF current_schema() = 'tenant_bulk_2' THEN RAISE EXCEPTION 'not here'; END IF; END $d$; INSERT INTO teams (name, slug) VALUES ('picky', 'picky')$$)).name AS registered;
SELECT tenant_id, status, error FROM mt.seed_all('picky', tenant_ids => ARRAY['bulk-1', 'bulk_2', 'bulk-3']) ORDER BY tenant_id;
SELECT count(*) AS picky_history FROM mt.seed_history WHERE seed_name = 'picky';
-- On creation.
SELECT tenant_id FROM mt.create_tenant('with-seed', seed => 'owner');
SELECT email FROM tenant_with_seed.users;
SELECT tenant_id, status FROM mt.create_tenants(ARRAY['bulk-4'], seed => 'demo-data');
SELECT count(*) AS teams FROM tenant_bulk_4.teams;

-- Bad seeds and bad calls: clear errors, nothing changed.
SELECT pg_temp.attempt($$SELECT mt.register_seed('demo-data', 'SELECT 1')$$) AS duplicate;
SELECT pg_temp.attempt($$SELECT mt.register_seed('bad name!', 'SELECT 1')$$) AS bad_name;
SELECT pg_temp.attempt($$SELECT mt.register_seed('empty', '  ')$$) AS empty_sql;
SELECT pg_temp.attempt($$SELECT mt.register_seed('wrong-scope', 'SELECT 1', scope => 'everywhere')$$) AS bad_scope;
SELECT pg_temp.attempt($$SELECT mt.register_seed('wrong-args', 'pg_catalog.lower(text)'::regprocedure)$$) AS wrong_signature;
SELECT pg_temp.attempt($$SELECT mt.seed_tenant('cloned', 'nope')$$) AS unknown_seed;
SELECT pg_temp.attempt($$SELECT mt.seed_tenant('nobody', 'demo-data')$$) AS unknown_tenant;
SELECT pg_temp.attempt($$SELECT mt.seed_tenant('cloned', 'shared-log')$$) AS shared_seed_in_tenant;
SELECT pg_temp.attempt($$SELECT mt.seed_shared('demo-data')$$) AS tenant_seed_in_shared;
SELECT pg_temp.attempt($$SELECT * FROM mt.seed_all('nope')$$) AS seed_all_unknown;
SELECT pg_temp.attempt($$SELECT * FROM mt.seed_all('demo-data', tenant_ids => ARRAY['nobody'])$$) AS seed_all_unknown_tenant;
SELECT pg_temp.attempt($$SELECT mt.create_tenant('failing-seed', seed => 'nope')$$) AS create_with_unknown_seed;
SELECT count(*) AS created FROM mt.tenants WHERE tenant_id = 'failing-seed';
SELECT name FROM mt.seeds ORDER BY name;
SELECT (mt.register_seed('demo-data', 'SELECT 1', replace => true)).sql AS replaced;
SELECT mt.unregister_seed('demo-data') AS removed, mt.unregister_seed('demo-data') AS again;
SELECT count(*) AS history_of_removed FROM mt.seed_history WHERE seed_name = 'demo-data';

-- Rows that migrations write come with the copy of the template, its sequences where the
-- template's are. The copy's statements are deparsed once per template version
-- (mt.template_scripts) and again after the template is migrated.
SELECT mt.add_migration('0023_plans', $$CREATE TABLE plans (id serial PRIMARY KEY, name text NOT NULL UNIQUE);
INSERT INTO plans (name) VALUES ('free'), ('pro')$$);
SELECT count(*) FILTER (WHERE status = 'failed') AS failed FROM mt.migrate_all();
SELECT count(*) AS scripts_of_this_version FROM mt.template_scripts WHERE version = mt_internal.template_version();
SELECT tenant_id FROM mt.create_tenant('with-plans');
SELECT count(*) AS scripts_of_this_version FROM mt.template_scripts WHERE version = mt_internal.template_version();
SELECT tenant_id FROM mt.create_tenant('with-plans-too');
INSERT INTO tenant_with_plans.plans (name) VALUES ('enterprise') RETURNING id, name;
SELECT id, name FROM tenant_with_plans_too.plans ORDER BY id;
SELECT (SELECT string_agg(p::text, ',' ORDER BY id) FROM tenant_replayed.plans p) = (SELECT string_agg(p::text, ',' ORDER BY id) FROM tenant_with_plans_too.plans p) AS same_rows_as_replayed;
SELECT count(*) AS differences FROM mt.tenant_drift('with-plans', 'replayed');
-- A template that mentions the placeholder name itself is copied without the cache, correctly.
SELECT mt.add_migration('0024_placeholder', $$CREATE FUNCTION mt_clone_target_note() RETURNS text LANGUAGE sql AS 'SELECT ''mt_clone_target''::text'$$);
SELECT count(*) FILTER (WHERE status = 'failed') AS failed FROM mt.migrate_all();
SELECT tenant_id FROM mt.create_tenant('placeholder');
SELECT tenant_placeholder.mt_clone_target_note() AS untouched;
SELECT count(*) AS scripts_of_this_version FROM mt.template_scripts WHERE version = mt_internal.template_version();
SELECT count(*) AS differences FROM mt.tenant_drift('placeholder', 'replayed');
-- mt.refresh_template() forgets the cached copy: a hand-made change to the template reaches
-- the next tenant.
SELECT mt.add_migration('0025_no_placeholder', 'DROP FUNCTION mt_clone_target_note()');
SELECT count(*) FILTER (WHERE status = 'failed') AS failed FROM mt.migrate_all();
SELECT tenant_id FROM mt.create_tenant('cached-again');
SELECT count(*) AS cached FROM mt.template_scripts WHERE version = mt_internal.template_version();
CREATE TABLE mt_template.added_by_hand (id int);
SELECT status FROM mt.refresh_template();
SELECT count(*) AS cached FROM mt.template_scripts;
SELECT tenant_id FROM mt.create_tenant('after-refresh');
SELECT to_regclass('tenant_after_refresh.added_by_hand') IS NOT NULL AS has_table_added_by_hand;
-- New tenants get the configured tracking format, whatever the template's: drizzle-orm
-- reads the format it was set up for.
SELECT mt.set_config('tracking_format', 'drizzle-kit');
SELECT tenant_id FROM mt.create_tenant('kit-format');
SELECT count(*) > 0 AS copied_from_template FROM mt.template_scripts WHERE version = mt_internal.template_version();
SELECT array_agg(attname::text ORDER BY attnum) AS tracking_columns
  FROM pg_attribute WHERE attrelid = 'tenant_kit_format.__drizzle_migrations'::regclass AND attnum > 0;
SELECT tenant_id, format, pending FROM mt.status WHERE tenant_id = 'kit-format';
SELECT mt.reset_config('tracking_format');
-- Rows a migration writes come with every template copy, but a value its default generates
-- afresh (a secret from gen_random_uuid()) is each tenant's own, as a replay would make it;
-- ids, and what foreign keys point at, are copied as they are. A schema-only clone copies
-- no rows at all: only include_data => true brings them.
SELECT mt.add_migration('0026_secrets',
    'CREATE TABLE signing_keys (id serial PRIMARY KEY, name text NOT NULL, secret uuid NOT NULL DEFAULT gen_random_uuid());
     INSERT INTO signing_keys (name) VALUES (''billing''), (''audit'');');
SELECT count(*) FILTER (WHERE status = 'failed') AS failed FROM mt.migrate_all();
SELECT tenant_id FROM mt.create_tenant('secret-a');
SELECT tenant_id FROM mt.create_tenant('secret-b');
SELECT count(*) > 0 AS copied_from_template FROM mt.template_scripts WHERE version = mt_internal.template_version();
SELECT (SELECT array_agg(id ORDER BY id) FROM tenant_secret_a.signing_keys) = (SELECT array_agg(id ORDER BY id) FROM tenant_secret_b.signing_keys) AS same_ids,
       (SELECT count(*) FROM tenant_secret_a.signing_keys a JOIN tenant_secret_b.signing_keys b USING (id) WHERE a.secret = b.secret) AS shared_secrets,
       (SELECT count(*) FROM tenant_secret_a.signing_keys a JOIN mt_template.signing_keys t USING (id) WHERE a.secret = t.secret) AS secrets_from_template;
SELECT tenant_id FROM mt.clone_tenant('secret-a', 'secret-schema-only');
SELECT count(*) AS rows_in_schema_only_clone FROM tenant_secret_schema_only.signing_keys;
SELECT tenant_id FROM mt.clone_tenant('secret-a', 'secret-with-data', include_data => true);
SELECT count(*) AS same_secret_in_full_clone FROM tenant_secret_a.signing_keys a JOIN tenant_secret_with_data.signing_keys c USING (id) WHERE a.secret = c.secret;
