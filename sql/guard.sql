-- No silent drop: DROP EXTENSION multitenant is refused while tenants are registered.
--
-- Dropping the extension deletes its tables: the tenant registry, the migrations, the ledger,
-- runs, seeds and their history, the settings. The tenant schemas and roles stay behind,
-- unregistered. So while mt.tenants has rows the drop is refused with a hint, unless the
-- session says `SET mt.allow_drop = on` (docs/operations.md, "Backup and restore").
--
-- Why ddl_command_start, and why the statement's text: an event trigger that is a member of
-- the extension never sees its own extension go. sql_drop (and ddl_command_end) fire after
-- the drop, which has removed the trigger and its function by then, so nothing fires. At
-- ddl_command_start the trigger still exists, but PostgreSQL tells an event trigger only the
-- command tag, not the statement's targets; the guard reads them from the statement's text:
--   * the innermost `SQL statement "..."` of PG_CONTEXT when DROP EXTENSION runs through SPI
--     (a PL/pgSQL function or DO block, static or EXECUTE; SQL the engine runs),
--   * current_query() when a client sent it (psql, pg_restore --clean, a driver).
-- Only `DROP EXTENSION [IF EXISTS] name [, ...]` lists naming multitenant (unquoted in any
-- case, or quoted exactly) are refused; other extensions drop as before. When the text shows
-- no DROP EXTENSION at all (a SQL-language function, whose context carries no statement
-- text) the guard cannot tell what is dropped and refuses too, with its own message.
--
-- It never gets in anyone else's way: it fires on DROP EXTENSION only (not CREATE or ALTER
-- EXTENSION, so neither updates nor restores), returns at once unless the current user could
-- drop multitenant at all (a superuser or a member of the extension's owner: anyone else is
-- refused by PostgreSQL itself) and unless tenants are registered.
-- It is a safety net against accidents, not a permission: a superuser can still disable it
-- (ALTER EVENT TRIGGER ... DISABLE, session_replication_role = replica) or set the override.
-- mt.allow_drop is defined by the library (src/guc.rs); read by name here, so that a
-- session that never loaded the library can set it too.

CREATE FUNCTION mt_internal.drop_guard()
RETURNS event_trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    -- an identifier: quoted ("" inside), or plain (PostgreSQL folds it to lower case)
    ident     constant text := '(?:"(?:[^"]|"")+"|[[:alpha:]_][[:alnum:]_$]*)';
    owner     oid;
    tenants   bigint;
    context   text;
    statement text;
    drop_list text[];
    target    text;
    seen      boolean := false;  -- the text shows a DROP EXTENSION
    drops_mt  boolean := false;  -- ... that names multitenant
    allowed   boolean := lower(coalesce(current_setting('mt.allow_drop', true), '')) IN ('on', 'true', 'yes', '1');
    n_text    text;
BEGIN
    SELECT e.extowner INTO owner FROM pg_extension e WHERE e.extname = 'multitenant';
    IF owner IS NULL OR NOT pg_has_role(current_user, owner, 'USAGE') THEN
        RETURN;  -- cannot drop it anyway: PostgreSQL refuses with "must be owner"
    END IF;
    SELECT count(*) INTO tenants FROM mt.tenants;
    IF tenants = 0 THEN
        RETURN;
    END IF;

    -- The first line of PG_CONTEXT is this function; the next one, if any, the statement
    -- that fired it.
    GET DIAGNOSTICS context = PG_CONTEXT;
    IF strpos(context, E'\n') = 0 THEN
        statement := current_query();
    ELSE
        context := substr(context, strpos(context, E'\n') + 1);
        IF starts_with(context, 'SQL statement "') THEN
            statement := substr(context, length('SQL statement "') + 1);
        END IF;
    END IF;

    -- Comments out of the way, then every DROP EXTENSION list in the text.
    statement := regexp_replace(coalesce(statement, ''), E'/\\*.*?\\*/', ' ', 'g');
    statement := regexp_replace(statement, E'--[^\\n]*', ' ', 'g');
    FOR drop_list IN
        SELECT regexp_matches(statement,
                              E'\\mdrop\\s+extension\\s+(?:if\\s+exists\\s+)?(' || ident || E'(?:\\s*,\\s*' || ident || ')*)', 'gi')
    LOOP
        seen := true;
        FOR target IN SELECT (regexp_matches(drop_list[1], ident, 'g'))[1] LOOP
            IF starts_with(target, '"') THEN
                target := replace(substr(target, 2, length(target) - 2), '""', '"');
            ELSE
                target := lower(target);
            END IF;
            drops_mt := drops_mt OR target = 'multitenant';
        END LOOP;
    END LOOP;

    IF seen AND NOT drops_mt THEN
        RETURN;  -- another extension
    END IF;
    n_text := CASE tenants WHEN 1 THEN '1 tenant is' ELSE tenants || ' tenants are' END;
    IF allowed THEN
        IF drops_mt THEN
            RAISE WARNING 'dropping extension multitenant while % registered (mt.allow_drop is on)', n_text
                USING DETAIL = 'The tenant schemas and roles stay; the registry, migrations, ledger, runs, seeds, seed history and settings are deleted.';
        END IF;
        RETURN;
    END IF;
    IF drops_mt THEN
        RAISE EXCEPTION 'cannot drop extension multitenant: % registered', n_text
            USING ERRCODE = 'dependent_objects_still_exist',
                  DETAIL = 'Dropping it deletes the tenant registry (mt.tenants), the migrations, the ledger, runs, seeds, seed history and settings; the tenant schemas and roles would stay behind, unregistered.',
                  HINT = E'Back up first (pg_dump -Fc keeps all of it; or \\copy mt.tenants TO ''tenants.csv'' CSV HEADER), then drop the tenants with mt.drop_tenant, or SET mt.allow_drop = on to drop the extension anyway (for pg_restore --clean: PGOPTIONS=''-c mt.allow_drop=on'').';
    END IF;
    RAISE EXCEPTION 'DROP EXTENSION refused: % registered in multitenant and this statement may drop it', n_text
        USING ERRCODE = 'dependent_objects_still_exist',
              DETAIL = 'The statement''s text is not visible here (DROP EXTENSION inside a SQL-language function?), so it cannot tell which extensions are dropped.',
              HINT = 'Run DROP EXTENSION as a statement of its own or from PL/pgSQL, or SET mt.allow_drop = on.';
END
$$;
COMMENT ON FUNCTION mt_internal.drop_guard() IS
    'multitenant (internal): event trigger function: refuses DROP EXTENSION multitenant while tenants are registered, unless mt.allow_drop is on';

CREATE EVENT TRIGGER multitenant_drop_guard ON ddl_command_start
    WHEN TAG IN ('DROP EXTENSION')
    EXECUTE FUNCTION mt_internal.drop_guard();
COMMENT ON EVENT TRIGGER multitenant_drop_guard IS
    'multitenant: refuses DROP EXTENSION multitenant while tenants are registered (SET mt.allow_drop = on to drop anyway)';
