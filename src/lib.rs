//! The `multitenant` PostgreSQL extension.
//!
//! Thin `#[pg_extern]` wrappers live in one module per capability; the logic they wrap is
//! in `multitenant-core` (pure Rust) or in the SQL files under `sql/`, pulled in here in
//! dependency order.

use pgrx::prelude::*;

mod naming;

::pgrx::pg_module_magic!(name, version);

extension_sql_file!("../sql/bootstrap.sql", name = "bootstrap", bootstrap);
extension_sql_file!(
    "../sql/naming.sql",
    name = "naming",
    requires = [naming::schema_name, naming::tenant_id_of, naming::validate_naming]
);
extension_sql_file!(
    "../sql/tenants.sql",
    name = "tenants",
    requires = ["bootstrap", "naming"]
);
extension_sql_file!(
    "../sql/config.sql",
    name = "config",
    requires = ["tenants"]
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
