//! SQL wrappers over `multitenant_core::naming`: the rules themselves live there.

use multitenant_core::naming::{Naming, NamingError};
use pgrx::prelude::*;

/// Raises a naming error as SQLSTATE 22023 (invalid_parameter_value).
fn raise(err: NamingError) -> ! {
    ereport!(ERROR, PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, err.to_string());
}

/// The naming rules as configured in `mt.config`.
fn configured_naming() -> Naming {
    // A read-only query: Spi::get_* would assign a transaction id, which a parallel-safe
    // function must not do.
    let (template, shared_schema) = Spi::connect(|client| {
        client
            .select("SELECT mt.get_config('schema_template'), mt.get_config('shared_schema')", Some(1), &[])?
            .first()
            .get_two::<String, String>()
    })
    .unwrap_or_else(|err| error!("multitenant: cannot read the naming settings: {err}"));
    Naming::new(&template.unwrap_or_default(), &shared_schema.unwrap_or_default()).unwrap_or_else(|err| raise(err))
}

/// `mt.schema_name(tenant_id)`: the schema of a tenant id under the configured template.
/// Not strict: a NULL id is an error, not a NULL name.
#[pg_extern(stable, parallel_safe)]
#[search_path(pg_catalog, pg_temp)]
fn schema_name(tenant_id: Option<&str>) -> String {
    let tenant_id = tenant_id.unwrap_or_else(|| raise(NamingError::NullTenantId));
    configured_naming().schema_name(tenant_id).unwrap_or_else(|err| raise(err))
}

/// `mt.tenant_id_of(schema_name)`: the tenant id whose schema this is under the configured
/// template, or NULL when the name does not follow it.
#[pg_extern(stable, parallel_safe)]
#[search_path(pg_catalog, pg_temp)]
fn tenant_id_of(schema_name: &str) -> Option<String> {
    configured_naming().tenant_id_of(schema_name)
}

/// `mt.validate_naming(template, shared_schema)`: raises 22023 unless the pair is usable.
#[pg_extern(immutable, parallel_safe)]
#[search_path(pg_catalog, pg_temp)]
fn validate_naming(template: &str, shared_schema: &str) {
    if let Err(err) = Naming::new(template, shared_schema) {
        raise(err)
    }
}

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    use pgrx::prelude::*;

    #[pg_test]
    fn schema_names_never_need_quoting() {
        for id in ["acme", "0b0e4a3c-9d4f-4d1a-8f5e-6a1b2c3d4e5f", "a_b", "z9"] {
            let same = Spi::get_one_with_args::<bool>(
                "SELECT mt.schema_name($1) = quote_ident(mt.schema_name($1))",
                &[id.into()],
            );
            assert_eq!(same, Ok(Some(true)), "{id}");
        }
    }

    #[pg_test(
        error = "tenant id \"x; drop table t\" contains the character \";\" at byte 1; only lowercase ASCII letters, digits, \"_\" and \"-\" are allowed"
    )]
    fn hostile_id_raises() {
        Spi::run("SELECT mt.schema_name('x; drop table t')").unwrap();
    }

    #[pg_test]
    fn template_change_applies_to_schema_name() {
        Spi::run("SELECT mt.set_config('schema_template', 'org_{id}_data')").unwrap();
        let name = Spi::get_one::<String>("SELECT mt.schema_name('acme')");
        assert_eq!(name, Ok(Some("org_acme_data".to_string())));
        let id = Spi::get_one::<String>("SELECT mt.tenant_id_of('org_acme_data')");
        assert_eq!(id, Ok(Some("acme".to_string())));
    }
}
