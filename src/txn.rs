//! The two ways a run brackets its work (see `engine::Transactions`).

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};

use pgrx::pg_sys;
use pgrx::pg_sys::panic::CaughtError;
use pgrx::prelude::*;

use crate::engine::{Failure, Transactions, CANCELLED};

/// SQLSTATE 25001: CREATE INDEX CONCURRENTLY, VACUUM and the like inside a transaction.
const NOT_IN_A_TRANSACTION: &str = "25001";

/// The SQLSTATE text ("42P07") of a caught error.
fn failure_from(error: &CaughtError) -> Failure {
    let report = match error {
        CaughtError::PostgresError(report) | CaughtError::ErrorReport(report) => report,
        CaughtError::RustPanic { ereport, .. } => ereport,
    };
    let code = report.sql_error_code() as i32;
    // MAKE_SQLSTATE packs five 6-bit characters, first one lowest.
    let sqlstate: String = (0..5).map(|i| (((code >> (6 * i)) & 0x3F) as u8 + b'0') as char).collect();
    // DETAIL and HINT often say what to do; keep them (pgrx's detail_with_backtrace is not used).
    let mut message = report.message().to_string();
    for (label, text) in [("DETAIL", report.detail()), ("HINT", report.hint())] {
        if let Some(text) = text.filter(|t| !t.is_empty()) {
            message.push_str(&format!("\n{label}: {text}"));
        }
    }
    if sqlstate == NOT_IN_A_TRANSACTION {
        message.push_str(
            "\nHINT: this statement cannot run inside a transaction, and every migration runs in one: \
             move it out of the migration (run it by hand or in a maintenance job).",
        );
    }
    Failure { sqlstate, message, migration: None }
}

/// Declarations pgrx's bindings leave out (`utils/timeout.h`, `tcop/tcopprot.h`).
pub(crate) mod ffi {
    use std::ffi::c_int;

    /// `STATEMENT_TIMEOUT` in PostgreSQL 15's `enum TimeoutId`.
    pub const STATEMENT_TIMEOUT: c_int = 3;

    unsafe extern "C-unwind" {
        pub fn enable_timeout_after(id: c_int, delay_ms: c_int);
        pub fn disable_timeout(id: c_int, keep_indicator: bool);
        /// The SIGTERM handler of regular backends.
        pub fn die(signal: c_int);
    }
}

/// Background workers: every unit of work is a transaction of its own, committed at once,
/// so progress is visible to other sessions and a failure undoes only that unit.
pub struct OwnTransactions<'a> {
    pub cancel: &'a AtomicBool,
    /// The backend that started the workers: a run whose caller is gone stops.
    pub launcher_pid: i32,
}

impl Transactions for OwnTransactions<'_> {
    fn atomic<R>(&self, body: impl FnOnce() -> R) -> Result<R, Failure> {
        unsafe {
            pg_sys::SetCurrentStatementStartTimestamp();
            pg_sys::StartTransactionCommand();
            pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
        }
        PgTryBuilder::new(AssertUnwindSafe(|| {
            let result = body();
            unsafe {
                pg_sys::PopActiveSnapshot();
                pg_sys::CommitTransactionCommand();
            }
            Ok(result)
        }))
        .catch_others(|error| {
            // The error was copied and flushed by pgrx; what remains is to undo the work.
            unsafe { pg_sys::AbortCurrentTransaction() };
            Err(failure_from(&error))
        })
        .execute()
    }

    fn try_lock_schema(&self, schema: &str) -> bool {
        Spi::get_one_with_args::<bool>("SELECT mt_internal.lock_schema($1, 'try_session')", &[schema.into()])
            .unwrap_or_else(|e| error!("{e}"))
            .unwrap_or(false)
    }

    fn unlock_schema(&self, _schema: &str) {
        // A worker holds at most one schema lock; session locks survive aborts, so release
        // whatever is held rather than guess.
        Spi::run("SELECT pg_catalog.pg_advisory_unlock_all()").unwrap_or_else(|e| error!("{e}"));
    }

    fn run_migration_sql(&self, sql: &str, statement_timeout_ms: i32) {
        // statement_timeout is armed by the client protocol, which a worker has none of.
        struct Disarm(bool);
        impl Drop for Disarm {
            fn drop(&mut self) {
                if self.0 {
                    unsafe { ffi::disable_timeout(ffi::STATEMENT_TIMEOUT, false) };
                }
            }
        }
        if statement_timeout_ms <= 0 {
            Spi::run(sql).unwrap_or_else(|e| error!("{e}"));
            return;
        }
        // Like a client's statement_timeout: each statement gets the whole allowance.
        for statement in statements(sql) {
            let _disarm = Disarm(true);
            unsafe { ffi::enable_timeout_after(ffi::STATEMENT_TIMEOUT, statement_timeout_ms) };
            Spi::run(statement).unwrap_or_else(|e| error!("{e}"));
        }
    }

    fn pause(&self) -> bool {
        // A cancel signal (SIGINT from the launcher) raises here; it only means stop.
        PgTryBuilder::new(|| wait_latch(50)).catch_others(|_| ()).execute();
        !self.cancelled()
    }

    fn cancelled(&self) -> bool {
        // A terminated or crashed launcher cannot set the flag: its process being gone
        // means the same. Workers run as the same OS user, so signal 0 tells.
        self.cancel.load(Ordering::SeqCst) || unsafe { libc::kill(self.launcher_pid, 0) != 0 }
    }
}

/// In-process: every unit of work is a subtransaction of the caller's transaction, the way
/// a PL/pgSQL `BEGIN … EXCEPTION` block is one. Cancellation is the caller's own interrupt,
/// so it is rethrown rather than recorded.
pub struct Subtransactions;

impl Transactions for Subtransactions {
    fn atomic<R>(&self, body: impl FnOnce() -> R) -> Result<R, Failure> {
        let (context, owner) = unsafe { (pg_sys::CurrentMemoryContext, pg_sys::CurrentResourceOwner) };
        unsafe {
            pg_sys::BeginInternalSubTransaction(std::ptr::null());
            pg_sys::MemoryContextSwitchTo(context);
        }
        let saved = AssertUnwindSafe((context, owner));
        PgTryBuilder::new(AssertUnwindSafe(|| {
            let result = body();
            unsafe {
                pg_sys::ReleaseCurrentSubTransaction();
                restore(context, owner);
            }
            Ok(result)
        }))
        .catch_others(move |error: CaughtError| {
            let (context, owner) = saved.0;
            unsafe {
                pg_sys::MemoryContextSwitchTo(context);
                pg_sys::RollbackAndReleaseCurrentSubTransaction();
                restore(context, owner);
            }
            let failure = failure_from(&error);
            if failure.sqlstate == CANCELLED {
                error.rethrow();
            }
            Err(failure)
        })
        .execute()
    }

    fn try_lock_schema(&self, schema: &str) -> bool {
        Spi::run_with_args("SELECT mt_internal.lock_schema($1)", &[schema.into()]).unwrap_or_else(|e| error!("{e}"));
        true
    }

    fn unlock_schema(&self, _schema: &str) {
        // A transaction lock: released when the caller's transaction ends.
    }

    fn run_migration_sql(&self, sql: &str, _statement_timeout_ms: i32) {
        // The caller's own statement_timeout covers the whole call.
        Spi::run(sql).unwrap_or_else(|e| error!("{e}"));
    }

    fn pause(&self) -> bool {
        false
    }

    fn cancelled(&self) -> bool {
        false
    }
}

/// The statements of `sql`, split by PostgreSQL's own parser (a syntax error raises).
fn statements(sql: &str) -> Vec<&str> {
    let text = std::ffi::CString::new(sql).unwrap_or_else(|_| error!("multitenant: migration SQL contains a NUL byte"));
    let parsed =
        unsafe { pgrx::list::old_list::PgList::<pg_sys::RawStmt>::from_pg(pg_sys::pg_parse_query(text.as_ptr())) };
    parsed
        .iter_ptr()
        .map(|raw| {
            let (location, length) = unsafe { ((*raw).stmt_location.max(0) as usize, (*raw).stmt_len.max(0) as usize) };
            // A length of 0 means "to the end of the string".
            let end = if length == 0 { sql.len() } else { (location + length).min(sql.len()) };
            &sql[location.min(end)..end]
        })
        .collect()
}

/// Back to the caller's memory context and resource owner, as PL/pgSQL does after a
/// subtransaction.
unsafe fn restore(context: pg_sys::MemoryContext, owner: pg_sys::ResourceOwner) {
    pg_sys::MemoryContextSwitchTo(context);
    pg_sys::CurrentResourceOwner = owner;
}

/// Sleeps up to `ms` on the process latch, waking early when it is set; raises if the
/// backend was asked to cancel or terminate.
pub fn wait_latch(ms: i64) {
    unsafe {
        pg_sys::WaitLatch(
            pg_sys::MyLatch,
            (pg_sys::WL_LATCH_SET | pg_sys::WL_TIMEOUT | pg_sys::WL_EXIT_ON_PM_DEATH) as i32,
            ms as _,
            pg_sys::PG_WAIT_EXTENSION,
        );
        pg_sys::ResetLatch(pg_sys::MyLatch);
        pg_sys::check_for_interrupts!();
    }
}
