-- The normalized model of a schema, read from pg_catalog: what drift is measured on.
--
-- One row per object: (object_type, object_name, definition). Normalization, so that two
-- schemas built by the same migrations compare equal:
--   * the schema's own name is removed from every deparsed expression and definition
--     (`tenant_a.users` and `tenant_b.users` both read `users`);
--   * constraints and indexes are identified by their table and definition, not by their
--     name, so auto-generated names (users_email_key vs users_email_key1) never count as
--     drift; a renamed index with the same definition is the same index;
--   * columns are identified by table and name, so column order is ignored unless
--     mt.drift_column_order is on;
--   * OIDs never appear.

-- mt_internal.strip_schema(definition, schema_name) is Rust (src/drift.rs): a regular
-- expression built per schema would be compiled again for nearly every row.

-- Function settings with the schema's own name in search_path written as "$schema", so a
-- function pinned to its tenant's schema reads the same in every tenant.
-- The schema names of a search_path value as a function stores it: `a, "B", "$user"` is
-- {a, B, $user} (SET ... FROM CURRENT keeps whatever quoting the session's value had).
CREATE FUNCTION mt_internal.search_path_names(path text)
RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT array_agg(CASE WHEN e LIKE '"%"' THEN replace(substr(e, 2, length(e) - 2), '""', '"') ELSE e END ORDER BY i)
      FROM unnest(string_to_array(path, ',')) WITH ORDINALITY AS p(raw, i), LATERAL btrim(p.raw) AS e
$$;
COMMENT ON FUNCTION mt_internal.search_path_names(text) IS
    'multitenant (internal): the unquoted schema names of a stored search_path value';

CREATE FUNCTION mt_internal.strip_schema_setting(settings text[], schema_name text)
RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT array_agg(CASE WHEN s LIKE 'search_path=%'
                          THEN 'search_path=' || (SELECT string_agg(CASE WHEN e = schema_name THEN '$schema' ELSE quote_ident(e) END, ', ' ORDER BY i)
                                                    FROM unnest(mt_internal.search_path_names(substr(s, 13))) WITH ORDINALITY AS p(e, i))
                          ELSE s END ORDER BY o)
      FROM unnest(settings) WITH ORDINALITY AS c(s, o)
$$;
COMMENT ON FUNCTION mt_internal.strip_schema_setting(text[], text) IS
    'multitenant: function settings with the given schema''s name in search_path replaced by $schema';

-- Set-based over any number of schemas: one pass over the catalogs for all of them.
CREATE FUNCTION mt.schema_objects(schema_names text[])
RETURNS TABLE (schema_name text, object_type text, object_name text, definition jsonb)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
SET jit = off  -- compiling these catalog queries costs more than running them
AS $$
WITH nsp AS (
    -- A join, not = ANY (array): that would compare every schema with every name.
    SELECT n.oid, n.nspname FROM pg_namespace n JOIN unnest(schema_objects.schema_names) AS s(name) ON s.name = n.nspname
), tracking AS (
    SELECT mt.get_config('tracking_table') AS name
), tracking_rel AS MATERIALIZED (
    -- Each schema's tracking table and the sequence it owns: not part of the model.
    SELECT o.oid FROM nsp n, tracking t, pg_class o WHERE o.relnamespace = n.oid AND o.relname = t.name
    UNION ALL
    SELECT d.objid
      FROM nsp n, tracking t, pg_class o
      JOIN pg_depend d ON d.refclassid = 'pg_class'::regclass AND d.refobjid = o.oid AND d.classid = 'pg_class'::regclass AND d.deptype = 'a'
     WHERE o.relnamespace = n.oid AND o.relname = t.name
), rel AS (
    SELECT c.oid, c.relname, c.relkind, c.relrowsecurity, c.relforcerowsecurity, c.relpersistence, c.relowner, c.relacl, n.nspname
      FROM pg_class c JOIN nsp n ON n.oid = c.relnamespace
     WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
       AND c.oid NOT IN (SELECT x.oid FROM tracking_rel x)
)
-- tables (the first branch fixes the column types: text, not name, which is cut at 63 bytes)
SELECT r.nspname::text, 'table'::text, r.relname::text,
       jsonb_build_object('kind', CASE r.relkind WHEN 'p' THEN 'partitioned table' WHEN 'f' THEN 'foreign table' ELSE 'table' END,
                          'partition_key', CASE WHEN r.relkind = 'p' THEN pg_get_partkeydef(r.oid) END,
                          'unlogged', r.relpersistence = 'u',
                          'row_security', r.relrowsecurity, 'force_row_security', r.relforcerowsecurity)
  FROM rel r WHERE r.relkind IN ('r', 'p', 'f')
UNION ALL
-- columns
SELECT r.nspname, 'column', r.relname || '.' || a.attname,
       jsonb_build_object('type', mt_internal.strip_schema(format_type(a.atttypid, a.atttypmod), r.nspname),
                          'not_null', a.attnotnull,
                          'default', CASE WHEN a.attgenerated = '' THEN mt_internal.strip_schema(pg_get_expr(ad.adbin, ad.adrelid), r.nspname) END,
                          'generated', CASE WHEN a.attgenerated <> '' THEN mt_internal.strip_schema(pg_get_expr(ad.adbin, ad.adrelid), r.nspname) END,
                          'identity', nullif(a.attidentity, ''),
                          'collation', CASE WHEN a.attcollation <> 0 AND a.attcollation <> t.typcollation
                                            THEN (SELECT collname FROM pg_collation WHERE oid = a.attcollation) END)
       -- Column order counts only when asked for (SET mt.drift_column_order = on).
       || CASE WHEN current_setting('mt.drift_column_order', true) IN ('on', 'true')
               THEN jsonb_build_object('position', (SELECT count(*) FROM pg_attribute p
                                                     WHERE p.attrelid = a.attrelid AND p.attnum > 0 AND p.attnum <= a.attnum
                                                       AND NOT p.attisdropped))
               ELSE '{}' END
  FROM rel r
  JOIN pg_attribute a ON a.attrelid = r.oid AND a.attnum > 0 AND NOT a.attisdropped
  JOIN pg_type t ON t.oid = a.atttypid
  LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
 WHERE r.relkind IN ('r', 'p', 'f', 'v', 'm')
UNION ALL
-- constraints (not NOT NULL, which is a column property here), by definition
-- (each definition deparsed once: OFFSET 0 keeps the planner from copying the call)
SELECT r.nspname, 'constraint', r.relname || ': ' || d.definition,
       jsonb_build_object('type', CASE k.contype WHEN 'p' THEN 'primary key' WHEN 'u' THEN 'unique' WHEN 'c' THEN 'check'
                                                WHEN 'f' THEN 'foreign key' WHEN 'x' THEN 'exclusion' ELSE k.contype::text END,
                          'definition', d.definition,
                          'deferrable', k.condeferrable, 'deferred', k.condeferred, 'validated', k.convalidated)
  FROM rel r JOIN pg_constraint k ON k.conrelid = r.oid
 CROSS JOIN LATERAL (SELECT mt_internal.strip_schema(pg_get_constraintdef(k.oid), r.nspname) AS definition OFFSET 0) d
UNION ALL
-- indexes not backing a constraint, by definition (the name cut out)
SELECT r.nspname, 'index', r.relname || ': ' || d.definition,
       jsonb_build_object('definition', d.definition, 'unique', i.indisunique)
  FROM rel r
  JOIN pg_index i ON i.indrelid = r.oid
                 AND NOT EXISTS (SELECT FROM pg_constraint k WHERE k.conindid = i.indexrelid AND k.conrelid = r.oid)
 CROSS JOIN LATERAL (SELECT regexp_replace(mt_internal.strip_schema(pg_get_indexdef(i.indexrelid), r.nspname),
                                           '^CREATE (UNIQUE )?INDEX \S+ ON ', 'CREATE \1INDEX ON ') AS definition OFFSET 0) d
UNION ALL
-- sequences (identity and serial ones included: their options are part of the schema)
SELECT r.nspname, 'sequence', r.relname,
       jsonb_build_object('type', format_type(s.seqtypid, NULL), 'start', s.seqstart, 'increment', s.seqincrement,
                          'min', s.seqmin, 'max', s.seqmax, 'cache', s.seqcache, 'cycle', s.seqcycle,
                          'owned_by', (SELECT oc.relname || '.' || oa.attname
                                         FROM pg_depend d JOIN pg_class oc ON oc.oid = d.refobjid
                                         JOIN pg_attribute oa ON oa.attrelid = d.refobjid AND oa.attnum = d.refobjsubid
                                        WHERE d.classid = 'pg_class'::regclass AND d.objid = r.oid AND d.deptype IN ('a', 'i')
                                          AND d.refclassid = 'pg_class'::regclass LIMIT 1))
  FROM rel r JOIN pg_sequence s ON s.seqrelid = r.oid
UNION ALL
-- views and materialized views
SELECT r.nspname, CASE r.relkind WHEN 'v' THEN 'view' ELSE 'materialized view' END, r.relname,
       jsonb_build_object('definition', mt_internal.strip_schema(pg_get_viewdef(r.oid), r.nspname))
  FROM rel r WHERE r.relkind IN ('v', 'm')
UNION ALL
-- functions and procedures, by signature
SELECT n.nspname, CASE p.prokind WHEN 'p' THEN 'procedure' WHEN 'a' THEN 'aggregate' ELSE 'function' END,
       p.proname || '(' || mt_internal.strip_schema(pg_get_function_identity_arguments(p.oid), n.nspname) || ')',
       jsonb_build_object('result', mt_internal.strip_schema(pg_get_function_result(p.oid), n.nspname),
                          'language', l.lanname, 'volatility', p.provolatile, 'security_definer', p.prosecdef,
                          'strict', p.proisstrict, 'config', mt_internal.strip_schema_setting(p.proconfig, n.nspname),
                          'body', CASE WHEN p.prokind <> 'a' THEN mt_internal.strip_schema(p.prosrc, n.nspname) END)
  FROM pg_proc p JOIN nsp n ON n.oid = p.pronamespace JOIN pg_language l ON l.oid = p.prolang
UNION ALL
-- triggers (internal ones, such as foreign key triggers, are the constraints' business)
SELECT r.nspname, 'trigger', r.relname || '.' || g.tgname,
       jsonb_build_object('definition', mt_internal.strip_schema(pg_get_triggerdef(g.oid), r.nspname),
                          'enabled', CASE g.tgenabled WHEN 'O' THEN 'origin' WHEN 'D' THEN 'disabled'
                                                      WHEN 'R' THEN 'replica' WHEN 'A' THEN 'always' END)
  FROM rel r JOIN pg_trigger g ON g.tgrelid = r.oid AND NOT g.tgisinternal
UNION ALL
-- enum types, labels in order
SELECT n.nspname, 'enum', t.typname,
       jsonb_build_object('labels', (SELECT jsonb_agg(e.enumlabel ORDER BY e.enumsortorder) FROM pg_enum e WHERE e.enumtypid = t.oid))
  FROM pg_type t JOIN nsp n ON n.oid = t.typnamespace WHERE t.typtype = 'e'
UNION ALL
-- composite types (not the row types of tables)
SELECT n.nspname, 'composite type', t.typname,
       jsonb_build_object('attributes', (SELECT jsonb_agg(jsonb_build_array(a.attname, mt_internal.strip_schema(format_type(a.atttypid, a.atttypmod), n.nspname)) ORDER BY a.attnum)
                                           FROM pg_attribute a WHERE a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped))
  FROM pg_type t JOIN nsp n ON n.oid = t.typnamespace JOIN pg_class c ON c.oid = t.typrelid
 WHERE t.typtype = 'c' AND c.relkind = 'c'
UNION ALL
-- domains
SELECT n.nspname, 'domain', t.typname,
       jsonb_build_object('base_type', mt_internal.strip_schema(format_type(t.typbasetype, t.typtypmod), n.nspname),
                          'not_null', t.typnotnull, 'default', t.typdefault,
                          'constraints', (SELECT jsonb_agg(mt_internal.strip_schema(pg_get_constraintdef(k.oid), n.nspname) ORDER BY 1)
                                            FROM pg_constraint k WHERE k.contypid = t.oid))
  FROM pg_type t JOIN nsp n ON n.oid = t.typnamespace WHERE t.typtype = 'd'
UNION ALL
-- row-level security policies
SELECT r.nspname, 'policy', r.relname || '.' || pol.polname,
       jsonb_build_object('command', pol.polcmd, 'permissive', pol.polpermissive,
                          'roles', (SELECT jsonb_agg(CASE WHEN x = 0 THEN 'public' ELSE pg_get_userbyid(x) END ORDER BY 1) FROM unnest(pol.polroles) x),
                          'using', mt_internal.strip_schema(pg_get_expr(pol.polqual, pol.polrelid), r.nspname),
                          'with_check', mt_internal.strip_schema(pg_get_expr(pol.polwithcheck, pol.polrelid), r.nspname))
  FROM rel r JOIN pg_policy pol ON pol.polrelid = r.oid
UNION ALL
-- privileges on tables, views and sequences granted beyond the owner's defaults; the owner
-- (the tenant's role, or mt_template_role) reads "$owner" in every schema
SELECT r.nspname, 'privileges', r.relname,
       jsonb_agg(g.grants ORDER BY g.grants)
  FROM rel r
  CROSS JOIN LATERAL (
      SELECT CASE a.grantee WHEN r.relowner THEN '$owner' WHEN 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END
             || ': ' || string_agg(a.privilege_type || CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END, ', '
                                   ORDER BY a.privilege_type) AS grants
        FROM aclexplode(r.relacl) a
       GROUP BY a.grantee) g
 WHERE r.relacl IS NOT NULL
   AND r.relacl <> acldefault(CASE WHEN r.relkind = 'S' THEN 's' ELSE 'r' END::"char", r.relowner)
 GROUP BY r.nspname, r.relname
UNION ALL
-- comments on relations and columns
SELECT r.nspname, 'comment', r.relname || CASE WHEN d.objsubid > 0 THEN '.' || a.attname ELSE '' END,
       jsonb_build_object('text', d.description)
  FROM rel r JOIN pg_description d ON d.classoid = 'pg_class'::regclass AND d.objoid = r.oid
  LEFT JOIN pg_attribute a ON a.attrelid = r.oid AND a.attnum = d.objsubid
$$;
COMMENT ON FUNCTION mt.schema_objects(text[]) IS
    'multitenant: every object of a schema, normalized for comparison (schema qualifiers removed, constraints and indexes keyed by definition)';

CREATE FUNCTION mt.tenant_schema(tenant_id text, role text DEFAULT 'tenant')
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    schema text;
BEGIN
    SELECT t.schema_name INTO schema FROM mt.tenants t WHERE t.tenant_id = tenant_schema.tenant_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION '% "%" does not exist', role, tenant_id
            USING ERRCODE = 'undefined_object', HINT = 'SELECT tenant_id FROM mt.tenants lists the tenants.';
    END IF;
    RETURN schema;
END
$$;
COMMENT ON FUNCTION mt.tenant_schema(text, text) IS
    'multitenant: the registered schema of a tenant; 42704 naming the tenant (as "role") when there is none';

CREATE FUNCTION mt.introspect(tenant_id text)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    schema text := mt.tenant_schema(tenant_id);
BEGIN
    RETURN (SELECT coalesce(jsonb_object_agg(object_type, objects), '{}')
              FROM (SELECT o.object_type, jsonb_object_agg(o.object_name, o.definition) AS objects
                      FROM mt.schema_objects(ARRAY[schema]) o GROUP BY o.object_type) by_type);
END
$$;
COMMENT ON FUNCTION mt.introspect(text) IS
    'multitenant: the normalized model of a tenant''s schema as jsonb: {object_type: {object_name: definition}}';

-- The one comparison everything else uses. For each schema: a row with change NULL that
-- carries its fingerprint (sha256 over its ordered objects), then one row per difference
-- from the reference. Schemas whose fingerprint equals the reference's skip the joins.
CREATE FUNCTION mt.drift(reference_schema text, schema_names text[])
RETURNS TABLE (schema_name text, object_type text, object_name text, change text,
               expected jsonb, actual jsonb, fingerprint text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
SET jit = off
SET work_mem = '128MB'
AS $$
WITH schemas AS MATERIALIZED (
    SELECT DISTINCT name FROM unnest(drift.schema_names) AS s(name)
), objects AS MATERIALIZED (
    SELECT * FROM mt.schema_objects(array_append(drift.schema_names, drift.reference_schema))
), fingerprints AS (
    SELECT s.name AS schema_name,
           encode(sha256(convert_to(coalesce(string_agg(o.object_type || E'\n' || o.object_name || E'\n' || o.definition::text, E'\n\n'
                                                        ORDER BY o.object_type COLLATE "C", o.object_name COLLATE "C"), ''), 'UTF8')), 'hex') AS fingerprint
      FROM (SELECT name FROM schemas UNION SELECT drift.reference_schema) AS s(name)
      LEFT JOIN objects o ON o.schema_name = s.name
     GROUP BY s.name
), reference AS (
    SELECT f.fingerprint FROM fingerprints f WHERE f.schema_name = drift.reference_schema
), expected AS (
    SELECT o.object_type, o.object_name, o.definition FROM objects o WHERE o.schema_name = drift.reference_schema
), drifted AS (
    SELECT f.schema_name FROM fingerprints f JOIN schemas s ON s.name = f.schema_name, reference r
     WHERE f.fingerprint <> r.fingerprint
)
SELECT f.schema_name, NULL, NULL, NULL, NULL::jsonb, NULL::jsonb, f.fingerprint
  FROM fingerprints f JOIN schemas s ON s.name = f.schema_name
UNION ALL
SELECT d.schema_name, e.object_type, e.object_name, 'missing', e.definition, NULL, NULL
  FROM drifted d CROSS JOIN expected e
 WHERE NOT EXISTS (SELECT FROM objects a
                    WHERE a.schema_name = d.schema_name AND a.object_type = e.object_type AND a.object_name = e.object_name)
UNION ALL
SELECT a.schema_name, a.object_type, a.object_name,
       CASE WHEN e.object_name IS NULL THEN 'extra' ELSE 'changed' END, e.definition, a.definition, NULL
  FROM objects a
  JOIN drifted d ON d.schema_name = a.schema_name
  LEFT JOIN expected e ON e.object_type = a.object_type AND e.object_name = a.object_name
 WHERE e.definition IS DISTINCT FROM a.definition
$$;
COMMENT ON FUNCTION mt.drift(text, text[]) IS
    'multitenant: fingerprints of the given schemas and every difference from the reference schema (the engine behind the drift views)';

CREATE FUNCTION mt.tenant_drift(tenant_id text, reference_tenant text DEFAULT NULL)
RETURNS TABLE (object_type text, object_name text, change text, expected jsonb, actual jsonb)
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    schema    text := mt.tenant_schema(tenant_id);
    reference text := 'mt_template';
BEGIN
    IF reference_tenant IS NOT NULL THEN
        reference := mt.tenant_schema(reference_tenant, 'reference tenant');
    ELSIF NOT EXISTS (SELECT FROM pg_namespace WHERE nspname = reference) THEN
        RAISE EXCEPTION 'the template schema mt_template does not exist yet'
            USING ERRCODE = 'undefined_object', HINT = 'SELECT * FROM mt.refresh_template() builds it from the registered migrations.';
    END IF;
    RETURN QUERY
    SELECT d.object_type, d.object_name, d.change, d.expected, d.actual
      FROM mt.drift(reference, ARRAY[schema]) d
     WHERE d.change IS NOT NULL
     ORDER BY 1, 2;
END
$$;
COMMENT ON FUNCTION mt.tenant_drift(text, text) IS
    'multitenant: every difference between a tenant''s schema and the template (or a reference tenant''s schema): missing, extra or changed objects with both definitions';


-- Incremental drift. Each schema's fingerprint and differences from the template are kept in
-- mt_internal.drift_state and mt_internal.drift_differences, and recomputed only for schemas
-- whose DDL changed since: an event trigger notes the schema of every DDL command in
-- mt_internal.schema_changes (its row rewritten once per schema and transaction), and a
-- refresh recomputes the schemas whose row differs from the one it saw last time
-- (mt_internal.schema_changes_seen; a refresh writes no row a DDL command writes, so the two
-- never wait for each other). GRANT and REVOKE name no schema to event triggers: a digest of
-- each schema's relation privileges, compared at every refresh, catches them. A change that
-- cannot be placed in one tenant's schema ('*', or a change in the shared schema or any other
-- schema that tenant objects may refer to) makes the next refresh a full one.
-- These tables are caches: not dumped, so a restored database starts with a full refresh.

CREATE TABLE mt_internal.schema_changes (
    schema_name text PRIMARY KEY,
    -- The last transaction that changed it.
    changed_by  xid8 NOT NULL
);
COMMENT ON TABLE mt_internal.schema_changes IS
    'multitenant (internal): per schema, the last transaction whose DDL changed it (* for changes in no one schema); written by the mt_note_schema_changes event triggers';

CREATE TABLE mt_internal.schema_changes_seen (
    schema_name text PRIMARY KEY,
    changed_by  xid8 NOT NULL
);
COMMENT ON TABLE mt_internal.schema_changes_seen IS
    'multitenant (internal): the rows of mt_internal.schema_changes as the last drift refresh saw them';

CREATE TABLE mt_internal.drift_state (
    schema_name           text PRIMARY KEY,
    fingerprint           text NOT NULL,
    -- The template's fingerprint the differences were computed against.
    reference_fingerprint text NOT NULL,
    -- mt.drift_column_order as it was: the model depends on it.
    column_order          boolean NOT NULL,
    -- mt_internal.acl_digests as it was.
    acl_digest            text NOT NULL,
    refreshed_at          timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE mt_internal.drift_state IS
    'multitenant (internal): per tenant schema (and mt_template), its fingerprint as of its last refresh and the template fingerprint its differences were computed against';

CREATE TABLE mt_internal.drift_differences (
    schema_name text NOT NULL,
    object_type text NOT NULL,
    object_name text NOT NULL,
    change      text NOT NULL,
    expected    jsonb,
    actual      jsonb
);
CREATE INDEX drift_differences_schema_name_idx ON mt_internal.drift_differences (schema_name);
COMMENT ON TABLE mt_internal.drift_differences IS
    'multitenant (internal): the differences from the template of each drifted tenant schema, as of its last refresh';

-- The schema of a schema, or of the table of a trigger, policy or rule (which have no schema
-- of their own). A function of its own: with these subqueries inline, the event trigger's
-- statement cost three times as much on every DDL command (0.6 ms instead of 0.2).
CREATE FUNCTION mt_internal.owning_schema(classid oid, objid oid)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT n.nspname::text FROM pg_namespace n
     WHERE n.oid = CASE owning_schema.classid
                   WHEN 'pg_namespace'::regclass THEN owning_schema.objid
                   ELSE (SELECT t.relnamespace FROM pg_class t
                          WHERE t.oid = CASE owning_schema.classid
                                        WHEN 'pg_trigger'::regclass THEN (SELECT g.tgrelid FROM pg_trigger g WHERE g.oid = owning_schema.objid)
                                        WHEN 'pg_policy'::regclass THEN (SELECT p.polrelid FROM pg_policy p WHERE p.oid = owning_schema.objid)
                                        WHEN 'pg_rewrite'::regclass THEN (SELECT r.ev_class FROM pg_rewrite r WHERE r.oid = owning_schema.objid)
                                        END)
                   END
$$;
COMMENT ON FUNCTION mt_internal.owning_schema(oid, oid) IS
    'multitenant (internal): the schema of a schema (pg_namespace) or of the table of a trigger, policy or rule; what DDL on it changes';

-- The engine notes a schema itself before it runs migration or copy DDL there, and says so
-- in mt.ddl_noted_schema for the rest of the transaction: a superuser-only setting, read
-- through the library that defines it (mt_internal.ddl_noted_schema), so that tenant code
-- can neither set nor fake it. The event triggers then have nothing to do for commands in
-- that schema (0.13 ms saved on each of a replayed tenant's DDL statements).
CREATE FUNCTION mt_internal.note_schema_change(schema_name text)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO mt_internal.schema_changes (schema_name, changed_by)
    VALUES (note_schema_change.schema_name, pg_current_xact_id())
        ON CONFLICT (schema_name) DO UPDATE SET changed_by = excluded.changed_by;
    SELECT pg_catalog.set_config('mt.ddl_noted_schema', note_schema_change.schema_name, true);
$$;
COMMENT ON FUNCTION mt_internal.note_schema_change(text) IS
    'multitenant (internal): note a schema the engine is about to change by DDL, for the rest of the transaction (the event triggers then skip its commands)';

-- One statement each, cheap when the schema is already noted for this transaction (no row
-- lock taken then): they run after every DDL command, and a migration runs hundreds.
CREATE FUNCTION mt_internal.note_schema_changes()
RETURNS event_trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    noted text := mt_internal.ddl_noted_schema();
BEGIN
    IF noted IS NOT NULL AND NOT EXISTS (SELECT FROM pg_event_trigger_ddl_commands() d
                                          WHERE d.schema_name IS DISTINCT FROM noted) THEN
        RETURN;   -- noted by the engine (mt_internal.note_schema_change)
    END IF;
    INSERT INTO mt_internal.schema_changes AS c (schema_name, changed_by)
    SELECT DISTINCT s.name, pg_current_xact_id()
      FROM pg_event_trigger_ddl_commands() d
     CROSS JOIN LATERAL (
         SELECT CASE WHEN d.classid IN ('pg_namespace'::regclass, 'pg_trigger'::regclass, 'pg_policy'::regclass, 'pg_rewrite'::regclass)
                     THEN mt_internal.owning_schema(d.classid, d.objid)
                     WHEN d.schema_name IS NOT NULL THEN d.schema_name
                     -- GRANT and REVOKE name no schema here: privileges are compared by
                     -- mt_internal.acl_digests instead.
                     WHEN d.command_tag IN ('GRANT', 'REVOKE') THEN NULL
                     ELSE '*' END) AS s(name)
     WHERE NOT d.in_extension AND s.name IS NOT NULL AND s.name !~ '^pg_(temp|toast)'
       -- A subquery per row: the planner, expecting 100 commands, would read the whole
       -- table (a row per tenant) for an anti join on every DDL statement.
       AND (SELECT x.changed_by FROM mt_internal.schema_changes x WHERE x.schema_name = s.name)
           IS DISTINCT FROM pg_current_xact_id()
        ON CONFLICT (schema_name) DO UPDATE SET changed_by = excluded.changed_by;
END
$$;
COMMENT ON FUNCTION mt_internal.note_schema_changes() IS
    'multitenant (internal): event trigger function (ddl_command_end): notes in mt_internal.schema_changes the schemas a DDL command changed';

-- Triggers, policies and rules have no schema of their own: their table's comes first in
-- their address.
CREATE FUNCTION mt_internal.note_schema_drops()
RETURNS event_trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    noted text := mt_internal.ddl_noted_schema();
BEGIN
    IF noted IS NOT NULL AND NOT EXISTS (SELECT FROM pg_event_trigger_dropped_objects() o
                                          WHERE o.schema_name IS DISTINCT FROM noted) THEN
        RETURN;   -- noted by the engine (mt_internal.note_schema_change)
    END IF;
    INSERT INTO mt_internal.schema_changes AS c (schema_name, changed_by)
    SELECT DISTINCT s.name, pg_current_xact_id()
      FROM pg_event_trigger_dropped_objects() o
     CROSS JOIN LATERAL (
         SELECT CASE WHEN o.object_type = 'schema' THEN o.object_name
                     ELSE coalesce(o.schema_name,
                                   CASE WHEN o.object_type IN ('trigger', 'policy', 'rule') THEN o.address_names[1] END,
                                   '*') END) AS s(name)
     WHERE NOT o.is_temporary AND s.name !~ '^pg_(temp|toast)'
       -- A subquery per row: the planner, expecting 100 commands, would read the whole
       -- table (a row per tenant) for an anti join on every DDL statement.
       AND (SELECT x.changed_by FROM mt_internal.schema_changes x WHERE x.schema_name = s.name)
           IS DISTINCT FROM pg_current_xact_id()
        ON CONFLICT (schema_name) DO UPDATE SET changed_by = excluded.changed_by;
END
$$;
COMMENT ON FUNCTION mt_internal.note_schema_drops() IS
    'multitenant (internal): event trigger function (sql_drop): notes in mt_internal.schema_changes the schemas a DROP changed';

CREATE EVENT TRIGGER mt_note_schema_changes ON ddl_command_end
    EXECUTE FUNCTION mt_internal.note_schema_changes();
COMMENT ON EVENT TRIGGER mt_note_schema_changes IS
    'multitenant: notes which schemas DDL changes, so that drift is recomputed only for them';
CREATE EVENT TRIGGER mt_note_schema_drops ON sql_drop
    EXECUTE FUNCTION mt_internal.note_schema_drops();
COMMENT ON EVENT TRIGGER mt_note_schema_drops IS
    'multitenant: notes which schemas DROP commands change, so that drift is recomputed only for them';

-- Per schema, a digest of the privileges granted on its relations (the part of the model a
-- GRANT or REVOKE changes): one pass over pg_class.
CREATE FUNCTION mt_internal.acl_digests(schema_names text[])
RETURNS TABLE (schema_name text, acl_digest text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT s.name, md5(coalesce(string_agg(c.relname || '=' || c.relacl::text, ',' ORDER BY c.relname), ''))
      FROM unnest(acl_digests.schema_names) AS s(name)
      LEFT JOIN pg_namespace n ON n.nspname = s.name
      LEFT JOIN pg_class c ON c.relnamespace = n.oid AND c.relacl IS NOT NULL
     GROUP BY s.name
$$;
COMMENT ON FUNCTION mt_internal.acl_digests(text[]) IS
    'multitenant (internal): per schema, a digest of the privileges on its relations; a drift refresh recomputes the schemas whose digest changed';

-- One batch of a refresh: the schemas' old differences go, their new ones and their
-- fingerprints (against the given template fingerprint) are kept with their privilege
-- digests (mt_internal.acl_digests, as the refresh read them: {schema: digest}), in one
-- statement. Run by mt.refresh_drift, in-process or in background workers
-- (mt_internal.run_in_workers).
CREATE FUNCTION mt_internal.refresh_drift_batch(reference text, batch text[], template_fingerprint text, column_order boolean, digests jsonb)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
    WITH computed AS MATERIALIZED (
        SELECT * FROM mt.drift(refresh_drift_batch.reference, refresh_drift_batch.batch)
    ), cleared AS (
        DELETE FROM mt_internal.drift_differences d WHERE d.schema_name = ANY (refresh_drift_batch.batch)
    ), added AS (
        INSERT INTO mt_internal.drift_differences (schema_name, object_type, object_name, change, expected, actual)
        SELECT c.schema_name, c.object_type, c.object_name, c.change, c.expected, c.actual
          FROM computed c WHERE c.change IS NOT NULL
    )
    INSERT INTO mt_internal.drift_state AS s (schema_name, fingerprint, reference_fingerprint, column_order, acl_digest)
    SELECT c.schema_name, c.fingerprint, refresh_drift_batch.template_fingerprint, refresh_drift_batch.column_order,
           refresh_drift_batch.digests ->> c.schema_name
      FROM computed c WHERE c.change IS NULL
        ON CONFLICT (schema_name) DO UPDATE
       SET fingerprint = excluded.fingerprint, reference_fingerprint = excluded.reference_fingerprint,
           column_order = excluded.column_order, acl_digest = excluded.acl_digest, refreshed_at = excluded.refreshed_at
$$;
COMMENT ON FUNCTION mt_internal.refresh_drift_batch(text, text[], text, boolean, jsonb) IS
    'multitenant (internal): recompute and keep the fingerprints and differences of a batch of schemas against the reference (one batch of mt.refresh_drift)';

CREATE FUNCTION mt.refresh_drift(full_refresh boolean DEFAULT false)
RETURNS TABLE (schemas_checked integer, tenants_drifted integer, was_full boolean)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
DECLARE
    reference  constant text := 'mt_template';
    started    constant timestamptz := clock_timestamp();
    marks      mt_internal.schema_changes[];
    marked     text[];
    digests    jsonb;
    everything boolean;
    template_fingerprint text;
    template_changed boolean;
    stale      text[];
    checked    integer;
    batch_size integer;
    with_column_order constant boolean := coalesce(current_setting('mt.drift_column_order', true), '') IN ('on', 'true');
BEGIN
    -- One refresh at a time: a second one waits, then finds little left to do.
    PERFORM mt_internal.lock_schema('mt_internal.drift_state');
    -- Schemas changed since the last refresh, with the change as seen now.
    marks := ARRAY(SELECT c FROM mt_internal.schema_changes c
                     LEFT JOIN mt_internal.schema_changes_seen s ON s.schema_name = c.schema_name
                    WHERE s.changed_by IS DISTINCT FROM c.changed_by);
    marked := ARRAY(SELECT m.schema_name FROM unnest(marks) m);
    -- A change in a schema that is neither a tenant's nor the template's may change how
    -- tenant objects read (a type or function they use), unless that schema is gone (what a
    -- DROP ... CASCADE took from tenants is noted under the tenants' own schemas).
    everything := full_refresh
        OR EXISTS (SELECT FROM mt_internal.drift_state s WHERE s.column_order <> with_column_order)
        OR EXISTS (
        SELECT FROM unnest(marked) m(name)
         WHERE m.name NOT IN (reference, 'mt', 'mt_internal')
           AND (m.name = '*' OR EXISTS (SELECT FROM pg_namespace n WHERE n.nspname = m.name))
           AND NOT EXISTS (SELECT FROM mt.tenants t WHERE t.schema_name = m.name));

    -- Privileges changed since (GRANT and REVOKE leave no mark).
    digests := (SELECT jsonb_object_agg(a.schema_name, a.acl_digest)
                  FROM mt_internal.acl_digests(array_append(ARRAY(SELECT t.schema_name FROM mt.tenants t), reference)) a);
    marked := marked || ARRAY(SELECT d.key FROM jsonb_each_text(digests) d
                                LEFT JOIN mt_internal.drift_state s ON s.schema_name = d.key
                               WHERE s.acl_digest IS DISTINCT FROM d.value);

    -- Nothing is written before the schemas are compared: background workers may compare
    -- them, and they would wait for this transaction's row locks while it waits for them.
    SELECT s.fingerprint INTO template_fingerprint FROM mt_internal.drift_state s WHERE s.schema_name = reference;
    template_changed := everything OR reference = ANY (marked) OR template_fingerprint IS NULL;
    IF template_changed THEN
        SELECT d.fingerprint INTO template_fingerprint FROM mt.drift(reference, ARRAY[reference]) d;
    END IF;

    -- Unchanged schemas that equal a changed template need no comparison (below).
    stale := ARRAY(SELECT t.schema_name FROM mt.tenants t
                     LEFT JOIN mt_internal.drift_state s ON s.schema_name = t.schema_name
                    WHERE everything OR s.schema_name IS NULL OR t.schema_name = ANY (marked)
                       OR (s.reference_fingerprint <> template_fingerprint AND s.fingerprint <> template_fingerprint)
                    ORDER BY t.schema_name);
    checked := cardinality(stale);
    -- In batches whose models (about 100,000 objects, estimated from the template's relations
    -- and columns: 100 schemas of a real application) stay in mt.drift's work_mem instead of
    -- spilling to disk. Not smaller: every batch reads the catalogs whole (they have no index
    -- by schema), and 50,000 small schemas 100 at a time took longer than one read of all.
    batch_size := greatest(100, 100000 / greatest(1, (
        SELECT count(*) FROM pg_class c LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0
         WHERE c.relnamespace = (SELECT n.oid FROM pg_namespace n WHERE n.nspname = reference))))::integer;
    -- More than one batch: side by side in background workers (up to mt.max_workers at a
    -- time), when they can see what this transaction sees and it has written nothing.
    IF cardinality(stale) > batch_size AND pg_current_xact_id_if_assigned() IS NULL
       AND current_setting('transaction_isolation') = 'read committed' THEN
        PERFORM mt_internal.run_in_workers(ARRAY(
            SELECT format('SELECT mt_internal.refresh_drift_batch(%L, %L, %L, %L, %L)',
                          reference, x.batch, template_fingerprint, with_column_order,
                          (SELECT jsonb_object_agg(name, digests -> name) FROM unnest(x.batch) name))
              FROM generate_series(1, cardinality(stale), batch_size) b,
                   LATERAL (SELECT stale[b : b + batch_size - 1] AS batch) x));
        -- What the workers did not do (no free slot, an error) is done here: an error then
        -- says what it is.
        stale := ARRAY(SELECT x.name FROM unnest(stale) x(name)
                         LEFT JOIN mt_internal.drift_state s ON s.schema_name = x.name
                        WHERE s.refreshed_at IS NULL OR s.refreshed_at < started);
    END IF;
    FOR b IN 1 .. cardinality(stale) BY batch_size LOOP
        PERFORM mt_internal.refresh_drift_batch(reference, stale[b : b + batch_size - 1], template_fingerprint,
                                                with_column_order, digests);
        IF b + batch_size <= cardinality(stale) THEN
            PERFORM mt_internal.release_catalog_caches();   -- one batch's catalog entries at a time
        END IF;
    END LOOP;

    DELETE FROM mt_internal.drift_state s
     WHERE s.schema_name <> reference AND NOT EXISTS (SELECT FROM mt.tenants t WHERE t.schema_name = s.schema_name);
    DELETE FROM mt_internal.drift_differences d
     WHERE NOT EXISTS (SELECT FROM mt.tenants t WHERE t.schema_name = d.schema_name);
    IF template_changed THEN
        INSERT INTO mt_internal.drift_state AS s (schema_name, fingerprint, reference_fingerprint, column_order, acl_digest)
        VALUES (reference, template_fingerprint, template_fingerprint, with_column_order, digests ->> reference)
            ON CONFLICT (schema_name) DO UPDATE
           SET fingerprint = excluded.fingerprint, reference_fingerprint = excluded.reference_fingerprint,
               column_order = excluded.column_order, acl_digest = excluded.acl_digest, refreshed_at = excluded.refreshed_at;
    END IF;
    WITH same AS (
        UPDATE mt_internal.drift_state s SET reference_fingerprint = template_fingerprint
         WHERE s.reference_fingerprint <> template_fingerprint AND s.fingerprint = template_fingerprint
           AND NOT everything AND s.schema_name <> ALL (marked)
        RETURNING s.schema_name)
    DELETE FROM mt_internal.drift_differences d USING same WHERE d.schema_name = same.schema_name;

    INSERT INTO mt_internal.schema_changes_seen AS s (schema_name, changed_by)
    SELECT m.schema_name, m.changed_by FROM unnest(marks) m
        ON CONFLICT (schema_name) DO UPDATE SET changed_by = excluded.changed_by;
    -- Schemas that are gone for good (not tenants: a dropped tenant's is gone with it).
    WITH gone AS (
        SELECT s.schema_name FROM mt_internal.schema_changes_seen s
         WHERE s.schema_name <> '*' AND NOT EXISTS (SELECT FROM pg_namespace n WHERE n.nspname = s.schema_name)
    ), forgotten AS (
        DELETE FROM mt_internal.schema_changes_seen s USING gone WHERE s.schema_name = gone.schema_name
    )
    DELETE FROM mt_internal.schema_changes c USING gone WHERE c.schema_name = gone.schema_name;
    RETURN QUERY SELECT checked,
                        (SELECT count(DISTINCT d.schema_name)::integer FROM mt_internal.drift_differences d),
                        everything;
END
$$;
COMMENT ON FUNCTION mt.refresh_drift(boolean) IS
    'multitenant: bring the kept drift state up to date: recompute the schemas whose DDL changed since the last refresh (all of them with full_refresh => true, or after a change outside any tenant schema); the drift views do it first';

-- What the drift views read, in mt.drift's shape (per schema a row with its fingerprint and
-- no change, then its differences): the kept state, refreshed first; in a read-only
-- transaction (a standby) mt.drift itself, since nothing can be kept there.
CREATE FUNCTION mt_internal.current_drift()
RETURNS TABLE (schema_name text, object_type text, object_name text, change text,
               expected jsonb, actual jsonb, fingerprint text)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
BEGIN
    IF current_setting('transaction_read_only') = 'on' THEN
        RETURN QUERY SELECT * FROM mt.drift('mt_template', ARRAY(SELECT t.schema_name FROM mt.tenants t));
        RETURN;
    END IF;
    PERFORM mt.refresh_drift();
    RETURN QUERY
    SELECT s.schema_name, NULL, NULL, NULL, NULL::jsonb, NULL::jsonb, s.fingerprint
      FROM mt_internal.drift_state s WHERE s.schema_name <> 'mt_template'
    UNION ALL
    SELECT d.schema_name, d.object_type, d.object_name, d.change, d.expected, d.actual, NULL
      FROM mt_internal.drift_differences d;
END
$$;
COMMENT ON FUNCTION mt_internal.current_drift() IS
    'multitenant (internal): what mt.drift(''mt_template'', every tenant) returns, answered from the kept state after a refresh';

CREATE VIEW mt.drift_report AS
SELECT t.tenant_id, d.schema_name, d.object_type, d.object_name, d.change, d.expected, d.actual
  FROM mt_internal.current_drift() d
  JOIN mt.tenants t ON t.schema_name = d.schema_name
 WHERE d.change IS NOT NULL;
COMMENT ON VIEW mt.drift_report IS
    'multitenant: every difference between each tenant''s schema and mt_template, the schema the registered migrations produce (kept per schema, recomputed for schemas changed since)';

CREATE VIEW mt.drift_summary AS
SELECT t.tenant_id, d.schema_name,
       count(d.change) > 0 AS has_drift,
       count(d.change) AS differences,
       max(d.fingerprint) AS fingerprint
  FROM mt_internal.current_drift() d
  JOIN mt.tenants t ON t.schema_name = d.schema_name
 GROUP BY t.tenant_id, d.schema_name;
COMMENT ON VIEW mt.drift_summary IS
    'multitenant: per tenant, whether and how much its schema differs from mt_template, and its schema fingerprint (kept per schema, recomputed for schemas changed since)';
