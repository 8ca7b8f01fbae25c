//! Applying migrations to one schema.
//!
//! Shared by the in-process path (`mt.migrate_tenant`, `mt.create_tenant`, `mt.migrate_shared`:
//! each migration in a subtransaction of the caller's transaction) and the background workers
//! (`mt.migrate_all` and friends: each migration in its own transaction). The difference is
//! behind [`Transactions`]; the steps are the same:
//!
//! 1. lock the schema (advisory lock keyed by schema name, so two runs never apply a
//!    migration twice), read its tracking table, refresh the ledger `mt.tracking_records`;
//! 2. apply each pending migration atomically together with its tracking row and ledger row;
//!    stop at the first failure, so a tenant is always at its last good migration;
//! 3. record the outcome in `mt.run_tenants` and release the lock.

use std::collections::BTreeSet;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use multitenant_core::migrations::Migration;
use multitenant_core::sql_text;
use multitenant_core::tracking::{self, Record, TrackingFormat};
use pgrx::datum::DatumWithOid;
use pgrx::pg_sys;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;

/// The schema that every registered tenant migration is applied to, and nothing else: the
/// reference for drift. Reserved by the naming rules (`mt_*`), so never a tenant's.
pub const TEMPLATE_SCHEMA: &str = "mt_template";

/// What a run does to each schema.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    Migrate {
        dry_run: bool,
        mark_applied: bool,
    },
    Convert {
        to: TrackingFormat,
        dry_run: bool,
    },
    CleanOrphans {
        dry_run: bool,
    },
    /// `mt.create_tenant` for each new tenant id; the seed to run, if any, is the run's argument.
    Provision,
    /// `mt.seed_tenant` for each tenant; the seed name is the run's argument.
    Seed {
        force: bool,
    },
}

impl Operation {
    pub fn name(self) -> &'static str {
        match self {
            Operation::Migrate { mark_applied: true, .. } => "mark_applied",
            Operation::Migrate { .. } => "migrate",
            Operation::Convert { .. } => "convert_tracking",
            Operation::CleanOrphans { .. } => "clean_orphans",
            Operation::Provision => "create_tenants",
            Operation::Seed { .. } => "seed_all",
        }
    }

    fn dry_run(self) -> bool {
        match self {
            Operation::Migrate { dry_run, .. }
            | Operation::Convert { dry_run, .. }
            | Operation::CleanOrphans { dry_run } => dry_run,
            Operation::Provision | Operation::Seed { .. } => false,
        }
    }

    /// The options as recorded in `mt.runs.options`.
    pub fn options_json(self) -> String {
        match self {
            Operation::Migrate { dry_run, mark_applied } => {
                format!("{{\"dry_run\": {dry_run}, \"mark_applied\": {mark_applied}}}")
            }
            Operation::Convert { to, dry_run } => format!("{{\"to_format\": \"{to}\", \"dry_run\": {dry_run}}}"),
            Operation::CleanOrphans { dry_run } => format!("{{\"dry_run\": {dry_run}}}"),
            Operation::Provision => "{}".to_string(),
            Operation::Seed { force } => format!("{{\"force\": {force}}}"),
        }
    }
}

/// How one schema came out of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Status {
    Migrated = 1,
    UpToDate,
    DryRun,
    Marked,
    Converted,
    Unchanged,
    Cleaned,
    Failed,
    Cancelled,
    Created,
    Seeded,
    Skipped,
}

impl Status {
    pub const ALL: [Status; 12] = [
        Status::Migrated,
        Status::UpToDate,
        Status::DryRun,
        Status::Marked,
        Status::Converted,
        Status::Unchanged,
        Status::Cleaned,
        Status::Failed,
        Status::Cancelled,
        Status::Created,
        Status::Seeded,
        Status::Skipped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Migrated => "migrated",
            Status::UpToDate => "up_to_date",
            Status::DryRun => "dry_run",
            Status::Marked => "marked",
            Status::Converted => "converted",
            Status::Unchanged => "unchanged",
            Status::Cleaned => "cleaned",
            Status::Failed => "failed",
            Status::Cancelled => "cancelled",
            Status::Created => "created",
            Status::Seeded => "seeded",
            Status::Skipped => "skipped",
        }
    }

    pub fn from_u8(value: u8) -> Option<Status> {
        Status::ALL.into_iter().find(|s| *s as u8 == value)
    }
}

/// An error caught while applying, with the SQLSTATE it was raised with.
#[derive(Clone, Debug)]
pub struct Failure {
    pub sqlstate: String,
    /// The message, with DETAIL and HINT lines when the error had them.
    pub message: String,
    /// The migration that failed, when one did.
    pub migration: Option<String>,
}

#[derive(Clone, Debug)]
pub struct Outcome {
    pub status: Status,
    /// Migrations applied (or marked, converted, cleaned) by this run.
    pub applied: i32,
    /// Migrations still pending afterwards (for a dry run: that would be applied).
    pub pending: i32,
    pub failure: Option<Failure>,
    pub duration_ms: i64,
}

/// One schema to work on: a tenant's, or the shared or template schema (no tenant id, no
/// ledger).
#[derive(Clone, Debug)]
pub struct Target {
    pub tenant_id: Option<String>,
    pub schema: String,
}

/// Settings read once per run.
#[derive(Clone, Debug)]
pub struct Settings {
    pub tracking_table: String,
    pub default_format: TrackingFormat,
    pub shared_schema: String,
    pub lock_timeout_ms: i32,
    pub statement_timeout_ms: i32,
}

impl Settings {
    pub fn load(lock_timeout_ms: i32, statement_timeout_ms: i32) -> Settings {
        let (table, format, shared) = Spi::get_three::<String, String, String>(
            "SELECT mt.get_config('tracking_table'), mt.get_config('tracking_format'), mt.get_config('shared_schema')",
        )
        .unwrap_or_else(|e| error!("multitenant: cannot read settings: {e}"));
        let format = format.unwrap_or_default();
        Settings {
            tracking_table: table.unwrap_or_default(),
            default_format: format.parse().unwrap_or_else(|e: String| error!("multitenant: {e}")),
            shared_schema: shared.unwrap_or_default(),
            lock_timeout_ms,
            statement_timeout_ms,
        }
    }
}

/// The registered migrations of one scope, with the SQL each one runs as.
pub struct Plan {
    pub migrations: Vec<Migration>,
    to_run: Vec<String>,
    /// The extensions each migration creates, taken out of `to_run` (tenant scope only).
    extensions: Vec<Vec<String>>,
}

impl Plan {
    /// Loads `scope`'s migrations. Tenant migrations get drizzle-kit's `"public".`
    /// qualifiers removed from names the tenant migrations created so far, and their
    /// `CREATE EXTENSION` statements taken out (see `multitenant_core::sql_text`).
    pub fn load(scope: &str) -> Plan {
        let migrations = Plan::registered(scope);
        let (to_run, extensions) = if scope == "tenant" {
            let mut created = BTreeSet::new();
            migrations
                .iter()
                .map(|m| {
                    created.extend(sql_text::created_names(&m.sql, "public"));
                    let sql = sql_text::unqualify(&m.sql, "public", &created);
                    let found = sql_text::extension_statements(&sql);
                    (sql_text::without(&sql, &found), found.into_iter().map(|e| e.name).collect())
                })
                .unzip()
        } else {
            (migrations.iter().map(|m| m.sql.clone()).collect(), vec![Vec::new(); migrations.len()])
        };
        Plan { migrations, to_run, extensions }
    }

    /// The migrations registered for `scope`, in order, as written.
    pub fn registered(scope: &str) -> Vec<Migration> {
        Spi::connect(|client| {
            client
                .select(
                    "SELECT idx, name, sql, sha256, journal_when FROM mt.migrations WHERE scope = $1 ORDER BY idx",
                    None,
                    &[scope.into()],
                )?
                .map(|row| {
                    Ok(Migration {
                        position: row.get::<i32>(1)?.unwrap_or_default(),
                        name: row.get::<String>(2)?.unwrap_or_default(),
                        sql: row.get::<String>(3)?.unwrap_or_default(),
                        sha256: row.get::<String>(4)?.unwrap_or_default(),
                        journal_when: row.get::<i64>(5)?,
                    })
                })
                .collect::<Result<Vec<_>, pgrx::spi::Error>>()
        })
        .unwrap_or_else(|e| error!("multitenant: cannot read mt.migrations: {e}"))
    }
}

/// How a run brackets its work: its own transactions (workers) or subtransactions of the
/// caller's (in-process).
pub trait Transactions {
    /// Runs `body` atomically: committed when it returns, rolled back when it raises.
    fn atomic<R>(&self, body: impl FnOnce() -> R) -> Result<R, Failure>;
    /// Inside `atomic`: takes the schema's lock; false when another run holds it.
    fn try_lock_schema(&self, schema: &str) -> bool;
    /// Inside `atomic`: releases what `try_lock_schema` took, if it outlives transactions.
    fn unlock_schema(&self, schema: &str);
    /// Runs the migration's own SQL, with `mt.statement_timeout` where it can be enforced.
    fn run_migration_sql(&self, sql: &str, statement_timeout_ms: i32);
    /// Waits a little before trying a busy lock again; false when the run is cancelled.
    fn pause(&self) -> bool;
    /// Whether the run was cancelled (checked between migrations).
    fn cancelled(&self) -> bool;
}

/// What the first transaction found.
enum Begin {
    Busy,
    Done(Status, i32, i32),
    Work(Inspected),
}

struct Inspected {
    format: TrackingFormat,
    records: Vec<Record>,
    /// The role the schema's migrations run as (`mt_internal.code_role`).
    role: pg_sys::Oid,
}

/// A run's context for one schema.
pub struct Job<'a, T: Transactions> {
    pub tx: &'a T,
    pub settings: &'a Settings,
    pub plan: &'a Plan,
    pub target: &'a Target,
    pub operation: Operation,
    pub run_id: i64,
    /// Whether a tenant schema that holds nothing may be given a copy of `mt_template`
    /// instead of every migration replayed (runs in workers; `mt.create_tenant` copies by
    /// itself, and its `use_template => false` must replay).
    pub from_template: bool,
}

impl<T: Transactions> Job<'_, T> {
    pub fn run(&self) -> Outcome {
        let started = Instant::now();
        let outcome = |status, applied, pending, failure| Outcome {
            status,
            applied,
            pending,
            failure,
            duration_ms: started.elapsed().as_millis() as i64,
        };

        let inspected = loop {
            match self.tx.atomic(|| self.begin()) {
                Ok(Begin::Busy) => {
                    if !self.tx.pause() {
                        return self.finish(outcome(Status::Cancelled, 0, 0, None));
                    }
                }
                Ok(Begin::Done(status, applied, pending)) => return outcome(status, applied, pending, None),
                Ok(Begin::Work(inspected)) => break inspected,
                Err(failure) => return self.finish(outcome(Status::Failed, 0, 0, Some(failure))),
            }
        };

        let result = match self.operation {
            Operation::Migrate { mark_applied, .. } => self.apply_pending(&inspected, mark_applied),
            Operation::Convert { to, .. } => self
                .tx
                .atomic(|| self.convert(&inspected, to))
                .map(|n| (Status::Converted, n, 0))
                .map_err(|f| (f, 0, 0)),
            Operation::CleanOrphans { .. } => self
                .tx
                .atomic(|| self.clean_orphans(&inspected))
                .map(|n| (Status::Cleaned, n, 0))
                .map_err(|f| (f, 0, 0)),
            Operation::Provision | Operation::Seed { .. } => unreachable!("run by workers::call_one"),
        };
        match result {
            Ok((status, applied, pending)) => self.finish(outcome(status, applied, pending, None)),
            Err((_, applied, pending)) if self.tx.cancelled() => {
                self.finish(outcome(Status::Cancelled, applied, pending, None))
            }
            Err((failure, applied, pending)) => self.finish(outcome(Status::Failed, applied, pending, Some(failure))),
        }
    }

    /// Locks and inspects the schema. When there is nothing to do, records the outcome and
    /// releases the lock in the same transaction (the common case of a no-op run).
    fn begin(&self) -> Begin {
        let schema = &self.target.schema;
        if !self.tx.try_lock_schema(schema) {
            return Begin::Busy;
        }
        let dry_run = self.operation.dry_run();
        let inspected = self.inspect(!dry_run);
        let pending = tracking::pending(&self.plan.migrations, &inspected.records).len() as i32;
        let done = match self.operation {
            Operation::Migrate { dry_run: true, .. } => Some((Status::DryRun, 0, pending)),
            Operation::Migrate { .. } if pending == 0 => Some((Status::UpToDate, 0, 0)),
            Operation::Convert { to, .. } if to == inspected.format => Some((Status::Unchanged, 0, pending)),
            Operation::Convert { dry_run: true, .. } => Some((Status::DryRun, inspected.records.len() as i32, pending)),
            Operation::CleanOrphans { dry_run } => {
                let orphans = tracking::orphans(&inspected.records, &self.plan.migrations).len() as i32;
                match (orphans, dry_run) {
                    (0, _) => Some((Status::Unchanged, 0, pending)),
                    (n, true) => Some((Status::DryRun, n, pending)),
                    _ => None,
                }
            }
            _ => None,
        };
        match done {
            Some((status, applied, pending)) => {
                self.record_progress(status.as_str(), applied, pending, None, true);
                self.tx.unlock_schema(schema);
                Begin::Done(status, applied, pending)
            }
            None => {
                self.record_progress(run_status::RUNNING, 0, pending, None, false);
                Begin::Work(inspected)
            }
        }
    }

    /// Reads the tracking table (creating it when `may_write` and it is missing) and brings
    /// the ledger and `mt.tenants.tracking_format` up to date.
    fn inspect(&self, may_write: bool) -> Inspected {
        let schema = &self.target.schema;
        if may_write && schema == TEMPLATE_SCHEMA {
            // Created on first use, refused when someone else shaped it; the schema lock
            // taken in begin() keeps two runs from creating it at once.
            Spi::run("SELECT mt_internal.prepare_template()").unwrap_or_else(|e| error!("{e}"));
        }
        let exists = Spi::get_one_with_args::<bool>(
            "SELECT EXISTS (SELECT FROM pg_catalog.pg_namespace WHERE nspname = $1)",
            &[schema.as_str().into()],
        );
        if exists != Ok(Some(true)) {
            ereport!(ERROR, PgSqlErrorCode::ERRCODE_INVALID_SCHEMA_NAME, format!("schema \"{schema}\" does not exist"));
        }
        let role = crate::roles::code_role(schema);
        let tenant_id = self.target.tenant_id.as_deref();
        let found = read_tracking(schema, &self.settings.tracking_table, tenant_id);
        // One read of the ledger: what the table must still hold, and what to bring up to date.
        let ledger = tenant_id.map(ledger_records).unwrap_or_default();
        if let Some(tenant_id) = tenant_id {
            ensure_nothing_lost(tenant_id, schema, &ledger, found.as_ref().map(|(_, records)| records.as_slice()));
        }
        let (format, records) = match found {
            Some(found) => {
                if may_write {
                    ensure_ledger_trigger(schema);
                }
                found
            }
            None => {
                let format = self.settings.default_format;
                if may_write {
                    write_tracking(schema, &self.settings.tracking_table, format, &[]);
                }
                (format, Vec::new())
            }
        };
        if let (true, Some(tenant_id)) = (may_write, tenant_id) {
            sync_ledger(tenant_id, format, &records, &ledger);
        }
        Inspected { format, records, role }
    }

    /// Applies each pending migration in its own (sub)transaction; stops at the first failure.
    fn apply_pending(
        &self,
        inspected: &Inspected,
        mark_applied: bool,
    ) -> Result<(Status, i32, i32), (Failure, i32, i32)> {
        let pending: Vec<usize> = (0..self.plan.migrations.len())
            .filter(|&i| !inspected.records.iter().any(|r| r.matches(&self.plan.migrations[i])))
            .collect();
        let total = pending.len() as i32;
        if !mark_applied {
            if let Some(copied) = self.copy_template(inspected) {
                return Ok((Status::Migrated, copied, 0));
            }
        }
        for (done, &index) in pending.iter().enumerate() {
            let done = done as i32;
            if self.tx.cancelled() {
                return Err((
                    Failure { sqlstate: CANCELLED.into(), message: "the run was cancelled".into(), migration: None },
                    done,
                    total - done,
                ));
            }
            self.tx.atomic(|| self.apply_one(index, inspected, mark_applied)).map_err(|failure| {
                let migration = Some(self.plan.migrations[index].name.clone());
                (Failure { migration, ..failure }, done, total - done)
            })?;
        }
        Ok((if mark_applied { Status::Marked } else { Status::Migrated }, total, 0))
    }

    /// A tenant schema with nothing in it and nothing recorded gets a copy of the current
    /// template (objects, tracking records, the rows migrations wrote) in one transaction, as
    /// `mt.create_tenant` does: the same result as replaying every migration, for a fraction
    /// of the cost. None when that does not apply; then the migrations are replayed.
    fn copy_template(&self, inspected: &Inspected) -> Option<i32> {
        if !self.from_template || self.target.tenant_id.is_none() || !inspected.records.is_empty() {
            return None;
        }
        let copied = self.tx.atomic(|| {
            // mt_internal.copy_template notes the schema itself (mt.create_tenant copies too).
            self.set_lock_timeout(None);
            report_activity(&format!(
                "multitenant: {} {} from {TEMPLATE_SCHEMA}",
                self.operation.name(),
                self.target.schema
            ));
            let copied = Spi::get_one_with_args::<i32>(
                "SELECT mt_internal.provision_from_template($1)",
                &[self.target.schema.as_str().into()],
            )
            .unwrap_or_else(|e| error!("{e}"))?;
            let last = self.plan.migrations.last().map(|m| m.name.as_str());
            Spi::run_with_args(
                "UPDATE mt.run_tenants SET applied = $3, pending = 0, current_migration = $4 \
                  WHERE run_id = $1 AND tenant_id = $2",
                &[self.run_id.into(), self.progress_key().into(), copied.into(), last.into()],
            )
            .unwrap_or_else(|e| error!("{e}"));
            Some(copied)
        });
        // A copy that failed (a template being changed, say) leaves nothing behind: replay.
        copied.ok().flatten()
    }

    /// Sets `lock_timeout` for the transaction and, for DDL the engine runs itself, notes the
    /// schema for drift (once, rather than the event triggers after each statement): one
    /// round trip on the path every migration takes.
    fn set_lock_timeout(&self, noted_schema: Option<&str>) {
        Spi::run_with_args(
            "SELECT pg_catalog.set_config('lock_timeout', $1, true), \
                    CASE WHEN $2::text IS NOT NULL THEN mt_internal.note_schema_change($2) END",
            &[format!("{}ms", self.settings.lock_timeout_ms).into(), noted_schema.into()],
        )
        .unwrap_or_else(|e| error!("{e}"));
    }

    fn apply_one(&self, index: usize, inspected: &Inspected, mark_applied: bool) {
        let migration = &self.plan.migrations[index];
        let schema = &self.target.schema;
        let format = inspected.format;
        if !mark_applied {
            self.set_lock_timeout(Some(schema));
            report_activity(&format!("multitenant: {} {} {}", self.operation.name(), schema, migration.name));
            for extension in &self.plan.extensions[index] {
                Spi::run_with_args(
                    "SELECT mt_internal.ensure_extension($1, $2)",
                    &[extension.as_str().into(), migration.name.as_str().into()],
                )
                .unwrap_or_else(|e| error!("{e}"));
            }
            // The migration's own SQL is tenant code: it runs as the schema's role, and
            // whatever it sets is undone before the bookkeeping below.
            let path = crate::roles::tenant_path(schema, &self.settings.shared_schema);
            crate::roles::run_as(inspected.role, &path, || {
                self.tx.run_migration_sql(&self.plan.to_run[index], self.settings.statement_timeout_ms)
            });
        }
        // The table's mt_ledger trigger writes the ledger row in the same transaction.
        let record = format.record_for(migration, now_ms());
        insert_record(&tracking::qualified(schema, &self.settings.tracking_table), format, &record, None);
        Spi::run_with_args(
            "UPDATE mt.run_tenants SET applied = applied + 1, pending = greatest(pending - 1, 0), current_migration = $3 \
              WHERE run_id = $1 AND tenant_id = $2",
            &[self.run_id.into(), self.progress_key().into(), migration.name.as_str().into()],
        )
        .unwrap_or_else(|e| error!("{e}"));
    }

    /// Rewrites the tracking table in another format, keeping every record and its id. The
    /// records are already in memory, so the old table is dropped first and the new one
    /// gets the usual names (table, sequence, constraints); all in one transaction.
    fn convert(&self, inspected: &Inspected, to: TrackingFormat) -> i32 {
        let table = tracking::qualified(&self.target.schema, &self.settings.tracking_table);
        let converted: Vec<Record> = inspected.records.iter().map(|r| r.convert(to, &self.plan.migrations)).collect();
        Spi::run(&format!("DROP TABLE {table}")).unwrap_or_else(|e| error!("{e}"));
        write_tracking(&self.target.schema, &self.settings.tracking_table, to, &converted);
        if let Some(tenant_id) = &self.target.tenant_id {
            sync_ledger(tenant_id, to, &converted, &ledger_records(tenant_id));
        }
        converted.len() as i32
    }

    fn clean_orphans(&self, inspected: &Inspected) -> i32 {
        let orphans: Vec<i32> =
            tracking::orphans(&inspected.records, &self.plan.migrations).iter().map(|r| r.id).collect();
        let table = tracking::qualified(&self.target.schema, &self.settings.tracking_table);
        Spi::run_with_args(&format!("DELETE FROM {table} WHERE id = ANY ($1)"), &[orphans.clone().into()])
            .unwrap_or_else(|e| error!("{e}"));
        if let Some(tenant_id) = &self.target.tenant_id {
            let kept: Vec<Record> = inspected.records.iter().filter(|r| !orphans.contains(&r.id)).cloned().collect();
            sync_ledger(tenant_id, inspected.format, &kept, &ledger_records(tenant_id));
        }
        orphans.len() as i32
    }

    /// Records the final outcome and releases the lock, in one transaction.
    fn finish(&self, outcome: Outcome) -> Outcome {
        let recorded = self.tx.atomic(|| {
            let (status, failure) = (outcome.status.as_str(), outcome.failure.as_ref());
            self.record_progress(status, outcome.applied, outcome.pending, failure, true);
            self.tx.unlock_schema(&self.target.schema);
        });
        if let Err(failure) = recorded {
            warning!(
                "multitenant: could not record the outcome for schema {}: {}",
                self.target.schema,
                failure.message
            );
        }
        outcome
    }

    fn progress_key(&self) -> String {
        self.target.tenant_id.clone().unwrap_or_else(|| format!("schema:{}", self.target.schema))
    }

    /// Upserts this schema's row in `mt.run_tenants`.
    fn record_progress(&self, status: &str, applied: i32, pending: i32, failure: Option<&Failure>, finished: bool) {
        let progress = Progress { status, applied, pending, failure, finished };
        record_run_tenant(self.run_id, &self.progress_key(), &self.target.schema, &progress);
    }
}

/// Records a run in `mt.runs` (every worker of a run tries; the first one writes it) and
/// returns its id: a new one unless the launcher chose it. `name` is what the caller was
/// asked to do (`migrate_tenant`, or the operation's name for worker runs).
pub fn start_run(run_id: Option<i64>, name: &str, operation: Operation, tenants: i32, launcher_pid: i32) -> i64 {
    Spi::get_one_with_args::<i64>(
        "INSERT INTO mt.runs AS r (run_id, operation, options, tenants, launcher_pid) \
         VALUES (coalesce($1, pg_catalog.nextval('mt.runs_run_id_seq')), $2, $3::jsonb, $4, $5) \
         ON CONFLICT (run_id) DO UPDATE SET tenants = r.tenants RETURNING run_id",
        &[run_id.into(), name.into(), operation.options_json().into(), tenants.into(), launcher_pid.into()],
    )
    .unwrap_or_else(|e| error!("multitenant: cannot record the run: {e}"))
    .unwrap_or_default()
}

/// Closes a run as `status` (finished or cancelled) with its counts (`mt_internal.close_run`,
/// the one definition of success for every kind of run), unless it is closed already.
pub fn finish_run(run_id: i64, status: &str) {
    Spi::run_with_args("SELECT mt_internal.close_run($1, $2)", &[run_id.into(), status.into()])
        .unwrap_or_else(|e| error!("multitenant: cannot close the run: {e}"));
}

/// Marks runs whose caller died as abandoned (`mt.close_abandoned_runs`).
pub fn close_abandoned_runs() {
    Spi::run("SELECT mt.close_abandoned_runs()").unwrap_or_else(|e| error!("{e}"));
}

/// One row of `mt.run_tenants`, as a run goes.
pub struct Progress<'a> {
    pub status: &'a str,
    pub applied: i32,
    pub pending: i32,
    pub failure: Option<&'a Failure>,
    pub finished: bool,
}

/// Upserts one schema's row of a run in `mt.run_tenants`.
pub fn record_run_tenant(run_id: i64, key: &str, schema: &str, progress: &Progress) {
    Spi::run_with_args(
        "INSERT INTO mt.run_tenants AS r (run_id, tenant_id, schema_name, status, applied, pending, sqlstate, error, migration, finished_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $10, CASE WHEN $9 THEN pg_catalog.clock_timestamp() END) \
         ON CONFLICT (run_id, tenant_id) DO UPDATE \
            SET status = EXCLUDED.status, applied = EXCLUDED.applied, pending = EXCLUDED.pending, \
                sqlstate = EXCLUDED.sqlstate, error = EXCLUDED.error, migration = EXCLUDED.migration, \
                finished_at = EXCLUDED.finished_at, pid = EXCLUDED.pid, \
                current_migration = CASE WHEN $9 THEN NULL ELSE r.current_migration END",
        &[
            run_id.into(),
            key.into(),
            schema.into(),
            progress.status.into(),
            progress.applied.into(),
            progress.pending.into(),
            progress.failure.map(|f| f.sqlstate.as_str()).into(),
            progress.failure.map(|f| f.message.as_str()).into(),
            progress.finished.into(),
            progress.failure.and_then(|f| f.migration.as_deref()).into(),
        ],
    )
    .unwrap_or_else(|e| error!("multitenant: cannot record progress: {e}"));
}

/// Records schemas a run settled as up to date without visiting them (`(key, schema)`
/// pairs), in one statement; those recorded already stay as they are.
pub fn record_settled(run_id: i64, settled: &[(String, String)]) {
    let (keys, schemas): (Vec<&str>, Vec<&str>) = settled.iter().map(|(k, s)| (k.as_str(), s.as_str())).unzip();
    Spi::run_with_args(
        "INSERT INTO mt.run_tenants (run_id, tenant_id, schema_name, status, finished_at) \
         SELECT $1, s.key, s.schema_name, $4, pg_catalog.clock_timestamp() \
           FROM ROWS FROM (pg_catalog.unnest($2::text[]), pg_catalog.unnest($3::text[])) AS s(key, schema_name) \
             ON CONFLICT (run_id, tenant_id) DO NOTHING",
        &[run_id.into(), keys.into(), schemas.into(), Status::UpToDate.as_str().into()],
    )
    .unwrap_or_else(|e| error!("multitenant: cannot record progress: {e}"));
}

/// The states of a run in `mt.runs.status` (its CHECK constraint lists the same; a test
/// ties them). A schema in `mt.run_tenants` is `running` until it has a [`Status`].
pub mod run_status {
    pub const RUNNING: &str = "running";
    pub const FINISHED: &str = "finished";
    pub const CANCELLED: &str = "cancelled";
    /// Its caller died before closing it (written by `mt.close_abandoned_runs`, in SQL).
    #[allow(dead_code)]
    pub const ABANDONED: &str = "abandoned";
    /// Every state, for the test that compares them with the CHECK constraint.
    #[allow(dead_code)]
    pub const ALL: [&str; 4] = [RUNNING, FINISHED, CANCELLED, ABANDONED];
}

/// SQLSTATE 57014 (query_canceled): the caller or an operator stopped the run.
pub const CANCELLED: &str = "57014";

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or_default()
}

pub fn report_activity(text: &str) {
    if let Ok(text) = std::ffi::CString::new(text) {
        unsafe { pg_sys::pgstat_report_activity(pg_sys::BackendState::STATE_RUNNING, text.as_ptr()) };
    }
}

/// The format and records of `schema`'s tracking table `table_name`, or None when it does
/// not exist; a table of another layout, or one the trusted owner did not shape alone
/// (`mt_internal.check_tracking_table`), is an error and is never read through.
pub fn read_tracking(schema: &str, table_name: &str, tenant_id: Option<&str>) -> Option<(TrackingFormat, Vec<Record>)> {
    Spi::run_with_args("SELECT mt_internal.check_tracking_table($1, $2)", &[schema.into(), tenant_id.into()])
        .unwrap_or_else(|e| error!("{e}"));
    let table = tracking::qualified(schema, table_name);
    let table = table.as_str();
    let columns: Vec<(String, String)> = Spi::connect(|client| {
        client
            .select(
                "SELECT a.attname::text, pg_catalog.format_type(a.atttypid, a.atttypmod) \
                   FROM pg_catalog.pg_attribute a \
                  WHERE a.attrelid = pg_catalog.to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped",
                None,
                &[table.into()],
            )?
            .map(|row| Ok((row.get::<String>(1)?.unwrap_or_default(), row.get::<String>(2)?.unwrap_or_default())))
            .collect::<Result<Vec<_>, pgrx::spi::Error>>()
    })
    .unwrap_or_else(|e| error!("multitenant: cannot read {table}: {e}"));
    if columns.is_empty() {
        return None;
    }
    let Some(format) = TrackingFormat::detect(columns.iter().map(|(c, t)| (c.as_str(), t.as_str()))) else {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_DATA_EXCEPTION,
            format!("tracking table {table} has a layout multitenant does not recognise"),
            "Expected the name, hash or drizzle-kit format; see mt.convert_tracking."
        );
    };
    Some((format, read_records(table, format)))
}

/// How a schema without a ledger (the template, the shared schema) stands against `scope`'s
/// registered migrations, read from its tracking table: (pending, orphaned), or None when it
/// has no tracking table. Reads only, so health checks can call it.
pub fn pending_and_orphans(schema: &str, scope: &str) -> Option<(usize, usize)> {
    let table = Spi::get_one::<String>("SELECT mt.get_config('tracking_table')")
        .unwrap_or_else(|e| error!("{e}"))
        .unwrap_or_default();
    let (_, records) = read_tracking(schema, &table, None)?;
    let migrations = Plan::registered(scope);
    Some((tracking::pending(&migrations, &records).len(), tracking::orphans(&records, &migrations).len()))
}

fn read_records(table: &str, format: TrackingFormat) -> Vec<Record> {
    select_records(&format.select_records_sql(table), &[], table)
}

/// The records a query returns as `(id, name, hash, journal_when, applied_at_ms)`: a
/// tracking table's (any format) or the ledger's. `what` names it in an error.
fn select_records(sql: &str, args: &[DatumWithOid], what: &str) -> Vec<Record> {
    Spi::connect(|client| {
        client
            .select(sql, None, args)?
            .map(|row| {
                Ok(Record {
                    id: row.get::<i32>(1)?.unwrap_or_default(),
                    name: row.get::<String>(2)?,
                    hash: row.get::<String>(3)?,
                    journal_when: row.get::<i64>(4)?,
                    applied_at_ms: row.get::<i64>(5)?,
                })
            })
            .collect::<Result<Vec<_>, pgrx::spi::Error>>()
    })
    .unwrap_or_else(|e| error!("multitenant: cannot read {what}: {e}"))
}

/// Creates `schema`'s tracking table `table_name` in `format` holding `records` (ids kept),
/// owned by the trusted owner (whoever runs this: the extension's bookkeeping), readable by
/// the schema's code role, which may never write it.
pub fn write_tracking(schema: &str, table_name: &str, format: TrackingFormat, records: &[Record]) {
    let table = tracking::qualified(schema, table_name);
    Spi::run(&format.create_table_sql(&table)).unwrap_or_else(|e| error!("{e}"));
    ensure_ledger_trigger(schema);
    insert_records(&table, format, records);
    let grant = Spi::get_one_with_args::<String>(
        "SELECT pg_catalog.format('GRANT SELECT ON %s TO %I', $1::text, pg_catalog.pg_get_userbyid(mt_internal.code_role($2)))",
        &[table.as_str().into(), schema.into()],
    )
    .unwrap_or_else(|e| error!("{e}"))
    .unwrap_or_default();
    Spi::run(&grant).unwrap_or_else(|e| error!("{e}"));
}

/// Inserts `records` with their ids (`table` is quoted) and moves the id sequence past the
/// largest id in the table.
fn insert_records(table: &str, format: TrackingFormat, records: &[Record]) {
    for record in records {
        insert_record(table, format, record, Some(record.id));
    }
    Spi::run_with_args(
        &format!(
            "SELECT pg_catalog.setval(pg_catalog.pg_get_serial_sequence($1, 'id'), \
                    greatest(coalesce(pg_catalog.max(id), 0), 1), pg_catalog.max(id) IS NOT NULL) FROM {table}"
        ),
        &[table.into()],
    )
    .unwrap_or_else(|e| error!("{e}"));
}

/// How `mt.repair_tracking` puts a tenant's tracking table and the ledger back in step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RepairSource {
    /// The ledger is right: records the table lost are written back (a missing table is
    /// created in the tenant's format).
    Ledger,
    /// The table is right: the ledger forgets what the table no longer has.
    Tracking,
}

/// Repairs one tenant (the caller holds its lock); returns how many records it wrote.
pub fn repair(
    tenant_id: &str,
    schema: &str,
    table_name: &str,
    default_format: TrackingFormat,
    source: RepairSource,
) -> i32 {
    let found = read_tracking(schema, table_name, Some(tenant_id));
    match (source, found) {
        (RepairSource::Ledger, None) => {
            let format = Spi::get_one_with_args::<String>(
                "SELECT tracking_format FROM mt.tenants WHERE tenant_id = $1",
                &[tenant_id.into()],
            )
            .unwrap_or_else(|e| error!("{e}"))
            .and_then(|f| f.parse().ok())
            .unwrap_or(default_format);
            let ledger = ledger_records(tenant_id);
            write_tracking(schema, table_name, format, &ledger);
            ledger.len() as i32
        }
        (RepairSource::Ledger, Some((format, records))) => {
            let ledger = ledger_records(tenant_id);
            let lost: Vec<Record> = tracking::lost(&ledger, &records).into_iter().cloned().collect();
            if let Some(taken) = lost.iter().find(|l| records.iter().any(|r| r.id == l.id)) {
                ereport!(
                    ERROR,
                    PgSqlErrorCode::ERRCODE_UNIQUE_VIOLATION,
                    format!(
                        "tracking table of tenant \"{tenant_id}\" holds another record under id {} than the ledger",
                        taken.id
                    ),
                    "Compare the table with mt.tracking_records; delete the row in the way, or repair with source => 'tracking'."
                );
            }
            ensure_ledger_trigger(schema);
            insert_records(&tracking::qualified(schema, table_name), format, &lost);
            lost.len() as i32
        }
        (RepairSource::Tracking, Some((format, records))) => {
            ensure_ledger_trigger(schema);
            sync_ledger(tenant_id, format, &records, &ledger_records(tenant_id));
            records.len() as i32
        }
        (RepairSource::Tracking, None) => {
            ereport!(
                ERROR,
                PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE,
                format!("tenant \"{tenant_id}\" has no tracking table to take the records from"),
                "Repair from the ledger (source => 'ledger') instead."
            );
        }
    }
}

/// Gives `schema`'s tracking table the trigger that copies new records into the ledger.
fn ensure_ledger_trigger(schema: &str) {
    Spi::run_with_args("SELECT mt_internal.ensure_ledger_trigger($1)", &[schema.into()])
        .unwrap_or_else(|e| error!("{e}"));
}

/// The ledger's records of one tenant, by id.
pub fn ledger_records(tenant_id: &str) -> Vec<Record> {
    select_records(
        "SELECT record_id, name, hash, journal_when, \
                (pg_catalog.date_part('epoch', applied_at) OPERATOR(pg_catalog.*) 1000)::bigint \
           FROM mt.tracking_records WHERE tenant_id = $1 ORDER BY record_id",
        &[tenant_id.into()],
        "the ledger",
    )
}

/// Refuses to go on with a tenant whose tracking table (`table`: its records, or None when
/// it is missing) lost records the ledger holds: applying their migrations again would
/// duplicate what they did. `mt.repair_tracking` puts the table right.
fn ensure_nothing_lost(tenant_id: &str, schema: &str, ledger: &[Record], table: Option<&[Record]>) {
    let lost = tracking::lost(ledger, table.unwrap_or_default());
    if lost.is_empty() {
        return;
    }
    let what = match table {
        None => format!("is missing, but the ledger records {} applied migration(s)", ledger.len()),
        Some(_) => {
            let names: Vec<String> = lost
                .iter()
                .take(5)
                .map(|r| r.name.clone().or_else(|| r.hash.clone()).unwrap_or_else(|| format!("id {}", r.id)))
                .collect();
            let more = if lost.len() > 5 { format!(" and {} more", lost.len() - 5) } else { String::new() };
            format!("lost {} of the {} records the ledger holds ({}{more})", lost.len(), ledger.len(), names.join(", "))
        }
    };
    ErrorReport::new(
        PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
        format!("the tracking table of tenant \"{tenant_id}\" (schema {schema}) {what}"),
        function_name!(),
    )
    .set_detail("Nothing was replayed: applying those migrations again would repeat what they did.")
    .set_hint(format!(
        "SELECT * FROM mt.repair_tracking(ARRAY['{tenant_id}']) restores the records from the ledger; \
         mt.repair_tracking(ARRAY['{tenant_id}'], source => 'tracking') accepts the table as it is (its migrations then run again)."
    ))
    .report(PgLogLevel::ERROR);
}

/// Inserts one tracking record; with `id`, keeps that id (conversion).
fn insert_record(table: &str, format: TrackingFormat, record: &Record, id: Option<i32>) -> i32 {
    let sql = format.insert_record_sql(table, id.is_some());
    let args: Vec<DatumWithOid> = vec![
        record.name.clone().into(),
        record.hash.clone().into(),
        record.journal_when.into(),
        record.applied_at_ms.or(Some(now_ms())).into(),
        id.into(),
    ];
    Spi::get_one_with_args::<i32>(&sql, &args)
        .unwrap_or_else(|e| error!("multitenant: cannot write to {table}: {e}"))
        .unwrap_or_default()
}

/// Makes the ledger rows of one tenant (`ledger`, as read) equal to its tracking table,
/// writing only on change.
fn sync_ledger(tenant_id: &str, format: TrackingFormat, records: &[Record], ledger: &[Record]) {
    let ids: Vec<i32> = records.iter().map(|r| r.id).collect();
    let names: Vec<Option<String>> = records.iter().map(|r| r.name.clone()).collect();
    let hashes: Vec<Option<String>> = records.iter().map(|r| r.hash.clone()).collect();
    let whens: Vec<Option<i64>> = records.iter().map(|r| r.journal_when).collect();
    let applied: Vec<Option<i64>> = records.iter().map(|r| r.applied_at_ms).collect();
    let args: Vec<DatumWithOid> =
        vec![tenant_id.into(), ids.into(), names.into(), hashes.into(), whens.into(), applied.into()];
    const WANTED: &str = "SELECT w.* FROM ROWS FROM (pg_catalog.unnest($2::int[]), pg_catalog.unnest($3::text[]), \
                          pg_catalog.unnest($4::text[]), pg_catalog.unnest($5::bigint[]), pg_catalog.unnest($6::bigint[])) \
                          AS w(record_id, name, hash, journal_when, applied_ms)";
    if !tracking::same_records(records, ledger) {
        Spi::run_with_args("DELETE FROM mt.tracking_records WHERE tenant_id = $1", &args[..1])
            .unwrap_or_else(|e| error!("multitenant: cannot update the ledger: {e}"));
        Spi::run_with_args(
            &format!(
                "INSERT INTO mt.tracking_records (tenant_id, record_id, name, hash, journal_when, applied_at) \
                 SELECT $1, record_id, name, hash, journal_when, pg_catalog.to_timestamp(applied_ms::float8 OPERATOR(pg_catalog./) 1000) \
                   FROM ({WANTED}) AS w"
            ),
            &args,
        )
        .unwrap_or_else(|e| error!("multitenant: cannot update the ledger: {e}"));
    }
    Spi::run_with_args(
        "UPDATE mt.tenants SET tracking_format = $2 WHERE tenant_id = $1 AND tracking_format IS DISTINCT FROM $2",
        &[tenant_id.into(), format.as_str().into()],
    )
    .unwrap_or_else(|e| error!("multitenant: cannot update mt.tenants: {e}"));
}

/// Facts the Rust side and the SQL side both rely on, checked against each other.
#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    use std::collections::BTreeSet;

    use multitenant_core::migrations::Migration;
    use multitenant_core::naming::MAX_IDENTIFIER_BYTES;
    use multitenant_core::tracking::{Record, TrackingFormat};
    use pgrx::prelude::*;

    use super::{run_status, Operation, TEMPLATE_SCHEMA};

    /// The CHECK constraint of a table on `column`, as PostgreSQL prints it.
    fn check_definition(table: &str, column: &str) -> String {
        Spi::get_one_with_args::<String>(
            "SELECT pg_get_constraintdef(k.oid) FROM pg_constraint k \
              WHERE k.conrelid = $1::regclass AND k.contype = 'c' \
                AND k.conkey = ARRAY[(SELECT attnum FROM pg_attribute WHERE attrelid = $1::regclass AND attname = $2)]",
            &[table.into(), column.into()],
        )
        .unwrap()
        .expect("a CHECK constraint")
    }

    /// The quoted literals of that constraint.
    fn check_literals(table: &str, column: &str) -> BTreeSet<String> {
        check_definition(table, column).split('\'').skip(1).step_by(2).map(str::to_string).collect()
    }

    #[pg_test]
    fn tracking_formats_agree() {
        let rust: BTreeSet<String> = TrackingFormat::ALL.iter().map(|f| f.as_str().to_string()).collect();
        assert_eq!(check_literals("mt.tenants", "tracking_format"), rust);
        for format in TrackingFormat::ALL {
            let set = Spi::get_one_with_args::<String>(
                "SELECT mt.set_config('tracking_format', $1)",
                &[format.as_str().into()],
            );
            assert_eq!(set.unwrap().as_deref(), Some(format.as_str()));
        }
    }

    #[pg_test]
    fn run_statuses_agree() {
        let rust: BTreeSet<String> = run_status::ALL.iter().map(|s| s.to_string()).collect();
        assert_eq!(check_literals("mt.runs", "status"), rust);
    }

    #[pg_test]
    fn the_template_schema_and_the_name_limit_agree() {
        let role = Spi::get_one_with_args::<bool>(
            "SELECT mt_internal.code_role($1) = 'mt_template_role'::regrole",
            &[TEMPLATE_SCHEMA.into()],
        );
        assert_eq!(role.unwrap(), Some(true));
        Spi::run("SELECT mt_internal.prepare_template()").unwrap();
        let created =
            Spi::get_one_with_args::<bool>("SELECT to_regnamespace($1) IS NOT NULL", &[TEMPLATE_SCHEMA.into()]);
        assert_eq!(created.unwrap(), Some(true));
        let limit = Spi::get_one::<i32>("SELECT current_setting('max_identifier_length')::int").unwrap();
        assert_eq!(limit, Some(MAX_IDENTIFIER_BYTES as i32));
        let registry = check_definition("mt.tenants", "tenant_id");
        assert!(registry.contains(&format!("<= {MAX_IDENTIFIER_BYTES})")), "{registry}");
    }

    #[pg_test]
    fn migration_operations_agree() {
        let operations = [
            Operation::Migrate { dry_run: false, mark_applied: false },
            Operation::Migrate { dry_run: false, mark_applied: true },
            Operation::Convert { to: TrackingFormat::Hash, dry_run: false },
            Operation::CleanOrphans { dry_run: false },
            Operation::Provision,
            Operation::Seed { force: false },
        ];
        for operation in operations {
            let counts = Spi::get_one_with_args::<bool>(
                "SELECT mt_internal.is_migration_operation($1)",
                &[operation.name().into()],
            )
            .unwrap();
            let migrates = !matches!(operation, Operation::Provision | Operation::Seed { .. });
            assert_eq!(counts, Some(migrates), "{}", operation.name());
        }
    }

    /// `mt.applied_migrations` (SQL) and `Record::matches` (Rust) say the same records
    /// cover the same migrations.
    #[pg_test]
    fn record_matching_agrees() {
        let migrations = [
            Migration::new(0, "0000_users", "CREATE TABLE users ();", Some(1_700_000_000_000)),
            Migration::new(1, "0001_posts", "CREATE TABLE posts ();", Some(1_700_000_001_000)),
            Migration::new(2, "0002_plain", "CREATE TABLE plain ();", None),
        ];
        for m in &migrations {
            Spi::run_with_args(
                "SELECT mt.add_migration($1, $2, idx => $3, journal_when => $4)",
                &[m.name.as_str().into(), m.sql.as_str().into(), m.position.into(), m.journal_when.into()],
            )
            .unwrap();
        }
        let records = [
            Record::new(Some("0000_users"), None, None, None),
            Record::new(None, Some(&migrations[1].sha256), None, None),
            Record::new(None, Some("0123abcd"), Some(1_700_000_001_000), None),
            Record::new(Some("0009_gone"), None, None, None),
        ];
        for (id, record) in records.iter().enumerate() {
            Spi::run_with_args(
                "INSERT INTO mt.tracking_records (tenant_id, record_id, name, hash, journal_when) VALUES ('facts', $1, $2, $3, $4)",
                &[(id as i32).into(), record.name.clone().into(), record.hash.clone().into(), record.journal_when.into()],
            )
            .unwrap();
        }
        let sql: BTreeSet<String> = Spi::connect(|client| {
            client
                .select("SELECT name FROM mt.applied_migrations WHERE tenant_id = 'facts'", None, &[])?
                .map(|row| row.get::<String>(1).map(Option::unwrap_or_default))
                .collect::<Result<_, _>>()
        })
        .unwrap();
        let rust: BTreeSet<String> =
            migrations.iter().filter(|m| records.iter().any(|r| r.matches(m))).map(|m| m.name.clone()).collect();
        assert_eq!(sql, rust);
    }
}
