//! Cloning and template provisioning: the Rust pieces the SQL in `sql/clone.sql` calls.

use multitenant_core::sql_text;
use multitenant_core::tracking::TrackingFormat;
use pgrx::prelude::*;

use crate::engine::{self, Failure, Operation, Outcome, Status, TEMPLATE_SCHEMA};
use crate::migrations::{fan_out, rows};
use crate::workers::{self, RunResult};

/// `mt.requalify(sql, from_schema, to_schema)`: `sql` with every `from_schema.` qualifier
/// naming `to_schema` instead, in code and function bodies but not in literals or comments.
#[pg_extern(immutable, parallel_safe)]
#[search_path(pg_catalog, pg_temp)]
fn requalify(sql: &str, from_schema: &str, to_schema: &str) -> String {
    sql_text::requalify(sql, from_schema, to_schema)
}

/// `mt.clone_statements(source_schema, target_schema)`: the DDL that clones one schema into
/// another, step by step. Computed by `mt_internal.clone_statements` as the source schema's
/// role, not as the extension owner: the deparsers need the source schema on the search
/// path, where its owner could have planted a better match for a built-in function or
/// operator.
#[pg_extern(security_definer, volatile, requires = ["clone"])]
#[search_path(pg_catalog, pg_temp)]
fn clone_statements(
    source_schema: &str,
    target_schema: &str,
) -> TableIterator<
    'static,
    (name!(step, i32), name!(object_type, String), name!(object_name, String), name!(statement, String)),
> {
    let role = crate::roles::code_role(source_schema);
    let tracking_table = Spi::get_one::<String>("SELECT mt.get_config('tracking_table')")
        .unwrap_or_else(|e| error!("{e}"))
        .unwrap_or_default();
    let statements = crate::roles::run_as(role, crate::roles::BOOKKEEPING_PATH, || {
        Spi::connect(|client| {
            client
                .select(
                    "SELECT step, object_type, object_name, statement FROM mt_internal.clone_statements($1, $2, $3, $4)",
                    None,
                    &[source_schema.into(), target_schema.into(), tracking_table.as_str().into(), role.into()],
                )?
                .map(|row| {
                    let statement = row.get::<String>(4)?.unwrap_or_default();
                    Ok((
                        row.get::<i32>(1)?.unwrap_or_default(),
                        row.get::<String>(2)?.unwrap_or_default(),
                        row.get::<String>(3)?.unwrap_or_default(),
                        // Deparsers qualify some names and bodies are text: whatever still
                        // names the source now names the target.
                        sql_text::requalify(&statement, source_schema, target_schema),
                    ))
                })
                .collect::<Result<Vec<_>, pgrx::spi::Error>>()
        })
        .unwrap_or_else(|e| error!("{e}"))
    });
    TableIterator::new(statements)
}

/// `mt_internal.copy_tracking(source_schema, target_schema, to_format)` (internal): gives a clone the
/// tracking records of its source, in `to_format` (default: the source's), as the trusted
/// owner: the source's table is checked like every tracking table before it is read, and
/// the clone's is created by the extension rather than copied as tenant DDL. Returns the
/// records copied; a source without a tracking table leaves the clone without one.
#[pg_extern(volatile, schema = "mt_internal", requires = ["roles", "migrations"])]
#[search_path(pg_catalog, pg_temp)]
fn copy_tracking(source_schema: &str, target_schema: &str, to_format: default!(Option<&str>, "NULL")) -> i32 {
    let table_name = Spi::get_one::<String>("SELECT mt.get_config('tracking_table')")
        .unwrap_or_else(|e| error!("{e}"))
        .unwrap_or_default();
    let Some((format, records)) = engine::read_tracking(source_schema, &table_name, None) else {
        return 0;
    };
    let to = match to_format {
        Some(name) => name.parse::<TrackingFormat>().unwrap_or_else(|e| {
            ereport!(ERROR, PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, e);
        }),
        None => format,
    };
    let migrations = engine::Plan::registered("tenant");
    let converted: Vec<_> = records.iter().map(|r| r.convert(to, &migrations)).collect();
    engine::write_tracking(target_schema, &table_name, to, &converted);
    converted.len() as i32
}

/// `mt.template_is_current()`: whether `mt_template` has exactly the registered tenant
/// migrations applied, so that a new tenant may be cloned from it instead of migrated.
#[pg_extern(security_definer, stable, requires = ["migrations"])]
#[search_path(pg_catalog, pg_temp)]
fn template_is_current() -> bool {
    engine::pending_and_orphans(TEMPLATE_SCHEMA, "tenant") == Some((0, 0))
}

/// `mt.create_tenants(tenant_ids, concurrency, seed)`: each tenant created by
/// `mt.create_tenant` in its own transaction, in parallel background workers; one failure
/// does not stop the others.
#[pg_extern(security_definer, volatile, requires = ["migrations", "seeds"])]
#[search_path(pg_catalog, pg_temp)]
fn create_tenants(
    tenant_ids: Vec<Option<String>>,
    concurrency: default!(Option<i32>, "NULL"),
    seed: default!(Option<String>, "NULL"),
) -> SetOfIterator<'static, pgrx::composite_type!('static, "mt.run_result")> {
    workers::ensure_nothing_uncommitted("create_tenants");
    if let Some(seed) = &seed {
        crate::seed::ensure_tenant_seed(seed);
    }
    // Ids that cannot be passed to a worker intact fail here; the rest are checked by
    // mt.create_tenant itself, in the worker.
    let checked: Vec<Result<String, String>> = tenant_ids
        .into_iter()
        .map(|id| match id {
            None => Err(String::new()),
            Some(id) if id.len() > 63 => Err(id),
            Some(id) => Ok(id),
        })
        .collect();
    let targets: Vec<(String, String)> =
        checked.iter().filter_map(|c| c.as_ref().ok()).map(|id| (id.clone(), String::new())).collect();
    let mut created = fan_out(Operation::Provision, seed.as_deref().unwrap_or(""), &targets, concurrency).into_iter();
    let results: Vec<RunResult> = checked
        .into_iter()
        .map(|c| match c {
            Ok(_) => created.next().expect("one result per target"),
            Err(id) => RunResult {
                outcome: Outcome {
                    status: Status::Failed,
                    applied: 0,
                    pending: 0,
                    failure: Some(Failure {
                        sqlstate: "22023".into(),
                        message: if id.is_empty() {
                            "tenant id must not be NULL".into()
                        } else {
                            format!("tenant id \"{id}\" is longer than 63 bytes")
                        },
                        migration: None,
                    }),
                    duration_ms: 0,
                },
                tenant_id: id,
                schema: String::new(),
            },
        })
        .collect();
    rows(results)
}
