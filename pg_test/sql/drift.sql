-- Drift: the normalized schema model and the tenant-to-tenant comparison.
\i pg_test/helpers.sql

SELECT count(*) FROM mt.load_migrations('/tmp/mt_regress_fixtures/drizzle');

-- Built by different paths: all at once, migration by migration, later with other OIDs
-- and other index and constraint names. No drift among them.
SELECT tenant_id FROM mt.create_tenant('a');
SELECT tenant_id FROM mt.create_tenant('b');
CREATE TABLE public.shift_oids AS SELECT g FROM generate_series(1, 10) g;
SELECT tenant_id FROM mt.create_tenant('c', migrate => false);
SELECT count(*) FROM (SELECT * FROM mt.migrate_tenant('c', dry_run => false)) s;
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
