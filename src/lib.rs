//! The `multitenant` PostgreSQL extension.
//!
//! Thin `#[pg_extern]` wrappers live in one module per capability; the logic they wrap is
//! in `multitenant-core` (pure Rust) or in the SQL files under `sql/`, pulled in here in
//! dependency order.

use pgrx::prelude::*;

mod clone;
mod drift;
mod engine;
mod guc;
mod health;
mod migrations;
mod naming;
mod parallel;
mod roles;
mod seed;
mod txn;
mod workers;

::pgrx::pg_module_magic!(name, version);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    guc::init();
}

/// Internal helpers (not API) live in schema `mt_internal`, created by `sql/bootstrap.sql`;
/// this tells pgrx about it, for the functions declared with `schema = "mt_internal"`.
#[pg_schema]
mod mt_internal {}

extension_sql_file!("../sql/bootstrap.sql", name = "bootstrap", bootstrap);
extension_sql_file!("../sql/tenants.sql", name = "tenants", requires = ["bootstrap", naming::schema_name]);
extension_sql_file!("../sql/config.sql", name = "config", requires = ["tenants"]);
extension_sql_file!("../sql/roles.sql", name = "roles", requires = ["config"]);
extension_sql_file!("../sql/migrations.sql", name = "migrations", requires = ["roles"]);
extension_sql_file!(
    "../sql/drift.sql",
    name = "drift",
    requires = [
        "tenants",
        drift::strip_schema,
        drift::ddl_noted_schema,
        drift::release_catalog_caches,
        parallel::run_in_workers
    ]
);
extension_sql_file!("../sql/clone.sql", name = "clone", requires = ["drift", "migrations", roles::execute_as]);
extension_sql_file!("../sql/seeds.sql", name = "seeds", requires = ["roles", roles::execute_as]);
extension_sql_file!(
    "../sql/health.sql",
    name = "health",
    requires =
        ["drift", "migrations", clone::template_is_current, health::request_health_refresh, health::health_max_age]
);
extension_sql_file!("../sql/guard.sql", name = "guard", requires = ["tenants"]);
extension_sql_file!(
    "../sql/comments.sql",
    name = "comments",
    requires = [
        naming::schema_name,
        naming::tenant_id_of,
        naming::validate_naming,
        migrations::read_migration_folder,
        migrations::migrate_all,
        migrations::migrate_tenant,
        migrations::migrate_shared,
        migrations::mark_missing,
        migrations::clean_orphans,
        migrations::convert_tracking,
        migrations::refresh_template,
        migrations::shared_pending,
        drift::fingerprint,
        drift::diff_models,
        drift::strip_schema,
        clone::requalify,
        clone::template_is_current,
        clone::create_tenants,
        seed::seed_all,
        roles::execute_as,
        clone::copy_tracking,
        clone::clone_statements,
        migrations::repair_tracking,
        "clone",
        "seeds",
        "health"
    ]
);
extension_sql_file!("../sql/privileges.sql", name = "privileges", finalize);

/// Required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec![]
    }
}
