//! The client behind a real PgBouncer 1.18 in transaction mode: two application processes at
//! once (`mt-pooler-load`, tests/bin/pooler_load.rs), 64 tasks and 20,000 operations each
//! over 200 tenants, every answer checked. Then no named statement is left on PgBouncer's
//! server connections, committed inserts are all there and rolled-back ones are not. A
//! control run in the mode that is not meant for poolers (named, cached statements) shows
//! that the check catches what goes wrong there.
//!
//! Sizes can be changed with MT_POOLER_TASKS, MT_POOLER_OPS and MT_POOLER_TENANTS.

use std::process::{Command, Output};
use std::time::Instant;

use multitenant_integration::pgbouncer::{PgBouncer, SERVER_POOL_SIZE};
use multitenant_integration::{connect, fresh_database};

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().map(|v| v.parse().expect(name)).unwrap_or(default)
}

/// A database with `tenants` tenants `t1..tN`: `marker(name)` holding the tenant's id and
/// `events(id, who, n)`; and an application role (NOINHERIT, `mt.grant_application_role`).
/// Returns (database, application role).
fn setup(name: &str, tenants: u64) -> (String, String) {
    let url = fresh_database(name);
    let db = url.rsplit('/').next().unwrap().to_string();
    let mut admin = connect(&url);
    // Roles are cluster-wide: drop what an earlier database of the same name left.
    for row in
        admin.query("SELECT rolname::text FROM pg_roles WHERE starts_with(rolname, $1)", &[&format!("{db}_")]).unwrap()
    {
        admin.batch_execute(&format!("DROP ROLE \"{}\"", row.get::<_, String>(0))).unwrap();
    }
    admin
        .batch_execute(
            "SELECT mt.add_migration('0001_tables', \
               'CREATE TABLE marker (name text); INSERT INTO marker SELECT substr(current_schema(), 8); \
                CREATE TABLE events (id bigserial PRIMARY KEY, who text NOT NULL, n int NOT NULL)')",
        )
        .unwrap();
    admin
        .execute(
            "SELECT count(*) FROM (SELECT mt.create_tenant('t' || g, migrate => false) FROM generate_series(1, $1) g) s",
            &[&(tenants as i32)],
        )
        .unwrap();
    // Each tenant's marker row names its own schema: a copy of the template would name the
    // template's, so every migration is applied in every tenant.
    admin.batch_execute("SET mt.provision_from_template = off").unwrap();
    admin.query("SELECT * FROM mt.migrate_all()", &[]).unwrap();
    let app = format!("{db}_app");
    admin.batch_execute(&format!("CREATE ROLE {app} LOGIN NOINHERIT")).unwrap();
    admin.execute("SELECT mt.grant_application_role($1)", &[&app]).unwrap();
    let migrated: i64 = admin
        .query_one("SELECT count(*) FROM pg_tables WHERE tablename = 'events' AND schemaname LIKE 'tenant\\_t%'", &[])
        .unwrap()
        .get(0);
    assert_eq!(migrated as u64, tenants);
    (db, app)
}

#[derive(Debug, Default)]
struct Figures {
    ops: u64,
    errors: u64,
    wrong: u64,
    leaks: u64,
    inserts: u64,
    elapsed_ms: u64,
}

fn figures(output: &Output) -> Figures {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "mt-pooler-load failed: {stdout}\n{stderr}");
    let line = stdout.lines().find(|l| l.starts_with("RESULT ")).unwrap_or_else(|| panic!("{stdout}\n{stderr}"));
    let mut figures = Figures::default();
    for pair in line["RESULT ".len()..].split_whitespace() {
        let (key, value) = pair.split_once('=').unwrap();
        let value: u64 = value.parse().unwrap();
        match key {
            "ops" => figures.ops = value,
            "errors" => figures.errors = value,
            "wrong" => figures.wrong = value,
            "leaks" => figures.leaks = value,
            "inserts" => figures.inserts = value,
            "elapsed_ms" => figures.elapsed_ms = value,
            _ => {}
        }
    }
    if !stderr.is_empty() {
        eprintln!("{stderr}");
    }
    figures
}

/// Runs one `mt-pooler-load` process per (driver, mode), all at once; returns their figures.
fn load(url: &str, runs: &[(&str, &str)], tasks: u64, ops: u64, tenants: u64) -> Vec<Figures> {
    let children: Vec<_> = runs
        .iter()
        .enumerate()
        .map(|(i, (driver, mode))| {
            Command::new(env!("CARGO_BIN_EXE_mt-pooler-load"))
                .args([url, driver, mode, &tasks.to_string(), &ops.to_string(), &tenants.to_string()])
                .arg((i as u64 + 1).to_string())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("mt-pooler-load")
        })
        .collect();
    children.into_iter().map(|c| figures(&c.wait_with_output().unwrap())).collect()
}

/// Committed inserts, and rows of checkouts dropped without commit, over all tenants.
fn events(url: &str, tenants: u64) -> (i64, i64) {
    let mut admin = connect(url);
    let union: Vec<String> = (1..=tenants).map(|n| format!("SELECT who FROM tenant_t{n}.events")).collect::<Vec<_>>();
    let row = admin
        .query_one(
            &format!(
                "SELECT count(*) FILTER (WHERE who <> 'rolledback'), count(*) FILTER (WHERE who = 'rolledback') FROM ({}) e",
                union.join(" UNION ALL ")
            ),
            &[],
        )
        .unwrap();
    (row.get(0), row.get(1))
}

fn check_runs(what: &str, runs: &[(&str, &str)], results: &[Figures], ops: u64) {
    for ((driver, mode), f) in runs.iter().zip(results) {
        println!(
            "{what} {driver}/{mode}: {} operations, {} errors, {} wrong statements, {} leaks, {} ms ({:.0} ops/s)",
            f.ops,
            f.errors,
            f.wrong,
            f.leaks,
            f.elapsed_ms,
            f.ops as f64 * 1000.0 / f.elapsed_ms.max(1) as f64
        );
        assert_eq!(f.ops, ops, "{driver}/{mode}");
        assert_eq!((f.errors, f.wrong, f.leaks), (0, 0, 0), "{driver}/{mode}: errors, wrong statements, leaks");
    }
}

#[test]
fn two_processes_behind_pgbouncer_in_transaction_mode() {
    let (tasks, ops, tenants) =
        (setting("MT_POOLER_TASKS", 64), setting("MT_POOLER_OPS", 20_000), setting("MT_POOLER_TENANTS", 200));
    let started = Instant::now();
    let (db, app) = setup("pgbouncer", tenants);
    let direct = format!("{}/{db}", multitenant_integration::base_url());
    println!("setup: {tenants} tenants in {} ms", started.elapsed().as_millis());
    let bouncer = PgBouncer::start(&["postgres", &app]);
    let url = bouncer.url(&app, &db);

    // The pooler mode, shared pool and pool per tenant, two processes at once.
    let runs = [("tokio-postgres", "shared"), ("tokio-postgres", "per-tenant")];
    let results = load(&url, &runs, tasks, ops, tenants);
    check_runs("tokio-postgres", &runs, &results, ops);
    let (servers, leftover) = bouncer.leftover_statements(&app, &db);
    println!("after tokio-postgres: {leftover} named statements on {servers} server connections");
    assert_eq!(servers, SERVER_POOL_SIZE, "every server connection was looked at");
    assert_eq!(leftover, 0, "no named statement left on PgBouncer's server connections");
    let (committed, rolled_back) = events(&direct, tenants);
    assert_eq!(committed as u64, results.iter().map(|f| f.inserts).sum::<u64>(), "every committed insert is there");
    assert_eq!(rolled_back, 0, "checkouts dropped without commit rolled back");

    // sqlx: two processes at once, statements unnamed, checkouts switched in their BEGIN.
    let runs = [("sqlx", "shared"), ("sqlx", "shared")];
    let sqlx_results = load(&url, &runs, tasks, ops, tenants);
    check_runs("sqlx", &runs, &sqlx_results, ops);
    let (servers, leftover) = bouncer.leftover_statements(&app, &db);
    println!("after sqlx: {leftover} named statements on {servers} server connections");
    assert_eq!(leftover, 0, "no named statement left on PgBouncer's server connections");
    let (committed_now, rolled_back) = events(&direct, tenants);
    assert_eq!(
        (committed_now - committed) as u64,
        sqlx_results.iter().map(|f| f.inserts).sum::<u64>(),
        "every committed insert is there"
    );
    assert_eq!(rolled_back, 0, "checkouts dropped without commit rolled back");

    // Control: named, cached statements (the default, for direct connections) are not for
    // transaction poolers, and the same load shows it.
    let control_ops = (ops / 10).max(1000);
    let control = load(&url, &[("tokio-postgres", "prepared")], tasks, control_ops, tenants);
    let c = &control[0];
    println!(
        "control tokio-postgres/prepared: {} operations, {} errors, {} wrong statements, {} leaks",
        c.ops, c.errors, c.wrong, c.leaks
    );
    assert!(c.errors + c.wrong > 0, "named statements behind a transaction pooler fail, and the test sees it");
    drop(bouncer);
    println!("total {} ms", started.elapsed().as_millis());
}
