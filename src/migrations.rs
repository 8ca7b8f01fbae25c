//! SQL entry points of the migration engine: thin wrappers over `engine` (one schema) and
//! `workers` (many schemas in parallel). The tables and views are in `sql/migrations.sql`.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use multitenant_core::migrations::parse_folder;
use multitenant_core::tracking::TrackingFormat;
use pgrx::heap_tuple::PgHeapTuple;
use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::engine::{Job, Operation, Outcome, Plan, RepairSource, Settings, Target, Transactions, TEMPLATE_SCHEMA};
use crate::txn::Subtransactions;
use crate::workers::{self, RunResult};

type RunRow = PgHeapTuple<'static, pgrx::AllocatedByRust>;

/// `mt.read_migration_folder(folder)`: the migrations of a drizzle-kit or numbered folder on
/// the server, parsed exactly as `multitenant-core` parses them for the client.
#[pg_extern(volatile)]
#[search_path(pg_catalog, pg_temp)]
fn read_migration_folder(
    folder: &str,
) -> TableIterator<
    'static,
    (name!(idx, i32), name!(name, String), name!(sql, String), name!(sha256, String), name!(journal_when, Option<i64>)),
> {
    let allowed = unsafe {
        pg_sys::superuser()
            || pg_sys::has_privs_of_role(pg_sys::GetUserId(), pg_sys::Oid::from(pg_sys::ROLE_PG_READ_SERVER_FILES))
    };
    if !allowed {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            "reading migration folders on the server requires superuser or pg_read_server_files",
            "A client can register each file with mt.add_migration instead."
        );
    }
    let files = multitenant_core::migrations::read_folder(Path::new(folder)).unwrap_or_else(|e| {
        ereport!(ERROR, PgSqlErrorCode::ERRCODE_UNDEFINED_FILE, format!("cannot read migration folder: {e}"));
    });
    let parsed = parse_folder(&files).unwrap_or_else(|e| {
        ereport!(ERROR, PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, format!("migration folder \"{folder}\": {e}"));
    });
    for warning in &parsed.warnings {
        warning!("migration folder \"{folder}\": {warning}");
    }
    TableIterator::new(parsed.migrations.into_iter().map(|m| (m.position, m.name, m.sql, m.sha256, m.journal_when)))
}

/// `mt.migrate_all(...)`: every (or the listed) tenant, in parallel background workers,
/// and the template schema alongside, so drift is measured against the same migrations.
#[pg_extern(security_definer, volatile, requires = ["migrations"])]
#[search_path(pg_catalog, pg_temp)]
fn migrate_all(
    concurrency: default!(Option<i32>, "NULL"),
    dry_run: default!(bool, false),
    mark_applied: default!(bool, false),
    tenant_ids: default!(Option<Vec<String>>, "NULL"),
) -> SetOfIterator<'static, pgrx::composite_type!('static, "mt.run_result")> {
    let with_template = !dry_run && !mark_applied;
    let results = run_in_workers(
        "migrate_all",
        Operation::Migrate { dry_run, mark_applied },
        tenant_ids,
        concurrency,
        with_template,
    );
    let (template, tenants): (Vec<RunResult>, Vec<RunResult>) =
        results.into_iter().partition(|r| r.tenant_id.is_empty() && r.schema == TEMPLATE_SCHEMA);
    if let Some(failure) = template.into_iter().find_map(|t| t.outcome.failure) {
        warning!(
            "multitenant: the template schema {TEMPLATE_SCHEMA} could not be migrated ({}: {}); drift reports compare against it",
            failure.sqlstate,
            failure.message
        );
    }
    rows(tenants)
}

/// `mt.refresh_template()`: applies the registered tenant migrations to `mt_template`,
/// creating it if needed, and forgets the statements that copy it, so that the next copy
/// deparses the template as it is now (changes made by hand included).
#[pg_extern(security_definer, volatile, requires = ["migrations"])]
#[search_path(pg_catalog, pg_temp)]
fn refresh_template() -> SetOfIterator<'static, pgrx::composite_type!('static, "mt.run_result")> {
    let result = migrate_template();
    Spi::run("DELETE FROM mt.template_scripts").unwrap_or_else(|e| error!("multitenant: {e}"));
    rows(vec![result])
}

fn migrate_template() -> RunResult {
    let target = Target { tenant_id: None, schema: TEMPLATE_SCHEMA.to_string() };
    run_in_process("refresh_template", Operation::Migrate { dry_run: false, mark_applied: false }, "tenant", target)
}

/// `mt.shared_pending()`: shared migrations not yet applied to the shared schema, or NULL
/// when it has no tracking table; reads only (unlike a dry run, records no run).
#[pg_extern(security_definer, stable, requires = ["migrations"])]
#[search_path(pg_catalog, pg_temp)]
fn shared_pending() -> Option<i32> {
    let schema = Spi::get_one::<String>("SELECT mt.get_config('shared_schema')")
        .unwrap_or_else(|e| error!("{e}"))
        .unwrap_or_default();
    crate::engine::pending_and_orphans(&schema, "shared").map(|(pending, _)| pending as i32)
}

/// `mt.mark_missing(...)`: records registered-but-unrecorded migrations as applied, without
/// running them.
#[pg_extern(security_definer, volatile, requires = ["migrations"])]
#[search_path(pg_catalog, pg_temp)]
fn mark_missing(
    tenant_ids: default!(Option<Vec<String>>, "NULL"),
    concurrency: default!(Option<i32>, "NULL"),
) -> SetOfIterator<'static, pgrx::composite_type!('static, "mt.run_result")> {
    rows(run_in_workers(
        "mark_missing",
        Operation::Migrate { dry_run: false, mark_applied: true },
        tenant_ids,
        concurrency,
        false,
    ))
}

/// `mt.clean_orphans(...)`: deletes tracking records of migrations no longer registered.
#[pg_extern(security_definer, volatile, requires = ["migrations"])]
#[search_path(pg_catalog, pg_temp)]
fn clean_orphans(
    tenant_ids: default!(Option<Vec<String>>, "NULL"),
    dry_run: default!(bool, false),
    concurrency: default!(Option<i32>, "NULL"),
) -> SetOfIterator<'static, pgrx::composite_type!('static, "mt.run_result")> {
    rows(run_in_workers("clean_orphans", Operation::CleanOrphans { dry_run }, tenant_ids, concurrency, false))
}

/// `mt.convert_tracking(...)`: rewrites tracking tables in another format, in place.
#[pg_extern(security_definer, volatile, requires = ["migrations"])]
#[search_path(pg_catalog, pg_temp)]
fn convert_tracking(
    to_format: &str,
    tenant_ids: default!(Option<Vec<String>>, "NULL"),
    dry_run: default!(bool, false),
    concurrency: default!(Option<i32>, "NULL"),
) -> SetOfIterator<'static, pgrx::composite_type!('static, "mt.run_result")> {
    let to = to_format.parse::<TrackingFormat>().unwrap_or_else(|e| {
        ereport!(ERROR, PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, e);
    });
    rows(run_in_workers("convert_tracking", Operation::Convert { to, dry_run }, tenant_ids, concurrency, false))
}

/// `mt.migrate_tenant(...)`: one tenant, in the caller's transaction (each migration in a
/// subtransaction), so it also works for a tenant created in the same transaction.
#[pg_extern(security_definer, volatile, requires = ["migrations"])]
#[search_path(pg_catalog, pg_temp)]
fn migrate_tenant(
    tenant_id: &str,
    dry_run: default!(bool, false),
    mark_applied: default!(bool, false),
) -> SetOfIterator<'static, pgrx::composite_type!('static, "mt.run_result")> {
    let targets = resolve_targets(Some(vec![tenant_id.to_string()]));
    let (tenant_id, schema) = targets.into_iter().next().expect("resolve_targets checked the id");
    let target = Target { tenant_id: Some(tenant_id), schema };
    rows(vec![run_in_process("migrate_tenant", Operation::Migrate { dry_run, mark_applied }, "tenant", target)])
}

/// `mt.migrate_shared(...)`: the shared-scope migrations, applied to the shared schema.
#[pg_extern(security_definer, volatile, requires = ["migrations"])]
#[search_path(pg_catalog, pg_temp)]
fn migrate_shared(
    dry_run: default!(bool, false),
    mark_applied: default!(bool, false),
) -> SetOfIterator<'static, pgrx::composite_type!('static, "mt.run_result")> {
    let schema = Spi::get_one::<String>("SELECT mt.get_config('shared_schema')")
        .unwrap_or_else(|e| error!("{e}"))
        .unwrap_or_default();
    let target = Target { tenant_id: None, schema };
    rows(vec![run_in_process("migrate_shared", Operation::Migrate { dry_run, mark_applied }, "shared", target)])
}

/// `mt.repair_tracking(tenant_ids, source)`: puts tenants' tracking tables and the ledger
/// back in step after a tracking table was dropped, emptied or edited by hand, in the
/// caller's transaction. `source => 'ledger'` writes back the records a table lost;
/// `'tracking'` makes the ledger forget them (their migrations will run again).
#[pg_extern(security_definer, volatile, requires = ["migrations"])]
#[search_path(pg_catalog, pg_temp)]
fn repair_tracking(
    tenant_ids: default!(Option<Vec<String>>, "NULL"),
    source: default!(&str, "'ledger'"),
) -> TableIterator<'static, (name!(tenant_id, String), name!(schema_name, String), name!(records, i32))> {
    let source = match source {
        "ledger" => RepairSource::Ledger,
        "tracking" => RepairSource::Tracking,
        other => {
            ereport!(
                ERROR,
                PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                format!("repair source \"{other}\" is invalid: it must be ledger or tracking")
            );
        }
    };
    let settings = Settings::load(0, 0);
    let repaired: Vec<(String, String, i32)> = resolve_targets(tenant_ids)
        .into_iter()
        .map(|(tenant_id, schema)| {
            Subtransactions.try_lock_schema(&schema);
            let records =
                crate::engine::repair(&tenant_id, &schema, &settings.tracking_table, settings.default_format, source);
            (tenant_id, schema, records)
        })
        .collect();
    TableIterator::new(repaired)
}

fn run_in_workers(
    function: &str,
    operation: Operation,
    tenant_ids: Option<Vec<String>>,
    concurrency: Option<i32>,
    with_template: bool,
) -> Vec<RunResult> {
    workers::ensure_nothing_uncommitted(function);
    // In a run over the whole fleet, tenants the ledger shows up to date are not visited: a
    // no-op run over 10,000 tenants is one query, not 10,000 transactions. Listed tenants
    // are each visited (their tracking tables read and checked against the ledger).
    let fleet_migration =
        tenant_ids.is_none() && matches!(operation, Operation::Migrate { dry_run: false, mark_applied: false });
    let targets = resolve_targets(tenant_ids);
    let settled = if fleet_migration { up_to_date(&targets) } else { BTreeSet::new() };
    let (settled, mut visits): (Vec<_>, Vec<_>) = targets.iter().cloned().partition(|(id, _)| settled.contains(id));
    if with_template {
        // An item without a tenant id: no ledger, no tenant row. First, so that the workers
        // can give empty tenant schemas a copy of it (they wait for it; see workers::run).
        visits.insert(0, (String::new(), TEMPLATE_SCHEMA.to_string()));
    }
    let concurrency = checked_concurrency(concurrency);
    let mut results = workers::run(operation, "", &visits, &settled, concurrency);
    // In the order of the targets (the template first).
    let position: HashMap<&str, usize> = targets.iter().enumerate().map(|(i, (id, _))| (id.as_str(), i + 1)).collect();
    results.sort_by_key(|r| position.get(r.tenant_id.as_str()).copied().unwrap_or(0));
    results
}

/// The tenants among `targets` that a migrate run would find up to date: every registered
/// tenant migration in the ledger (`mt.status`, which the ledger trigger keeps in step with
/// the tracking tables), the schema and its tracking table in place, and the ledger trigger
/// enabled on it. Anything else is visited, and its worker tells what is wrong.
fn up_to_date(targets: &[(String, String)]) -> BTreeSet<String> {
    let ids: Vec<&str> = targets.iter().map(|(id, _)| id.as_str()).collect();
    // Over 50,000 tenants the plan's cost passes jit_above_cost, and compiling it would cost
    // more than running it: off for this query, as a function's SET clause would do.
    let nest_level = unsafe { pg_sys::NewGUCNestLevel() };
    Spi::run("SELECT pg_catalog.set_config('jit', 'off', true)").unwrap_or_else(|e| error!("{e}"));
    let settled = Spi::connect(|client| {
        client
            .select(
                "SELECT s.tenant_id FROM mt.status s \
                   JOIN pg_catalog.pg_namespace n ON n.nspname OPERATOR(pg_catalog.=) s.schema_name \
                   JOIN pg_catalog.pg_class c ON c.relnamespace OPERATOR(pg_catalog.=) n.oid \
                        AND c.relname OPERATOR(pg_catalog.=) mt.get_config('tracking_table') AND c.relkind OPERATOR(pg_catalog.=) 'r' \
                   JOIN pg_catalog.pg_trigger g ON g.tgrelid OPERATOR(pg_catalog.=) c.oid AND g.tgname OPERATOR(pg_catalog.=) 'mt_ledger' \
                        AND g.tgenabled OPERATOR(pg_catalog.=) ANY ('{O,A}'::\"char\"[]) \
                  WHERE s.pending OPERATOR(pg_catalog.=) 0 AND s.tenant_id OPERATOR(pg_catalog.=) ANY ($1::text[])",
                None,
                &[ids.into()],
            )?
            .map(|row| Ok(row.get::<String>(1)?.unwrap_or_default()))
            .collect::<Result<BTreeSet<_>, pgrx::spi::Error>>()
    })
    .unwrap_or_else(|e| error!("{e}"));
    unsafe { pg_sys::AtEOXact_GUC(false, nest_level) };
    settled
}

/// Runs `operation` over `targets` in background workers, `concurrency` at a time (default
/// `mt.max_workers`). The caller has checked `workers::ensure_nothing_uncommitted`.
pub(crate) fn fan_out(
    operation: Operation,
    argument: &str,
    targets: &[(String, String)],
    concurrency: Option<i32>,
) -> Vec<RunResult> {
    workers::run(operation, argument, targets, &[], checked_concurrency(concurrency))
}

/// `concurrency`, or `mt.max_workers` when not given; less than 1 is an error.
fn checked_concurrency(concurrency: Option<i32>) -> i32 {
    let concurrency = concurrency.unwrap_or_else(|| crate::guc::MAX_WORKERS.get());
    if concurrency < 1 {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("concurrency must be at least 1, not {concurrency}")
        );
    }
    concurrency
}

/// Runs one schema in this backend, recording the run (as `function`) like a worker run.
fn run_in_process(function: &str, operation: Operation, scope: &str, target: Target) -> RunResult {
    crate::engine::close_abandoned_runs();
    let run_id = crate::engine::start_run(None, function, operation, 1, unsafe { pg_sys::MyProcPid });
    // Migrations set search_path and lock_timeout locally; keep that from leaking into the
    // caller's transaction, as a function's SET clause would.
    let nest_level = unsafe { pg_sys::NewGUCNestLevel() };
    let settings = Settings::load(crate::guc::LOCK_TIMEOUT_MS.get(), crate::guc::STATEMENT_TIMEOUT_MS.get());
    let plan = Plan::load(scope);
    let outcome = Job {
        tx: &Subtransactions,
        settings: &settings,
        plan: &plan,
        target: &target,
        operation,
        run_id,
        from_template: false,
    }
    .run();
    unsafe { pg_sys::AtEOXact_GUC(false, nest_level) };
    crate::engine::finish_run(run_id, crate::engine::run_status::FINISHED);
    RunResult { tenant_id: target.tenant_id.clone().unwrap_or_default(), schema: target.schema, outcome }
}

/// The (tenant id, schema) pairs to work on; unknown ids are an error naming them.
pub(crate) fn resolve_targets(tenant_ids: Option<Vec<String>>) -> Vec<(String, String)> {
    if let Some(ids) = &tenant_ids {
        let unknown = Spi::get_one_with_args::<String>(
            "SELECT string_agg(format('\"%s\"', id), ', ' ORDER BY id) FROM unnest($1::text[]) AS id \
              WHERE id IS NULL OR NOT EXISTS (SELECT FROM mt.tenants t WHERE t.tenant_id = id)",
            &[ids.clone().into()],
        )
        .unwrap_or_else(|e| error!("{e}"));
        if let Some(unknown) = unknown {
            ereport!(
                ERROR,
                PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
                format!("unknown tenant(s): {unknown}"),
                "SELECT tenant_id FROM mt.tenants lists the tenants."
            );
        }
    }
    Spi::connect(|client| {
        client
            .select(
                "SELECT tenant_id, schema_name FROM mt.tenants \
                  WHERE $1::text[] IS NULL OR tenant_id = ANY ($1) ORDER BY tenant_id",
                None,
                &[tenant_ids.into()],
            )?
            .map(|row| Ok((row.get::<String>(1)?.unwrap_or_default(), row.get::<String>(2)?.unwrap_or_default())))
            .collect::<Result<Vec<_>, pgrx::spi::Error>>()
    })
    .unwrap_or_else(|e| error!("{e}"))
}

pub(crate) fn rows(results: Vec<RunResult>) -> SetOfIterator<'static, RunRow> {
    SetOfIterator::new(results.into_iter().map(|r| row(r.tenant_id, r.schema, r.outcome)))
}

fn row(tenant_id: String, schema: String, outcome: Outcome) -> RunRow {
    let build = || -> Result<RunRow, Box<dyn std::error::Error>> {
        let mut tuple = PgHeapTuple::new_composite_type("mt.run_result")?;
        tuple.set_by_name("tenant_id", (!tenant_id.is_empty()).then_some(tenant_id))?;
        tuple.set_by_name("schema_name", (!schema.is_empty()).then_some(schema))?;
        tuple.set_by_name("applied", outcome.applied)?;
        tuple.set_by_name("pending", outcome.pending)?;
        tuple.set_by_name("status", outcome.status.as_str())?;
        tuple.set_by_name("sqlstate", outcome.failure.as_ref().map(|f| f.sqlstate.clone()))?;
        tuple.set_by_name("error", outcome.failure.as_ref().map(|f| f.message.clone()))?;
        tuple.set_by_name("duration_ms", outcome.duration_ms)?;
        tuple.set_by_name("migration", outcome.failure.as_ref().and_then(|f| f.migration.clone()))?;
        Ok(tuple)
    };
    build().unwrap_or_else(|e| error!("multitenant: cannot build mt.run_result: {e}"))
}
