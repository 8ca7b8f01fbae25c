-- Cloning a schema, inside the caller's transaction.
--
-- Every object of the source is deparsed by PostgreSQL's own functions (format_type,
-- pg_get_expr, pg_get_constraintdef, pg_get_indexdef, pg_get_viewdef, pg_get_triggerdef,
-- pg_get_functiondef) while search_path = pg_catalog, <source>: they then write the
-- source's own objects unqualified and everything else (shared tables, extensions) qualified.
-- The statements run with search_path = pg_catalog, <target>, so the same names resolve to
-- the clone's objects. Qualifiers the deparsers keep (function headers and bodies, names
-- shadowed by pg_catalog) are rewritten by mt.requalify, a lexer that never touches string
-- literals or comments; function settings such as SET search_path are rewritten too.
--
-- Steps, in order:
--   10 enum types            11 domains, composite types     20 sequences
--   30 functions that use no table or view of the schema     31 domain constraints
--   40 tables (columns, defaults, identity, generated)       -- 50: rows (mt.clone_schema)
--   60 primary key, unique, exclusion and check constraints  61 indexes  62 sequence owners
--   65 functions that use tables   70 views, materialized views (by dependency)
--   71 indexes on materialized views   75 functions that use views   80 foreign keys
--   85 triggers   86 row level security and policies   90 comments   91 owners and grants
--   92 function settings           95 refresh materialized views that were populated

-- Whether an extension owns the object: then it is the extension's business, not the clone's.
CREATE FUNCTION mt_internal.is_extension_member(classid regclass, objid oid)
RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT EXISTS (SELECT FROM pg_catalog.pg_depend d
                    WHERE d.classid = is_extension_member.classid AND d.objid = is_extension_member.objid AND d.deptype = 'e')
$$;
COMMENT ON FUNCTION mt_internal.is_extension_member(regclass, oid) IS
    'multitenant: whether an extension owns the object';

-- The DDL of a clone. mt.clone_statements (src/clone.rs) runs this as the source schema's
-- role: the deparsers want the source on the search path, where whatever the source's
-- owner created could stand in for a built-in function or operator; as that role, it
-- gains nothing by it.
CREATE FUNCTION mt_internal.clone_statements(source_schema text, target_schema text, tracking_table text, source_role oid)
RETURNS TABLE (step integer, object_type text, object_name text, statement text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    source_oid oid := (SELECT n.oid FROM pg_namespace n WHERE n.nspname = source_schema);
    -- The tracking table is the trusted owner's: mt_internal.copy_tracking copies it, not the clone.
    tracking   oid := to_regclass(format('%I.%I', source_schema, tracking_table));
    target     text := quote_ident(target_schema);
    unsupported record;
BEGIN
    IF source_oid IS NULL THEN
        RAISE EXCEPTION 'schema "%" does not exist', source_schema USING ERRCODE = 'invalid_schema_name';
    END IF;

    -- Refuse what would otherwise come out wrong, before anything is written.
    SELECT u.kind, u.name INTO unsupported FROM (
        SELECT CASE c.relkind WHEN 'p' THEN 'partitioned table' WHEN 'f' THEN 'foreign table' ELSE 'inherited table' END AS kind,
               c.relname::text AS name
          FROM pg_class c
         WHERE c.relnamespace = source_oid
           AND (c.relkind IN ('p', 'f') OR c.relispartition OR EXISTS (SELECT FROM pg_inherits i WHERE i.inhrelid = c.oid))
        UNION ALL
        SELECT CASE t.typtype WHEN 'r' THEN 'range type' WHEN 'm' THEN 'multirange type' ELSE 'base type' END, t.typname
          FROM pg_type t
         WHERE t.typnamespace = source_oid AND t.typtype IN ('b', 'r', 'm')
           AND NOT (t.typtype = 'b' AND t.typcategory = 'A')                    -- implicit array types
           AND NOT (t.typtype = 'm' AND EXISTS (SELECT FROM pg_range r WHERE r.rngmultitypid = t.oid))
        UNION ALL
        SELECT 'aggregate', p.proname FROM pg_proc p WHERE p.pronamespace = source_oid AND p.prokind = 'a'
    ) u LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'schema "%" holds the % "%", which cannot be cloned', source_schema, unsupported.kind, unsupported.name
            USING ERRCODE = 'feature_not_supported';
    END IF;

    -- From here on the deparsers write the source's objects unqualified.
    PERFORM set_config('search_path', format('pg_catalog, %I, pg_temp', source_schema), true);

    RETURN QUERY
    -- Catalog lookups go through indexes (pg_depend by depender, pg_class by oid): the
    -- catalogs grow with every tenant, and a clone should not slow down as they do.
    WITH rel AS (
        SELECT c.oid, c.relname, c.relkind, c.relpersistence, c.reloptions, c.relowner, c.relacl,
               c.relrowsecurity, c.relforcerowsecurity, c.relispopulated,
               format('%s.%I', target, c.relname) AS qualified,
               -- the word ALTER, COMMENT ON and GRANT use for it
               CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'S' THEN 'SEQUENCE'
                              WHEN 'c' THEN 'TYPE' ELSE 'TABLE' END AS keyword
          FROM pg_class c
         WHERE c.relnamespace = source_oid AND c.relkind IN ('r', 'v', 'm', 'S', 'c')
           AND NOT mt_internal.is_extension_member('pg_class'::regclass, c.oid)
           AND c.oid IS DISTINCT FROM tracking
           AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                              AND d.refclassid = 'pg_class'::regclass AND d.refobjid = tracking)
    ), identity_seq AS (    -- sequences behind identity columns come with their column
        SELECT s.oid AS seq, o.rel, o.attnum
          FROM rel s, LATERAL (SELECT d.refobjid AS rel, d.refobjsubid AS attnum FROM pg_depend d
                                WHERE d.classid = 'pg_class'::regclass AND d.objid = s.oid AND d.objsubid = 0
                                  AND d.refclassid = 'pg_class'::regclass AND d.deptype = 'i') o
         WHERE s.relkind = 'S'
    ), typ AS (
        SELECT t.oid, t.typname, t.typtype, t.typowner, t.typacl, t.typrelid, format('%s.%I', target, t.typname) AS qualified,
               CASE t.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END AS keyword
          FROM pg_type t
         WHERE t.typnamespace = source_oid
           AND (t.typtype IN ('e', 'd') OR (t.typtype = 'c' AND EXISTS (SELECT FROM rel r WHERE r.oid = t.typrelid AND r.relkind = 'c')))
           AND NOT mt_internal.is_extension_member('pg_type'::regclass, t.oid)
    ), fn AS (
        SELECT p.oid, p.proname, p.prokind, p.proowner, p.proacl, p.proconfig,
               format('%s.%I(%s)', target, p.proname, pg_get_function_identity_arguments(p.oid)) AS qualified,
               CASE p.prokind WHEN 'p' THEN 'PROCEDURE' ELSE 'FUNCTION' END AS keyword,
               -- which relations of the schema it needs to exist first (through types or a SQL body)
               (SELECT max(CASE WHEN r.relkind IN ('v', 'm') THEN 2 ELSE 1 END)
                  FROM pg_depend d
                  LEFT JOIN pg_type t ON d.refclassid = 'pg_type'::regclass AND t.oid = d.refobjid
                  JOIN pg_class r ON r.oid = CASE WHEN d.refclassid = 'pg_class'::regclass THEN d.refobjid ELSE t.typrelid END
                 WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.objsubid = 0
                   AND r.relnamespace = source_oid AND r.relkind IN ('r', 'v', 'm')) AS needs
          FROM pg_proc p
         WHERE p.pronamespace = source_oid
           AND NOT mt_internal.is_extension_member('pg_proc'::regclass, p.oid)
    ), view_depth AS (      -- a view comes after the views it reads
        WITH RECURSIVE edges AS (
            SELECT DISTINCT v.oid AS view, u.uses
              FROM rel v, LATERAL (
                  SELECT d.refobjid AS uses
                    FROM pg_rewrite w
                    JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = w.oid AND d.objsubid = 0
                   WHERE w.ev_class = v.oid AND d.refclassid = 'pg_class'::regclass AND d.refobjid <> v.oid) u
              JOIN rel r ON r.oid = u.uses AND r.relkind IN ('v', 'm')
             WHERE v.relkind IN ('v', 'm')
        ), walk(view, depth) AS (
            SELECT oid, 0 FROM rel WHERE relkind IN ('v', 'm')
            UNION ALL
            SELECT e.view, w.depth + 1 FROM walk w JOIN edges e ON e.uses = w.view WHERE w.depth < 100
        )
        SELECT view, max(depth) AS depth FROM walk GROUP BY view
    ), statements(step, sort_key, object_type, object_name, statement) AS (
        -- 10: enums
        SELECT 10, t.oid::bigint, 'type', t.typname::text,
               format('CREATE TYPE %s AS ENUM (%s)', t.qualified,
                      (SELECT string_agg(quote_literal(e.enumlabel), ', ' ORDER BY e.enumsortorder) FROM pg_enum e WHERE e.enumtypid = t.oid))
          FROM typ t WHERE t.typtype = 'e'
        UNION ALL
        -- 11: domains and composite types, in creation order
        SELECT 11, t.oid::bigint, 'type', t.typname::text,
               CASE WHEN t.typtype = 'd' THEN
                   format('CREATE DOMAIN %s AS %s%s%s%s', t.qualified, format_type(b.typbasetype, b.typtypmod),
                          CASE WHEN b.typcollation <> 0 AND b.typcollation <> bt.typcollation
                               THEN ' COLLATE ' || b.typcollation::regcollation::text ELSE '' END,
                          CASE WHEN b.typdefault IS NOT NULL THEN ' DEFAULT ' || b.typdefault ELSE '' END,
                          CASE WHEN b.typnotnull THEN ' NOT NULL' ELSE '' END)
               ELSE
                   format('CREATE TYPE %s AS (%s)', t.qualified,
                          (SELECT string_agg(format('%I %s%s', a.attname, format_type(a.atttypid, a.atttypmod),
                                                    CASE WHEN a.attcollation <> 0 AND a.attcollation <> at.typcollation
                                                         THEN ' COLLATE ' || a.attcollation::regcollation::text ELSE '' END),
                                             ', ' ORDER BY a.attnum)
                             FROM pg_attribute a JOIN pg_type at ON at.oid = a.atttypid
                            WHERE a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped))
               END
          FROM typ t JOIN pg_type b ON b.oid = t.oid LEFT JOIN pg_type bt ON bt.oid = b.typbasetype
         WHERE t.typtype IN ('d', 'c')
        UNION ALL
        -- 20: sequences (not those of identity columns)
        SELECT 20, s.oid::bigint, 'sequence', s.relname::text,
               format('CREATE SEQUENCE %s AS %s INCREMENT BY %s MINVALUE %s MAXVALUE %s START WITH %s CACHE %s %s',
                      s.qualified, format_type(q.seqtypid, NULL), q.seqincrement, q.seqmin, q.seqmax, q.seqstart, q.seqcache,
                      CASE WHEN q.seqcycle THEN 'CYCLE' ELSE 'NO CYCLE' END)
          FROM rel s JOIN pg_sequence q ON q.seqrelid = s.oid
         WHERE s.relkind = 'S' AND NOT EXISTS (SELECT FROM identity_seq i WHERE i.seq = s.oid)
        UNION ALL
        -- 30, 65, 75: functions and procedures, by what they need
        SELECT CASE f.needs WHEN 1 THEN 65 WHEN 2 THEN 75 ELSE 30 END, f.oid::bigint,
               lower(f.keyword), f.proname::text,
               pg_get_functiondef(f.oid)
          FROM fn f
        UNION ALL
        -- 31: domain constraints (they may call the functions)
        SELECT 31, k.oid::bigint, 'constraint', t.typname || '.' || k.conname,
               format('ALTER DOMAIN %s ADD CONSTRAINT %I %s', t.qualified, k.conname, pg_get_constraintdef(k.oid))
          FROM typ t JOIN pg_constraint k ON k.contypid = t.oid
        UNION ALL
        -- 40: tables with their columns
        SELECT 40, r.oid::bigint, 'table', r.relname::text,
               format('CREATE %sTABLE %s (%s)%s', CASE WHEN r.relpersistence = 'u' THEN 'UNLOGGED ' ELSE '' END, r.qualified,
                      coalesce((SELECT string_agg(
                          format('%I %s', a.attname, format_type(a.atttypid, a.atttypmod))
                          || CASE WHEN a.attcollation <> 0 AND a.attcollation <> at.typcollation
                                  THEN ' COLLATE ' || a.attcollation::regcollation::text ELSE '' END
                          || CASE WHEN a.attgenerated = 's' THEN format(' GENERATED ALWAYS AS (%s) STORED', pg_get_expr(ad.adbin, ad.adrelid))
                                  WHEN a.attidentity <> '' THEN
                                      (SELECT format(' GENERATED %s AS IDENTITY (SEQUENCE NAME %s.%I INCREMENT BY %s MINVALUE %s MAXVALUE %s START WITH %s CACHE %s %s)',
                                                     CASE a.attidentity WHEN 'a' THEN 'ALWAYS' ELSE 'BY DEFAULT' END, target, sc.relname,
                                                     q.seqincrement, q.seqmin, q.seqmax, q.seqstart, q.seqcache, CASE WHEN q.seqcycle THEN 'CYCLE' ELSE 'NO CYCLE' END)
                                         FROM identity_seq i JOIN pg_class sc ON sc.oid = i.seq JOIN pg_sequence q ON q.seqrelid = i.seq
                                        WHERE i.rel = r.oid AND i.attnum = a.attnum)
                                  WHEN ad.adbin IS NOT NULL THEN ' DEFAULT ' || pg_get_expr(ad.adbin, ad.adrelid)
                                  ELSE '' END
                          || CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END,
                          ', ' ORDER BY a.attnum)
                         FROM pg_attribute a JOIN pg_type at ON at.oid = a.atttypid
                         LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
                        WHERE a.attrelid = r.oid AND a.attnum > 0 AND NOT a.attisdropped), ''),
                      CASE WHEN r.reloptions IS NOT NULL THEN format(' WITH (%s)', array_to_string(r.reloptions, ', ')) ELSE '' END)
          FROM rel r WHERE r.relkind = 'r'
        UNION ALL
        -- 60: constraints other than foreign keys; 80: foreign keys, after the rows
        SELECT CASE WHEN k.contype = 'f' THEN 80 ELSE 60 END, k.oid::bigint, 'constraint', r.relname || '.' || k.conname,
               format('ALTER TABLE %s ADD CONSTRAINT %I %s', r.qualified, k.conname, pg_get_constraintdef(k.oid))
          FROM rel r JOIN pg_constraint k ON k.conrelid = r.oid
         WHERE k.contype IN ('p', 'u', 'x', 'c', 'f') AND k.conislocal
        UNION ALL
        -- 61, 71: indexes that no constraint owns
        SELECT CASE WHEN r.relkind = 'm' THEN 71 ELSE 61 END, i.indexrelid::bigint, 'index', ic.relname::text,
               pg_get_indexdef(i.indexrelid)
          FROM rel r JOIN pg_index i ON i.indrelid = r.oid JOIN pg_class ic ON ic.oid = i.indexrelid
         WHERE NOT EXISTS (SELECT FROM pg_constraint k WHERE k.conindid = i.indexrelid AND k.conrelid = r.oid AND k.contype IN ('p', 'u', 'x'))
        UNION ALL
        -- 62: serial-style sequences owned by a column
        SELECT 62, s.oid::bigint, 'sequence', s.relname::text,
               format('ALTER SEQUENCE %s OWNED BY %s.%I', s.qualified, r.qualified, a.attname)
          FROM rel s
          CROSS JOIN LATERAL (SELECT d.refobjid, d.refobjsubid FROM pg_depend d
                               WHERE d.classid = 'pg_class'::regclass AND d.objid = s.oid AND d.objsubid = 0
                                 AND d.deptype = 'a' AND d.refclassid = 'pg_class'::regclass) d
          JOIN rel r ON r.oid = d.refobjid
          JOIN pg_attribute a ON a.attrelid = r.oid AND a.attnum = d.refobjsubid
         WHERE s.relkind = 'S'
        UNION ALL
        -- 70: views and materialized views, each after those it reads
        SELECT 70, v.depth * 4294967296 + r.oid::bigint, lower(r.keyword), r.relname::text,
               format('CREATE %s %s%s AS %s%s', r.keyword, r.qualified,
                      CASE WHEN r.reloptions IS NOT NULL THEN format(' WITH (%s)', array_to_string(r.reloptions, ', ')) ELSE '' END,
                      rtrim(pg_get_viewdef(r.oid), ';'), CASE r.relkind WHEN 'm' THEN ' WITH NO DATA' ELSE '' END)
          FROM rel r JOIN view_depth v ON v.view = r.oid
        UNION ALL
        -- 85: triggers (not the internal ones behind foreign keys), then their enabled state
        SELECT 85, g.oid::bigint, 'trigger', r.relname || '.' || g.tgname,
               pg_get_triggerdef(g.oid)
               || CASE g.tgenabled WHEN 'D' THEN format('; ALTER TABLE %s DISABLE TRIGGER %I', r.qualified, g.tgname)
                                   WHEN 'R' THEN format('; ALTER TABLE %s ENABLE REPLICA TRIGGER %I', r.qualified, g.tgname)
                                   WHEN 'A' THEN format('; ALTER TABLE %s ENABLE ALWAYS TRIGGER %I', r.qualified, g.tgname)
                                   ELSE '' END
          FROM rel r JOIN pg_trigger g ON g.tgrelid = r.oid
         WHERE NOT g.tgisinternal
        UNION ALL
        -- 86: row level security
        SELECT 86, r.oid::bigint, 'table', r.relname::text,
               format('ALTER TABLE %s %s ROW LEVEL SECURITY', r.qualified, CASE WHEN r.relforcerowsecurity THEN 'FORCE' ELSE 'ENABLE' END)
               || CASE WHEN r.relforcerowsecurity AND r.relrowsecurity THEN format('; ALTER TABLE %s ENABLE ROW LEVEL SECURITY', r.qualified) ELSE '' END
          FROM rel r WHERE r.relrowsecurity OR r.relforcerowsecurity
        UNION ALL
        SELECT 86, p.oid::bigint, 'policy', r.relname || '.' || p.polname,
               format('CREATE POLICY %I ON %s AS %s FOR %s TO %s%s%s', p.polname, r.qualified,
                      CASE WHEN p.polpermissive THEN 'PERMISSIVE' ELSE 'RESTRICTIVE' END,
                      CASE p.polcmd WHEN 'r' THEN 'SELECT' WHEN 'a' THEN 'INSERT' WHEN 'w' THEN 'UPDATE' WHEN 'd' THEN 'DELETE' ELSE 'ALL' END,
                      (SELECT string_agg(CASE WHEN role = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(role)) END, ', ') FROM unnest(p.polroles) AS role),
                      CASE WHEN p.polqual IS NOT NULL THEN format(' USING (%s)', pg_get_expr(p.polqual, p.polrelid)) ELSE '' END,
                      CASE WHEN p.polwithcheck IS NOT NULL THEN format(' WITH CHECK (%s)', pg_get_expr(p.polwithcheck, p.polrelid)) ELSE '' END)
          FROM rel r JOIN pg_policy p ON p.polrelid = r.oid
        UNION ALL
        -- 90: comments on every kind of object cloned
        SELECT 90, o.sort_key, 'comment', o.name, format('COMMENT ON %s IS %L', o.target_object, d.description)
          FROM (
            SELECT 'pg_class'::regclass AS classid, r.oid AS objid, 0 AS objsubid, r.oid::bigint AS sort_key, r.relname::text AS name,
                   r.keyword || ' ' || r.qualified AS target_object
              FROM rel r
            UNION ALL
            SELECT 'pg_class'::regclass, r.oid, a.attnum, r.oid::bigint, r.relname || '.' || a.attname, format('COLUMN %s.%I', r.qualified, a.attname)
              FROM rel r JOIN pg_attribute a ON a.attrelid = r.oid AND a.attnum > 0 AND NOT a.attisdropped
            UNION ALL
            SELECT 'pg_class'::regclass, ic.oid, 0, ic.oid::bigint, ic.relname::text, format('INDEX %s.%I', target, ic.relname)
              FROM rel r JOIN pg_index i ON i.indrelid = r.oid JOIN pg_class ic ON ic.oid = i.indexrelid
            UNION ALL
            SELECT 'pg_type'::regclass, t.oid, 0, t.oid::bigint, t.typname::text, t.keyword || ' ' || t.qualified
              FROM typ t WHERE t.typtype <> 'c'
            UNION ALL
            SELECT 'pg_proc'::regclass, f.oid, 0, f.oid::bigint, f.proname::text, f.keyword || ' ' || f.qualified
              FROM fn f
            UNION ALL
            SELECT 'pg_constraint'::regclass, k.oid, 0, k.oid::bigint, k.conname::text, format('CONSTRAINT %I ON %s', k.conname, r.qualified)
              FROM rel r JOIN pg_constraint k ON k.conrelid = r.oid
            UNION ALL
            SELECT 'pg_constraint'::regclass, k.oid, 0, k.oid::bigint, k.conname::text, format('CONSTRAINT %I ON DOMAIN %s', k.conname, t.qualified)
              FROM typ t JOIN pg_constraint k ON k.contypid = t.oid
            UNION ALL
            SELECT 'pg_trigger'::regclass, g.oid, 0, g.oid::bigint, g.tgname::text, format('TRIGGER %I ON %s', g.tgname, r.qualified)
              FROM rel r JOIN pg_trigger g ON g.tgrelid = r.oid WHERE NOT g.tgisinternal
            UNION ALL
            SELECT 'pg_policy'::regclass, p.oid, 0, p.oid::bigint, p.polname::text, format('POLICY %I ON %s', p.polname, r.qualified)
              FROM rel r JOIN pg_policy p ON p.polrelid = r.oid
          ) o
          JOIN pg_description d ON d.classoid = o.classid AND d.objoid = o.objid AND d.objsubid = o.objsubid
        UNION ALL
        -- 91: privileges as the source has them. The statements run as the target's role,
        -- which owns what they create: the source's owner (and the source's role) is CURRENT_USER.
        SELECT 91, o.sort_key, 'grant', o.name,
               format('REVOKE ALL ON %s %s FROM PUBLIC, CURRENT_USER', o.kind, o.target_object)
               || coalesce((SELECT string_agg(format('; GRANT %s%s ON %s %s TO %s%s', x.privilege_type,
                                                     CASE WHEN o.column_name IS NOT NULL THEN format(' (%I)', o.column_name) ELSE '' END,
                                                     o.kind, o.target_object,
                                                     CASE WHEN x.grantee = 0 THEN 'PUBLIC'
                                                          WHEN x.grantee IN (o.owner, source_role) THEN 'CURRENT_USER'
                                                          ELSE quote_ident(pg_get_userbyid(x.grantee)) END,
                                                     CASE WHEN x.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END), '')
                              FROM aclexplode(o.acl) x), '')
          FROM (
            SELECT r.oid::bigint AS sort_key, r.relname::text AS name, r.relowner AS owner, r.relacl AS acl, r.qualified AS target_object,
                   CASE WHEN r.keyword IN ('SEQUENCE', 'TYPE') THEN r.keyword ELSE 'TABLE' END AS kind, NULL::name AS column_name
              FROM rel r WHERE r.relacl IS NOT NULL
            UNION ALL
            SELECT t.oid::bigint, t.typname::text, t.typowner, t.typacl, t.qualified, t.keyword, NULL
              FROM typ t WHERE t.typacl IS NOT NULL AND t.typtype <> 'c'
            UNION ALL
            SELECT f.oid::bigint, f.proname::text, f.proowner, f.proacl, f.qualified, f.keyword, NULL
              FROM fn f WHERE f.proacl IS NOT NULL
          ) o
        UNION ALL
        -- column privileges add to the table's: grants only
        SELECT 91, r.oid::bigint, 'grant', r.relname || '.' || a.attname,
               (SELECT string_agg(format('GRANT %s (%I) ON TABLE %s TO %s%s', x.privilege_type, a.attname, r.qualified,
                                         CASE WHEN x.grantee = 0 THEN 'PUBLIC'
                                              WHEN x.grantee IN (r.relowner, source_role) THEN 'CURRENT_USER'
                                              ELSE quote_ident(pg_get_userbyid(x.grantee)) END,
                                         CASE WHEN x.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END), '; ')
                  FROM aclexplode(a.attacl) x)
          FROM rel r JOIN pg_attribute a ON a.attrelid = r.oid AND a.attnum > 0 AND NOT a.attisdropped
         WHERE a.attacl IS NOT NULL
        UNION ALL
        -- 92: function settings; a search_path naming the source names the target instead
        SELECT 92, f.oid::bigint, lower(f.keyword), f.proname::text,
               format('ALTER %s %s RESET ALL', f.keyword, f.qualified)
               || (SELECT string_agg(format('; ALTER %s %s SET %I = %s', f.keyword,
                                            f.qualified, split_part(setting, '=', 1),
                                            CASE WHEN split_part(setting, '=', 1) = 'search_path'
                                                 -- each entry unquoted ("public" is public; SET ... FROM CURRENT stores it so)
                                                 THEN (SELECT string_agg(quote_literal(CASE WHEN e = source_schema THEN target_schema ELSE e END), ', ' ORDER BY i)
                                                         FROM unnest(mt_internal.search_path_names(substr(setting, strpos(setting, '=') + 1)))
                                                              WITH ORDINALITY AS p(e, i))
                                                 ELSE quote_literal(substr(setting, strpos(setting, '=') + 1)) END), '')
                     FROM unnest(f.proconfig) AS setting)
          FROM fn f
         WHERE EXISTS (SELECT FROM unnest(f.proconfig) AS setting WHERE setting LIKE 'search\_path=%')
        UNION ALL
        -- 95: materialized views that hold rows in the source
        SELECT 95, v.depth * 4294967296 + r.oid::bigint, 'materialized view', r.relname::text,
               format('REFRESH MATERIALIZED VIEW %s', r.qualified)
          FROM rel r JOIN view_depth v ON v.view = r.oid
         WHERE r.relkind = 'm' AND r.relispopulated
    )
    -- Deparsers always qualify some names (function headers, the table of an index or a
    -- trigger) and bodies are text: mt.clone_statements makes whatever still names the
    -- source name the target (multitenant_core::sql_text::requalify).
    SELECT s.step, s.object_type, s.object_name, s.statement
      FROM statements s
     ORDER BY s.step, s.sort_key, s.statement;
END
$$;
COMMENT ON FUNCTION mt_internal.clone_statements(text, text, text, oid) IS
    'multitenant (internal): the DDL of a clone, computed as the source schema''s role (see mt.clone_statements)';

-- The expression that fills one column of a copied row under an anonymize rule.
CREATE FUNCTION mt_internal.anonymize_expression(rule jsonb, table_name text, column_name text, column_type text)
RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    hashed   text := format('encode(sha256(convert_to(%I::text, %L)), %L)', column_name, 'UTF8', 'hex');
    keys     text[];
BEGIN
    IF jsonb_typeof(rule) = 'null' OR rule = '"null"' THEN
        RETURN 'NULL';
    ELSIF rule = '"hash"' THEN
        RETURN CASE WHEN column_type = 'uuid' THEN format('left(%s, 32)::uuid', hashed)
                    WHEN column_type ~ '^(text|character varying|character|citext)\M' THEN format('%s::%s', hashed, column_type)
                    ELSE mt_internal.anonymize_error(table_name, column_name, format('a hash needs a text or uuid column, not %s', column_type)) END;
    ELSIF jsonb_typeof(rule) = 'object' THEN
        keys := ARRAY(SELECT jsonb_object_keys(rule));
        IF keys = '{value}' THEN
            RETURN CASE WHEN jsonb_typeof(rule -> 'value') = 'null' THEN 'NULL'
                        ELSE format('%L::%s', rule ->> 'value', column_type) END;
        ELSIF keys = '{template}' AND jsonb_typeof(rule -> 'template') = 'string' THEN
            RETURN format('replace(%L, %L, %s)::%s', rule ->> 'template', '{hash}', hashed, column_type);
        ELSIF keys = '{sql}' AND jsonb_typeof(rule -> 'sql') = 'string' THEN
            RETURN format('(%s)::%s', rule ->> 'sql', column_type);
        END IF;
    END IF;
    RETURN mt_internal.anonymize_error(table_name, column_name, format('unknown rule %s', rule));
END
$$;
COMMENT ON FUNCTION mt_internal.anonymize_expression(jsonb, text, text, text) IS
    'multitenant: the SQL expression an anonymize rule puts in place of a column when rows are cloned';

CREATE FUNCTION mt_internal.anonymize_error(table_name text, column_name text, problem text)
RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RAISE EXCEPTION 'anonymize rule for %.%: %', table_name, column_name, problem
        USING ERRCODE = 'invalid_parameter_value',
              HINT = 'A rule is null, "hash", {"value": …}, {"template": "…{hash}…"} or {"sql": "expression"}.';
END
$$;
COMMENT ON FUNCTION mt_internal.anonymize_error(text, text, text) IS
    'multitenant: raises the 22023 error for a bad anonymize rule';

-- The statements that copy the source's rows into the clone (none unless include_data; the
-- tracking table's are mt_internal.copy_tracking's), parents before children, with anonymize rules applied, then set
-- each sequence where the source's is and never below a copied value. Each names the table
-- it reads, so that callers can leave out tables they know to be empty.
-- Whether a column's default makes a new value each time it runs (gen_random_uuid(),
-- random(), clock_timestamp(): a volatile function other than a sequence's nextval) and no
-- foreign key points at the column. A template copy leaves such columns to the new tenant's
-- own default, so that a secret a migration generated is each tenant's own, as a replay
-- would make it; ids and what references them are copied as they are.
CREATE FUNCTION mt_internal.default_is_fresh(rel oid, attnum smallint)
RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT EXISTS (SELECT FROM pg_attrdef d,
                          LATERAL regexp_matches(pg_get_expr(d.adbin, d.adrelid), '([A-Za-z_][A-Za-z0-9_$]*)\s*\(', 'g') AS f(m)
                     JOIN pg_proc p ON p.proname = lower(f.m[1])
                    WHERE d.adrelid = default_is_fresh.rel AND d.adnum = default_is_fresh.attnum
                      AND p.provolatile = 'v' AND p.proname <> 'nextval')
       AND NOT EXISTS (SELECT FROM pg_constraint k
                        WHERE k.contype = 'f' AND k.confrelid = default_is_fresh.rel AND default_is_fresh.attnum = ANY (k.confkey))
$$;
COMMENT ON FUNCTION mt_internal.default_is_fresh(oid, smallint) IS
    'multitenant (internal): whether a template copy leaves a column to its default (a volatile one, not a sequence, no foreign key pointing at it)';

CREATE FUNCTION mt.row_copy_statements(source_schema text, target_schema text, include_data boolean, anonymize jsonb,
                                       fresh_defaults boolean DEFAULT false)
RETURNS TABLE (kind text, table_name text, statement text)
LANGUAGE plpgsql
SECURITY DEFINER  -- as mt.clone_statements
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    source_oid oid := (SELECT n.oid FROM pg_namespace n WHERE n.nspname = source_schema);
    tracking   text := mt.get_config('tracking_table');
    item       record;
BEGIN
    IF anonymize IS NOT NULL AND NOT include_data THEN
        RAISE EXCEPTION 'anonymize rules need include_data => true' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF anonymize IS NOT NULL AND jsonb_typeof(anonymize) <> 'object' THEN
        RAISE EXCEPTION 'anonymize must be a JSON object of tables, not %', jsonb_typeof(anonymize)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'For example {"users": {"email": {"template": "user-{hash}@example.com"}, "name": null}}.';
    END IF;

    -- Every table and column a rule names must exist, before a row is copied.
    SELECT r.key AS table_name, c.key AS column_name,
           EXISTS (SELECT FROM pg_class t WHERE t.relnamespace = source_oid AND t.relname = r.key AND t.relkind = 'r') AS table_exists,
           jsonb_typeof(r.value) AS rules_type
      INTO item
      FROM jsonb_each(coalesce(anonymize, '{}')) r
      LEFT JOIN LATERAL jsonb_each(CASE WHEN jsonb_typeof(r.value) = 'object' THEN r.value END) c ON true
     WHERE NOT EXISTS (SELECT FROM pg_class t WHERE t.relnamespace = source_oid AND t.relname = r.key AND t.relkind = 'r')
        OR jsonb_typeof(r.value) <> 'object'
        OR c.key IS NOT NULL AND NOT EXISTS (SELECT FROM pg_class t JOIN pg_attribute a ON a.attrelid = t.oid
                        WHERE t.relnamespace = source_oid AND t.relname = r.key AND a.attname = c.key
                          AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '')
     LIMIT 1;
    IF FOUND THEN
        IF NOT item.table_exists THEN
            RAISE EXCEPTION 'anonymize names table "%", which schema "%" does not have', item.table_name, source_schema
                USING ERRCODE = 'undefined_table';
        ELSIF item.rules_type <> 'object' THEN
            RAISE EXCEPTION 'anonymize rules for table "%" must be a JSON object of columns, not %', item.table_name, item.rules_type
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        RAISE EXCEPTION 'anonymize names column "%" of table "%", which does not exist or is generated', item.column_name, item.table_name
            USING ERRCODE = 'undefined_column';
    END IF;

    RETURN QUERY
    WITH RECURSIVE tables AS (
        SELECT c.oid, c.relname FROM pg_class c
         WHERE c.relnamespace = source_oid AND c.relkind = 'r' AND include_data AND c.relname <> tracking
    ), parents AS (
        SELECT DISTINCT k.conrelid AS child, k.confrelid AS parent
          FROM pg_constraint k JOIN tables c ON c.oid = k.conrelid JOIN tables p ON p.oid = k.confrelid
         WHERE k.contype = 'f' AND k.conrelid <> k.confrelid
    ), depth(oid, level) AS (
        SELECT oid, 0 FROM tables
        UNION ALL
        SELECT p.child, d.level + 1 FROM depth d JOIN parents p ON p.parent = d.oid WHERE d.level < 100
    ), copies AS (
        SELECT t.relname, max(d.level) AS level,
               string_agg(format('%I', a.attname), ', ' ORDER BY a.attnum) AS columns,
               string_agg(CASE
                   WHEN anonymize -> t.relname::text ? a.attname
                       THEN mt_internal.anonymize_expression(anonymize -> t.relname::text -> a.attname::text, t.relname, a.attname,
                                                    mt_internal.strip_schema(format_type(a.atttypid, a.atttypmod), source_schema))
                   -- types of the source schema (enums, domains, composites) reach the clone's through text
                   WHEN ty.typnamespace = source_oid OR el.typnamespace = source_oid
                       THEN format('%I::text::%I.%s', a.attname, target_schema,
                                   mt_internal.strip_schema(format_type(a.atttypid, a.atttypmod), source_schema))
                   ELSE format('%I', a.attname) END, ', ' ORDER BY a.attnum) AS expressions
          FROM tables t
          JOIN (SELECT oid, max(level) AS level FROM depth GROUP BY oid) d ON d.oid = t.oid
          JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
                             AND NOT (fresh_defaults AND mt_internal.default_is_fresh(t.oid, a.attnum))
          JOIN pg_type ty ON ty.oid = a.atttypid
          LEFT JOIN pg_type el ON el.oid = ty.typelem AND ty.typcategory = 'A'
         GROUP BY t.oid, t.relname
    ), sequences AS (
        SELECT s.relname, pg_sequence_last_value(s.oid) AS last_value, q.seqstart, q.seqincrement,
               t.relname AS table_name, a.attname
          FROM pg_class s JOIN pg_sequence q ON q.seqrelid = s.oid
          LEFT JOIN LATERAL (SELECT o.refobjid, o.refobjsubid FROM pg_depend o
                              WHERE o.classid = 'pg_class'::regclass AND o.objid = s.oid AND o.objsubid = 0
                                AND o.deptype IN ('a', 'i') AND o.refclassid = 'pg_class'::regclass AND o.refobjsubid > 0) d ON true
          LEFT JOIN pg_class t ON t.oid = d.refobjid
          LEFT JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
         WHERE s.relnamespace = source_oid AND s.relkind = 'S' AND t.relname IS DISTINCT FROM tracking
    )
    SELECT x.kind, x.table_name, x.statement FROM (
        SELECT 1 AS part, c.level, 'rows' AS kind, c.relname::text AS table_name,
               format('INSERT INTO %I.%I (%s) OVERRIDING SYSTEM VALUE SELECT %s FROM %I.%I',
                      target_schema, c.relname, c.columns, c.expressions, source_schema, c.relname) AS statement
          FROM copies c
        UNION ALL
        -- where the source's sequence is (a fresh one starts where the source started)
        SELECT 2, 0, 'sequence', NULL, format('SELECT pg_catalog.setval(%L::regclass, %s, true)',
                                               format('%I.%I', target_schema, s.relname), s.last_value)
          FROM sequences s WHERE s.last_value IS NOT NULL
        UNION ALL
        -- past the largest copied value
        SELECT 3, 0, 'sequence', s.table_name::text,
               format('SELECT pg_catalog.setval(%L::regclass, max(%I)::bigint) FROM %I.%I HAVING max(%I)::bigint > %s',
                      format('%I.%I', target_schema, s.relname), s.attname, target_schema, s.table_name,
                      s.attname, coalesce(s.last_value, s.seqstart - 1))
          FROM sequences s
         WHERE s.attname IS NOT NULL AND s.seqincrement > 0 AND include_data
    ) x
    ORDER BY x.part, x.level, x.table_name, x.statement;
END
$$;
COMMENT ON FUNCTION mt.row_copy_statements(text, text, boolean, jsonb, boolean) IS
    'multitenant: the statements that copy one schema''s rows into its clone and move its sequences past them (fresh_defaults: columns with volatile defaults are left to the clone''s defaults, as template copies do); what mt_internal.clone_rows runs';

-- Copies the rows; returns how many.
CREATE FUNCTION mt_internal.clone_rows(source_schema text, target_schema text, include_data boolean, anonymize jsonb)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    item   record;
    copied bigint;
    total  bigint := 0;
    -- The source's role reads its own rows (row level security applies as it does to the
    -- source's owner) and may write into the clone only while the copy lasts.
    reader oid := mt_internal.code_role(source_schema);
BEGIN
    PERFORM mt_internal.lend_schema(target_schema, reader, true);
    FOR item IN SELECT * FROM mt.row_copy_statements(source_schema, target_schema, include_data, anonymize) LOOP
        -- Type names in anonymize rules resolve in the clone.
        copied := mt_internal.execute_as(reader, format('pg_catalog, %I, pg_temp', target_schema), item.statement);
        IF item.kind = 'rows' THEN
            total := total + copied;
        END IF;
    END LOOP;
    PERFORM mt_internal.lend_schema(target_schema, reader, false);
    RETURN total;
END
$$;
COMMENT ON FUNCTION mt_internal.clone_rows(text, text, boolean, jsonb) IS
    'multitenant (internal): copy rows from one schema''s tables into its clone''s as the source''s role, applying anonymize rules; returns the rows copied';

-- Lets `reader` (the role of a copy's source) write the rows of a new schema, or takes that
-- back; both in the copy's transaction, so no other session ever sees the grant.
CREATE FUNCTION mt_internal.lend_schema(schema_name text, reader oid, lend boolean)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    grantee   text := quote_ident(pg_get_userbyid(reader));
    tables    text;
    sequences text;
BEGIN
    -- The schema's relations found through pg_depend's index, named one by one: GRANT ...
    -- ON ALL TABLES IN SCHEMA reads all of pg_class, which grows with the fleet.
    SELECT string_agg(c.oid::regclass::text, ', ') FILTER (WHERE c.relkind IN ('r', 'p')),
           string_agg(c.oid::regclass::text, ', ') FILTER (WHERE c.relkind = 'S')
      INTO tables, sequences
      FROM pg_namespace n
      JOIN pg_depend d ON d.refclassid = 'pg_namespace'::regclass AND d.refobjid = n.oid
                      AND d.classid = 'pg_class'::regclass AND d.deptype = 'n'
      JOIN pg_class c ON c.oid = d.objid
     WHERE n.nspname = lend_schema.schema_name;
    IF lend THEN
        EXECUTE format('GRANT USAGE ON SCHEMA %I TO %s', schema_name, grantee);
        IF tables IS NOT NULL THEN
            EXECUTE format('GRANT SELECT, INSERT ON TABLE %s TO %s', tables, grantee);
        END IF;
        IF sequences IS NOT NULL THEN
            EXECUTE format('GRANT SELECT, UPDATE ON SEQUENCE %s TO %s', sequences, grantee);
        END IF;
    ELSE
        IF tables IS NOT NULL THEN
            EXECUTE format('REVOKE SELECT, INSERT ON TABLE %s FROM %s', tables, grantee);
        END IF;
        IF sequences IS NOT NULL THEN
            EXECUTE format('REVOKE SELECT, UPDATE ON SEQUENCE %s FROM %s', sequences, grantee);
        END IF;
        EXECUTE format('REVOKE USAGE ON SCHEMA %I FROM %s', schema_name, grantee);
    END IF;
END
$$;
COMMENT ON FUNCTION mt_internal.lend_schema(text, oid, boolean) IS
    'multitenant (internal): grant a copy''s source role the right to fill a new schema, or revoke it';

-- The objects and rows of a clone, not the tracking table. Every statement runs as the
-- target's role, which so owns the clone; rows are copied between steps 40 and 60.
CREATE FUNCTION mt_internal.clone_objects(source_schema text, target_schema text, include_data boolean, anonymize jsonb)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET check_function_bodies = off
AS $$
DECLARE
    item        record;
    writer      oid := mt_internal.code_role(target_schema);
    path        text := format('pg_catalog, %I, pg_temp', target_schema);
    rows_copied bigint := 0;
    copied      boolean := false;
BEGIN
    FOR item IN SELECT * FROM mt.clone_statements(source_schema, target_schema) LOOP
        IF item.step >= 60 AND NOT copied THEN
            rows_copied := mt_internal.clone_rows(source_schema, target_schema, include_data, anonymize);
            copied := true;
        END IF;
        PERFORM mt_internal.execute_as(writer, path, item.statement);
    END LOOP;
    IF NOT copied THEN
        rows_copied := mt_internal.clone_rows(source_schema, target_schema, include_data, anonymize);
    END IF;
    RETURN rows_copied;
END
$$;
COMMENT ON FUNCTION mt_internal.clone_objects(text, text, boolean, jsonb) IS
    'multitenant (internal): run mt.clone_statements as the target''s role and copy the rows as the source''s; returns the rows copied';

CREATE FUNCTION mt.clone_schema(
    source_schema text,
    target_schema text,
    include_data  boolean DEFAULT false,
    anonymize     jsonb DEFAULT NULL
)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET check_function_bodies = off
AS $$
DECLARE
    rows_copied bigint := 0;
BEGIN
    IF NOT EXISTS (SELECT FROM pg_namespace WHERE nspname = target_schema) THEN
        RAISE EXCEPTION 'schema "%" does not exist', target_schema USING ERRCODE = 'invalid_schema_name';
    END IF;
    IF mt.schema_object_count(target_schema) > 0
       OR to_regclass(format('%I.%I', target_schema, mt.get_config('tracking_table'))) IS NOT NULL THEN
        RAISE EXCEPTION 'schema "%" is not empty', target_schema USING ERRCODE = 'schema_and_data_statement_mixing_not_supported',
            HINT = 'Clone into a new tenant, or drop what the schema holds first.';
    END IF;
    -- Migrations take this lock exclusively; clones of one source may run side by side.
    PERFORM mt_internal.lock_schema(source_schema, 'shared');
    rows_copied := mt_internal.clone_objects(source_schema, target_schema, include_data, anonymize);
    PERFORM mt_internal.copy_tracking(source_schema, target_schema);
    RETURN rows_copied;
END
$$;
COMMENT ON FUNCTION mt.clone_schema(text, text, boolean, jsonb) IS
    'multitenant: copy every object of one schema (and, with include_data, its rows) into an existing empty schema; returns the rows copied';

CREATE FUNCTION mt.clone_tenant(
    source        text,
    target        text,
    include_data  boolean DEFAULT false,
    anonymize     jsonb DEFAULT NULL
)
RETURNS mt.tenants
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    original mt.tenants;
    created  mt.tenants;
BEGIN
    SELECT * INTO original FROM mt.tenants t WHERE t.tenant_id = source;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'tenant "%" does not exist', source
            USING ERRCODE = 'undefined_object', HINT = 'SELECT tenant_id FROM mt.tenants lists the tenants.';
    END IF;
    IF NOT EXISTS (SELECT FROM pg_namespace WHERE nspname = original.schema_name) THEN
        RAISE EXCEPTION 'schema "%" of tenant "%" does not exist', original.schema_name, source
            USING ERRCODE = 'invalid_schema_name';
    END IF;

    -- Validates the target id and that it is free; the schema comes out empty.
    created := mt.create_tenant(target, metadata => original.metadata, migrate => false);
    -- The clone's tracking table is written by mt_internal.copy_tracking; its mt_ledger trigger fills
    -- the new tenant's ledger.
    PERFORM mt.clone_schema(original.schema_name, created.schema_name, include_data, anonymize);
    UPDATE mt.tenants t SET tracking_format = original.tracking_format WHERE t.tenant_id = created.tenant_id
    RETURNING * INTO created;
    RETURN created;
END
$$;
COMMENT ON FUNCTION mt.clone_tenant(text, text, boolean, jsonb) IS
    'multitenant: create tenant target as a copy of tenant source: every object, the migration records and, with include_data, the rows (anonymized by rules); one transaction';

-- Template provisioning. mt_template is copied for every new tenant and changes only when
-- migrations are applied to it, so the statements that copy it are deparsed once, written
-- for the reserved schema name mt_clone_target, and kept until the template's tracking
-- records change. A copy substitutes the new schema's name for mt_clone_target (a plain
-- name, like every tenant schema: the naming rules guarantee it) and runs three scripts.
CREATE TABLE mt.template_scripts (
    part    integer PRIMARY KEY CHECK (part IN (1, 2, 3)),
    version text NOT NULL,
    script  text NOT NULL
);
COMMENT ON TABLE mt.template_scripts IS
    'multitenant: cache of the statements that copy mt_template into a new tenant (not dumped: rebuilt on first use)';
COMMENT ON COLUMN mt.template_scripts.part IS
    '1: types, sequences, functions and tables; 2: the rows migrations wrote and sequence positions; 3: constraints, indexes, views, triggers and the rest';
COMMENT ON COLUMN mt.template_scripts.version IS
    'mt_internal.template_version() when the script was built; a script of another version is stale';
COMMENT ON COLUMN mt.template_scripts.script IS
    'the statements, separated by semicolons, naming the target schema mt_clone_target';

-- Changes whenever a migration is applied to the template, its records are converted or
-- it is rebuilt: a digest of its tracking table.
CREATE FUNCTION mt_internal.template_version()
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tracking text := mt.get_config('tracking_table');
    digest   text;
BEGIN
    IF to_regclass(format('%I.%I', 'mt_template', tracking)) IS NULL THEN
        RETURN NULL;
    END IF;
    PERFORM mt_internal.check_tracking_table('mt_template');
    EXECUTE format('SELECT md5(string_agg(t::text, %L ORDER BY t::text)) FROM %I.%I t', E'\n', 'mt_template', tracking)
       INTO digest;
    RETURN tracking || ':' || coalesce(digest, '');
END
$$;
COMMENT ON FUNCTION mt_internal.template_version() IS
    'multitenant: a digest of mt_template''s tracking records; mt.template_scripts built under another one are stale';

-- False, and nothing cached, when the template itself mentions mt_clone_target somewhere.
CREATE FUNCTION mt_internal.build_template_scripts(version text)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    item     record;
    has_rows boolean;
    parts    text[] := ARRAY['', '', ''];
    part     integer;
BEGIN
    IF EXISTS (SELECT FROM mt.clone_statements('mt_template', 'mt_template') s WHERE strpos(s.statement, 'mt_clone_target') > 0) THEN
        RETURN false;
    END IF;
    FOR item IN SELECT s.step, s.statement FROM mt.clone_statements('mt_template', 'mt_clone_target') s LOOP
        part := CASE WHEN item.step < 60 THEN 1 ELSE 3 END;
        parts[part] := parts[part] || item.statement || E';\n';
    END LOOP;
    -- Only the tables migrations wrote rows into (the tracking table at least).
    FOR item IN SELECT * FROM mt.row_copy_statements('mt_template', 'mt_clone_target', true, NULL, fresh_defaults => true) LOOP
        has_rows := true;
        IF item.table_name IS NOT NULL THEN
            EXECUTE format('SELECT EXISTS (SELECT FROM %I.%I)', 'mt_template', item.table_name) INTO has_rows;
        END IF;
        IF has_rows THEN
            parts[2] := parts[2] || item.statement || E';\n';
        END IF;
    END LOOP;
    INSERT INTO mt.template_scripts (part, version, script)
    SELECT p.part, build_template_scripts.version, p.script FROM unnest(parts) WITH ORDINALITY AS p(script, part)
        ON CONFLICT ON CONSTRAINT template_scripts_pkey
        DO UPDATE SET version = excluded.version, script = excluded.script;
    RETURN true;
END
$$;
COMMENT ON FUNCTION mt_internal.build_template_scripts(text) IS
    'multitenant: deparse mt_template into mt.template_scripts under the given version; false when the template mentions mt_clone_target itself';

-- Called by mt.create_tenant with a new, empty schema, when mt.template_is_current().
CREATE FUNCTION mt_internal.copy_template(target_schema text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET check_function_bodies = off
AS $$
DECLARE
    current_version text;
    item    record;
    writer  oid := mt_internal.code_role(target_schema);
BEGIN
    IF target_schema IS DISTINCT FROM quote_ident(target_schema) THEN
        RAISE EXCEPTION 'schema name "%" cannot receive a copy of the template', target_schema
            USING ERRCODE = 'invalid_schema_name';
    END IF;
    -- Migrations of the template take this lock exclusively.
    PERFORM mt_internal.lock_schema('mt_template', 'shared');
    -- Noted for drift once, rather than by the event triggers after each statement.
    PERFORM mt_internal.note_schema_change(target_schema);
    current_version := mt_internal.template_version();
    IF NOT EXISTS (SELECT FROM mt.template_scripts s WHERE s.version = current_version)
       AND NOT mt_internal.build_template_scripts(current_version) THEN
        -- Object by object, with the rows migrations wrote (the template holds nothing else).
        PERFORM mt_internal.clone_objects('mt_template', target_schema, true, NULL);
    ELSE
        -- As in mt_internal.clone_objects: the target's role runs the DDL, the template's role copies
        -- the rows its migrations wrote.
        FOR item IN SELECT s.part, s.script FROM mt.template_scripts s
                     WHERE s.version = current_version AND s.script <> '' ORDER BY s.part LOOP
            IF item.part = 2 THEN
                PERFORM mt_internal.lend_schema(target_schema, 'mt_template_role'::regrole, true);
            END IF;
            PERFORM mt_internal.execute_as(CASE item.part WHEN 2 THEN 'mt_template_role'::regrole::oid ELSE writer END,
                                  format('pg_catalog, %I, pg_temp', target_schema),
                                  replace(item.script, 'mt_clone_target', target_schema));
            IF item.part = 2 THEN
                PERFORM mt_internal.lend_schema(target_schema, 'mt_template_role'::regrole, false);
            END IF;
        END LOOP;
    END IF;
    -- New tenants get the configured tracking format, whatever the template's is.
    PERFORM mt_internal.copy_tracking('mt_template', target_schema, mt.get_config('tracking_format'));
END
$$;
COMMENT ON FUNCTION mt_internal.copy_template(text) IS
    'multitenant: copy mt_template (objects, tracking records and the rows migrations wrote) into a new empty schema, from cached statements';

-- Called by mt.migrate_all's workers for a tenant schema with nothing recorded: a copy of
-- the template when the schema holds nothing (but its empty tracking table) and the
-- template is current; NULL, and nothing done, otherwise. Returns the records copied.
CREATE FUNCTION mt_internal.provision_from_template(target_schema text)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tracking text := mt.get_config('tracking_table');
    records  integer;
BEGIN
    IF mt.schema_object_count(target_schema) > 0 OR NOT mt.template_is_current() THEN
        RETURN NULL;
    END IF;
    IF to_regclass(format('%I.%I', target_schema, tracking)) IS NOT NULL THEN
        PERFORM mt_internal.check_tracking_table(target_schema);
        EXECUTE format('SELECT count(*) FROM %I.%I', target_schema, tracking) INTO records;
        IF records > 0 THEN
            RETURN NULL;
        END IF;
        -- Kept, and filled by copy_template: dropping it would make the commit wait for the
        -- disk (PostgreSQL flushes every commit that drops a relation).
    END IF;
    PERFORM mt_internal.copy_template(target_schema);
    EXECUTE format('SELECT count(*) FROM %I.%I', target_schema, tracking) INTO records;
    RETURN records;
END
$$;
COMMENT ON FUNCTION mt_internal.provision_from_template(text) IS
    'multitenant (internal): give an empty tenant schema a copy of the current mt_template (what migrate_all does instead of replaying every migration); NULL when the schema holds something or the template is not current';
