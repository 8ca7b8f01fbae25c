-- Security (issue 12): the extension attacked by a hostile tenant, a hostile database owner
-- and a member of mt_admin, none of them superuser.
--
-- Every gadget below calls sec_audit.gadget(), which records current_user, session_user and
-- whether current_user is a superuser, then tries its payload: ALTER ROLE <planter>
-- SUPERUSER, directly and, when that fails, after RESET ROLE and after SET SESSION
-- AUTHORIZATION DEFAULT (leaving the tenant role the extension put it in). sec_audit.ran
-- lists the gadgets that ran since the last report; sec_audit.report() tells whether any ran
-- as a superuser and which role of this suite became one, then undoes that, so that each
-- section stands on its own. The expected behaviour: no gadget ever runs as a superuser, no
-- role of this suite ever becomes one, every refusal is 42501 and names what it found.
\i pg_test/helpers.sql
\set VERBOSITY terse

-- Roles and databases are cluster-wide: whatever an earlier run left goes first.
SET client_min_messages = warning;
DROP DATABASE IF EXISTS sec_premade_mt;
DO $$
DECLARE r record;
BEGIN
    FOR r IN SELECT rolname FROM pg_roles WHERE rolname ~ '^(sec_|tenant_sec_)' ORDER BY rolname LOOP
        EXECUTE pg_catalog.format('DROP OWNED BY %I CASCADE', r.rolname);
        EXECUTE pg_catalog.format('DROP ROLE %I', r.rolname);
    END LOOP;
END
$$;
RESET client_min_messages;

------------------------------------------------------------------------------------------
-- The audit trail: a schema only the superuser owns, writable by everyone.
------------------------------------------------------------------------------------------
CREATE SCHEMA sec_audit;
CREATE TABLE sec_audit.log (
    n       bigserial PRIMARY KEY,
    section text,
    gadget  text NOT NULL,
    cur     name NOT NULL,
    sess    name NOT NULL,
    su      boolean,
    payload text
);
-- A sequence is not transactional: it remembers a superuser run whose transaction rolled back.
CREATE SEQUENCE sec_audit.superuser_runs;
GRANT USAGE ON SCHEMA sec_audit TO PUBLIC;
GRANT INSERT ON sec_audit.log TO PUBLIC;
GRANT USAGE ON SEQUENCE sec_audit.log_n_seq, sec_audit.superuser_runs TO PUBLIC;

-- try(escape, payload): runs escape (if any) then payload; says what happened.
CREATE FUNCTION sec_audit.try(escape text, payload text) RETURNS text
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    became text;
BEGIN
    IF escape IS NOT NULL THEN
        EXECUTE escape;
        became := 'became ' || current_user || ', ';
    END IF;
    EXECUTE payload;
    RETURN coalesce(became, '') || 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN coalesce(became, '') || SQLSTATE;
END
$$;

-- gadget(tag, attacker): what every gadget does when it runs. Setup steps that fire gadgets
-- on purpose set sec.disarmed = on first.
CREATE FUNCTION sec_audit.gadget(tag text, attacker text) RETURNS boolean
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    who     name := current_user;
    su      boolean := (SELECT r.rolsuper FROM pg_roles r WHERE r.rolname = current_user);
    grab    text := format('ALTER ROLE %I SUPERUSER', attacker);
    outcome text;
BEGIN
    IF current_setting('sec.disarmed', true) = 'on' THEN
        RETURN true;
    END IF;
    IF su THEN
        BEGIN
            PERFORM nextval('sec_audit.superuser_runs');
        EXCEPTION WHEN OTHERS THEN NULL;
        END;
        RAISE WARNING 'gadget "%" runs as superuser %', tag, who;
    END IF;
    outcome := 'alter role: ' || sec_audit.try(NULL, grab);
    IF outcome NOT LIKE '%ok' THEN
        outcome := outcome || '; reset role: ' || sec_audit.try('RESET ROLE', grab)
                           || '; set session authorization: ' || sec_audit.try('SET SESSION AUTHORIZATION DEFAULT', grab);
    END IF;
    BEGIN
        INSERT INTO sec_audit.log (gadget, cur, sess, su, payload) VALUES (tag, who, session_user, su, outcome);
    EXCEPTION WHEN OTHERS THEN NULL;
    END;
    RETURN true;
END
$$;

-- make_gadget(function, arguments, result type, body): a plpgsql function that runs the
-- gadget (planted by current_user), then body; @attacker@ in body is current_user, quoted.
CREATE FUNCTION sec_audit.make_gadget(fn text, args text, returns text, body text, volatility text DEFAULT 'VOLATILE')
RETURNS text
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    EXECUTE format('CREATE FUNCTION %s(%s) RETURNS %s LANGUAGE plpgsql %s AS %L', fn, args, returns, volatility,
                   format('BEGIN PERFORM sec_audit.gadget(%L, %L); %s END', fn || '(' || args || ')', current_user,
                          replace(body, '@attacker@', quote_literal(current_user))));
    RETURN fn || '(' || args || ')';
END
$$;

-- plant_shadows(schema): functions and operators that win over pg_catalog's for unqualified
-- calls (a better match: no cast needed) or tie with them (same signature: they win when
-- the schema comes before pg_catalog in search_path). Returns how many.
CREATE FUNCTION sec_audit.plant_shadows(target text) RETURNS integer
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    s text := quote_ident(target);
    g record;
    planted integer := 0;
BEGIN
    FOR g IN SELECT * FROM (VALUES
        ('to_timestamp', 'numeric', 'timestamptz', 'RETURN pg_catalog.to_timestamp($1::float8);'),
        ('to_timestamp', 'bigint', 'timestamptz', 'RETURN pg_catalog.to_timestamp($1::float8);'),
        ('now', '', 'timestamptz', 'RETURN pg_catalog.now();'),
        ('clock_timestamp', '', 'timestamptz', 'RETURN pg_catalog.clock_timestamp();'),
        ('hashtext', 'text', 'integer', 'RETURN pg_catalog.hashtext($1);'),
        ('lower', 'text', 'text', 'RETURN pg_catalog.lower($1);'),
        ('format', 'text, text', 'text', 'RETURN pg_catalog.format($1, $2);'),
        ('format', 'text, text, text', 'text', 'RETURN pg_catalog.format($1, $2, $3);'),
        ('unnest', 'integer[]', 'SETOF integer', 'RETURN QUERY SELECT pg_catalog.unnest($1);'),
        ('unnest', 'text[]', 'SETOF text', 'RETURN QUERY SELECT pg_catalog.unnest($1);'),
        ('unnest', 'bigint[]', 'SETOF bigint', 'RETURN QUERY SELECT pg_catalog.unnest($1);'),
        ('convert_to', 'text, text', 'bytea', 'RETURN pg_catalog.convert_to($1, $2::name);'),
        ('nextval', 'text', 'bigint', 'RETURN pg_catalog.nextval($1::regclass);'),
        ('set_config', 'text, text, boolean', 'text', 'RETURN pg_catalog.set_config($1, $2, $3);'),
        ('jsonb_build_object', 'text, text', 'jsonb', 'RETURN pg_catalog.jsonb_build_object($1, $2);'),
        ('div_bigint_numeric', 'bigint, numeric', 'numeric', 'RETURN $1::numeric OPERATOR(pg_catalog./) $2;'),
        ('div_numeric_integer', 'numeric, integer', 'numeric', 'RETURN $1 OPERATOR(pg_catalog./) $2::numeric;'),
        ('mul_numeric_integer', 'numeric, integer', 'numeric', 'RETURN $1 OPERATOR(pg_catalog.*) $2::numeric;'),
        ('mul_integer_numeric', 'integer, numeric', 'numeric', 'RETURN $1::numeric OPERATOR(pg_catalog.*) $2;'),
        ('eq_int_arrays', 'integer[], integer[]', 'boolean', 'RETURN $1 OPERATOR(pg_catalog.=) $2;'),
        ('eq_text_arrays', 'text[], text[]', 'boolean', 'RETURN $1 OPERATOR(pg_catalog.=) $2;'),
        ('concat_text_integer', 'text, integer', 'text', 'RETURN $1 OPERATOR(pg_catalog.||) $2::text;')
    ) AS v(name, args, returns, body) LOOP
        PERFORM sec_audit.make_gadget(s || '.' || g.name, g.args, g.returns, g.body);
        planted := planted + 1;
    END LOOP;
    EXECUTE format('CREATE OPERATOR %s./ (LEFTARG = bigint, RIGHTARG = numeric, FUNCTION = %s.div_bigint_numeric)', s, s);
    EXECUTE format('CREATE OPERATOR %s./ (LEFTARG = numeric, RIGHTARG = integer, FUNCTION = %s.div_numeric_integer)', s, s);
    EXECUTE format('CREATE OPERATOR %s.* (LEFTARG = numeric, RIGHTARG = integer, FUNCTION = %s.mul_numeric_integer)', s, s);
    EXECUTE format('CREATE OPERATOR %s.* (LEFTARG = integer, RIGHTARG = numeric, FUNCTION = %s.mul_integer_numeric)', s, s);
    EXECUTE format('CREATE OPERATOR %s.= (LEFTARG = integer[], RIGHTARG = integer[], FUNCTION = %s.eq_int_arrays)', s, s);
    EXECUTE format('CREATE OPERATOR %s.= (LEFTARG = text[], RIGHTARG = text[], FUNCTION = %s.eq_text_arrays)', s, s);
    EXECUTE format('CREATE OPERATOR %s.|| (LEFTARG = text, RIGHTARG = integer, FUNCTION = %s.concat_text_integer)', s, s);
    RETURN planted + 7;
END
$$;

-- plant_tracking_gadgets(schema): what a tracking table can be made to call.
CREATE FUNCTION sec_audit.plant_tracking_gadgets(target text) RETURNS integer
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    s text := quote_ident(target);
BEGIN
    PERFORM sec_audit.make_gadget(s || '.g_bool', '', 'boolean', 'RETURN true;');
    PERFORM sec_audit.make_gadget(s || '.g_int', '', 'integer', 'RETURN 0;');
    PERFORM sec_audit.make_gadget(s || '.g_imm', 'text', 'text', 'RETURN $1;', 'IMMUTABLE');
    PERFORM sec_audit.make_gadget(s || '.g_immb', 'text', 'boolean', 'RETURN true;', 'IMMUTABLE');
    PERFORM sec_audit.make_gadget(s || '.g_trigger', '', 'trigger', 'RETURN NULL;');
    EXECUTE format('CREATE DOMAIN %s.g_name AS varchar(255) CHECK (%s.g_bool())', s, s);
    RETURN 6;
END
$$;

-- plant_users_trigger(schema): the tenant's users table replaced by one whose trigger,
-- besides being a gadget, leaves things behind in the session that fires it: a temporary
-- view and a temporary domain that shadow pg_catalog's for the next unqualified query, and
-- a session-wide search_path that puts the tenant's schema before pg_catalog.
CREATE FUNCTION sec_audit.plant_users_trigger(target text) RETURNS text
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    s text := quote_ident(target);
BEGIN
    EXECUTE format('DROP TABLE %s.users', s);
    EXECUTE format('CREATE TABLE %s.users (id serial PRIMARY KEY, email text NOT NULL)', s);
    PERFORM sec_audit.make_gadget(s || '.users_trigger', '', 'trigger', replace($body$
        BEGIN
            CREATE TEMP VIEW pg_stat_activity AS
            SELECT * FROM pg_catalog.pg_stat_activity WHERE sec_audit.gadget('temporary view pg_stat_activity', @attacker@);
        EXCEPTION WHEN OTHERS THEN NULL;
        END;
        BEGIN
            CREATE DOMAIN pg_temp.text AS pg_catalog.text CHECK (sec_audit.gadget('temporary domain text', @attacker@));
        EXCEPTION WHEN OTHERS THEN NULL;
        END;
        BEGIN
            PERFORM pg_catalog.set_config('search_path', @schema@ || ', pg_catalog, public', false);
        EXCEPTION WHEN OTHERS THEN NULL;
        END;
        RETURN NEW;$body$, '@schema@', quote_literal(s)));
    EXECUTE format('CREATE TRIGGER users_trigger BEFORE INSERT ON %s.users FOR EACH ROW EXECUTE FUNCTION %s.users_trigger()', s, s);
    RETURN target || '.users';
END
$$;

-- The gadgets that ran since the last report, and as whom.
CREATE VIEW sec_audit.ran AS
SELECT DISTINCT gadget, cur AS ran_as, sess AS session_as, su AS superuser, payload
  FROM sec_audit.log WHERE section IS NULL;

-- report(label): did any gadget run as a superuser, did any role of this suite become one?
-- Then undoes it and starts the next section afresh. Every report is kept for the summary.
CREATE TABLE sec_audit.reports (section text, gadget_ran_as_superuser boolean, roles_made_superuser text);
CREATE FUNCTION sec_audit.report(label text)
RETURNS TABLE (section text, gadget_ran_as_superuser boolean, roles_made_superuser text)
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r record;
BEGIN
    section := label;
    gadget_ran_as_superuser := coalesce((SELECT bool_or(l.su) FROM sec_audit.log l WHERE l.section IS NULL), false)
                               OR (SELECT q.is_called FROM sec_audit.superuser_runs q);
    roles_made_superuser := coalesce((SELECT string_agg(a.rolname, ', ' ORDER BY a.rolname) FROM pg_roles a
                                       WHERE a.rolname ~ '^(sec_|tenant_sec_)' AND a.rolsuper), '');
    FOR r IN SELECT a.rolname FROM pg_roles a WHERE a.rolname ~ '^(sec_|tenant_sec_)' AND a.rolsuper LOOP
        EXECUTE format('ALTER ROLE %I NOSUPERUSER', r.rolname);
    END LOOP;
    UPDATE sec_audit.log l SET section = label WHERE l.section IS NULL;
    ALTER SEQUENCE sec_audit.superuser_runs RESTART;
    INSERT INTO sec_audit.reports VALUES (section, gadget_ran_as_superuser, roles_made_superuser);
    RETURN NEXT;
END
$$;
REVOKE ALL ON FUNCTION sec_audit.report(text) FROM PUBLIC;

-- forget(): drops what setup steps made the gadgets log (as non-superusers).
CREATE PROCEDURE sec_audit.forget()
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    DELETE FROM sec_audit.log WHERE section IS NULL AND NOT su;
END
$$;
REVOKE ALL ON PROCEDURE sec_audit.forget() FROM PUBLIC;

-- The role a tenant's code runs as (0.1.0 had none: its stand-in is the schema owner).
CREATE FUNCTION sec_audit.role_of(tenant text) RETURNS text
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
    SELECT coalesce(to_jsonb(t) ->> 'role_name', 'sec_legacy') FROM mt.tenants t WHERE t.tenant_id = tenant
$$;

------------------------------------------------------------------------------------------
-- The cast: a database owner (owns public in PostgreSQL 15), an operator in mt_admin, an
-- application role, a dashboard in mt_monitor and an outsider. None is superuser.
------------------------------------------------------------------------------------------
CREATE ROLE sec_dbowner LOGIN;
CREATE ROLE sec_admin LOGIN IN ROLE mt_admin;
CREATE ROLE sec_app LOGIN NOINHERIT;
CREATE ROLE sec_monitor LOGIN;
GRANT mt_monitor TO sec_monitor;
CREATE ROLE sec_outsider LOGIN;
ALTER DATABASE :"DBNAME" OWNER TO sec_dbowner;
-- 0.1.0 had no tenant roles; there the attacker of issue 12 is a role owning tenant schemas.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_attribute WHERE attrelid = 'mt.tenants'::regclass AND attname = 'role_name') THEN
        CREATE ROLE sec_legacy NOLOGIN;
        PERFORM mt.set_config('schema_owner', 'sec_legacy');
    END IF;
END
$$;

SET SESSION AUTHORIZATION sec_admin;
SELECT mt.add_migration('0001_base', $$
CREATE TABLE secrets (id int PRIMARY KEY, note text);
INSERT INTO secrets VALUES (1, 'only for this tenant');
CREATE TABLE users (id serial PRIMARY KEY, email text NOT NULL);
$$);
RESET SESSION AUTHORIZATION;

------------------------------------------------------------------------------------------
-- Path 4: a pre-created mt_template. Before the first run, the database owner creates
-- mt_template with a view named like the tracking table that claims every registered
-- migration, and a table for new tenants to copy. The extension must refuse it (42501),
-- never read it, never copy it.
------------------------------------------------------------------------------------------
SET SESSION AUTHORIZATION sec_dbowner;
CREATE SCHEMA mt_template;
CREATE VIEW mt_template.__drizzle_migrations AS
SELECT 1 AS id, '0001_base'::varchar(255) AS name, pg_catalog.now() AS applied_at
 WHERE sec_audit.gadget('mt_template.__drizzle_migrations (view)', 'sec_dbowner');
SELECT sec_audit.make_gadget('mt_template.g_imm', 'integer', 'boolean', 'RETURN true;', 'IMMUTABLE');
CREATE TABLE mt_template.planted (id int, g boolean GENERATED ALWAYS AS (mt_template.g_imm(id)) STORED);
SET sec.disarmed = on;
INSERT INTO mt_template.planted (id) VALUES (1);
RESET sec.disarmed;
RESET SESSION AUTHORIZATION;

SET SESSION AUTHORIZATION sec_admin;
SELECT pg_temp.attempt($$SELECT mt.create_tenant('sec_tpl')$$) AS create_tenant;
SELECT pg_temp.attempt('SELECT count(*) FROM mt.health') AS health;
SELECT pg_temp.attempt('SELECT mt.health_check()') AS health_check;
SELECT pg_temp.attempt('SELECT mt.metrics()') AS metrics;
SELECT schema_name, status, sqlstate FROM mt.refresh_template();
SELECT pg_temp.attempt('SELECT count(*) FROM mt.drift_summary') AS drift_summary;
SELECT schema_name, status, sqlstate, pg_catalog.split_part(error, E'\n', 1) AS error FROM mt.migrate_all() ORDER BY 1;
RESET SESSION AUTHORIZATION;
SELECT to_regclass('tenant_sec_tpl.planted') AS copied_planted_table;
SELECT pg_get_userbyid(nspowner) AS mt_template_owner FROM pg_namespace WHERE nspname = 'mt_template';
SELECT * FROM sec_audit.ran ORDER BY 1, 2, 3, 4, 5;
SELECT * FROM sec_audit.report('path 4: pre-created mt_template');
-- What the refusal's hint says: drop it; the next run creates the extension's own.
SET client_min_messages = warning;
DROP SCHEMA mt_template CASCADE;
SELECT mt.drop_tenant('sec_tpl', force => true, if_exists => true);
RESET client_min_messages;

------------------------------------------------------------------------------------------
-- Tenant roles and isolation: tenant A's role, and the application role switched to A, can
-- neither read, write nor list B's tables, even schema-qualified; a tenant cannot touch its
-- tracking table beyond reading it.
------------------------------------------------------------------------------------------
SET SESSION AUTHORIZATION sec_admin;
SELECT tenant_id, schema_name FROM mt.create_tenant('sec_a');
SELECT tenant_id, schema_name FROM mt.create_tenant('sec_b');
RESET SESSION AUTHORIZATION;
SELECT tenant_id, role_name FROM mt.tenants WHERE tenant_id IN ('sec_a', 'sec_b') ORDER BY 1;
SELECT sec_audit.role_of('sec_a') AS a_role, sec_audit.role_of('sec_b') AS b_role \gset

SELECT r.rolname, r.rolsuper, r.rolcreaterole, r.rolcreatedb, r.rolcanlogin, r.rolbypassrls, r.rolreplication,
       pg_has_role(r.oid, 'mt_admin', 'MEMBER') AS in_mt_admin, pg_has_role(r.oid, 'mt_monitor', 'MEMBER') AS in_mt_monitor
  FROM pg_roles r
 WHERE r.rolname IN ('tenant_sec_a', 'tenant_sec_b', 'mt_tenant', 'mt_template_role', 'mt_monitor')
 ORDER BY 1;
SELECT pg_has_role('tenant_sec_a', 'mt_tenant', 'MEMBER') AS a_in_mt_tenant,
       pg_has_role('tenant_sec_a', 'tenant_sec_b', 'MEMBER') AS a_in_b,
       pg_has_role('sec_admin', 'tenant_sec_a', 'USAGE') AS admin_uses_a;
-- The schema and its tracking table belong to the trusted owner; the tenant's tables to its role.
SELECT c.relname, pg_get_userbyid(c.relowner) AS owner, pg_get_userbyid(n.nspowner) AS schema_owner
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'tenant_sec_a' AND c.relkind IN ('r', 'v') ORDER BY 1;
SELECT p.priv, has_table_privilege(:'a_role', 'tenant_sec_a.__drizzle_migrations', p.priv) AS granted
  FROM pg_catalog.unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER']) AS p(priv);
SELECT has_schema_privilege(:'a_role', 'tenant_sec_a', 'USAGE') AS a_uses_own_schema,
       has_schema_privilege(:'a_role', 'tenant_sec_a', 'CREATE') AS a_creates_in_own_schema,
       has_schema_privilege(:'a_role', 'tenant_sec_b', 'USAGE') AS a_uses_b,
       has_schema_privilege(:'a_role', 'mt', 'USAGE') AS a_uses_mt;

-- (In a transaction rolled back afterwards, so that nothing an attempt managed stays.)
BEGIN;
SET ROLE :"a_role";
SELECT id, note FROM tenant_sec_a.secrets;
SELECT v.label, pg_temp.attempt(v.sql) AS result
  FROM (VALUES ('read B', 'SELECT * FROM tenant_sec_b.secrets'),
               ('write B', $$INSERT INTO tenant_sec_b.secrets VALUES (2, 'from a')$$),
               ('update B', $$UPDATE tenant_sec_b.secrets SET note = 'from a'$$),
               ('delete B', 'DELETE FROM tenant_sec_b.secrets'),
               ('create in B', 'CREATE TABLE tenant_sec_b.dropbox (x int)'),
               ('read B tracking', 'SELECT * FROM tenant_sec_b.__drizzle_migrations'),
               ('read registry', 'SELECT * FROM mt.tenants'),
               ('migrate', 'SELECT * FROM mt.migrate_all()'),
               ('write own tracking', $$INSERT INTO tenant_sec_a.__drizzle_migrations (name) VALUES ('9999_fake')$$),
               ('delete own tracking', 'DELETE FROM tenant_sec_a.__drizzle_migrations'),
               ('drop own tracking', 'DROP TABLE tenant_sec_a.__drizzle_migrations'),
               ('rename own tracking', 'ALTER TABLE tenant_sec_a.__drizzle_migrations RENAME TO old'),
               ('trigger on own tracking', 'CREATE TRIGGER t BEFORE INSERT ON tenant_sec_a.__drizzle_migrations FOR EACH ROW EXECUTE FUNCTION suppress_redundant_updates_trigger()'),
               ('rule on own tracking', 'CREATE RULE r AS ON INSERT TO tenant_sec_a.__drizzle_migrations DO ALSO NOTHING'),
               ('policy on own tracking', 'CREATE POLICY p ON tenant_sec_a.__drizzle_migrations USING (true)'),
               ('index on own tracking', 'CREATE INDEX ON tenant_sec_a.__drizzle_migrations (lower(name))'),
               ('drop own schema', 'DROP SCHEMA tenant_sec_a CASCADE'),
               ('rename own schema', 'ALTER SCHEMA tenant_sec_a RENAME TO elsewhere')) AS v(label, sql);
SELECT count(*) AS b_tables_listed FROM information_schema.tables WHERE table_schema = 'tenant_sec_b';
ROLLBACK;

-- The application logs in NOINHERIT: nothing until it switches, then only that tenant.
SELECT pg_temp.attempt($$SELECT mt.grant_application_role('sec_app')$$) AS grant_application_role;
SELECT pg_has_role('sec_app', 'tenant_sec_a', 'MEMBER') AS app_member_of_a,
       pg_has_role('sec_app', 'tenant_sec_a', 'USAGE') AS app_inherits_a;
SET SESSION AUTHORIZATION sec_app;
SELECT pg_temp.attempt('SELECT * FROM tenant_sec_a.secrets') AS before_switching;
SELECT tenant_id, schema_name, role_name, status FROM mt.tenant_directory WHERE tenant_id IN ('sec_a', 'sec_b') ORDER BY 1;
BEGIN;
SELECT pg_catalog.set_config('role', role_name, true) = role_name AS role_switched,
       pg_catalog.set_config('search_path', pg_catalog.quote_ident(schema_name), true) IS NOT NULL AS search_path_switched
  FROM mt.tenant_directory WHERE tenant_id = 'sec_a';
SELECT current_user, id, note FROM secrets;
SELECT v.label, pg_temp.attempt(v.sql) AS result
  FROM (VALUES ('read B', 'SELECT * FROM tenant_sec_b.secrets'),
               ('write B', $$INSERT INTO tenant_sec_b.secrets VALUES (3, 'from the app as a')$$),
               ('delete B', 'DELETE FROM tenant_sec_b.secrets'),
               ('create in B', 'CREATE TABLE tenant_sec_b.dropbox (x int)'),
               ('read B tracking', 'SELECT * FROM tenant_sec_b.__drizzle_migrations'),
               ('read registry', 'SELECT * FROM mt.tenants')) AS v(label, sql);
SELECT count(*) AS b_tables_listed FROM information_schema.tables WHERE table_schema = 'tenant_sec_b';
COMMIT;
SELECT current_user AS after_commit, pg_temp.attempt('SELECT * FROM tenant_sec_a.secrets') AS a_after_commit;
RESET SESSION AUTHORIZATION;

------------------------------------------------------------------------------------------
-- Path 1: names the bookkeeping could resolve through tenant-controlled schemas. Each
-- tenant's role and the database owner (in public) plant functions and operators that
-- beat or tie with pg_catalog's; then every operation of the engine runs.
------------------------------------------------------------------------------------------
SET ROLE :"a_role";
SELECT sec_audit.plant_shadows('tenant_sec_a') AS planted_in_a;
RESET ROLE;
SET ROLE :"b_role";
SELECT sec_audit.plant_shadows('tenant_sec_b') AS planted_in_b;
RESET ROLE;
SET SESSION AUTHORIZATION sec_dbowner;
SELECT sec_audit.plant_shadows('public') AS planted_in_public;
RESET SESSION AUTHORIZATION;

SET SESSION AUTHORIZATION sec_admin;
SELECT mt.add_migration('0002_more', 'CREATE TABLE more (id int);');
SELECT tenant_id, status, pending FROM mt.migrate_all(dry_run => true, tenant_ids => ARRAY['sec_a', 'sec_b']) ORDER BY 1;
SELECT tenant_id, status, pending FROM mt.migrate_tenant('sec_a', dry_run => true);
SELECT tenant_id, status, applied FROM mt.migrate_tenant('sec_a');
SELECT tenant_id, status, applied FROM mt.migrate_all(tenant_ids => ARRAY['sec_a', 'sec_b']) ORDER BY 1;
SELECT tenant_id, status, applied FROM mt.convert_tracking('hash', ARRAY['sec_a', 'sec_b']) ORDER BY 1;
SELECT tenant_id, status, applied FROM mt.convert_tracking('drizzle-kit', ARRAY['sec_a']);
SELECT tenant_id, status, applied FROM mt.convert_tracking('name', ARRAY['sec_a', 'sec_b']) ORDER BY 1;
SELECT mt.add_migration('0003_marked', 'CREATE TABLE marked (id int);');
SELECT tenant_id, status, applied FROM mt.mark_missing(ARRAY['sec_a', 'sec_b']) ORDER BY 1;
RESET SESSION AUTHORIZATION;
-- An orphan record, written by the superuser (the tenant cannot).
INSERT INTO tenant_sec_a.__drizzle_migrations (name, applied_at) VALUES ('0099_orphan', pg_catalog.now());
SET SESSION AUTHORIZATION sec_admin;
SELECT tenant_id, status, applied FROM mt.clean_orphans(ARRAY['sec_a'], dry_run => true);
SELECT tenant_id, status, applied FROM mt.clean_orphans(ARRAY['sec_a']);
SELECT mt.add_migration('0001_shared', 'CREATE TABLE IF NOT EXISTS sec_shared (id int);', scope => 'shared');
SELECT schema_name, status, pending FROM mt.migrate_shared(dry_run => true);
SELECT schema_name, status, applied FROM mt.migrate_shared();
SELECT tenant_id FROM mt.create_tenant('sec_n1');
SELECT status, count(*) FROM mt.create_tenants(ARRAY['sec_n2', 'sec_n3']) GROUP BY 1;
SELECT tenant_id FROM mt.clone_tenant('sec_a', 'sec_a_copy', include_data => true);
SELECT name FROM mt.register_seed('sec_plain_seed', 'INSERT INTO more VALUES (1)');
SELECT mt.seed_tenant('sec_a', 'sec_plain_seed');
SELECT tenant_id, status FROM mt.seed_all('sec_plain_seed', tenant_ids => ARRAY['sec_b']);
SELECT count(*) > 0 AS health_read FROM mt.health;
SELECT mt.health_check() ? 'healthy' AS health_checked;
SELECT mt.metrics() IS NOT NULL AS metrics_read;
SELECT count(*) > 0 AS status_read FROM mt.status;
SELECT count(*) > 0 AS sync_status_read FROM mt.sync_status;
SELECT count(*) >= 0 AS drift_read FROM mt.drift_summary;
SELECT count(*) >= 0 AS tenant_drift_read FROM mt.tenant_drift('sec_a');
RESET SESSION AUTHORIZATION;
SELECT * FROM sec_audit.ran ORDER BY 1, 2, 3, 4, 5;
SELECT * FROM sec_audit.report('path 1: shadowed functions and operators');
-- Every SQL function of the extension pins its search_path.
SELECT p.oid::regprocedure AS without_search_path
  FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
 WHERE p.pronamespace = 'mt'::regnamespace AND l.lanname IN ('sql', 'plpgsql')
   AND NOT coalesce(pg_catalog.array_to_string(p.proconfig, ' ') LIKE '%search_path=%', false)
 ORDER BY p.oid::regprocedure::text;

------------------------------------------------------------------------------------------
-- Path 2: a tracking table that is not what the extension made. Each tenant's is replaced
-- or fitted with a gadget: a view, a table of the tenant's own (plain, and with a trigger),
-- or the extension's own table with a rule, a CHECK, a default, a row level security
-- policy, an expression index, a partial index or a column of a tenant domain. Every run must fail that
-- tenant with 42501 naming what it found, before reading the table.
------------------------------------------------------------------------------------------
SET SESSION AUTHORIZATION sec_admin;
SELECT count(*) AS created FROM (
    SELECT mt.create_tenant(id)
      FROM pg_catalog.unnest(ARRAY['sec_rview', 'sec_rowned', 'sec_rtrigger', 'sec_rrule', 'sec_rcheck', 'sec_rdefault',
                                   'sec_rpolicy', 'sec_rindex', 'sec_rpartial', 'sec_rdomain']) AS id) c;
SELECT tenant_id FROM mt.create_tenant('sec_rmissing', migrate => false);
RESET SESSION AUTHORIZATION;
DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['sec_rview', 'sec_rowned', 'sec_rtrigger', 'sec_rrule', 'sec_rcheck', 'sec_rdefault',
                             'sec_rpolicy', 'sec_rindex', 'sec_rpartial', 'sec_rdomain', 'sec_rmissing'] LOOP
        EXECUTE pg_catalog.format('SET ROLE %I', sec_audit.role_of(t));
        PERFORM sec_audit.plant_tracking_gadgets('tenant_' || t);
        RESET ROLE;
    END LOOP;
END
$$;
SET sec.disarmed = on;
SELECT sec_audit.role_of('sec_rview') AS rview_role, sec_audit.role_of('sec_rowned') AS rowned_role,
       sec_audit.role_of('sec_rtrigger') AS rtrigger_role, sec_audit.role_of('sec_rmissing') AS rmissing_role \gset
-- A view, made by the tenant's role where the table was.
DROP TABLE tenant_sec_rview.__drizzle_migrations;
SET ROLE :"rview_role";
CREATE VIEW tenant_sec_rview.__drizzle_migrations AS
SELECT v.id, v.name::varchar(255) AS name, pg_catalog.now() AS applied_at
  FROM (VALUES (1, '0001_base'), (2, '0002_more'), (3, '0003_marked'), (4, '9999_from_view')) AS v(id, name)
 WHERE tenant_sec_rview.g_bool();
RESET ROLE;
-- The extension's table, handed to the tenant's role (plain; and with a trigger).
ALTER TABLE tenant_sec_rowned.__drizzle_migrations OWNER TO :"rowned_role";
ALTER TABLE tenant_sec_rtrigger.__drizzle_migrations OWNER TO :"rtrigger_role";
SET ROLE :"rtrigger_role";
CREATE TRIGGER g AFTER INSERT OR UPDATE OR DELETE ON tenant_sec_rtrigger.__drizzle_migrations
    FOR EACH ROW EXECUTE FUNCTION tenant_sec_rtrigger.g_trigger();
CREATE TRIGGER g_truncate BEFORE TRUNCATE ON tenant_sec_rtrigger.__drizzle_migrations
    FOR EACH STATEMENT EXECUTE FUNCTION tenant_sec_rtrigger.g_trigger();
RESET ROLE;
-- The extension's table, still owned by it, fitted with what the tenant's role wrote
-- (as a table the tenant once owned would be, or a schema adopted with what it held).
CREATE RULE g AS ON INSERT TO tenant_sec_rrule.__drizzle_migrations DO ALSO SELECT tenant_sec_rrule.g_bool();
ALTER TABLE tenant_sec_rcheck.__drizzle_migrations ADD CONSTRAINT g CHECK (tenant_sec_rcheck.g_bool());
ALTER TABLE tenant_sec_rdefault.__drizzle_migrations ADD COLUMN g int;
ALTER TABLE tenant_sec_rdefault.__drizzle_migrations ALTER COLUMN g SET DEFAULT tenant_sec_rdefault.g_int();
CREATE POLICY g ON tenant_sec_rpolicy.__drizzle_migrations USING (tenant_sec_rpolicy.g_bool());
ALTER TABLE tenant_sec_rpolicy.__drizzle_migrations ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE INDEX g ON tenant_sec_rindex.__drizzle_migrations (tenant_sec_rindex.g_imm(name::text));
CREATE INDEX g ON tenant_sec_rpartial.__drizzle_migrations (id) WHERE tenant_sec_rpartial.g_immb(name::text);
ALTER TABLE tenant_sec_rdomain.__drizzle_migrations ALTER COLUMN name TYPE tenant_sec_rdomain.g_name;
RESET sec.disarmed;
-- A tenant without a tracking table yet: its role makes one first, a view.
SET ROLE :"rmissing_role";
SELECT pg_temp.attempt($$CREATE VIEW tenant_sec_rmissing.__drizzle_migrations AS
    SELECT 1 AS id, '0001_base'::varchar(255) AS name, pg_catalog.now() AS applied_at WHERE tenant_sec_rmissing.g_bool()$$) AS rmissing_view;
RESET ROLE;

SET SESSION AUTHORIZATION sec_admin;
SELECT mt.add_migration('0004_after_replace', 'CREATE TABLE after_replace (id int);');
\set replaced 'ARRAY[''sec_rview'', ''sec_rowned'', ''sec_rtrigger'', ''sec_rrule'', ''sec_rcheck'', ''sec_rdefault'', ''sec_rpolicy'', ''sec_rindex'', ''sec_rpartial'', ''sec_rdomain'', ''sec_rmissing'']'
SELECT tenant_id, status, sqlstate, pg_catalog.split_part(error, E'\n', 1) AS error FROM mt.migrate_all(dry_run => true, tenant_ids => :replaced) ORDER BY 1;
SELECT tenant_id, status, sqlstate, pg_catalog.split_part(error, E'\n', 1) AS error FROM mt.migrate_all(tenant_ids => :replaced) ORDER BY 1;
SELECT r.tenant_id, r.status, r.sqlstate FROM pg_catalog.unnest(:replaced) AS id, mt.migrate_tenant(id) AS r ORDER BY 1;
SELECT r.tenant_id, r.status, r.sqlstate FROM pg_catalog.unnest(:replaced) AS id, mt.migrate_tenant(id, dry_run => true) AS r ORDER BY 1;
SELECT tenant_id, status, sqlstate FROM mt.convert_tracking('hash', :replaced) ORDER BY 1;
SELECT tenant_id, status, sqlstate FROM mt.clean_orphans(:replaced) ORDER BY 1;
SELECT tenant_id, status, sqlstate FROM mt.mark_missing(:replaced) ORDER BY 1;
SELECT tenant_id, status FROM mt.health WHERE tenant_id = ANY (:replaced) ORDER BY 1;
SELECT p ->> 'tenantId' AS tenant, p ->> 'status' AS status FROM pg_catalog.jsonb_array_elements(mt.health_check(:replaced) -> 'pools') AS p ORDER BY 1;
SELECT mt.metrics() IS NOT NULL AS metrics_read;
RESET SESSION AUTHORIZATION;
-- Never read through: the view's extra record never reached the ledger.
SELECT count(*) AS records_from_view FROM mt.tracking_records WHERE name = '9999_from_view';
SELECT * FROM sec_audit.ran ORDER BY 1, 2, 3, 4, 5;
SELECT * FROM sec_audit.report('path 2: replaced tracking tables');

-- The shared schema's tracking table: the database owner owns public, so may drop it and
-- put a view there.
SET SESSION AUTHORIZATION sec_dbowner;
DROP TABLE public.__drizzle_migrations;
CREATE VIEW public.__drizzle_migrations AS
SELECT 1 AS id, '0001_shared'::varchar(255) AS name, pg_catalog.now() AS applied_at
 WHERE sec_audit.gadget('public.__drizzle_migrations (view)', 'sec_dbowner');
RESET SESSION AUTHORIZATION;
SET SESSION AUTHORIZATION sec_admin;
SELECT schema_name, status, sqlstate, pg_catalog.split_part(error, E'\n', 1) AS error FROM mt.migrate_shared(dry_run => true);
SELECT schema_name, status, sqlstate, pg_catalog.split_part(error, E'\n', 1) AS error FROM mt.migrate_shared();
SELECT pg_temp.attempt('SELECT mt.health_check()') AS health_check;
RESET SESSION AUTHORIZATION;
SELECT * FROM sec_audit.ran ORDER BY 1, 2, 3, 4, 5;
SELECT * FROM sec_audit.report('path 2: replaced shared tracking table');
DROP VIEW public.__drizzle_migrations;

------------------------------------------------------------------------------------------
-- Path 5: schemas squatted by the database owner, named like tenants, adopted by an
-- operator with mt.adopt_tenants(): a tracking table of the squatter's with a trigger, one
-- with an expression index, a view in its place, other objects of the squatter's (each must
-- be refused, 42501), and an empty schema whose privileges the squatter handed to an
-- outsider: if adopted, neither the squatter nor the outsider keeps anything in it.
------------------------------------------------------------------------------------------
SET SESSION AUTHORIZATION sec_dbowner;
CREATE SCHEMA tenant_sec_sq1;
CREATE SCHEMA tenant_sec_sq2;
CREATE SCHEMA tenant_sec_sq3;
CREATE SCHEMA tenant_sec_sq4;
CREATE SCHEMA tenant_sec_sq5;
GRANT USAGE, CREATE ON SCHEMA tenant_sec_sq5 TO sec_outsider;
SELECT sec_audit.plant_tracking_gadgets('tenant_sec_sq1') + sec_audit.plant_tracking_gadgets('tenant_sec_sq2')
     + sec_audit.plant_tracking_gadgets('tenant_sec_sq3') + sec_audit.plant_tracking_gadgets('tenant_sec_sq4') AS planted;
CREATE TABLE tenant_sec_sq1.__drizzle_migrations (id serial PRIMARY KEY, name varchar(255) NOT NULL UNIQUE, applied_at timestamptz NOT NULL DEFAULT now());
CREATE TRIGGER g AFTER INSERT OR UPDATE OR DELETE ON tenant_sec_sq1.__drizzle_migrations
    FOR EACH ROW EXECUTE FUNCTION tenant_sec_sq1.g_trigger();
CREATE TABLE tenant_sec_sq2.__drizzle_migrations (id serial PRIMARY KEY, name varchar(255) NOT NULL UNIQUE, applied_at timestamptz NOT NULL DEFAULT now());
CREATE INDEX g ON tenant_sec_sq2.__drizzle_migrations (tenant_sec_sq2.g_imm(name::text));
CREATE VIEW tenant_sec_sq3.__drizzle_migrations AS
SELECT 1 AS id, '0001_base'::varchar(255) AS name, pg_catalog.now() AS applied_at WHERE tenant_sec_sq3.g_bool();
CREATE TABLE tenant_sec_sq4.notes (id int PRIMARY KEY, body text);
INSERT INTO tenant_sec_sq4.notes VALUES (1, 'written by the squatter');
GRANT USAGE, CREATE ON SCHEMA tenant_sec_sq4 TO sec_outsider;
GRANT ALL ON tenant_sec_sq4.notes TO sec_outsider;
RESET SESSION AUTHORIZATION;

SET SESSION AUTHORIZATION sec_admin;
SELECT tenant_id, schema_name FROM mt.adopt_tenants('tenant\_sec\_sq%', dry_run => true) ORDER BY 1;
SELECT s.schema_name, pg_temp.attempt(pg_catalog.format('SELECT mt.adopt_tenants(%L)', s.schema_name)) AS adopt
  FROM (VALUES ('tenant_sec_sq1'), ('tenant_sec_sq2'), ('tenant_sec_sq3'), ('tenant_sec_sq4'), ('tenant_sec_sq5')) AS s(schema_name);
RESET SESSION AUTHORIZATION;
SELECT tenant_id, role_name FROM mt.tenants WHERE tenant_id LIKE 'sec\_sq%' ORDER BY 1;
SELECT n.nspname, pg_get_userbyid(n.nspowner) AS schema_owner,
       (SELECT count(*) FROM pg_class c WHERE c.relnamespace = n.oid AND c.relowner = 'sec_dbowner'::regrole)
     + (SELECT count(*) FROM pg_proc p WHERE p.pronamespace = n.oid AND p.proowner = 'sec_dbowner'::regrole)
     + (SELECT count(*) FROM pg_type t WHERE t.typnamespace = n.oid AND t.typowner = 'sec_dbowner'::regrole) AS squatter_owns
  FROM pg_namespace n WHERE n.nspname LIKE 'tenant\_sec\_sq%' ORDER BY 1;
SET SESSION AUTHORIZATION sec_admin;
SELECT tenant_id, status, sqlstate, pg_catalog.split_part(error, E'\n', 1) AS error
  FROM mt.migrate_all(tenant_ids => (SELECT coalesce(array_agg(tenant_id), '{}') FROM mt.tenants WHERE tenant_id LIKE 'sec\_sq%'))
 ORDER BY 1;
RESET SESSION AUTHORIZATION;
-- The adopted schema is the tenant's alone.
SET SESSION AUTHORIZATION sec_dbowner;
SELECT pg_temp.attempt('CREATE TABLE tenant_sec_sq5.by_squatter (x int)') AS squatter_creates;
RESET SESSION AUTHORIZATION;
SET SESSION AUTHORIZATION sec_outsider;
SELECT pg_temp.attempt('CREATE TABLE tenant_sec_sq5.by_outsider (x int)') AS outsider_creates,
       pg_temp.attempt('SELECT * FROM tenant_sec_sq5.secrets') AS outsider_reads;
RESET SESSION AUTHORIZATION;
SELECT * FROM sec_audit.ran ORDER BY 1, 2, 3, 4, 5;
SELECT * FROM sec_audit.report('path 5: adopted squatted schemas');

------------------------------------------------------------------------------------------
-- Path 5, legacy: tenants made without a role of their own (tenant_roles off, as 0.1.0
-- made them), in schemas an untrusted role owned; that role replaced one's tracking table
-- with its own, carrying an expression index. mt.assign_tenant_roles() must refuse to hand
-- that table to the trusted owner: ANALYZE (autovacuum's too) runs index expressions as the
-- table's owner.
------------------------------------------------------------------------------------------
CREATE ROLE sec_old_owner NOLOGIN;
SELECT mt.set_config('tenant_roles', 'off');
SELECT mt.set_config('schema_owner', 'sec_old_owner');
SET SESSION AUTHORIZATION sec_admin;
SELECT tenant_id, role_name FROM mt.create_tenant('sec_old1');
SELECT tenant_id, role_name FROM mt.create_tenant('sec_old2');
RESET SESSION AUTHORIZATION;
SELECT mt.reset_config('schema_owner');
SELECT mt.reset_config('tenant_roles');
SET ROLE sec_old_owner;
SELECT sec_audit.plant_tracking_gadgets('tenant_sec_old1') AS planted;
SET sec.disarmed = on;
DROP TABLE tenant_sec_old1.__drizzle_migrations;
CREATE TABLE tenant_sec_old1.__drizzle_migrations (id serial PRIMARY KEY, name varchar(255) NOT NULL UNIQUE, applied_at timestamptz NOT NULL DEFAULT now());
INSERT INTO tenant_sec_old1.__drizzle_migrations (name)
VALUES ('0001_base'), ('0002_more'), ('0003_marked'), ('0004_after_replace');
CREATE INDEX g ON tenant_sec_old1.__drizzle_migrations (tenant_sec_old1.g_imm(name::text));
RESET sec.disarmed;
RESET ROLE;
SET SESSION AUTHORIZATION sec_admin;
SELECT pg_temp.attempt($$SELECT mt.assign_tenant_roles(ARRAY['sec_old1'])$$) AS assign_old1;
SELECT pg_temp.attempt($$SELECT mt.assign_tenant_roles(ARRAY['sec_old2'])$$) AS assign_old2;
RESET SESSION AUTHORIZATION;
SELECT tenant_id, role_name FROM mt.tenants WHERE tenant_id IN ('sec_old1', 'sec_old2') ORDER BY 1;
SELECT n.nspname, pg_get_userbyid(n.nspowner) AS schema_owner, pg_get_userbyid(c.relowner) AS tracking_owner
  FROM pg_namespace n JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = '__drizzle_migrations'
 WHERE n.nspname IN ('tenant_sec_old1', 'tenant_sec_old2') ORDER BY 1;
-- What autovacuum does sooner or later, as the table's owner.
ANALYZE tenant_sec_old1.__drizzle_migrations;
SET SESSION AUTHORIZATION sec_admin;
SELECT tenant_id, status, sqlstate, pg_catalog.split_part(error, E'\n', 1) AS error FROM mt.migrate_all(tenant_ids => ARRAY['sec_old1', 'sec_old2']) ORDER BY 1;
RESET SESSION AUTHORIZATION;
SELECT * FROM sec_audit.ran ORDER BY 1, 2, 3, 4, 5;
SELECT * FROM sec_audit.report('path 5: legacy tenants given roles');

------------------------------------------------------------------------------------------
-- Paths 6 and 7: seeds. Tenant A's role replaces users with a table whose trigger is a
-- gadget that also leaves a temporary view, a temporary domain and a search_path behind in
-- the session that fired it. Seed SQL and migration SQL insert into users, in the caller's
-- session (as a superuser and as an operator) and in background workers.
------------------------------------------------------------------------------------------
SELECT sec_audit.role_of('sec_n1') AS n1_role \gset
SET ROLE :"a_role";
SELECT sec_audit.plant_users_trigger('tenant_sec_a');
RESET ROLE;
SET ROLE :"b_role";
SELECT sec_audit.plant_users_trigger('tenant_sec_b');
RESET ROLE;
SET ROLE :"n1_role";
SELECT sec_audit.plant_users_trigger('tenant_sec_n1');
RESET ROLE;
SET SESSION AUTHORIZATION sec_admin;
SELECT name FROM mt.register_seed('sec_users_seed', $$INSERT INTO users (email) VALUES ('seeded@example.org')$$);
RESET SESSION AUTHORIZATION;

-- A superuser seeds tenant A in its own session, then goes on working in it.
SELECT mt.seed_tenant('sec_a', 'sec_users_seed');
SELECT current_setting('search_path') AS search_path_after_seed;
SELECT c.relname, pg_get_userbyid(c.relowner) AS owner FROM pg_class c WHERE c.relnamespace = pg_my_temp_schema()
UNION ALL
SELECT t.typname, pg_get_userbyid(t.typowner) FROM pg_type t WHERE t.typnamespace = pg_my_temp_schema() AND t.typtype = 'd'
ORDER BY 1;
SELECT count(*) > 0 AS sees_activity FROM pg_stat_activity;
SELECT now() IS NOT NULL AS clock_read;
SELECT length('x'::text) AS cast_to_text;
RESET search_path;
SET client_min_messages = warning;
DROP VIEW IF EXISTS pg_temp.pg_stat_activity;
DROP DOMAIN IF EXISTS pg_temp.text;
RESET client_min_messages;
SELECT * FROM sec_audit.ran ORDER BY 1, 2, 3, 4, 5;
SELECT * FROM sec_audit.report('path 7: seed SQL fires a tenant trigger in a superuser''s session');

-- The operator seeds in its session and in workers; a migration inserts too.
SET SESSION AUTHORIZATION sec_admin;
SELECT mt.seed_tenant('sec_a', 'sec_users_seed', force => true);
SELECT tenant_id, status, sqlstate FROM mt.seed_all('sec_users_seed', tenant_ids => ARRAY['sec_a', 'sec_b'], force => true) ORDER BY 1;
SELECT mt.add_migration('0005_insert_user', $$INSERT INTO users (email) VALUES ('migrated@example.org');$$);
SELECT tenant_id, status, sqlstate FROM mt.migrate_tenant('sec_a');
SELECT tenant_id, status, sqlstate FROM mt.migrate_all(tenant_ids => ARRAY['sec_b']);
SELECT current_setting('search_path') AS operator_search_path;
RESET SESSION AUTHORIZATION;
SELECT tenant_id, status, sqlstate FROM mt.migrate_tenant('sec_n1');
SELECT current_setting('search_path') AS search_path_after_migration;
SELECT count(*) > 0 AS sees_activity FROM pg_stat_activity;
SELECT now() IS NOT NULL AS clock_read;
RESET search_path;
SET client_min_messages = warning;
DROP VIEW IF EXISTS pg_temp.pg_stat_activity;
DROP DOMAIN IF EXISTS pg_temp.text;
RESET client_min_messages;
SELECT * FROM sec_audit.ran ORDER BY 1, 2, 3, 4, 5;
SELECT * FROM sec_audit.report('path 7: seed and migration SQL fire tenant triggers');

-- Path 6: a seed function owned by the database owner, registered harmless, then replaced.
SET SESSION AUTHORIZATION sec_dbowner;
CREATE FUNCTION public.sec_seed_fn(tenant_id text, schema_name text) RETURNS void LANGUAGE sql AS 'SELECT NULL::void';
RESET SESSION AUTHORIZATION;
SET SESSION AUTHORIZATION sec_admin;
SELECT name FROM mt.register_seed('sec_fn_seed', 'public.sec_seed_fn(text, text)'::regprocedure);
RESET SESSION AUTHORIZATION;
SET SESSION AUTHORIZATION sec_dbowner;
CREATE OR REPLACE FUNCTION public.sec_seed_fn(tenant_id text, schema_name text) RETURNS void LANGUAGE plpgsql
AS $$ BEGIN PERFORM sec_audit.gadget('public.sec_seed_fn, replaced after registration', 'sec_dbowner'); END $$;
RESET SESSION AUTHORIZATION;
SET SESSION AUTHORIZATION sec_admin;
SELECT mt.seed_tenant('sec_n2', 'sec_fn_seed');
SELECT tenant_id, status, sqlstate FROM mt.seed_all('sec_fn_seed', tenant_ids => ARRAY['sec_n3']);
RESET SESSION AUTHORIZATION;
SELECT mt.seed_tenant('sec_n1', 'sec_fn_seed');
SELECT * FROM sec_audit.ran ORDER BY 1, 2, 3, 4, 5;
SELECT * FROM sec_audit.report('path 6: a seed function replaced after registration');
-- A seed function the superuser owns, as DBAs write them: it inserts into the tenant's users.
CREATE FUNCTION public.sec_dba_seed(tenant_id text, schema_name text) RETURNS void LANGUAGE plpgsql
AS $$ BEGIN INSERT INTO users (email) VALUES ('dba@example.org'); END $$;
SET SESSION AUTHORIZATION sec_admin;
SELECT name FROM mt.register_seed('sec_dba_seed', 'public.sec_dba_seed(text, text)'::regprocedure);
SELECT pg_temp.attempt($$SELECT mt.seed_tenant('sec_a', 'sec_dba_seed')$$) AS seed_tenant;
SELECT tenant_id, status, sqlstate FROM mt.seed_all('sec_dba_seed', tenant_ids => ARRAY['sec_b']);
RESET SESSION AUTHORIZATION;
SELECT current_setting('search_path') AS search_path_after_seed;
RESET search_path;
SET client_min_messages = warning;
DROP VIEW IF EXISTS pg_temp.pg_stat_activity;
DROP DOMAIN IF EXISTS pg_temp.text;
RESET client_min_messages;
SELECT * FROM sec_audit.ran ORDER BY 1, 2, 3, 4, 5;
SELECT * FROM sec_audit.report('path 6: a seed function the superuser owns writes a tenant table');

------------------------------------------------------------------------------------------
-- Path 3: clones. The source tenant's role puts its functions in a CHECK constraint, a
-- domain CHECK, a generated column, an expression index, a default, a materialized view
-- and a cast from its enum to text (reached by the row copy), plus a convert_to(text, text)
-- that the anonymize rule "hash" would call; its table has a serial column. An operator
-- clones it, with rows and without. (Shadows met by the clone's own SQL: path 1.)
------------------------------------------------------------------------------------------
SET SESSION AUTHORIZATION sec_admin;
SELECT tenant_id FROM mt.create_tenant('sec_c');
RESET SESSION AUTHORIZATION;
SELECT sec_audit.role_of('sec_c') AS c_role \gset
SET ROLE :"c_role";
SET sec.disarmed = on;
CREATE TYPE tenant_sec_c.mood AS ENUM ('sad', 'happy');
SELECT sec_audit.make_gadget('tenant_sec_c.g_check', 'integer', 'boolean', 'RETURN true;');
SELECT sec_audit.make_gadget('tenant_sec_c.g_imm', 'integer', 'integer', 'RETURN $1;', 'IMMUTABLE');
SELECT sec_audit.make_gadget('tenant_sec_c.g_default', '', 'integer', 'RETURN 0;');
SELECT sec_audit.make_gadget('tenant_sec_c.g_cast', 'tenant_sec_c.mood', 'text', 'RETURN pg_catalog.format(''%s'', $1);');
CREATE CAST (tenant_sec_c.mood AS text) WITH FUNCTION tenant_sec_c.g_cast(tenant_sec_c.mood);
CREATE DOMAIN tenant_sec_c.checked_int AS integer CHECK (tenant_sec_c.g_check(VALUE));
CREATE TABLE tenant_sec_c.gadgets (
    id    serial PRIMARY KEY,
    v     integer CHECK (tenant_sec_c.g_check(v)),
    d     tenant_sec_c.checked_int,
    m     tenant_sec_c.mood,
    email text,
    dflt  integer DEFAULT tenant_sec_c.g_default(),
    gen   integer GENERATED ALWAYS AS (tenant_sec_c.g_imm(v)) STORED
);
CREATE INDEX gadgets_expression ON tenant_sec_c.gadgets ((tenant_sec_c.g_imm(v)));
INSERT INTO tenant_sec_c.gadgets (v, d, m, email) VALUES (1, 1, 'happy', 'ann@example.org'), (2, 2, 'sad', 'bob@example.org');
CREATE MATERIALIZED VIEW tenant_sec_c.gadget_view AS SELECT id FROM tenant_sec_c.gadgets WHERE tenant_sec_c.g_check(v);
SELECT sec_audit.make_gadget('tenant_sec_c.convert_to', 'text, text', 'bytea', 'RETURN pg_catalog.convert_to($1, $2::name);');
RESET sec.disarmed;
RESET ROLE;
SET SESSION AUTHORIZATION sec_admin;
SELECT tenant_id FROM mt.clone_tenant('sec_c', 'sec_c2', include_data => true, anonymize => '{"gadgets": {"email": "hash"}}');
SELECT tenant_id FROM mt.clone_tenant('sec_c', 'sec_c3');
RESET SESSION AUTHORIZATION;
SELECT id, v, d, m, email <> 'ann@example.org' AND email <> 'bob@example.org' AS anonymized, gen FROM tenant_sec_c2.gadgets ORDER BY id;
SELECT n.nspname, pg_catalog.string_agg(DISTINCT pg_get_userbyid(c.relowner), ', ') AS owners
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname IN ('tenant_sec_c2', 'tenant_sec_c3') AND c.relname <> '__drizzle_migrations'
   AND c.relname NOT LIKE '\_\_drizzle\_migrations%'
 GROUP BY 1 ORDER BY 1;
-- The source's role and the clones' roles hold nothing of each other afterwards.
SELECT pg_has_role('tenant_sec_c', 'tenant_sec_c2', 'MEMBER') OR pg_has_role('tenant_sec_c2', 'tenant_sec_c', 'MEMBER') AS roles_linked,
       has_schema_privilege('tenant_sec_c', 'tenant_sec_c2', 'USAGE') AS source_uses_clone,
       has_schema_privilege('tenant_sec_c2', 'tenant_sec_c', 'USAGE') AS clone_uses_source;
-- The gadgets ran as a role of the source or of the clones, never as a superuser.
SELECT DISTINCT ran_as ~ '^tenant_sec_c[23]?$' AS ran_as_tenant_role, superuser FROM sec_audit.ran ORDER BY 1, 2;
SELECT * FROM sec_audit.report('path 3: clone gadgets');

-- An anonymize rule's SQL expression, written by the operator, runs as the target's role.
SET SESSION AUTHORIZATION sec_admin;
SELECT tenant_id FROM mt.clone_tenant('sec_n2', 'sec_n2_anon', include_data => true,
    anonymize => '{"secrets": {"note": {"sql": "CASE WHEN sec_audit.gadget(''anonymize SQL expression'', ''sec_admin'') THEN note END"}}}');
RESET SESSION AUTHORIZATION;
SELECT pg_has_role('tenant_sec_n2', 'tenant_sec_n2_anon', 'MEMBER') OR pg_has_role('tenant_sec_n2_anon', 'tenant_sec_n2', 'MEMBER') AS roles_linked,
       has_schema_privilege('tenant_sec_n2', 'tenant_sec_n2_anon', 'USAGE') AS source_uses_clone,
       has_schema_privilege('tenant_sec_n2_anon', 'tenant_sec_n2', 'USAGE') AS clone_uses_source;
SELECT * FROM sec_audit.ran ORDER BY 1, 2, 3, 4, 5;
SELECT * FROM sec_audit.report('path 3: anonymize rule SQL');

------------------------------------------------------------------------------------------
-- A member of mt_admin that is not superuser cannot become one through migrations, seeds,
-- shared migrations, settings or internal helpers.
------------------------------------------------------------------------------------------
SET SESSION AUTHORIZATION sec_admin;
SELECT status, count(*) FROM mt.create_tenants(ARRAY['sec_m1', 'sec_m2', 'sec_m3']) GROUP BY 1;
SELECT mt.add_migration('0006_gadget', $$SELECT sec_audit.gadget('migration SQL', 'sec_admin');$$);
SELECT tenant_id, status, sqlstate FROM mt.migrate_tenant('sec_m1');
SELECT tenant_id, status, sqlstate FROM mt.migrate_all(tenant_ids => ARRAY['sec_m2']);
RESET SESSION AUTHORIZATION;
SELECT tenant_id, status, sqlstate FROM mt.migrate_tenant('sec_m3');
SET SESSION AUTHORIZATION sec_admin;
SELECT mt.add_migration('0007_alter_role', 'ALTER ROLE sec_admin SUPERUSER;');
SELECT tenant_id, status, sqlstate, pg_catalog.split_part(error, E'\n', 1) AS error FROM mt.migrate_tenant('sec_m1');
SELECT tenant_id, status, sqlstate, pg_catalog.split_part(error, E'\n', 1) AS error FROM mt.migrate_all(tenant_ids => ARRAY['sec_m2']);
SELECT pg_temp.attempt($$SELECT mt.create_tenant('sec_m4')$$) AS create_tenant;
RESET SESSION AUTHORIZATION;
DELETE FROM mt.migrations WHERE name = '0007_alter_role';
SET SESSION AUTHORIZATION sec_admin;
SELECT mt.add_migration('0007_commit', 'COMMIT; RESET ROLE; ALTER ROLE sec_admin SUPERUSER;');
SELECT tenant_id, status, sqlstate FROM mt.migrate_tenant('sec_m1');
SELECT tenant_id, status, sqlstate FROM mt.migrate_all(tenant_ids => ARRAY['sec_m2']);
RESET SESSION AUTHORIZATION;
DELETE FROM mt.migrations WHERE name = '0007_commit';
SET SESSION AUTHORIZATION sec_admin;
SELECT name FROM mt.register_seed('sec_alter_role_seed', 'ALTER ROLE sec_admin SUPERUSER');
SELECT pg_temp.attempt($$SELECT mt.seed_tenant('sec_m1', 'sec_alter_role_seed')$$) AS seed_tenant;
SELECT tenant_id, status, sqlstate FROM mt.seed_all('sec_alter_role_seed', tenant_ids => ARRAY['sec_m2']);
SELECT name FROM mt.register_seed('sec_gadget_seed', $$SELECT sec_audit.gadget('seed SQL', 'sec_admin')$$);
SELECT mt.seed_tenant('sec_m1', 'sec_gadget_seed');
SELECT tenant_id, status, sqlstate FROM mt.seed_all('sec_gadget_seed', tenant_ids => ARRAY['sec_m2']);
SELECT name FROM mt.register_seed('sec_shared_seed', $$SELECT sec_audit.gadget('shared seed SQL', 'sec_admin')$$, scope => 'shared');
SELECT pg_temp.attempt($$SELECT mt.seed_shared('sec_shared_seed')$$) AS seed_shared;
SELECT mt.add_migration('0002_shared_gadget', $$SELECT sec_audit.gadget('shared migration SQL', 'sec_admin');$$, scope => 'shared');
SELECT schema_name, status, sqlstate, pg_catalog.split_part(error, E'\n', 1) AS error FROM mt.migrate_shared();
RESET SESSION AUTHORIZATION;
SELECT * FROM sec_audit.ran ORDER BY 1, 2, 3, 4, 5;
SELECT * FROM sec_audit.report('mt_admin: migrations, seeds, shared scope');

-- Settings that decide who runs code are the superuser's (rolled back, whatever happens).
BEGIN;
SET SESSION AUTHORIZATION sec_admin;
SELECT v.key, pg_temp.attempt(pg_catalog.format('SELECT mt.set_config(%L, %L)', v.key, v.value)) AS result
  FROM (VALUES ('tenant_roles', 'off'), ('shared_role', 'postgres'), ('schema_owner', 'postgres'),
               ('application_role', 'sec_admin'), ('allowed_extensions', 'adminpack'),
               ('extensions_schema', 'tenant_sec_a')) AS v(key, value);
ROLLBACK;
SET SESSION AUTHORIZATION sec_admin;
-- Reading the server's files is the superuser's.
SELECT pg_temp.attempt($$SELECT * FROM mt.load_migrations('/tmp')$$) AS load_migrations,
       pg_temp.attempt($$SELECT * FROM mt.read_migration_folder('/tmp')$$) AS read_migration_folder;
RESET SESSION AUTHORIZATION;
-- Internal helpers (they run code, or write where the public functions check first) are not
-- granted; those public views need are harmless.
SELECT p.oid::regprocedure AS internal_helper_granted_to_mt_admin, p.prosecdef AS security_definer
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname IN ('mt', 'mt_internal') AND has_function_privilege('mt_admin', p.oid, 'EXECUTE')
   AND (n.nspname = 'mt_internal'
        OR p.proname IN ('clone_rows', 'copy_template', 'build_template_scripts', 'run_seed', 'save_seed', 'read_migration_folder')
        OR obj_description(p.oid, 'pg_proc') LIKE 'multitenant (internal)%')
 ORDER BY p.oid::regprocedure::text;
-- clone_schema, where granted, copies any schema into any empty one: as whom?
SET SESSION AUTHORIZATION sec_dbowner;
CREATE SCHEMA sec_landing;
RESET SESSION AUTHORIZATION;
SET SESSION AUTHORIZATION sec_admin;
SELECT pg_temp.attempt($$SELECT mt.clone_schema('tenant_sec_c', 'sec_landing', include_data => true)$$) AS clone_schema;
SELECT tenant_id FROM mt.create_tenant('sec_empty', migrate => false);
SELECT pg_temp.attempt($$SELECT mt.clone_schema('mt', 'tenant_sec_empty', include_data => true)$$) AS clone_mt_into_tenant;
RESET SESSION AUTHORIZATION;
SELECT count(*) AS mt_tables_copied_into_tenant FROM pg_tables WHERE schemaname = 'tenant_sec_empty' AND tablename <> '__drizzle_migrations';
SELECT * FROM sec_audit.ran ORDER BY 1, 2, 3, 4, 5;
SELECT * FROM sec_audit.report('mt_admin: settings and helpers');

------------------------------------------------------------------------------------------
-- CREATE EXTENSION in a tenant migration runs once, as the trusted owner, into the shared
-- schema, only for allowed extensions; what follows it in the migration still runs as the
-- tenant's role.
------------------------------------------------------------------------------------------
SET SESSION AUTHORIZATION sec_admin;
SELECT mt.add_migration('0008_extension', $$CREATE EXTENSION IF NOT EXISTS pg_trgm;
SELECT sec_audit.gadget('statement after CREATE EXTENSION', 'sec_admin');
CREATE EXTENSION IF NOT EXISTS fuzzystrmatch SCHEMA tenant_sec_m1;
SELECT sec_audit.gadget('statement after CREATE EXTENSION ... SCHEMA', 'sec_admin');$$);
SELECT tenant_id, status, sqlstate, pg_catalog.split_part(error, E'\n', 1) AS error FROM mt.migrate_tenant('sec_m1');
SELECT tenant_id, status, sqlstate, pg_catalog.split_part(error, E'\n', 1) AS error FROM mt.migrate_all(tenant_ids => ARRAY['sec_m2']);
RESET SESSION AUTHORIZATION;
SELECT e.extname, e.extnamespace::regnamespace AS schema, pg_get_userbyid(e.extowner) AS owner
  FROM pg_extension e WHERE e.extname IN ('pg_trgm', 'fuzzystrmatch') ORDER BY 1;
SET SESSION AUTHORIZATION sec_admin;
SELECT mt.add_migration('0009_untrusted_extension', 'CREATE EXTENSION IF NOT EXISTS adminpack;');
SELECT tenant_id, status, sqlstate, pg_catalog.split_part(error, E'\n', 1) AS error FROM mt.migrate_tenant('sec_m1');
RESET SESSION AUTHORIZATION;
DELETE FROM mt.migrations WHERE name = '0009_untrusted_extension';
SELECT count(*) AS adminpack_installed FROM pg_extension WHERE extname = 'adminpack';
SELECT * FROM sec_audit.ran ORDER BY 1, 2, 3, 4, 5;
SELECT * FROM sec_audit.report('CREATE EXTENSION in migrations');

------------------------------------------------------------------------------------------
-- Tenant role names that are taken: a role that happens to exist (here a superuser), and
-- tenant ids that name existing roles when the schema template is just {id}.
------------------------------------------------------------------------------------------
CREATE ROLE tenant_sec_taken SUPERUSER NOLOGIN;
SET SESSION AUTHORIZATION sec_admin;
SELECT pg_temp.attempt($$SELECT mt.create_tenant('sec_taken')$$) AS role_exists;
RESET SESSION AUTHORIZATION;
SELECT count(*) AS registered FROM mt.tenants WHERE tenant_id = 'sec_taken';
DROP ROLE tenant_sec_taken;
SET client_min_messages = error;
SELECT mt.set_config('schema_template', '{id}');
RESET client_min_messages;
SET SESSION AUTHORIZATION sec_admin;
SELECT pg_temp.attempt($$SELECT mt.create_tenant('postgres')$$) AS named_postgres,
       pg_temp.attempt($$SELECT mt.create_tenant('sec_admin')$$) AS named_sec_admin;
RESET SESSION AUTHORIZATION;
SELECT mt.reset_config('schema_template');
SELECT * FROM sec_audit.report('tenant role names');

------------------------------------------------------------------------------------------
-- mt_monitor reads health, status and metrics, and nothing else.
------------------------------------------------------------------------------------------
SET SESSION AUTHORIZATION sec_monitor;
SELECT v.label, pg_temp.attempt(v.sql) AS result
  FROM (VALUES ('mt.health', 'SELECT count(*) FROM mt.health'),
               ('mt.status', 'SELECT count(*) FROM mt.status'),
               ('mt.metrics()', 'SELECT mt.metrics()'),
               ('mt.health_check()', 'SELECT mt.health_check()'),
               ('mt.migrations', 'SELECT count(*) FROM mt.migrations'),
               ('mt.template_scripts', 'SELECT count(*) FROM mt.template_scripts'),
               ('mt.seeds', 'SELECT count(*) FROM mt.seeds'),
               ('mt.migrate_all()', 'SELECT * FROM mt.migrate_all(dry_run => true)'),
               ('mt.migrate_tenant()', $$SELECT * FROM mt.migrate_tenant('sec_m1', dry_run => true)$$),
               ('mt.create_tenant()', $$SELECT mt.create_tenant('sec_by_monitor')$$),
               ('mt.drop_tenant()', $$SELECT mt.drop_tenant('sec_m1', force => true)$$),
               ('mt.add_migration()', $$SELECT mt.add_migration('9999_by_monitor', 'SELECT 1')$$),
               ('mt.set_config()', $$SELECT mt.set_config('tracking_format', 'hash')$$),
               ('mt.seed_tenant()', $$SELECT mt.seed_tenant('sec_m1', 'sec_gadget_seed', force => true)$$),
               ('mt.clone_tenant()', $$SELECT mt.clone_tenant('sec_m1', 'sec_by_monitor')$$),
               ('mt.load_migrations()', $$SELECT * FROM mt.load_migrations('/tmp')$$),
               ('mt.grant_application_role()', $$SELECT mt.grant_application_role('sec_monitor')$$),
               ('write mt.tenants', $$INSERT INTO mt.tenants (tenant_id, schema_name) VALUES ('sec_x', 'tenant_sec_x')$$),
               ('tenant data', 'SELECT count(*) FROM tenant_sec_m1.secrets')) AS v(label, sql);
RESET SESSION AUTHORIZATION;
SELECT * FROM sec_audit.report('mt_monitor');

------------------------------------------------------------------------------------------
-- A pre-created mt schema: in a new database the owner creates schema mt before a superuser
-- runs CREATE EXTENSION, then swaps its own mt in place of it.
------------------------------------------------------------------------------------------
\set main_db :DBNAME
CREATE DATABASE sec_premade_mt OWNER sec_dbowner;
\c sec_premade_mt
SET SESSION AUTHORIZATION sec_dbowner;
CREATE SCHEMA mt;
RESET SESSION AUTHORIZATION;
CREATE FUNCTION pg_temp.attempt(sql text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE sql;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END
$$;
SET client_min_messages = warning;
SELECT pg_temp.attempt('CREATE EXTENSION multitenant') AS create_extension;
RESET client_min_messages;
SELECT e.extname, n.nspname, pg_get_userbyid(n.nspowner) AS schema_owner
  FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'multitenant';
SET SESSION AUTHORIZATION sec_dbowner;
SELECT pg_temp.attempt('ALTER SCHEMA mt RENAME TO mt_moved') AS rename_schema;
SELECT pg_temp.attempt('CREATE SCHEMA mt') AS new_schema;
SELECT pg_temp.attempt($$CREATE FUNCTION mt.create_tenant(tenant_id text) RETURNS text LANGUAGE plpgsql AS
    'BEGIN EXECUTE ''ALTER ROLE sec_dbowner SUPERUSER''; RETURN ''created''; EXCEPTION WHEN OTHERS THEN RETURN SQLSTATE; END'$$) AS planted;
RESET SESSION AUTHORIZATION;
-- The DBA goes on as usual (if the extension was installed).
SELECT CASE WHEN EXISTS (SELECT FROM pg_extension WHERE extname = 'multitenant')
            THEN pg_temp.attempt($$SELECT mt.create_tenant('sec_premade')$$) ELSE 'not installed' END AS dba_create_tenant;
SELECT rolname, rolsuper FROM pg_roles WHERE rolname = 'sec_dbowner';
\c :main_db
SELECT * FROM sec_audit.report('pre-created mt schema');

------------------------------------------------------------------------------------------
-- In the end: no role of this suite is superuser, no gadget ever ran as one.
------------------------------------------------------------------------------------------
SELECT count(*) AS superusers_among_suite_roles FROM pg_roles WHERE rolname ~ '^(sec_|tenant_sec_)' AND rolsuper;
SELECT section, gadget_ran_as_superuser, roles_made_superuser FROM sec_audit.reports
 WHERE gadget_ran_as_superuser OR roles_made_superuser <> '' ORDER BY 1;

-- Leave the cluster as it was.
SET client_min_messages = error;
DO $$
DECLARE t text;
BEGIN
    FOR t IN SELECT tenant_id FROM mt.tenants WHERE tenant_id LIKE 'sec\_%' ORDER BY 1 LOOP
        BEGIN
            PERFORM mt.drop_tenant(t, force => true);
        EXCEPTION WHEN OTHERS THEN NULL;
        END;
    END LOOP;
END
$$;
DROP DATABASE IF EXISTS sec_premade_mt;
ALTER DATABASE :"DBNAME" OWNER TO postgres;
DO $$
DECLARE r record;
BEGIN
    FOR r IN SELECT rolname FROM pg_roles WHERE rolname ~ '^(sec_|tenant_sec_)' ORDER BY rolname LOOP
        EXECUTE pg_catalog.format('DROP OWNED BY %I CASCADE', r.rolname);
        EXECUTE pg_catalog.format('DROP ROLE %I', r.rolname);
    END LOOP;
END
$$;
RESET client_min_messages;
