-- Shared by every suite (\i pg_test/helpers.sql): quiet, stable output and a way to
-- show the SQLSTATE of an error next to its message.
\set SHOW_CONTEXT never
SET client_min_messages = warning;
CREATE EXTENSION multitenant;
RESET client_min_messages;

-- attempt(sql): runs sql and returns 'ok', or the SQLSTATE and message it failed with.
CREATE FUNCTION pg_temp.attempt(sql text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE sql;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END
$$;
