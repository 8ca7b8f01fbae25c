//! The health check's background refresh: `mt.health_check` answers from a snapshot
//! (`sql/health.sql`) and, once it is half as old as `mt.health_max_age`, asks for the next
//! one here, so that the probe itself never waits for a computation over every tenant.

use pgrx::prelude::*;

/// `backend_type` of the refreshing worker in `pg_stat_activity`.
const WORKER_TYPE: &str = "multitenant health";

/// `mt_internal.health_max_age()`: `mt.health_max_age` in seconds (read here so that the
/// setting exists, with its default, before any library function has run in the session).
#[pg_extern(stable, schema = "mt_internal")]
#[search_path(pg_catalog, pg_temp)]
fn health_max_age() -> i32 {
    crate::guc::HEALTH_MAX_AGE_S.get()
}

/// `mt_internal.request_health_refresh()`: starts a background worker that recomputes the
/// health snapshot of this database, as the current user (`mt.health_check` is security
/// definer: the extension owner), unless one is at work here already. Returns whether one
/// was started; without a free worker slot the next probe past `mt.health_max_age` computes
/// the health itself.
#[pg_extern(volatile, schema = "mt_internal")]
#[search_path(pg_catalog, pg_temp)]
fn request_health_refresh() -> bool {
    let busy = Spi::get_one_with_args::<bool>(
        "SELECT EXISTS (SELECT FROM pg_catalog.pg_stat_activity a \
                         WHERE a.backend_type OPERATOR(pg_catalog.=) $1 \
                           AND a.datname OPERATOR(pg_catalog.=) pg_catalog.current_database())",
        &[WORKER_TYPE.into()],
    )
    .unwrap_or_else(|e| error!("{e}"));
    if busy == Some(true) {
        return false;
    }
    let (database, role) = unsafe { (pg_sys::MyDatabaseId, pg_sys::GetUserId()) };
    let argument = (u64::from(database.to_u32()) << 32) | u64::from(role.to_u32());
    crate::workers::builder("multitenant health refresh", WORKER_TYPE, "mt_health_worker")
        .set_argument(Some(pg_sys::Datum::from(argument)))
        .load_dynamic()
        .is_ok()
}

/// Entry point of the refreshing worker; the argument is (database oid << 32 | role oid).
#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn mt_health_worker(argument: pg_sys::Datum) {
    crate::workers::unblock_signals();
    let value = argument.value() as u64;
    let database = pg_sys::Oid::from((value >> 32) as u32);
    let role = pg_sys::Oid::from(value as u32);
    crate::parallel::run_derived(
        database,
        role,
        "SELECT mt_internal.refresh_health()",
        "cannot refresh the health snapshot",
    );
}
