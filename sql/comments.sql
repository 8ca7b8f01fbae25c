-- Comments for the functions implemented in Rust.

COMMENT ON FUNCTION mt.schema_name(text) IS
    'multitenant: the schema name for a tenant id under schema_template; raises 22023 naming the rule an id breaks';
COMMENT ON FUNCTION mt.tenant_id_of(text) IS
    'multitenant: the tenant id a schema name belongs to under schema_template ("-" reads back as "_"), or NULL';
COMMENT ON FUNCTION mt.validate_naming(text, text) IS
    'multitenant: raises 22023 unless a schema template and shared schema give valid tenant schema names';
COMMENT ON FUNCTION mt.read_migration_folder(text) IS
    'multitenant: the migrations of a drizzle-kit or numbered folder on the server, parsed and hashed (superuser or pg_read_server_files)';
COMMENT ON FUNCTION mt.migrate_all(integer, boolean, boolean, text[]) IS
    'multitenant: apply pending tenant migrations to every (or the listed) tenant in parallel background workers; one row per tenant';
COMMENT ON FUNCTION mt.migrate_tenant(text, boolean, boolean) IS
    'multitenant: apply pending tenant migrations to one tenant inside the caller''s transaction';
COMMENT ON FUNCTION mt.migrate_shared(boolean, boolean) IS
    'multitenant: apply pending shared migrations to the shared schema';
COMMENT ON FUNCTION mt.mark_missing(text[], integer) IS
    'multitenant: record registered but unrecorded migrations as applied without running them';
COMMENT ON FUNCTION mt.clean_orphans(text[], boolean, integer) IS
    'multitenant: delete tracking records of migrations that are no longer registered';
COMMENT ON FUNCTION mt.convert_tracking(text, text[], boolean, integer) IS
    'multitenant: rewrite tracking tables in another format (name, hash, drizzle-kit) without losing a record';
COMMENT ON FUNCTION mt.refresh_template() IS
    'multitenant: apply the registered tenant migrations to mt_template, the reference schema of the drift views and the source of new tenants, and empty mt.template_scripts';
COMMENT ON FUNCTION mt.fingerprint(jsonb) IS
    'multitenant: the fingerprint of a schema model from mt.introspect (the same as mt.drift_summary shows)';
COMMENT ON FUNCTION mt.diff_models(jsonb, jsonb) IS
    'multitenant: the differences between two schema models from mt.introspect (missing, extra, changed)';
COMMENT ON FUNCTION mt.requalify(text, text, text) IS
    'multitenant: SQL text with every qualifier naming one schema rewritten to name another, outside literals and comments';
COMMENT ON FUNCTION mt.template_is_current() IS
    'multitenant: whether mt_template has exactly the registered tenant migrations applied, so new tenants are cloned from it';
COMMENT ON FUNCTION mt.create_tenants(text[], integer, text) IS
    'multitenant: create many tenants in parallel background workers, each atomically (cloned from mt_template when current); one row per tenant';
COMMENT ON FUNCTION mt.seed_all(text, integer, text[], boolean) IS
    'multitenant: run a tenant seed in every (or the listed) tenant in parallel background workers, each in its own transaction; one row per tenant';
COMMENT ON FUNCTION mt.shared_pending() IS
    'multitenant: how many shared migrations the shared schema has not applied (NULL without a tracking table); reads only';
COMMENT ON FUNCTION mt_internal.execute_as(oid, text, text) IS
    'multitenant (internal): run statements as a role with a search_path, as a SECURITY DEFINER function would; never as a superuser for a non-superuser caller';
COMMENT ON FUNCTION mt_internal.copy_tracking(text, text, text) IS
    'multitenant (internal): give a clone its source''s tracking records (in a chosen format), written by the extension owner';
COMMENT ON FUNCTION mt.repair_tracking(text[], text) IS
    'multitenant: put tracking tables and the ledger back in step after a table was dropped, emptied or edited by hand: source ledger writes back lost records, source tracking makes the ledger forget them; one row per tenant';
COMMENT ON FUNCTION mt.clone_statements(text, text) IS
    'multitenant: the DDL that clones one schema into another, step by step (rows are copied between steps 40 and 60), computed as the source schema''s role; what mt.clone_schema runs';
COMMENT ON FUNCTION mt_internal.strip_schema(text, text) IS
    'multitenant (internal): a deparsed definition with the given schema''s qualifier removed (what drift compares)';
