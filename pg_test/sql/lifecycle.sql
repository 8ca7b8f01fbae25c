-- The extension's lifecycle: DROP EXTENSION multitenant is refused while tenants are
-- registered (sql/guard.sql), allowed without tenants or with SET mt.allow_drop = on.
\i pg_test/helpers.sql

-- The guard is an event trigger of the extension, on DROP EXTENSION only.
SELECT evtname, evtevent, evttags, evtenabled, evtfoid::regprocedure AS function
  FROM pg_event_trigger ORDER BY evtname;
SELECT pg_describe_object(d.classid, d.objid, d.objsubid) AS member
  FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'multitenant'
 WHERE d.deptype = 'e' AND d.classid = 'pg_event_trigger'::regclass
 ORDER BY 1;
SELECT obj_description(oid, 'pg_event_trigger') IS NOT NULL AS commented
  FROM pg_event_trigger WHERE evtname = 'multitenant_drop_guard';
SELECT obj_description('mt_internal.drop_guard()'::regprocedure, 'pg_proc') IS NOT NULL AS commented,
       proacl FROM pg_proc WHERE oid = 'mt_internal.drop_guard()'::regprocedure;

SELECT tenant_id FROM mt.create_tenant('life-a');
SELECT tenant_id FROM mt.create_tenant('life-b', migrate => false);

-- Refused with tenants, however the statement names it.
DROP EXTENSION multitenant;
DROP EXTENSION IF EXISTS no_such_extension, "multitenant" CASCADE;
DROP /* comment */ EXTENSION -- another one
    MultiTenant RESTRICT;
SELECT 1 AS one \; DROP EXTENSION multitenant;
-- ... from PL/pgSQL, static or dynamic (the statement's text is in the error context).
SELECT pg_temp.attempt('DROP EXTENSION multitenant') AS dynamic;
SELECT pg_temp.attempt('DROP EXTENSION IF EXISTS hstore, multitenant') AS dynamic_list;
CREATE FUNCTION pg_temp.drop_it() RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    DROP EXTENSION multitenant;
    RETURN 'dropped';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END
$$;
SELECT pg_temp.drop_it() AS static;
-- ... and where its text cannot be seen (a SQL function), whatever it drops.
CREATE FUNCTION pg_temp.drop_unseen() RETURNS void LANGUAGE sql AS 'DROP EXTENSION IF EXISTS no_such_extension';
SELECT pg_temp.attempt('SELECT pg_temp.drop_unseen()') AS unseen;
-- An explicit off is off.
SET mt.allow_drop = off;
DROP EXTENSION multitenant;
RESET mt.allow_drop;
-- Nothing was lost.
SELECT count(*) AS tenants FROM mt.tenants;
SELECT extname FROM pg_extension WHERE extname = 'multitenant';

-- Other extensions drop as before, however they are named.
CREATE EXTENSION hstore;
DROP EXTENSION hstore;
DROP EXTENSION IF EXISTS no_such_extension;
SELECT 1 AS one \; DROP EXTENSION IF EXISTS no_such_extension, "multitenant_not";
SELECT pg_temp.attempt('DROP EXTENSION IF EXISTS no_such_extension') AS dynamic_other;
SELECT pg_temp.attempt('DROP EXTENSION IF EXISTS "MultiTenant"') AS quoted_is_another_name;

-- Someone who may not drop it at all gets PostgreSQL's own answer.
SET ROLE mt_admin;
SELECT pg_temp.attempt('DROP EXTENSION multitenant') AS not_owner;
RESET ROLE;
-- ... and a user without any rights in mt drops a trusted extension of their own as before.
CREATE ROLE regress_lifecycle_plain;
CREATE SCHEMA life_plain AUTHORIZATION regress_lifecycle_plain;
DO $$ BEGIN EXECUTE format('GRANT CREATE ON DATABASE %I TO regress_lifecycle_plain', current_database()); END $$;
SET ROLE regress_lifecycle_plain;
CREATE EXTENSION hstore SCHEMA life_plain;
DROP EXTENSION hstore;
RESET ROLE;
DROP SCHEMA life_plain;
DO $$ BEGIN EXECUTE format('REVOKE CREATE ON DATABASE %I FROM regress_lifecycle_plain', current_database()); END $$;
DROP ROLE regress_lifecycle_plain;

-- Other DDL is not looked at.
CREATE TABLE life_notes (id int);
DROP TABLE life_notes;

-- The override: a warning, and the drop goes ahead (the tenants' ledger triggers depend on
-- the extension, hence CASCADE; rolled back here).
BEGIN;
SET LOCAL mt.allow_drop = on;
SET LOCAL client_min_messages = warning;
DROP EXTENSION multitenant CASCADE;
SELECT count(*) AS extensions FROM pg_extension WHERE extname = 'multitenant';
SELECT nspname FROM pg_namespace WHERE nspname LIKE 'tenant\_life\_%' ORDER BY 1;
ROLLBACK;
SELECT count(*) AS tenants FROM mt.tenants;

-- Without tenants it goes without a word.
SELECT mt.drop_tenant('life-a', force => true) IS NOT NULL AS dropped;
SELECT mt.drop_tenant('life-b', force => true) IS NOT NULL AS dropped;
DROP EXTENSION multitenant;
SELECT count(*) AS extensions FROM pg_extension WHERE extname = 'multitenant';
SELECT count(*) AS event_triggers FROM pg_event_trigger;
