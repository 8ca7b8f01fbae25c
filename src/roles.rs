//! Running tenant code as the tenant's role.
//!
//! Everything a tenant can influence (migration and seed SQL, clone DDL and row copies,
//! anonymize expressions) runs under [`run_as`], which switches the user id the way a
//! SECURITY DEFINER function does; the engine's own bookkeeping runs as the trusted owner
//! with [`BOOKKEEPING_PATH`]. Which role that is for a schema is decided in SQL
//! (`mt_internal.code_role`, `sql/roles.sql`), so the PL/pgSQL and Rust paths agree.

use std::sync::atomic::{AtomicU32, Ordering};

use pgrx::pg_sys;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;

/// The search_path of the extension's own statements: nothing a tenant, the database owner
/// or `public` can create is looked up through it.
pub const BOOKKEEPING_PATH: &str = "pg_catalog, pg_temp";

/// The role that started the work, when it is not this backend's outer user: background
/// workers connect as the extension owner on behalf of the caller of `mt.migrate_all`.
static CALLER: AtomicU32 = AtomicU32::new(0);

/// Records, in a background worker, who the launcher's caller was.
pub fn set_caller(role: pg_sys::Oid) {
    CALLER.store(role.to_u32(), Ordering::Relaxed);
}

/// Who asked for the work: the launcher's caller in a worker, else the session's current
/// role outside any SECURITY DEFINER function.
pub fn caller() -> pg_sys::Oid {
    match CALLER.load(Ordering::Relaxed) {
        0 => unsafe { pg_sys::GetOuterUserId() },
        role => pg_sys::Oid::from(role),
    }
}

/// Sets `search_path` for the rest of the current transaction (or GUC nest level).
pub fn set_search_path(path: &str) {
    Spi::run_with_args("SELECT pg_catalog.set_config('search_path', $1, true)", &[path.into()])
        .unwrap_or_else(|e| error!("multitenant: cannot set search_path: {e}"));
}

/// The role that code touching `schema` runs as (see `mt_internal.code_role`).
pub fn code_role(schema: &str) -> pg_sys::Oid {
    Spi::get_one_with_args::<pg_sys::Oid>("SELECT mt_internal.code_role($1)", &[schema.into()])
        .unwrap_or_else(|e| error!("{e}"))
        .unwrap_or_else(|| error!("multitenant: schema \"{schema}\" has no role to run as"))
}

/// Runs `body` as `role` with `search_path`, the way PostgreSQL runs an index expression
/// during a maintenance command: the code cannot `SET ROLE` its way back
/// (SECURITY_LOCAL_USERID_CHANGE), cannot leave temporary objects behind for later code of
/// the session to find (SECURITY_RESTRICTED_OPERATION), and every setting it changes, with
/// `SET` or `SET LOCAL`, is undone afterwards. When `body` raises, the abort of the enclosing
/// (sub)transaction restores all of it, as it does for SECURITY DEFINER functions.
///
/// A superuser role is refused unless the caller is a superuser too: tenant code never runs
/// with more privilege than whoever asked for it.
pub fn run_as<R>(role: pg_sys::Oid, search_path: &str, body: impl FnOnce() -> R) -> R {
    if unsafe { pg_sys::superuser_arg(role) && !pg_sys::superuser_arg(caller()) } {
        ErrorReport::new(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("tenant code would run as the superuser {}", role_name(role)),
            function_name!(),
        )
        .set_detail("Only a superuser may have code run as a superuser; tenant code runs as the role of its schema.")
        .set_hint("Give the tenant a role of its own (mt.assign_tenant_roles), or set shared_role to a role that is not a superuser.")
        .report(PgLogLevel::ERROR);
    }
    let (mut user, mut context) = (pg_sys::InvalidOid, 0);
    unsafe { pg_sys::GetUserIdAndSecContext(&mut user, &mut context) };
    let nest_level = unsafe { pg_sys::NewGUCNestLevel() };
    set_search_path(search_path);
    let restricted = (pg_sys::SECURITY_LOCAL_USERID_CHANGE | pg_sys::SECURITY_RESTRICTED_OPERATION) as i32;
    unsafe { pg_sys::SetUserIdAndSecContext(role, context | restricted) };
    let result = body();
    unsafe {
        pg_sys::SetUserIdAndSecContext(user, context);
        // false: undo plain SETs too, not only SET LOCAL (as index builds do).
        pg_sys::AtEOXact_GUC(false, nest_level);
    }
    result
}

fn role_name(role: pg_sys::Oid) -> String {
    let name = unsafe { pg_sys::GetUserNameFromId(role, true) };
    if name.is_null() {
        return role.to_u32().to_string();
    }
    unsafe { std::ffi::CStr::from_ptr(name) }.to_string_lossy().into_owned()
}

/// The search_path tenant code of `schema` runs with: its own schema, the shared schema,
/// `public`, and the temporary schema last (never first, so that temporary tables another
/// tenant's code left in a worker's session cannot shadow this tenant's tables).
pub fn tenant_path(schema: &str, shared_schema: &str) -> String {
    let mut path: Vec<String> = Vec::new();
    for name in [schema, shared_schema, "public"] {
        let quoted = multitenant_core::tracking::quote_identifier(name);
        if !path.contains(&quoted) {
            path.push(quoted);
        }
    }
    path.push("pg_temp".into());
    path.join(", ")
}

/// `mt_internal.execute_as(role, search_path, statements)` (internal): runs SQL as a role, for the
/// PL/pgSQL parts of the extension (seeds, clones, template copies), which cannot switch
/// roles themselves inside a SECURITY DEFINER function.
#[pg_extern(volatile, schema = "mt_internal", requires = ["roles"])]
#[search_path(pg_catalog, pg_temp)]
fn execute_as(role: pg_sys::Oid, search_path: &str, statements: &str) -> i64 {
    run_as(role, search_path, || {
        Spi::connect_mut(|client| client.update(statements, None, &[]).map(|table| table.len() as i64))
            .unwrap_or_else(|e| error!("{e}"))
    })
}
