-- Runs last: nothing in mt is usable by PUBLIC.
--
-- mt_admin gets the public API. Admin functions are SECURITY DEFINER (owned by the superuser
-- who ran CREATE EXTENSION), so a member of mt_admin can create and drop tenant schemas
-- without being superuser; everything tenant-controlled they start still runs as a tenant
-- role (src/roles.rs), so it is no way up. Internal helpers live in mt_internal and are
-- granted to no one (but the few the views call): the SECURITY DEFINER functions call them
-- as the extension owner.
-- mt_monitor reads health, status, metrics, drift and runs, and no migration SQL.

REVOKE ALL ON SCHEMA mt FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA mt FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA mt FROM PUBLIC;

GRANT USAGE ON SCHEMA mt TO mt_admin, mt_monitor;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA mt TO mt_admin;
GRANT SELECT ON ALL TABLES IN SCHEMA mt TO mt_admin;

-- Internal helpers: nobody may call them but the extension's own functions (as the owner),
-- except the few that the public views call, whose callers need them.
REVOKE ALL ON SCHEMA mt_internal FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA mt_internal FROM PUBLIC, mt_admin, mt_monitor;
GRANT USAGE ON SCHEMA mt_internal TO mt_admin, mt_monitor;
GRANT EXECUTE ON FUNCTION
    mt_internal.run_is_alive(integer, timestamptz),
    mt_internal.is_migration_operation(text),
    mt_internal.strip_schema(text, text),
    mt_internal.strip_schema_setting(text[], text),
    mt_internal.search_path_names(text),
    mt_internal.is_extension_member(regclass, oid),
    mt_internal.current_drift()
   TO mt_admin, mt_monitor;

-- mt.clone_statements computes a clone's DDL as the source schema's role (a tenant's or
-- the template's, all members of mt_tenant), which needs these.
GRANT USAGE ON SCHEMA mt_internal TO mt_tenant;
GRANT EXECUTE ON FUNCTION
    mt_internal.clone_statements(text, text, text, oid),
    mt_internal.is_extension_member(regclass, oid),
    mt_internal.search_path_names(text)
   TO mt_tenant;

GRANT SELECT ON mt.config, mt.config_options, mt.status, mt.sync_status, mt.health, mt.activity, mt.run_progress, mt.runs, mt.run_tenants,
                mt.drift_report, mt.drift_summary, mt.applied_migrations, mt.tenants, mt.tenant_directory, mt.settings
   TO mt_monitor;
GRANT EXECUTE ON FUNCTION
    mt.health_check(text[], boolean, text),
    mt.metrics(text),
    mt.tenant_drift(text, text),
    mt.drift(text, text[]),
    mt.introspect(text),
    mt.schema_objects(text[]),
    mt.tenant_schema(text, text),
    mt.template_is_current(),
    mt.shared_pending(),
    mt.get_config(text),
    mt.schema_name(text),
    mt.tenant_id_of(text),
    mt.fingerprint(jsonb),
    mt.diff_models(jsonb, jsonb)
   TO mt_monitor;
