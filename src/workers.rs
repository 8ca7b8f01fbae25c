//! Fan-out over dynamic background workers.
//!
//! The launcher (the backend calling `mt.migrate_all` & co.) puts the list of schemas into a
//! dynamic shared memory segment and starts up to `concurrency` workers. Each worker
//! attaches, connects to the same database as the extension owner, and claims schemas one by
//! one from an atomic counter until none are left, writing each outcome back into the
//! segment. Workers need no `shared_preload_libraries`.
//!
//! Shared memory rather than tables, because workers cannot see the launcher's uncommitted
//! rows. The launcher never fails for want of worker slots: it starts what it can, waits,
//! and starts more as slots free up. Cancelling the launcher sets a flag that workers check
//! between migrations, then terminates stragglers (SIGTERM runs PostgreSQL's `die`, which
//! aborts even a long statement); a migration is therefore either committed with its
//! tracking row or not at all.

use std::cell::RefCell;
use std::mem::size_of;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use multitenant_core::tracking::TrackingFormat;
use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, BgWorkerStartTime, DynamicBackgroundWorker};
use pgrx::pg_sys;
use pgrx::pg_sys::panic::CaughtError;
use pgrx::prelude::*;

use crate::engine::{self, Failure, Job, Operation, Outcome, Plan, Progress, Settings, Status, Target, Transactions};
use crate::txn::{wait_latch, OwnTransactions};

/// The shared library of this version: pgrx names it `multitenant-<version>` because the
/// control file has no `module_pathname`, so a database still on an older version keeps
/// loading its own library until it is updated.
pub(crate) const LIBRARY: &str = concat!("multitenant-", env!("CARGO_PKG_VERSION"));

const MAGIC: u32 = 0x6d74_7275;
const NAME_BYTES: usize = 64;
/// Room for a message with its DETAIL and HINT; the full text is in `mt.run_tenants` too.
const ERROR_BYTES: usize = 2000;
/// Migration names are at most 255 bytes (`mt.migrations`).
const MIGRATION_BYTES: usize = 256;

/// Schemas one worker handles before it exits and the launcher starts a fresh one: a backend
/// keeps every relation and catalog entry it has touched cached, so a worker that stayed for
/// the whole fleet would grow with it, and would take longer over every cache invalidation
/// the other workers' DDL sends. (Handing over by the size of `CacheMemoryContext` instead,
/// 24 MB, kept 2 workers for 100 tenants of the realistic corpus and made the run 1.3 times
/// slower.)
const ITEMS_PER_WORKER: usize = 32;

// Items start zeroed, which means pending.
const ITEM_CLAIMED: u32 = 1;
const ITEM_DONE: u32 = 2;

#[repr(C)]
struct Header {
    magic: u32,
    item_count: u32,
    /// Items before this index are visited by workers; the rest were settled by the launcher
    /// (tenants the ledger shows up to date) and get their rows in `mt.run_tenants` from
    /// whoever closes the run, in the same transaction (`close_run`).
    visit_count: u32,
    next_item: AtomicU32,
    finished_items: AtomicU32,
    cancel: AtomicBool,
    operation: [u8; 4],
    run_id: i64,
    database: pg_sys::Oid,
    role: pg_sys::Oid,
    /// Who called the launcher: tenant code may run as a superuser only for a superuser.
    caller: pg_sys::Oid,
    /// The launcher's process: when it is gone (terminated, crashed), workers stop.
    launcher_pid: i32,
    lock_timeout_ms: i32,
    statement_timeout_ms: i32,
    /// `mt.provision_from_template` of the caller.
    from_template: bool,
    /// The seed name of provisioning and seeding runs.
    argument: FixedText<NAME_BYTES>,
}

#[repr(C)]
struct Item {
    state: AtomicU32,
    /// The worker that claimed it (the template's waiters stop waiting when it is gone).
    worker_pid: AtomicU32,
    tenant_id: FixedText<NAME_BYTES>,
    schema: FixedText<NAME_BYTES>,
    status: u8,
    applied: i32,
    pending: i32,
    duration_ms: i64,
    sqlstate: FixedText<8>,
    error: FixedText<ERROR_BYTES>,
    migration: FixedText<MIGRATION_BYTES>,
}

/// A string in shared memory: truncated to fit (on a UTF-8 boundary).
#[repr(C)]
struct FixedText<const N: usize> {
    len: u16,
    bytes: [u8; N],
}

impl<const N: usize> FixedText<N> {
    fn set(&mut self, text: &str) {
        let mut len = text.len().min(N);
        while !text.is_char_boundary(len) {
            len -= 1;
        }
        self.bytes[..len].copy_from_slice(&text.as_bytes()[..len]);
        self.len = len as u16;
    }

    fn get(&self) -> String {
        String::from_utf8_lossy(&self.bytes[..self.len as usize]).into_owned()
    }
}

fn encode(operation: Operation) -> [u8; 4] {
    let format_code = |f: TrackingFormat| TrackingFormat::ALL.iter().position(|x| *x == f).unwrap_or(0) as u8;
    match operation {
        Operation::Migrate { dry_run, mark_applied } => [1, dry_run as u8, mark_applied as u8, 0],
        Operation::Convert { to, dry_run } => [2, dry_run as u8, 0, format_code(to)],
        Operation::CleanOrphans { dry_run } => [3, dry_run as u8, 0, 0],
        Operation::Provision => [4, 0, 0, 0],
        Operation::Seed { force } => [5, 0, force as u8, 0],
    }
}

fn decode(code: [u8; 4]) -> Operation {
    let dry_run = code[1] != 0;
    match code[0] {
        2 => Operation::Convert { to: TrackingFormat::ALL[code[3] as usize % 3], dry_run },
        3 => Operation::CleanOrphans { dry_run },
        4 => Operation::Provision,
        5 => Operation::Seed { force: code[2] != 0 },
        _ => Operation::Migrate { dry_run, mark_applied: code[2] != 0 },
    }
}

/// A view of the run's shared memory segment.
struct Run {
    header: *mut Header,
    items: *mut Item,
}

impl Run {
    fn size(count: usize) -> usize {
        size_of::<Header>().next_multiple_of(16) + count * size_of::<Item>()
    }

    unsafe fn at(address: *mut std::ffi::c_void) -> Run {
        let header = address as *mut Header;
        let items = (address as *mut u8).add(size_of::<Header>().next_multiple_of(16)) as *mut Item;
        Run { header, items }
    }

    fn header(&self) -> &Header {
        unsafe { &*self.header }
    }

    fn item(&self, index: usize) -> &Item {
        assert!(index < self.header().item_count as usize);
        unsafe { &*self.items.add(index) }
    }

    #[allow(clippy::mut_from_ref)]
    fn item_mut(&self, index: usize) -> &mut Item {
        assert!(index < self.header().item_count as usize);
        // Each item is written only by the worker that claimed it.
        unsafe { &mut *self.items.add(index) }
    }

    fn count(&self) -> usize {
        self.header().item_count as usize
    }

    fn outcome(&self, index: usize) -> Option<Outcome> {
        let item = self.item(index);
        if item.state.load(Ordering::Acquire) != ITEM_DONE {
            return None;
        }
        let sqlstate = item.sqlstate.get();
        Some(Outcome {
            status: Status::from_u8(item.status).unwrap_or(Status::Failed),
            applied: item.applied,
            pending: item.pending,
            failure: (!sqlstate.is_empty()).then(|| Failure {
                sqlstate,
                message: item.error.get(),
                migration: Some(item.migration.get()).filter(|m| !m.is_empty()),
            }),
            duration_ms: item.duration_ms,
        })
    }
}

/// One schema's result of a worker run.
pub struct RunResult {
    pub tenant_id: String,
    pub schema: String,
    pub outcome: Outcome,
}

/// Refuses to start workers from a transaction that has written anything: they could not
/// see its uncommitted rows (a tenant created or a migration registered a moment ago).
/// Call before any `Spi::get_*`/`Spi::run`, which assign a transaction id themselves.
pub fn ensure_nothing_uncommitted(function: &str) {
    let wrote = Spi::connect(|client| {
        client
            .select("SELECT pg_catalog.pg_current_xact_id_if_assigned() IS NOT NULL", Some(1), &[])?
            .first()
            .get_one::<bool>()
    })
    .unwrap_or_else(|e| error!("{e}"));
    if wrote == Some(true) {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_ACTIVE_SQL_TRANSACTION,
            format!("mt.{function} cannot run in a transaction that has already written data"),
            "Its background workers cannot see this transaction's uncommitted changes; commit them first."
        );
    }
}

/// Runs `operation` over `targets` (tenant id, schema) with up to `concurrency` workers and
/// returns every outcome, in the order given, followed by `settled`: schemas the caller knows
/// to be up to date without a visit (recorded in the run as `up_to_date`). `argument` is the
/// seed name, for the operations that take one.
pub fn run(
    operation: Operation,
    argument: &str,
    targets: &[(String, String)],
    settled: &[(String, String)],
    concurrency: i32,
) -> Vec<RunResult> {
    if targets.is_empty() && settled.is_empty() {
        return Vec::new();
    }
    let visits = targets.len();
    let targets: Vec<(String, String)> = targets.iter().chain(settled).cloned().collect();
    engine::close_abandoned_runs();
    let run_id = Spi::get_one::<i64>("SELECT pg_catalog.nextval('mt.runs_run_id_seq')")
        .unwrap_or_else(|e| error!("{e}"))
        .unwrap_or_default();

    let segment = unsafe { pg_sys::dsm_create(Run::size(targets.len()), 0) };
    let run = unsafe {
        let address = pg_sys::dsm_segment_address(segment);
        std::ptr::write_bytes(address as *mut u8, 0, Run::size(targets.len()));
        Run::at(address)
    };
    unsafe {
        let header = &mut *run.header;
        header.magic = MAGIC;
        header.item_count = targets.len() as u32;
        header.visit_count = visits as u32;
        header.finished_items.store(settled.len() as u32, Ordering::Relaxed);
        header.operation = encode(operation);
        header.run_id = run_id;
        header.database = pg_sys::MyDatabaseId;
        header.role = pg_sys::GetUserId();
        header.caller = crate::roles::caller();
        header.launcher_pid = pg_sys::MyProcPid;
        header.lock_timeout_ms = crate::guc::LOCK_TIMEOUT_MS.get();
        header.statement_timeout_ms = crate::guc::STATEMENT_TIMEOUT_MS.get();
        header.from_template = crate::guc::PROVISION_FROM_TEMPLATE.get();
        header.argument.set(argument);
    }
    for (index, (tenant_id, schema)) in targets.iter().enumerate() {
        let item = run.item_mut(index);
        item.tenant_id.set(tenant_id);
        item.schema.set(schema);
        if index >= visits {
            item.status = Status::UpToDate as u8;
            item.state.store(ITEM_DONE, Ordering::Release);
        }
    }
    if visits == 0 {
        // Nothing for workers: the run is recorded here, in the caller's transaction.
        engine::start_run(Some(run_id), operation.name(), operation, targets.len() as i32, unsafe {
            pg_sys::MyProcPid
        });
    }
    let handle = unsafe { pg_sys::dsm_segment_handle(segment) };

    let workers: RefCell<Vec<DynamicBackgroundWorker>> = RefCell::new(Vec::new());
    let concurrency = concurrency.max(1) as usize;
    let shared = AssertUnwindSafe((&run, &workers));
    PgTryBuilder::new(AssertUnwindSafe(|| supervise(&run, handle, concurrency, &mut workers.borrow_mut())))
        .catch_others(|error: CaughtError| {
            // Cancelled or failed: stop the workers before the segment goes away.
            let (run, workers) = *std::ops::Deref::deref(&shared);
            run.header().cancel.store(true, Ordering::SeqCst);
            stop(workers.take());
            error.rethrow()
        })
        .execute();

    // The workers commit without waiting for the disk: one flush makes all of it durable
    // before anything is reported.
    flush_wal();
    let mut results: Vec<RunResult> = targets
        .iter()
        .enumerate()
        .map(|(index, (tenant_id, schema))| RunResult {
            tenant_id: tenant_id.clone(),
            // Provisioning learns the schema name only when the tenant is created.
            schema: Some(run.item(index).schema.get()).filter(|s| !s.is_empty()).unwrap_or_else(|| schema.clone()),
            outcome: run.outcome(index).unwrap_or(Outcome {
                status: Status::Failed,
                applied: 0,
                pending: 0,
                failure: Some(Failure {
                    sqlstate: "XX000".into(),
                    message: "the background worker handling this schema exited before finishing".into(),
                    migration: None,
                }),
                duration_ms: 0,
            }),
        })
        .collect();
    // A worker that died (terminated, crashed) left its schema unrecorded and cannot close the
    // run: record what the caller is told and close it here, unless a worker did.
    for (index, result) in results.iter_mut().enumerate().filter(|(index, _)| run.outcome(*index).is_none()) {
        // The migration it was applying is the tenant's first pending one (the ledger holds
        // what committed).
        if let (Operation::Migrate { mark_applied: false, .. }, Some(failure)) =
            (operation, result.outcome.failure.as_mut())
        {
            failure.migration = Spi::get_one_with_args::<String>(
                "SELECT (pending_names)[1] FROM mt.status WHERE tenant_id = $1",
                &[result.tenant_id.as_str().into()],
            )
            .unwrap_or_else(|e| error!("{e}"));
        }
        let failure = result.outcome.failure.as_ref();
        let progress = Progress { status: Status::Failed.as_str(), applied: 0, pending: 0, failure, finished: true };
        let key = match result.tenant_id.as_str() {
            "" => format!("schema:{}", targets[index].1),
            id => id.to_string(),
        };
        engine::record_run_tenant(run_id, &key, &result.schema, &progress);
    }
    // Unless a worker closed the run, recording the settled schemas with it, they are
    // recorded here, before the close.
    let open = Spi::get_one_with_args::<bool>(
        "SELECT r.status OPERATOR(pg_catalog.=) $2 FROM mt.runs r WHERE r.run_id OPERATOR(pg_catalog.=) $1",
        &[run_id.into(), engine::run_status::RUNNING.into()],
    );
    if !matches!(open, Ok(Some(false))) {
        record_settled(&run);
    }
    engine::finish_run(run_id, engine::run_status::FINISHED);
    // Workers that are still attached keep the segment alive until they exit.
    unsafe { pg_sys::dsm_detach(segment) };
    results
}

/// Flushes all WAL inserted so far. The insert position just after a page header (nothing
/// inserted on that page yet) is not a position XLogFlush can reach ("xlog flush request
/// ... is not satisfied"): the end of what was inserted is the page's start then.
fn flush_wal() {
    // SizeOfXLogShortPHD and SizeOfXLogLongPHD: a record is at least 24 bytes, so an insert
    // position at these offsets can only follow a page header.
    const PAGE_HEADERS: [u64; 2] = [24, 40];
    let insert = unsafe { pg_sys::GetXLogInsertRecPtr() };
    let offset = insert % pg_sys::XLOG_BLCKSZ as u64;
    let end = if PAGE_HEADERS.contains(&offset) { insert - offset } else { insert };
    unsafe { pg_sys::XLogFlush(end) };
}

/// Keeps up to `concurrency` workers going until every item is done.
fn supervise(run: &Run, handle: pg_sys::dsm_handle, concurrency: usize, workers: &mut Vec<DynamicBackgroundWorker>) {
    let header = run.header();
    let total = run.count() as u32;
    let visits = header.visit_count;
    // Workers exit when the queue is empty or after ITEMS_PER_WORKER schemas, unless they
    // die; this bounds restarts of workers that die at once (say, the database is being
    // dropped) instead of looping.
    let max_starts = concurrency + visits as usize;
    let mut started = 0;
    loop {
        forget_stopped(workers);
        // The worker that finishes the last item closes the run after counting it: wait for
        // the workers to exit, so that the caller finds the run closed.
        if header.finished_items.load(Ordering::Acquire) >= total && workers.is_empty() {
            return;
        }
        let unclaimed = header.next_item.load(Ordering::Acquire) < visits;
        if unclaimed && started < max_starts {
            while workers.len() < concurrency && started < max_starts {
                match start_worker(handle, header.run_id) {
                    Some(worker) => {
                        workers.push(worker);
                        started += 1;
                    }
                    None => break, // no free slot: wait and try again
                }
            }
        } else if workers.is_empty() {
            return; // every item was claimed (or no more workers may start) and all are gone
        }
        wait_latch(20);
    }
}

/// Drops the workers that have exited from `workers`.
pub(crate) fn forget_stopped(workers: &mut Vec<DynamicBackgroundWorker>) {
    workers.retain(|w| !matches!(w.pid(), Err(pgrx::bgworkers::BackgroundWorkerStatus::Stopped)));
}

/// A dynamic background worker of this library: `function` is its entry point, `worker_type`
/// its `backend_type` in `pg_stat_activity`; it may use SPI once recovery has finished.
pub(crate) fn builder(name: &str, worker_type: &str, function: &str) -> BackgroundWorkerBuilder {
    BackgroundWorkerBuilder::new(name)
        .set_type(worker_type)
        .set_library(LIBRARY)
        .set_function(function)
        .enable_spi_access()
        .set_start_time(BgWorkerStartTime::RecoveryFinished)
}

fn start_worker(handle: pg_sys::dsm_handle, run_id: i64) -> Option<DynamicBackgroundWorker> {
    builder(&format!("multitenant run {run_id}"), "multitenant worker", "mt_run_worker")
        .set_argument(Some(pg_sys::Datum::from(handle)))
        .set_notify_pid(unsafe { pg_sys::MyProcPid })
        .load_dynamic()
        .ok()
}

/// Cancels what the workers are doing (SIGINT: the statement in progress rolls back; run
/// workers record the tenant as cancelled and close the run), waits for them, and terminates
/// any that do not stop in time.
pub(crate) fn stop(workers: Vec<DynamicBackgroundWorker>) {
    let pid = |w: &DynamicBackgroundWorker| w.pid().ok();
    for worker in &workers {
        if let Some(pid) = pid(worker) {
            unsafe { libc::kill(pid, libc::SIGINT) };
        }
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && workers.iter().any(|w| pid(w).is_some()) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let terminating: Vec<_> = workers.into_iter().filter(|w| pid(w).is_some()).map(|w| w.terminate()).collect();
    for worker in terminating {
        let _ = worker.wait_for_shutdown();
    }
}

/// The start of every background worker of the extension: PostgreSQL's own SIGTERM handler
/// (a SIGTERM aborts even a statement in progress), then signals unblocked.
pub(crate) fn unblock_signals() {
    unsafe {
        pg_sys::pqsignal(pg_sys::SIGTERM as i32, Some(crate::txn::ffi::die));
        pg_sys::BackgroundWorkerUnblockSignals();
    }
}

/// Entry point of every run worker; the argument is the run's segment handle.
#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn mt_run_worker(argument: pg_sys::Datum) {
    unblock_signals();
    let segment = unsafe { pg_sys::dsm_attach(argument.value() as pg_sys::dsm_handle) };
    if segment.is_null() {
        return; // the launcher has gone already
    }
    let run = unsafe { Run::at(pg_sys::dsm_segment_address(segment)) };
    let header = run.header();
    if header.magic != MAGIC {
        return;
    }
    BackgroundWorker::connect_worker_to_spi_by_oid(Some(header.database), Some(header.role));
    crate::roles::set_caller(header.caller);
    let tx = OwnTransactions { cancel: &header.cancel, launcher_pid: header.launcher_pid };
    let operation = decode(header.operation);

    let context = tx.atomic(|| {
        // For the whole session: the bookkeeping never looks names up where tenants create;
        // and commits do not wait for the disk. Each transaction is still atomic, so a crash
        // can only lose whole migrations with their tracking rows (the next run applies them
        // again); the launcher flushes the WAL once before it reports (see `run`).
        Spi::run_with_args(
            "SELECT pg_catalog.set_config('search_path', $1, false), \
                    pg_catalog.set_config('synchronous_commit', 'off', false)",
            &[crate::roles::BOOKKEEPING_PATH.into()],
        )
        .unwrap_or_else(|e| error!("{e}"));
        engine::report_activity(&format!("multitenant: {} run {}", operation.name(), header.run_id));
        engine::start_run(
            Some(header.run_id),
            operation.name(),
            operation,
            header.item_count as i32,
            header.launcher_pid,
        );
        (Settings::load(header.lock_timeout_ms, header.statement_timeout_ms), Plan::load("tenant"))
    });

    // migrate_all puts the template first: the other schemas wait for it, so that empty
    // tenant schemas get a copy of it rather than every migration replayed.
    let template_first = header.from_template
        && matches!(operation, Operation::Migrate { dry_run: false, mark_applied: false })
        && header.visit_count > 1
        && run.item(0).tenant_id.get().is_empty()
        && run.item(0).schema.get() == engine::TEMPLATE_SCHEMA;
    for _ in 0..ITEMS_PER_WORKER {
        if tx.cancelled() {
            break;
        }
        let index = header.next_item.fetch_add(1, Ordering::AcqRel) as usize;
        if index >= header.visit_count as usize {
            break;
        }
        if index > 0 && template_first {
            wait_for_template(&run, &tx);
        }
        let item = run.item_mut(index);
        item.worker_pid.store(unsafe { pg_sys::MyProcPid } as u32, Ordering::Release);
        item.state.store(ITEM_CLAIMED, Ordering::Release);
        let tenant_id = item.tenant_id.get();
        let target = Target { tenant_id: (!tenant_id.is_empty()).then_some(tenant_id), schema: item.schema.get() };
        let outcome = match (&context, operation) {
            (_, Operation::Provision | Operation::Seed { .. }) => {
                let (outcome, schema) = call_one(&tx, operation, &header.argument.get(), &target, header.run_id);
                item.schema.set(&schema);
                outcome
            }
            (Ok((settings, plan)), _) => Job {
                tx: &tx,
                settings,
                plan,
                target: &target,
                operation,
                run_id: header.run_id,
                from_template: header.from_template,
            }
            .run(),
            (Err(failure), _) => Outcome {
                status: Status::Failed,
                applied: 0,
                pending: 0,
                failure: Some(failure.clone()),
                duration_ms: 0,
            },
        };
        item.status = outcome.status as u8;
        item.applied = outcome.applied;
        item.pending = outcome.pending;
        item.duration_ms = outcome.duration_ms;
        if let Some(failure) = &outcome.failure {
            item.sqlstate.set(&failure.sqlstate);
            item.error.set(&failure.message);
            item.migration.set(failure.migration.as_deref().unwrap_or_default());
        }
        item.state.store(ITEM_DONE, Ordering::Release);
        let finished = header.finished_items.fetch_add(1, Ordering::AcqRel) + 1;
        if finished == header.item_count {
            close_run(&tx, &run, engine::run_status::FINISHED);
        }
    }
    if tx.cancelled() {
        close_run(&tx, &run, engine::run_status::CANCELLED);
    }
}

/// Waits until the template (item 0) is done, its worker has gone, or the run is cancelled.
fn wait_for_template(run: &Run, tx: &OwnTransactions) {
    let template = run.item(0);
    loop {
        let state = template.state.load(Ordering::Acquire);
        let pid = template.worker_pid.load(Ordering::Acquire) as i32;
        let worker_gone = state == ITEM_CLAIMED && unsafe { libc::kill(pid, 0) != 0 };
        if state == ITEM_DONE || worker_gone || !tx.pause() {
            return;
        }
    }
}

/// Provisions or seeds one tenant in its own transaction by calling the SQL function that
/// does it for one; returns the outcome and the tenant's schema.
fn call_one(
    tx: &OwnTransactions,
    operation: Operation,
    argument: &str,
    target: &Target,
    run_id: i64,
) -> (Outcome, String) {
    let started = Instant::now();
    let tenant_id = target.tenant_id.clone().unwrap_or_default();
    let argument = Some(argument.to_string()).filter(|a| !a.is_empty());
    let done = tx.atomic(|| {
        engine::report_activity(&format!("multitenant: {} {}", operation.name(), tenant_id));
        let (status, schema) = match operation {
            Operation::Provision => {
                let schema = Spi::get_one_with_args::<String>(
                    "SELECT (mt.create_tenant($1, seed => $2)).schema_name",
                    &[tenant_id.as_str().into(), argument.clone().into()],
                );
                (Status::Created, schema.unwrap_or_else(|e| error!("{e}")).unwrap_or_default())
            }
            Operation::Seed { force } => {
                let result = Spi::get_one_with_args::<String>(
                    "SELECT mt.seed_tenant($1, $2, $3)",
                    &[tenant_id.as_str().into(), argument.clone().into(), force.into()],
                );
                let seeded = result.unwrap_or_else(|e| error!("{e}")).as_deref() == Some("seeded");
                (if seeded { Status::Seeded } else { Status::Skipped }, target.schema.clone())
            }
            _ => unreachable!("migration operations run as a Job"),
        };
        let applied = (status != Status::Skipped) as i32;
        let progress = Progress { status: status.as_str(), applied, pending: 0, failure: None, finished: true };
        engine::record_run_tenant(run_id, &tenant_id, &schema, &progress);
        (status, applied, schema)
    });
    let outcome = |status, applied, failure| Outcome {
        status,
        applied,
        pending: 0,
        failure,
        duration_ms: started.elapsed().as_millis() as i64,
    };
    match done {
        Ok((status, applied, schema)) => (outcome(status, applied, None), schema),
        Err(failure) => {
            let status = if tx.cancelled() { Status::Cancelled } else { Status::Failed };
            let _ = tx.atomic(|| {
                let progress = Progress {
                    status: status.as_str(),
                    applied: 0,
                    pending: 0,
                    failure: Some(&failure),
                    finished: true,
                };
                engine::record_run_tenant(run_id, &tenant_id, &target.schema, &progress);
            });
            (outcome(status, 0, Some(failure)), target.schema.clone())
        }
    }
}

/// Marks the run finished or cancelled, with its counts.
fn close_run(tx: &OwnTransactions, run: &Run, status: &str) {
    let _ = tx.atomic(|| {
        record_settled(run);
        engine::finish_run(run.header().run_id, status)
    });
}

/// Records the run's settled schemas (those after `visit_count`), unless recorded already:
/// with the close of the run, so that its counts include them.
fn record_settled(run: &Run) {
    let header = run.header();
    let first = header.visit_count as usize;
    if first == run.count() {
        return;
    }
    let settled: Vec<(String, String)> =
        (first..run.count()).map(|i| (run.item(i).tenant_id.get(), run.item(i).schema.get())).collect();
    engine::record_settled(header.run_id, &settled);
}

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    use pgrx::prelude::*;

    use super::{decode, encode, FixedText};
    use crate::engine::{Operation, Status};
    use multitenant_core::tracking::TrackingFormat;

    #[pg_test]
    fn operations_survive_shared_memory() {
        let operations = [
            Operation::Migrate { dry_run: false, mark_applied: false },
            Operation::Migrate { dry_run: true, mark_applied: false },
            Operation::Migrate { dry_run: false, mark_applied: true },
            Operation::CleanOrphans { dry_run: true },
            Operation::Provision,
            Operation::Seed { force: true },
            Operation::Seed { force: false },
        ]
        .into_iter()
        .chain(TrackingFormat::ALL.into_iter().map(|to| Operation::Convert { to, dry_run: false }));
        for operation in operations {
            assert_eq!(decode(encode(operation)), operation);
        }
        for status in Status::ALL {
            assert_eq!(Status::from_u8(status as u8), Some(status));
        }
        assert_eq!(Status::from_u8(0), None);
    }

    #[pg_test]
    fn shared_text_truncates_on_a_character_boundary() {
        let mut text = FixedText::<5> { len: 0, bytes: [0; 5] };
        text.set("abcdé");
        assert_eq!(text.get(), "abcd");
        text.set("ab");
        assert_eq!(text.get(), "ab");
    }
}
