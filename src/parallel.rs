//! Statements run side by side in background workers, for work that splits by schema (a full
//! drift refresh of a big fleet): each worker runs one statement in a transaction of its own,
//! as the caller's current user, in the caller's database, while the caller waits. The caller
//! finds out what was done from what the statements wrote, and does in-process whatever a
//! worker did not (no free worker slot, an error).

use std::cell::RefCell;
use std::panic::AssertUnwindSafe;

use pgrx::bgworkers::{BackgroundWorker, DynamicBackgroundWorker};
use pgrx::pg_sys::panic::CaughtError;
use pgrx::prelude::*;

/// `backend_type` of these workers in `pg_stat_activity`.
const WORKER_TYPE: &str = "multitenant parallel";
const MAGIC: u32 = 0x4d54_5053; // "MTPS"

/// The shared segment: this header, `count` (offset, length) pairs, then the statements' text.
#[repr(C)]
struct Header {
    magic: u32,
    count: u32,
    database: pg_sys::Oid,
    role: pg_sys::Oid,
}

/// `mt_internal.run_in_workers(statements text[])`: runs every statement in a background
/// worker of its own, up to `mt.max_workers` at a time, and waits until they have ended.
/// Returns how many statements were given a worker (the rest, when no slot was free). A
/// statement that fails only logs its error (in the server log): callers check what was
/// written. Internal: callers must not have written anything in their transaction (the
/// workers would wait for its row locks while it waits for them).
#[pg_extern(volatile, schema = "mt_internal")]
#[search_path(pg_catalog, pg_temp)]
fn run_in_workers(statements: Vec<String>) -> i32 {
    if statements.is_empty() {
        return 0;
    }
    let pairs = std::mem::size_of::<Header>() + statements.len() * 2 * std::mem::size_of::<u32>();
    let size = pairs + statements.iter().map(String::len).sum::<usize>();
    let segment = unsafe { pg_sys::dsm_create(size, 0) };
    unsafe {
        let base = pg_sys::dsm_segment_address(segment) as *mut u8;
        base.cast::<Header>().write(Header {
            magic: MAGIC,
            count: statements.len() as u32,
            database: pg_sys::MyDatabaseId,
            role: pg_sys::GetUserId(),
        });
        let table = base.add(std::mem::size_of::<Header>()).cast::<u32>();
        let mut offset = pairs;
        for (index, statement) in statements.iter().enumerate() {
            table.add(2 * index).write(offset as u32);
            table.add(2 * index + 1).write(statement.len() as u32);
            std::ptr::copy_nonoverlapping(statement.as_ptr(), base.add(offset), statement.len());
            offset += statement.len();
        }
    }
    let handle = unsafe { pg_sys::dsm_segment_handle(segment) };
    let concurrency = crate::guc::MAX_WORKERS.get().max(1) as usize;
    let running: RefCell<Vec<DynamicBackgroundWorker>> = RefCell::new(Vec::new());
    let mut started = 0;
    let shared = AssertUnwindSafe(&running);
    PgTryBuilder::new(AssertUnwindSafe(|| {
        loop {
            crate::workers::forget_stopped(&mut running.borrow_mut());
            while started < statements.len() && running.borrow().len() < concurrency {
                match start_worker(handle, started) {
                    Some(worker) => running.borrow_mut().push(worker),
                    None => break, // no free slot: the caller does the rest itself
                }
                started += 1;
            }
            // Nothing running: all done, or no slot even with none of ours in the way.
            if running.borrow().is_empty() {
                break;
            }
            crate::txn::wait_latch(10);
        }
    }))
    .catch_others(|error: CaughtError| {
        // Cancelled: the workers stop too (what they committed stays: each batch is whole).
        crate::workers::stop(shared.take());
        error.rethrow()
    })
    .execute();
    unsafe { pg_sys::dsm_detach(segment) };
    started as i32
}

fn start_worker(handle: pg_sys::dsm_handle, index: usize) -> Option<DynamicBackgroundWorker> {
    crate::workers::builder(&format!("multitenant parallel statement {index}"), WORKER_TYPE, "mt_statement_worker")
        .set_argument(Some(pg_sys::Datum::from(handle)))
        .set_extra(&index.to_string())
        .set_notify_pid(unsafe { pg_sys::MyProcPid })
        .load_dynamic()
        .ok()
}

/// Entry point of a parallel statement's worker: the argument is the segment's handle, the
/// extra the statement's index.
#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn mt_statement_worker(argument: pg_sys::Datum) {
    crate::workers::unblock_signals();
    let index: usize = BackgroundWorker::get_extra().parse().unwrap_or(usize::MAX);
    let segment = unsafe { pg_sys::dsm_attach(argument.value() as pg_sys::dsm_handle) };
    if segment.is_null() {
        return; // the caller has gone already
    }
    let (header, statement) = unsafe {
        let base = pg_sys::dsm_segment_address(segment) as *const u8;
        let header = base.cast::<Header>().read();
        if header.magic != MAGIC || index >= header.count as usize {
            return;
        }
        let table = base.add(std::mem::size_of::<Header>()).cast::<u32>();
        let (offset, length) = (table.add(2 * index).read() as usize, table.add(2 * index + 1).read() as usize);
        let text = std::slice::from_raw_parts(base.add(offset), length);
        (header, String::from_utf8_lossy(text).into_owned())
    };
    run_derived(header.database, header.role, &statement, "a parallel statement failed");
}

/// What a worker computing derived state (drift, health) does: connects as `role`, then runs
/// `sql` in one transaction that commits without waiting for the disk (a crash only loses a
/// recomputation), names looked up in `pg_catalog` only; an error ends the worker, logged
/// after `context`.
pub(crate) fn run_derived(database: pg_sys::Oid, role: pg_sys::Oid, sql: &str, context: &str) {
    BackgroundWorker::connect_worker_to_spi_by_oid(Some(database), Some(role));
    BackgroundWorker::transaction(|| {
        Spi::run(
            "SELECT pg_catalog.set_config('synchronous_commit', 'off', true), \
                    pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true)",
        )
        .and_then(|_| Spi::run(sql))
        .unwrap_or_else(|e| error!("multitenant: {context}: {e}"));
    });
}
