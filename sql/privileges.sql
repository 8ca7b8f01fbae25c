-- Runs last: nothing in mt is usable by PUBLIC.
--
-- mt_admin gets the public API. Admin functions are SECURITY DEFINER (owned by the superuser
-- who ran CREATE EXTENSION), so a member of mt_admin can create and drop tenant schemas
-- without being superuser; everything tenant-controlled they start still runs as a tenant
-- role (src/roles.rs), so it is no way up. Internal helpers are granted to no one: the
-- SECURITY DEFINER functions call them as the extension owner.
-- mt_monitor reads health, status, metrics, drift and runs, and no migration SQL.

REVOKE ALL ON SCHEMA mt FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA mt FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA mt FROM PUBLIC;

GRANT USAGE ON SCHEMA mt TO mt_admin, mt_monitor;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA mt TO mt_admin;
GRANT SELECT ON ALL TABLES IN SCHEMA mt TO mt_admin;

REVOKE EXECUTE ON FUNCTION
    mt.execute_as(oid, text, text),
    mt.code_role(text),
    mt.check_tracking_table(text, text),
    mt.hand_over_schema(text, text, boolean),
    mt.grant_schema(text, text),
    mt.create_tenant_role(text),
    mt.prepare_template(),
    mt.lend_schema(text, oid, boolean),
    mt.clone_objects(text, text, boolean, jsonb),
    mt.clone_rows(text, text, boolean, jsonb),
    mt.copy_tracking(text, text, text),
    mt.copy_template(text),
    mt.build_template_scripts(text),
    mt.run_seed(text, text, text, text, boolean),
    mt.save_seed(text, text, text, regprocedure, boolean),
    mt.ensure_extension(text, text),
    mt.ensure_ledger_trigger(text),
    mt.record_tracking_insert()
FROM mt_admin;

GRANT SELECT ON mt.config, mt.config_options, mt.status, mt.sync_status, mt.health, mt.activity, mt.run_progress, mt.runs, mt.run_tenants,
                mt.drift_report, mt.drift_summary, mt.applied_migrations, mt.tenants, mt.tenant_directory, mt.settings
   TO mt_monitor;
GRANT EXECUTE ON FUNCTION
    mt.health_check(text[], boolean),
    mt.run_is_alive(integer, timestamptz),
    mt.metrics(text),
    mt.metric_family(text, text, text, text[]),
    mt.prometheus_label(text),
    mt.is_migration_operation(text),
    mt.tenant_drift(text, text),
    mt.drift(text, text[]),
    mt.introspect(text),
    mt.schema_objects(text[]),
    mt.strip_schema(text, text),
    mt.strip_schema_setting(text[], text),
    mt.tenant_schema(text, text),
    mt.template_is_current(),
    mt.template_version(),
    mt.shared_pending(),
    mt.get_config(text),
    mt.schema_name(text),
    mt.tenant_id_of(text),
    mt.fingerprint(jsonb),
    mt.diff_models(jsonb, jsonb)
   TO mt_monitor;
