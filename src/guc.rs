//! Runtime knobs, settable per session (`SET mt.max_workers = 8`) or in postgresql.conf.

use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting};

/// Background workers `mt.migrate_all` and friends use when `concurrency` is not given.
pub static MAX_WORKERS: GucSetting<i32> = GucSetting::<i32>::new(4);
/// `lock_timeout` for each migration's transaction; 0 waits forever.
pub static LOCK_TIMEOUT_MS: GucSetting<i32> = GucSetting::<i32>::new(0);
/// Whether drift compares column order (off: columns match by table and name only).
pub static DRIFT_COLUMN_ORDER: GucSetting<bool> = GucSetting::<bool>::new(false);
/// `statement_timeout` for each migration statement; 0 means none.
pub static STATEMENT_TIMEOUT_MS: GucSetting<i32> = GucSetting::<i32>::new(0);
/// Lets `DROP EXTENSION multitenant` go ahead while tenants are registered (`sql/guard.sql`
/// reads it).
pub static ALLOW_DROP: GucSetting<bool> = GucSetting::<bool>::new(false);
/// Whether `mt.migrate_all` gives empty tenant schemas a copy of `mt_template`.
pub static PROVISION_FROM_TEMPLATE: GucSetting<bool> = GucSetting::<bool>::new(true);

/// The schema whose DDL the engine has noted for the current transaction (a superuser-only
/// setting, so tenant code cannot claim it; see `mt_internal.note_schema_change`).
pub static DDL_NOTED_SCHEMA: GucSetting<Option<std::ffi::CString>> = GucSetting::<Option<std::ffi::CString>>::new(None);

/// How old the tenants' health in `mt.health_check()` may be, in seconds; 0 computes it on
/// every call.
pub static HEALTH_MAX_AGE_S: GucSetting<i32> = GucSetting::<i32>::new(30);

pub fn init() {
    GucRegistry::define_int_guc(
        c"mt.max_workers",
        c"Background workers a multitenant run uses when no concurrency is given.",
        c"Bounded in practice by max_worker_processes; a run waits for free slots rather than failing.",
        &MAX_WORKERS,
        1,
        256,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"mt.lock_timeout",
        c"lock_timeout applied to every migration transaction (0 = wait forever).",
        c"A migration that cannot get its locks in time fails for that tenant; the run goes on.",
        &LOCK_TIMEOUT_MS,
        0,
        i32::MAX,
        GucContext::Userset,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_bool_guc(
        c"mt.drift_column_order",
        c"Whether drift reports columns in a different order.",
        c"Off by default: columns are matched by table and name, as queries see them.",
        &DRIFT_COLUMN_ORDER,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"mt.allow_drop",
        c"Lets DROP EXTENSION multitenant drop the registry while tenants are registered.",
        c"Off by default: the drop is refused with a hint to back up first. Needed by pg_restore --clean over such a database.",
        &ALLOW_DROP,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"mt.provision_from_template",
        c"Whether mt.migrate_all gives a tenant schema that holds nothing a copy of mt_template.",
        c"On by default. Off replays every migration in each new tenant: for migrations whose rows depend on the tenant (current_schema(), say), which a copy would take from the template.",
        &PROVISION_FROM_TEMPLATE,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"mt.ddl_noted_schema",
        c"Internal: the schema whose DDL the migration engine has noted for drift in this transaction.",
        c"Set by the engine (transaction-local), read by the drift event triggers; superusers only, so that tenant code cannot claim it.",
        &DDL_NOTED_SCHEMA,
        GucContext::Suset,
        GucFlags::NO_SHOW_ALL | GucFlags::NO_RESET_ALL | GucFlags::DISALLOW_IN_FILE,
    );
    GucRegistry::define_int_guc(
        c"mt.health_max_age",
        c"How old the tenants' health that mt.health_check() reports may be (0 = computed on every call).",
        c"The probe answers from the last computation while it is younger, and past half this age has a background worker compute the next one.",
        &HEALTH_MAX_AGE_S,
        0,
        86400,
        GucContext::Userset,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_int_guc(
        c"mt.statement_timeout",
        c"statement_timeout applied to every migration statement (0 = none).",
        c"A migration statement running longer fails for that tenant; the run goes on.",
        &STATEMENT_TIMEOUT_MS,
        0,
        i32::MAX,
        GucContext::Userset,
        GucFlags::UNIT_MS,
    );
}
