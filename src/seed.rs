//! Seeding many tenants in parallel; the seeds themselves are SQL (`sql/seeds.sql`).

use pgrx::prelude::*;

use crate::engine::Operation;
use crate::migrations::{fan_out, resolve_targets, rows};
use crate::workers;

/// `mt.seed_all(name, concurrency, tenant_ids, force)`: `mt.seed_tenant` for every (or the
/// listed) tenant, each in its own transaction, in parallel background workers.
#[pg_extern(security_definer, volatile, requires = ["migrations", "seeds"])]
#[search_path(pg_catalog, pg_temp)]
fn seed_all(
    name: &str,
    concurrency: default!(Option<i32>, "NULL"),
    tenant_ids: default!(Option<Vec<String>>, "NULL"),
    force: default!(bool, false),
) -> SetOfIterator<'static, pgrx::composite_type!('static, "mt.run_result")> {
    workers::ensure_nothing_uncommitted("seed_all");
    ensure_tenant_seed(name);
    let targets = resolve_targets(tenant_ids);
    rows(fan_out(Operation::Seed { force }, name, &targets, concurrency))
}

/// Raises unless `name` is a registered tenant seed: better one error than one per tenant.
pub fn ensure_tenant_seed(name: &str) {
    let scope = Spi::get_one_with_args::<String>("SELECT (SELECT scope FROM mt.seeds WHERE name = $1)", &[name.into()])
        .unwrap_or_else(|e| error!("{e}"));
    match scope.as_deref() {
        Some("tenant") => {}
        Some(_) => {
            ereport!(
                ERROR,
                PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                format!("seed \"{name}\" is for the shared schema"),
                "Run it with mt.seed_shared."
            );
        }
        None => {
            ereport!(
                ERROR,
                PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
                format!("seed \"{name}\" is not registered"),
                "SELECT name FROM mt.seeds lists the seeds."
            );
        }
    }
}
