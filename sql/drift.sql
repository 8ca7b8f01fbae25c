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

CREATE FUNCTION mt_internal.strip_schema(definition text, schema_name text)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    -- Schema names are plain identifiers (naming rules), so the qualifier is `name.` or "name".
    SELECT regexp_replace(
               regexp_replace(definition, '(^|[^a-z0-9_$"])' || schema_name || '\.', '\1', 'g'),
               '"' || schema_name || '"\.', '', 'g')
$$;
COMMENT ON FUNCTION mt_internal.strip_schema(text, text) IS
    'multitenant: a deparsed definition with the given schema''s qualifier removed';

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
AS $$
WITH nsp AS (
    -- A join, not = ANY (array): that would compare every schema with every name.
    SELECT n.oid, n.nspname FROM pg_namespace n JOIN unnest(schema_objects.schema_names) AS s(name) ON s.name = n.nspname
), tracking AS (
    SELECT mt.get_config('tracking_table') AS name
), rel AS (
    SELECT c.oid, c.relname, c.relkind, c.relrowsecurity, c.relforcerowsecurity, c.relpersistence, n.nspname
      FROM pg_class c JOIN nsp n ON n.oid = c.relnamespace, tracking t
     WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') AND c.relname <> t.name
       AND NOT EXISTS (SELECT FROM pg_depend d              -- owned by the tracking table
                          JOIN pg_class o ON o.oid = d.refobjid AND o.relnamespace = n.oid AND o.relname = t.name
                        WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'a'
                          AND d.refclassid = 'pg_class'::regclass)
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
SELECT r.nspname, 'constraint', r.relname || ': ' || mt_internal.strip_schema(pg_get_constraintdef(k.oid), r.nspname),
       jsonb_build_object('type', CASE k.contype WHEN 'p' THEN 'primary key' WHEN 'u' THEN 'unique' WHEN 'c' THEN 'check'
                                                WHEN 'f' THEN 'foreign key' WHEN 'x' THEN 'exclusion' ELSE k.contype::text END,
                          'definition', mt_internal.strip_schema(pg_get_constraintdef(k.oid), r.nspname),
                          'deferrable', k.condeferrable, 'deferred', k.condeferred, 'validated', k.convalidated)
  FROM rel r JOIN pg_constraint k ON k.conrelid = r.oid
UNION ALL
-- indexes not backing a constraint, by definition (the name cut out)
SELECT r.nspname, 'index', r.relname || ': ' || regexp_replace(mt_internal.strip_schema(pg_get_indexdef(i.indexrelid), r.nspname), '^CREATE (UNIQUE )?INDEX \S+ ON ', 'CREATE \1INDEX ON '),
       jsonb_build_object('definition', regexp_replace(mt_internal.strip_schema(pg_get_indexdef(i.indexrelid), r.nspname), '^CREATE (UNIQUE )?INDEX \S+ ON ', 'CREATE \1INDEX ON '),
                          'unique', i.indisunique)
  FROM rel r JOIN pg_index i ON i.indrelid = r.oid
 WHERE NOT EXISTS (SELECT FROM pg_constraint k WHERE k.conindid = i.indexrelid AND k.conrelid = r.oid)
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

CREATE VIEW mt.drift_report AS
SELECT t.tenant_id, d.schema_name, d.object_type, d.object_name, d.change, d.expected, d.actual
  FROM mt.drift('mt_template', ARRAY(SELECT schema_name FROM mt.tenants)) d
  JOIN mt.tenants t ON t.schema_name = d.schema_name
 WHERE d.change IS NOT NULL;
COMMENT ON VIEW mt.drift_report IS
    'multitenant: every difference between each tenant''s schema and mt_template, the schema the registered migrations produce';

CREATE VIEW mt.drift_summary AS
SELECT t.tenant_id, d.schema_name,
       count(d.change) > 0 AS has_drift,
       count(d.change) AS differences,
       max(d.fingerprint) AS fingerprint
  FROM mt.drift('mt_template', ARRAY(SELECT schema_name FROM mt.tenants)) d
  JOIN mt.tenants t ON t.schema_name = d.schema_name
 GROUP BY t.tenant_id, d.schema_name;
COMMENT ON VIEW mt.drift_summary IS
    'multitenant: per tenant, whether and how much its schema differs from mt_template, and its schema fingerprint';
