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
    pub message: String,
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
    /// The role the schema's migrations run as (`mt.code_role`).
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
                self.record_progress(status, applied, pending, None, None, true);
                self.tx.unlock_schema(schema);
                Begin::Done(status, applied, pending)
            }
            None => {
                self.record_progress_text("running", 0, pending, None, None, false);
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
            Spi::run("SELECT mt.prepare_template()").unwrap_or_else(|e| error!("{e}"));
        }
        let exists = Spi::get_one_with_args::<bool>(
            "SELECT EXISTS (SELECT FROM pg_catalog.pg_namespace WHERE nspname = $1)",
            &[schema.as_str().into()],
        );
        if exists != Ok(Some(true)) {
            ereport!(ERROR, PgSqlErrorCode::ERRCODE_INVALID_SCHEMA_NAME, format!("schema \"{schema}\" does not exist"));
        }
        let role = crate::roles::code_role(schema);
        let (format, records) =
            match read_tracking(schema, &self.settings.tracking_table, self.target.tenant_id.as_deref()) {
                Some(found) => found,
                None => {
                    let format = self.settings.default_format;
                    if may_write {
                        write_tracking(schema, &self.settings.tracking_table, format, &[]);
                    }
                    (format, Vec::new())
                }
            };
        if may_write {
            if let Some(tenant_id) = &self.target.tenant_id {
                sync_ledger(tenant_id, format, &records);
            }
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
        for (done, &index) in pending.iter().enumerate() {
            let done = done as i32;
            if self.tx.cancelled() {
                return Err((
                    Failure { sqlstate: CANCELLED.into(), message: "the run was cancelled".into() },
                    done,
                    total - done,
                ));
            }
            self.tx
                .atomic(|| self.apply_one(index, inspected, mark_applied))
                .map_err(|failure| (failure, done, total - done))?;
        }
        Ok((if mark_applied { Status::Marked } else { Status::Migrated }, total, 0))
    }

    fn apply_one(&self, index: usize, inspected: &Inspected, mark_applied: bool) {
        let migration = &self.plan.migrations[index];
        let schema = &self.target.schema;
        let format = inspected.format;
        if !mark_applied {
            Spi::run_with_args(
                "SELECT pg_catalog.set_config('lock_timeout', $1, true)",
                &[format!("{}ms", self.settings.lock_timeout_ms).into()],
            )
            .unwrap_or_else(|e| error!("{e}"));
            report_activity(&format!("multitenant: {} {} {}", self.operation.name(), schema, migration.name));
            for extension in &self.plan.extensions[index] {
                Spi::run_with_args(
                    "SELECT mt.ensure_extension($1, $2)",
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
        let record = format.record_for(migration, now_ms());
        let table = tracking::qualified(schema, &self.settings.tracking_table);
        let record_id = insert_record(&table, format, &record, None);
        if let Some(tenant_id) = &self.target.tenant_id {
            Spi::run_with_args(
                "INSERT INTO mt.tracking_records (tenant_id, record_id, name, hash, journal_when, applied_at) \
                 VALUES ($1, $2, $3, $4, $5, pg_catalog.to_timestamp($6::float8 OPERATOR(pg_catalog./) 1000))",
                &[
                    tenant_id.as_str().into(),
                    record_id.into(),
                    record.name.clone().into(),
                    record.hash.clone().into(),
                    record.journal_when.into(),
                    record.applied_at_ms.into(),
                ],
            )
            .unwrap_or_else(|e| error!("{e}"));
        }
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
            sync_ledger(tenant_id, to, &converted);
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
            sync_ledger(tenant_id, inspected.format, &kept);
        }
        orphans.len() as i32
    }

    /// Records the final outcome and releases the lock, in one transaction.
    fn finish(&self, outcome: Outcome) -> Outcome {
        let recorded = self.tx.atomic(|| {
            let failure = outcome.failure.as_ref();
            self.record_progress(
                outcome.status,
                outcome.applied,
                outcome.pending,
                failure.map(|f| f.sqlstate.as_str()),
                failure.map(|f| f.message.as_str()),
                true,
            );
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

    fn record_progress(
        &self,
        status: Status,
        applied: i32,
        pending: i32,
        sqlstate: Option<&str>,
        error: Option<&str>,
        finished: bool,
    ) {
        self.record_progress_text(status.as_str(), applied, pending, sqlstate, error, finished)
    }

    /// Upserts this schema's row in `mt.run_tenants`.
    fn record_progress_text(
        &self,
        status: &str,
        applied: i32,
        pending: i32,
        sqlstate: Option<&str>,
        error: Option<&str>,
        finished: bool,
    ) {
        let progress = Progress { status, applied, pending, sqlstate, error, finished };
        record_run_tenant(self.run_id, &self.progress_key(), &self.target.schema, &progress);
    }
}

/// One row of `mt.run_tenants`, as a run goes.
pub struct Progress<'a> {
    pub status: &'a str,
    pub applied: i32,
    pub pending: i32,
    pub sqlstate: Option<&'a str>,
    pub error: Option<&'a str>,
    pub finished: bool,
}

/// Upserts one schema's row of a run in `mt.run_tenants`.
pub fn record_run_tenant(run_id: i64, key: &str, schema: &str, progress: &Progress) {
    Spi::run_with_args(
        "INSERT INTO mt.run_tenants AS r (run_id, tenant_id, schema_name, status, applied, pending, sqlstate, error, finished_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, CASE WHEN $9 THEN clock_timestamp() END) \
         ON CONFLICT (run_id, tenant_id) DO UPDATE \
            SET status = EXCLUDED.status, applied = EXCLUDED.applied, pending = EXCLUDED.pending, \
                sqlstate = EXCLUDED.sqlstate, error = EXCLUDED.error, finished_at = EXCLUDED.finished_at, pid = EXCLUDED.pid, \
                current_migration = CASE WHEN $9 THEN NULL ELSE r.current_migration END",
        &[
            run_id.into(),
            key.into(),
            schema.into(),
            progress.status.into(),
            progress.applied.into(),
            progress.pending.into(),
            progress.sqlstate.into(),
            progress.error.into(),
            progress.finished.into(),
        ],
    )
    .unwrap_or_else(|e| error!("multitenant: cannot record progress: {e}"));
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
/// (`mt.check_tracking_table`), is an error and is never read through.
pub fn read_tracking(schema: &str, table_name: &str, tenant_id: Option<&str>) -> Option<(TrackingFormat, Vec<Record>)> {
    Spi::run_with_args("SELECT mt.check_tracking_table($1, $2)", &[schema.into(), tenant_id.into()])
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
    Spi::connect(|client| {
        client
            .select(&format.select_records_sql(table), None, &[])?
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
    .unwrap_or_else(|e| error!("multitenant: cannot read {table}: {e}"))
}

/// Creates `schema`'s tracking table `table_name` in `format` holding `records` (ids kept),
/// owned by the trusted owner (whoever runs this: the extension's bookkeeping), readable by
/// the schema's code role, which may never write it.
pub fn write_tracking(schema: &str, table_name: &str, format: TrackingFormat, records: &[Record]) {
    let table = tracking::qualified(schema, table_name);
    Spi::run(&format.create_table_sql(&table)).unwrap_or_else(|e| error!("{e}"));
    for record in records {
        insert_record(&table, format, record, Some(record.id));
    }
    Spi::run_with_args(
        "SELECT pg_catalog.setval(pg_catalog.pg_get_serial_sequence($1, 'id'), greatest(coalesce(max_id, 0), 1), max_id IS NOT NULL) \
           FROM (SELECT pg_catalog.max(id) AS max_id FROM pg_catalog.unnest($2::int[]) AS id) m",
        &[table.as_str().into(), records.iter().map(|r| r.id).collect::<Vec<i32>>().into()],
    )
    .unwrap_or_else(|e| error!("{e}"));
    let grant = Spi::get_one_with_args::<String>(
        "SELECT pg_catalog.format('GRANT SELECT ON %s TO %I', $1::text, pg_catalog.pg_get_userbyid(mt.code_role($2)))",
        &[table.as_str().into(), schema.into()],
    )
    .unwrap_or_else(|e| error!("{e}"))
    .unwrap_or_default();
    Spi::run(&grant).unwrap_or_else(|e| error!("{e}"));
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

/// Makes the ledger rows of one tenant equal to its tracking table, writing only on change.
fn sync_ledger(tenant_id: &str, format: TrackingFormat, records: &[Record]) {
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
    let differs = Spi::get_one_with_args::<bool>(
        &format!(
            "WITH wanted AS ({WANTED}), current AS ( \
                 SELECT record_id, name, hash, journal_when FROM mt.tracking_records WHERE tenant_id = $1) \
             SELECT EXISTS (SELECT record_id, name, hash, journal_when FROM wanted EXCEPT SELECT * FROM current) \
                 OR EXISTS (SELECT * FROM current EXCEPT SELECT record_id, name, hash, journal_when FROM wanted)"
        ),
        &args,
    )
    .unwrap_or_else(|e| error!("multitenant: cannot read the ledger: {e}"));
    if differs == Some(true) {
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
