-- Drift: the normalized schema model and the tenant-to-tenant comparison.
\i pg_test/helpers.sql

-- Built by different paths: migration by migration as they were registered (c), all at
-- once (a, b), later with other OIDs and renamed indexes and constraints (d). No drift.
SELECT tenant_id FROM mt.create_tenant('c');
DO $$
DECLARE
    f record;
BEGIN
    FOR f IN SELECT * FROM mt.read_migration_folder('/tmp/mt_regress_fixtures/drizzle') ORDER BY idx LOOP
        PERFORM mt.add_migration(f.name, f.sql, 'tenant', f.idx, f.journal_when);
        PERFORM * FROM mt.migrate_tenant('c');
    END LOOP;
END
$$;
SELECT action, count(*) FROM mt.load_migrations('/tmp/mt_regress_fixtures/drizzle') GROUP BY action;
-- The other object kinds: a domain, a composite type, a materialized view, a procedure.
SELECT mt.add_migration('0022_extras', $m$
    CREATE DOMAIN email AS text CHECK (VALUE LIKE '%@%');
    CREATE TYPE money_pair AS (amount numeric(12,2), currency char(3));
    CREATE MATERIALIZED VIEW team_sizes AS SELECT team_id, count(*) AS members FROM team_members GROUP BY team_id;
    CREATE PROCEDURE archive_project(p int) LANGUAGE sql AS $$UPDATE projects SET status = 'archived' WHERE id = p$$;
$m$);
SELECT tenant_id, applied FROM mt.migrate_tenant('c');
SELECT tenant_id FROM mt.create_tenant('a');
SELECT tenant_id FROM mt.create_tenant('b');
CREATE TABLE public.shift_oids AS SELECT g FROM generate_series(1, 10) g;
SELECT tenant_id FROM mt.create_tenant('d');
ALTER TABLE tenant_d.teams RENAME CONSTRAINT teams_pkey TO teams_primary;
ALTER INDEX tenant_d.tasks_open_idx RENAME TO open_tasks;
SELECT t, count(*) AS differences FROM unnest(ARRAY['b', 'c', 'd']) t, mt.tenant_drift(t, 'a') GROUP BY t ORDER BY t;
SELECT count(*) AS tenants_with_drift FROM unnest(ARRAY['a', 'b', 'c', 'd']) t
 WHERE EXISTS (SELECT FROM mt.tenant_drift(t, 'b'));

-- The template schema, mt_template, is what the registered migrations produce; the drift
-- views compare every tenant with it.
SELECT pg_temp.attempt('SELECT * FROM mt.tenant_drift(''a'')') AS before_template;
SELECT schema_name, status, applied FROM mt.refresh_template();
SELECT tenant_id, has_drift, differences FROM mt.drift_summary ORDER BY tenant_id;
SELECT count(DISTINCT fingerprint) AS distinct_fingerprints FROM mt.drift_summary;
SELECT count(*) AS reported FROM mt.drift_report;

-- The model: object kinds, normalized definitions without the schema's name.
SELECT object_type, count(*) FROM mt.schema_objects(ARRAY['tenant_a']) GROUP BY 1 ORDER BY 1;
SELECT count(*) AS mentions_own_schema FROM mt.schema_objects(ARRAY['tenant_a']) WHERE definition::text LIKE '%tenant_a%';
SELECT object_name, definition FROM mt.schema_objects(ARRAY['tenant_a'])
 WHERE object_type IN ('enum', 'view', 'trigger') OR object_name IN ('tasks.priority', 'tasks.search') ORDER BY 1;
SELECT jsonb_object_keys(mt.introspect('a')) AS kinds ORDER BY 1;
SELECT mt.introspect('a') = mt.introspect('c') AS same_model;

-- One change per object kind in tenant b; each is reported, and nothing else.
ALTER TABLE tenant_b.users ALTER COLUMN name TYPE varchar(100);
ALTER TABLE tenant_b.projects ALTER COLUMN budget TYPE numeric(12,4);
ALTER TABLE tenant_b.teams ALTER COLUMN name DROP NOT NULL;
ALTER TABLE tenant_b.labels ALTER COLUMN color SET DEFAULT '#000000';
DROP INDEX tenant_b.tasks_search_idx;
DROP INDEX tenant_b.notifications_unread_idx;
CREATE INDEX notifications_unread_idx ON tenant_b.notifications (user_id) WHERE NOT read AND kind <> 'digest';
ALTER TABLE tenant_b.comments DROP CONSTRAINT comments_task_id_tasks_id_fk;
ALTER TABLE tenant_b.comments ADD CONSTRAINT comments_task_id_tasks_id_fk FOREIGN KEY (task_id) REFERENCES tenant_b.tasks(id) ON DELETE RESTRICT;
ALTER TYPE tenant_b.user_role ADD VALUE 'auditor';
ALTER TABLE tenant_b.projects DISABLE TRIGGER projects_touch;
CREATE OR REPLACE FUNCTION tenant_b.touch_updated_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.updated_at := clock_timestamp();
  RETURN NEW;
END
$$;
CREATE OR REPLACE VIEW tenant_b.project_stats AS
SELECT p.id, count(t.id) AS tasks, count(t.id) FILTER (WHERE t.done) AS done
  FROM tenant_b.projects p LEFT JOIN tenant_b.tasks t ON t.project_id = p.id AND t.priority <> 'low' GROUP BY p.id;
ALTER TABLE tenant_b.api_keys ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_keys ON tenant_b.api_keys USING (user_id = 1);
COMMENT ON TABLE tenant_b.users IS 'hand-edited';
ALTER TABLE tenant_b.invoice_lines DROP CONSTRAINT invoice_lines_quantity_check;
ALTER TABLE tenant_b.invoice_lines ADD CONSTRAINT invoice_lines_quantity_check CHECK (quantity >= 0);
CREATE TABLE tenant_b.hotfix (id int);
ALTER SEQUENCE tenant_b.teams_id_seq INCREMENT BY 2;
ALTER DOMAIN tenant_b.email DROP CONSTRAINT email_check;
ALTER DOMAIN tenant_b.email ADD CONSTRAINT email_check CHECK (VALUE LIKE '%@%.%');
ALTER TYPE tenant_b.money_pair ADD ATTRIBUTE note text;
DROP MATERIALIZED VIEW tenant_b.team_sizes;
CREATE MATERIALIZED VIEW tenant_b.team_sizes AS SELECT team_id, count(*) AS members FROM tenant_b.team_members GROUP BY team_id HAVING count(*) > 1;
CREATE OR REPLACE PROCEDURE tenant_b.archive_project(p int) LANGUAGE sql AS $$UPDATE tenant_b.projects SET status = 'paused' WHERE id = p$$;
SELECT object_type, object_name, change,
       CASE WHEN change = 'changed' THEN (SELECT jsonb_object_agg(k, jsonb_build_array(expected -> k, actual -> k))
                                           FROM jsonb_object_keys(expected) k WHERE expected -> k IS DISTINCT FROM actual -> k) END AS what_changed
  FROM mt.tenant_drift('b', 'a');

-- The same differences in the views, against the template; the others stay clean.
SELECT tenant_id, has_drift, differences FROM mt.drift_summary ORDER BY tenant_id;
SELECT count(*) AS same_as_tenant_to_tenant FROM mt.drift_report r
  JOIN mt.tenant_drift('b', 'a') d USING (object_type, object_name, change)
 WHERE r.tenant_id = 'b';
SELECT change, count(*) FROM mt.tenant_drift('b') GROUP BY change ORDER BY change;
SELECT (SELECT fingerprint FROM mt.drift_summary WHERE tenant_id = 'a') = (SELECT fingerprint FROM mt.drift_summary WHERE tenant_id = 'c') AS a_equals_c,
       (SELECT fingerprint FROM mt.drift_summary WHERE tenant_id = 'a') = (SELECT fingerprint FROM mt.drift_summary WHERE tenant_id = 'b') AS a_equals_b;

-- Column order is ignored unless asked for.
ALTER TABLE tenant_c.labels DROP COLUMN name;
ALTER TABLE tenant_c.labels ADD COLUMN name varchar(50) NOT NULL;
SELECT count(*) AS reordered_columns_reported FROM mt.tenant_drift('c', 'a');
SET mt.drift_column_order = on;
SELECT object_name, change FROM mt.tenant_drift('c', 'a') ORDER BY 1;
RESET mt.drift_column_order;

-- The fingerprint in Rust (multitenant-core) is the one the views compute in SQL, and the
-- Rust diff of two models agrees with the set-based one.
SELECT tenant_id, mt.fingerprint(mt.introspect(tenant_id)) = fingerprint AS same_fingerprint
  FROM mt.drift_summary ORDER BY tenant_id;
SELECT count(*) AS rust_diff FROM mt.diff_models(mt.introspect('a'), mt.introspect('b'));
SELECT count(*) AS agree FROM mt.diff_models(mt.introspect('a'), mt.introspect('b')) r
  JOIN mt.tenant_drift('b', 'a') s USING (object_type, object_name, change)
 WHERE r.expected IS NOT DISTINCT FROM s.expected AND r.actual IS NOT DISTINCT FROM s.actual;
SELECT pg_temp.attempt('SELECT mt.fingerprint(''[1]'')') AS not_a_model;

-- Bad input.
SELECT pg_temp.attempt('SELECT * FROM mt.tenant_drift(''nobody'', ''a'')') AS unknown_tenant;
SELECT pg_temp.attempt('SELECT * FROM mt.tenant_drift(''a'', ''nobody'')') AS unknown_reference;
SELECT pg_temp.attempt('SELECT mt.introspect(''nobody'')') AS unknown_introspect;

-- Incremental drift: the views answer from state kept per schema, recomputed only for the
-- schemas whose DDL changed since (or all of them, when asked or when a change cannot be
-- placed in one tenant's schema).
SELECT schemas_checked, was_full FROM mt.refresh_drift(full_refresh => true);
SELECT schemas_checked, was_full FROM mt.refresh_drift();
-- Every DDL path on tenant a shows in the next report, and only a is recomputed.
CREATE FUNCTION pg_temp.after(ddl text)
RETURNS TABLE (checked integer, was_full boolean, reported text)
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE ddl;
    RETURN QUERY
    SELECT r.schemas_checked, r.was_full,
           (SELECT string_agg(x.line, '; ' ORDER BY x.line)
              FROM (SELECT d.change || ' ' || d.object_type || ' ' || d.object_name AS line
                      FROM mt.drift_report d WHERE d.tenant_id = 'a') x)
      FROM mt.refresh_drift() r;
END
$$;
SELECT * FROM pg_temp.after('ALTER TABLE tenant_a.users ADD COLUMN nickname text');
SELECT * FROM pg_temp.after('ALTER TABLE tenant_a.users DROP COLUMN nickname');
SELECT * FROM pg_temp.after('DROP INDEX tenant_a.tasks_open_idx');
SELECT * FROM pg_temp.after('CREATE OR REPLACE FUNCTION tenant_a.touch_updated_at() RETURNS trigger LANGUAGE plpgsql AS $f$BEGIN RETURN NEW; END$f$');
SELECT * FROM pg_temp.after('COMMENT ON COLUMN tenant_a.teams.name IS ''shown in the sidebar''');
SELECT * FROM pg_temp.after('ALTER TABLE tenant_a.labels RENAME COLUMN color TO colour');
SELECT * FROM pg_temp.after('GRANT SELECT ON tenant_a.labels TO mt_monitor');
SELECT tenant_id, has_drift, differences FROM mt.drift_summary ORDER BY tenant_id;
-- The views agree with a comparison from scratch.
SELECT count(*) AS kept_equals_fresh FROM mt.drift_report r
  JOIN mt.drift('mt_template', ARRAY(SELECT schema_name FROM mt.tenants)) d
    ON (d.schema_name, d.object_type, d.object_name, d.change) = (r.schema_name, r.object_type, r.object_name, r.change)
 WHERE r.expected IS NOT DISTINCT FROM d.expected AND r.actual IS NOT DISTINCT FROM d.actual;
SELECT count(*) AS fresh FROM mt.drift('mt_template', ARRAY(SELECT schema_name FROM mt.tenants)) WHERE change IS NOT NULL;
-- A change to the template recomputes the tenants against it; dropping a tenant forgets it.
SELECT * FROM pg_temp.after('COMMENT ON TABLE mt_template.teams IS ''a team''');
SELECT * FROM pg_temp.after('COMMENT ON TABLE mt_template.teams IS NULL');
SELECT mt.drop_tenant('d', force => true);
SELECT schemas_checked, was_full FROM mt.refresh_drift();
SELECT count(*) AS kept_for_dropped FROM mt_internal.drift_state WHERE schema_name = 'tenant_d';
-- Column order is part of the kept state's model: switching it recomputes everything.
SET mt.drift_column_order = on;
SELECT was_full FROM mt.refresh_drift();
SELECT tenant_id, differences FROM mt.drift_summary WHERE tenant_id = 'c';
RESET mt.drift_column_order;
SELECT was_full FROM mt.refresh_drift();

-- migrate_all gives an empty tenant schema a copy of the template: the same schema, tracking
-- records and ledger as replaying every migration (tenant f), with the template's records.
SELECT tenant_id FROM mt.create_tenant('e', migrate => false);
SELECT tenant_id FROM mt.create_tenant('f', use_template => false);
SELECT tenant_id, status, applied, pending FROM mt.migrate_all() WHERE tenant_id IN ('e', 'f') ORDER BY 1;
SELECT count(DISTINCT fingerprint) AS fingerprints, bool_or(has_drift) AS drift
  FROM mt.drift_summary WHERE tenant_id IN ('e', 'f');
SELECT (SELECT array_agg(name ORDER BY id) FROM tenant_e.__drizzle_migrations)
     = (SELECT array_agg(name ORDER BY id) FROM tenant_f.__drizzle_migrations) AS same_records,
       (SELECT array_agg(applied_at ORDER BY id) FROM tenant_e.__drizzle_migrations)
     = (SELECT array_agg(applied_at ORDER BY id) FROM mt_template.__drizzle_migrations) AS records_of_the_template,
       (SELECT count(*) FROM mt.tracking_records WHERE tenant_id = 'e')
     = (SELECT count(*) FROM mt.tracking_records WHERE tenant_id = 'f') AS same_ledger;
SELECT pending FROM mt.status WHERE tenant_id = 'e';
-- mt.provision_from_template = off: every migration is applied, as for a tenant that holds
-- something (the records are its own, not the template's).
SET mt.provision_from_template = off;
SELECT tenant_id FROM mt.create_tenant('g', migrate => false);
SELECT tenant_id, status, applied FROM mt.migrate_all() WHERE tenant_id = 'g';
SELECT (SELECT array_agg(applied_at ORDER BY id) FROM tenant_g.__drizzle_migrations)
     = (SELECT array_agg(applied_at ORDER BY id) FROM mt_template.__drizzle_migrations) AS records_of_the_template,
       (SELECT fingerprint FROM mt.drift_summary WHERE tenant_id = 'g')
     = (SELECT fingerprint FROM mt.drift_summary WHERE tenant_id = 'e') AS same_fingerprint;
RESET mt.provision_from_template;

-- The engine notes the schemas its migrations and copies change itself, once per
-- transaction, and tells the event triggers so in mt.ddl_noted_schema (they then skip those
-- commands). That setting is superuser-only: tenant code can neither set it nor, set as a
-- placeholder before the library is loaded in its session, keep it.
SELECT count(*) AS noted_by_runs FROM mt_internal.schema_changes WHERE schema_name IN ('tenant_e', 'tenant_g');
SELECT mt.refresh_drift() IS NOT NULL AS refreshed;
SELECT role_name AS a_role FROM mt.tenants WHERE tenant_id = 'a' \gset
SET ROLE :"a_role";
SELECT pg_temp.attempt($$SELECT pg_catalog.set_config('mt.ddl_noted_schema', 'tenant_a', true)$$) AS set_by_tenant;
RESET ROLE;
\c
SET SESSION AUTHORIZATION :"a_role";
SET mt.ddl_noted_schema = 'tenant_a';
SET client_min_messages = error;
CREATE TABLE tenant_a.sneaky (id int);
RESET client_min_messages;
SHOW mt.ddl_noted_schema;
RESET SESSION AUTHORIZATION;
SELECT schemas_checked, tenants_drifted FROM mt.refresh_drift();
SELECT change, object_type, object_name FROM mt.drift_report WHERE tenant_id = 'a' AND object_name LIKE 'sneaky%';

-- A refresh of more than one batch runs the batches side by side in background workers
-- (mt_internal.run_in_workers, up to mt.max_workers at a time), each committing its own; a
-- batch that fails leaves its schemas as they were, for the refresh to do in-process.
SELECT fingerprint AS template_fingerprint FROM mt_internal.drift_state WHERE schema_name = 'mt_template' \gset
SELECT jsonb_object_agg(schema_name, acl_digest) AS digests
  FROM mt_internal.acl_digests(ARRAY['tenant_a', 'tenant_b', 'tenant_e']) \gset
SELECT clock_timestamp() AS before_workers \gset
SET mt.max_workers = 2;
SELECT mt_internal.run_in_workers(ARRAY[
           format('SELECT mt_internal.refresh_drift_batch(%L, %L, %L, false, %L)', 'mt_template', ARRAY['tenant_a'], :'template_fingerprint', :'digests'),
           format('SELECT mt_internal.refresh_drift_batch(%L, %L, %L, false, %L)', 'mt_template', ARRAY['tenant_b', 'tenant_e'], :'template_fingerprint', :'digests'),
           'SELECT 1 / 0']) AS statements_run;
RESET mt.max_workers;
SELECT schema_name, refreshed_at > :'before_workers' AS refreshed_by_a_worker
  FROM mt_internal.drift_state WHERE schema_name IN ('tenant_a', 'tenant_b', 'tenant_e', 'tenant_g') ORDER BY 1;
SELECT change, object_type, object_name FROM mt.drift_report WHERE tenant_id = 'a' AND object_name LIKE 'sneaky%';
