-- multitenant 0.1.0 -> 0.2.0
--
-- Run by ALTER EXTENSION multitenant UPDATE (in a session that has not used the extension
-- yet: the 0.1.0 and 0.2.0 libraries define the same settings). The result must equal a fresh
-- 0.2.0 install; scripts/upgrade-test.sh proves it.
\echo Use "ALTER EXTENSION multitenant UPDATE TO '0.2.0'" to load this file. \quit

-- The 0.2.0 library has its own file name ($libdir/multitenant-0.2.0); every C function moves to it.

-- ===========================================================================================
-- BEGIN SECTION library relink (keep it LAST: changes of tables and functions go ABOVE it)
--
-- A 0.1.0 database binds its C functions to 'multitenant' (0.1.0's module_pathname), the file
-- $libdir/multitenant.so, which stays installed for databases not yet updated. A fresh 0.2.0
-- install binds them to 'multitenant-0.2.0' (pgrx's versioned library name, no $libdir prefix).
-- Every C function of the extension still bound to the old library ('$libdir/multitenant' is
-- accepted too) is re-created from its own definition with only the library changed:
-- CREATE OR REPLACE keeps its oid, owner, privileges, comment and extension membership.
-- A function the 0.2.0 library no longer exports fails here: drop or replace it above.
DO $mt_relink$
DECLARE
    new_library constant text := 'multitenant-0.2.0';
    saved_path  text := pg_catalog.current_setting('search_path');
    f           record;
    def         text;
    old_as      text;
    hits        integer;
BEGIN
    -- With nothing on the search path, pg_get_functiondef qualifies every name it prints and
    -- EXECUTE resolves them the same way.
    PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    FOR f IN
        SELECT p.oid, p.probin
          FROM pg_catalog.pg_depend d
          JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid
          JOIN pg_catalog.pg_proc p ON p.oid = d.objid
          JOIN pg_catalog.pg_language l ON l.oid = p.prolang
         WHERE d.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass
           AND d.refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass
           AND d.deptype = 'e'
           AND e.extname = 'multitenant'
           AND l.lanname = 'c'
           AND p.probin IS DISTINCT FROM new_library
         ORDER BY p.oid
    LOOP
        IF f.probin IS NULL OR f.probin NOT IN ('multitenant', '$libdir/multitenant') THEN
            RAISE EXCEPTION 'multitenant update: function % is bound to library %, expected multitenant',
                f.oid::pg_catalog.regprocedure, f.probin;
        END IF;
        def := pg_catalog.pg_get_functiondef(f.oid);
        old_as := 'AS ' || pg_catalog.quote_literal(f.probin) || ', ';
        hits := (pg_catalog.length(def) - pg_catalog.length(pg_catalog.replace(def, old_as, '')))
                / pg_catalog.length(old_as);
        IF hits <> 1 THEN
            RAISE EXCEPTION 'multitenant update: cannot find the library of % in its definition',
                f.oid::pg_catalog.regprocedure
                USING DETAIL = def;
        END IF;
        EXECUTE pg_catalog.replace(def, old_as, 'AS ' || pg_catalog.quote_literal(new_library) || ', ');
    END LOOP;

    IF EXISTS (SELECT FROM pg_catalog.pg_depend d
                 JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid
                 JOIN pg_catalog.pg_proc p ON p.oid = d.objid
                WHERE d.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass
                  AND d.refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass
                  AND d.deptype = 'e'
                  AND e.extname = 'multitenant'
                  AND p.probin IN ('multitenant', '$libdir/multitenant')) THEN
        RAISE EXCEPTION 'multitenant update: functions are still bound to the 0.1.0 library';
    END IF;
    PERFORM pg_catalog.set_config('search_path', saved_path, true);
END
$mt_relink$;
-- END SECTION library relink
