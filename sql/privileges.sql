-- Runs last: nothing in mt is usable by PUBLIC; the NOLOGIN role mt_admin gets it all.
-- Admin functions are SECURITY DEFINER (owned by the superuser who ran CREATE EXTENSION),
-- so a member of mt_admin can create and drop tenant schemas without being superuser.

REVOKE ALL ON SCHEMA mt FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA mt FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA mt FROM PUBLIC;

GRANT USAGE ON SCHEMA mt TO mt_admin;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA mt TO mt_admin;
GRANT SELECT ON ALL TABLES IN SCHEMA mt TO mt_admin;
