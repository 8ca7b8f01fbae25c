//! Fault injection against a real cluster: a worker killed with SIGKILL, an immediate
//! shutdown, the caller and a worker terminated or cancelled mid-run, three concurrent runs
//! while tenants are created and dropped, a dropped or emptied tracking table, tracking rows
//! inserted and deleted by hand.
//!
//! After each fault the same three things must hold:
//! - in every tenant (and `mt_template`), each registered migration's objects exist if and
//!   only if its tracking row does, and if and only if its ledger row
//!   (`mt.tracking_records`) does; no migration was applied twice;
//! - no run is left `running`: `mt.run_progress` and `mt.metrics()` show a run whose caller
//!   died as `abandoned` at once, and `mt.close_abandoned_runs()` (which every run calls
//!   first) closes it with its unfinished tenants;
//! - a rerun of `mt.migrate_all()` completes (after `mt.repair_tracking` where records were
//!   lost).
//!
//! Each migration creates a table `t<n>` and logs itself into `public.applied_log`, in its own
//! transaction, so its effects are visible and a replay shows up as a second log row. Faults
//! land while a worker sleeps inside a slow migration of tenant `f1` (`pg_sleep`, seen in
//! `pg_stat_activity`), so they hit a migration in progress, never a guess at a timing.
//!
//! The tests crash, stop and start the cluster of `MT_TEST_URL` (with `pg_ctl`, as the
//! `postgres` OS user), so that cluster must run on this machine, as `scripts/integration.sh`
//! starts it. Every test leaves it running.

use std::collections::{HashMap, HashSet};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use multitenant_integration::{base_url, connect, create_tenants, fresh_database, replay_migrations, Client, NoTls};
use postgres::Row;

/// How long each migration sleeps, except the slow one.
const SLEEP_MS: u64 = 150;
/// The migration that is slow in tenant `f1`, and how slow: the window faults land in.
const SLOW_MIGRATION: i32 = 2;
const SLOW_MS: u64 = 2000;
const SLOW_TENANT_SCHEMA: &str = "tenant_f1";

fn migration_name(n: i32) -> String {
    format!("{n:04}_t{n}")
}

/// The table migration `name` creates (`0003_t3` creates `t3`).
fn table_of(name: &str) -> &str {
    name.split_once('_').map_or(name, |(_, table)| table)
}

// ---------------------------------------------------------------------------------------
// Setting up

/// A fresh database with `tenants` tenants (`f1`, `f2`, …, not migrated), `migrations`
/// registered migrations that sleep `sleep_ms` each (the slow one longer in `f1` when
/// `slow`), and the shared log they write to.
fn setup(name: &str, tenants: i32, migrations: i32, sleep_ms: u64, slow: bool) -> (String, Client) {
    let url = fresh_database(name);
    let mut client = connect(&url);
    client
        .batch_execute(
            "CREATE TABLE public.applied_log (schema_name text NOT NULL, migration text NOT NULL, \
                                              at timestamptz NOT NULL DEFAULT clock_timestamp()); \
             GRANT INSERT ON public.applied_log TO mt_tenant",
        )
        .unwrap();
    add_migrations(&mut client, 0..migrations, sleep_ms, slow);
    create_tenants(&mut client, "f", tenants);
    replay_migrations(&mut client);
    (url, client)
}

/// Registers migrations `range`: each creates its table, logs itself, then sleeps, so a
/// fault during the sleep finds the table created and the log row written, uncommitted.
fn add_migrations(client: &mut Client, range: std::ops::Range<i32>, sleep_ms: u64, slow: bool) {
    for n in range {
        let name = migration_name(n);
        let seconds = sleep_ms as f64 / 1000.0;
        let sleep = if slow && n == SLOW_MIGRATION {
            format!(
                "CASE WHEN current_schema() = '{SLOW_TENANT_SCHEMA}' THEN {} ELSE {seconds} END",
                SLOW_MS as f64 / 1000.0
            )
        } else {
            seconds.to_string()
        };
        let sql = format!(
            "CREATE TABLE t{n} (id int); \
             INSERT INTO public.applied_log (schema_name, migration) VALUES (current_schema(), '{name}'); \
             SELECT pg_sleep({sleep});"
        );
        client.execute("SELECT mt.add_migration($1, $2)", &[&name, &sql]).unwrap();
    }
}

fn scalar<T: for<'a> postgres::types::FromSql<'a>>(client: &mut Client, sql: &str) -> T {
    client.query_one(sql, &[]).unwrap_or_else(|e| panic!("{sql}: {e}")).get(0)
}

/// Migrations applied to tenants so far, by the log.
fn logged(client: &mut Client) -> i64 {
    scalar(client, "SELECT count(*) FROM public.applied_log WHERE schema_name LIKE 'tenant%'")
}

/// Polls `probe` every 20 ms until it yields something; gives up after a minute (a bound
/// on liveness, not a timing under test).
fn wait_for<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(found) = probe() {
            return found;
        }
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------------------
// Runs in the background, and where they are

/// A call running on its own connection in another thread.
struct Caller {
    pid: i32,
    handle: JoinHandle<(Client, Result<Vec<Row>, postgres::Error>)>,
}

impl Caller {
    fn start(url: &str, sql: &'static str) -> Caller {
        let url = url.to_string();
        let (tx, rx) = mpsc::channel();
        let handle = thread::spawn(move || {
            let mut caller = connect(&url);
            let pid: i32 = caller.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
            tx.send(pid).unwrap();
            let result = caller.query(sql, &[]);
            (caller, result)
        });
        Caller { pid: rx.recv().expect("the caller connected"), handle }
    }

    /// The call's result; its session is closed.
    fn finish(self) -> Result<Vec<Row>, postgres::Error> {
        self.finish_and_stay().1
    }

    /// The call's result, and its session, still open (as a pooled connection would be).
    fn finish_and_stay(self) -> (Client, Result<Vec<Row>, postgres::Error>) {
        self.handle.join().expect("the caller thread panicked")
    }
}

/// Waits until some migration has committed and a worker sleeps inside the slow migration
/// of tenant f1; returns that worker's pid.
fn worker_in_slow_migration(client: &mut Client) -> i32 {
    let activity = format!("multitenant: migrate {SLOW_TENANT_SCHEMA} {}", migration_name(SLOW_MIGRATION));
    wait_for("a worker inside the slow migration", || {
        client
            .query_opt(
                "SELECT pid FROM pg_stat_activity \
                  WHERE backend_type = 'multitenant worker' AND datname = current_database() \
                    AND query = $1 AND wait_event = 'PgSleep' \
                    AND EXISTS (SELECT FROM public.applied_log WHERE schema_name LIKE 'tenant%')",
                &[&activity],
            )
            .unwrap()
            .map(|row| row.get(0))
    })
}

fn workers_of_this_database(client: &mut Client) -> i64 {
    scalar(
        client,
        "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'multitenant worker' AND datname = current_database()",
    )
}

fn latest_run(client: &mut Client) -> i64 {
    scalar(client, "SELECT max(run_id) FROM mt.runs")
}

fn run_status(client: &mut Client, run_id: i64) -> (String, String) {
    let row = client
        .query_one(
            "SELECT r.status, p.status FROM mt.runs r JOIN mt.run_progress p USING (run_id) WHERE run_id = $1",
            &[&run_id],
        )
        .unwrap();
    (row.get(0), row.get(1))
}

fn sqlstate(error: &postgres::Error) -> Option<&str> {
    error.code().map(|c| c.code())
}

// ---------------------------------------------------------------------------------------
// The cluster

fn pg_tool(tool: &str) -> String {
    format!("{}/{tool}", std::env::var("PG_BIN").unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".to_string()))
}

/// `program` run as the `postgres` OS user (PostgreSQL refuses to run as root), without
/// the variables that would make pgrx append Rust backtraces to error details.
fn as_postgres(program: &str) -> Command {
    let me = Command::new("id").arg("-un").output().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    let mut command = if me.is_ok_and(|me| me == "postgres") {
        Command::new(program)
    } else {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--", program]);
        command
    };
    command.env_remove("RUST_BACKTRACE").env_remove("RUST_LIB_BACKTRACE").stdin(Stdio::null());
    command
}

fn pg_ctl(data_dir: &str, args: &[&str]) -> std::process::Output {
    as_postgres(&pg_tool("pg_ctl")).arg("-D").arg(data_dir).args(args).output().expect("run pg_ctl")
}

fn data_directory(client: &mut Client) -> String {
    scalar(client, "SELECT current_setting('data_directory')")
}

fn cluster_accepts_connections() -> bool {
    Client::connect(&format!("{}/postgres", base_url()), NoTls)
        .ok()
        .and_then(|mut client| client.simple_query("SELECT 1").ok())
        .is_some()
}

fn wait_for_cluster() {
    wait_for("the cluster to accept connections", || cluster_accepts_connections().then_some(()));
}

fn start_cluster(data_dir: &str) {
    // PostgreSQL refuses to start on a data directory that others may read.
    std::fs::set_permissions(data_dir, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let log = format!("{data_dir}/server.log");
    let started = pg_ctl(data_dir, &["-l", &log, "-w", "-t", "60", "start"]);
    assert!(started.status.success(), "pg_ctl start: {}", String::from_utf8_lossy(&started.stderr));
    wait_for_cluster();
}

fn stop_immediately(data_dir: &str) {
    let stopped = pg_ctl(data_dir, &["-m", "immediate", "-w", "stop"]);
    assert!(stopped.status.success(), "pg_ctl stop: {}", String::from_utf8_lossy(&stopped.stderr));
}

fn kill_9(pid: i32) {
    let killed = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
    if !killed.is_ok_and(|s| s.success()) {
        let status = as_postgres("kill").args(["-KILL", &pid.to_string()]).status().expect("run kill");
        assert!(status.success(), "kill -KILL {pid}");
    }
}

/// Makes everything committed so far durable (the test cluster runs with
/// `synchronous_commit = off`, whose last commits a crash may take back), so the test
/// knows which run a crash interrupts.
fn flush_wal(client: &mut Client) {
    client.batch_execute("SET synchronous_commit = on; SELECT pg_current_xact_id()").unwrap();
}

/// Leaves the cluster running however a test ends: other test files run after this one.
struct KeepClusterRunning(String);

impl Drop for KeepClusterRunning {
    fn drop(&mut self) {
        let running = pg_ctl(&self.0, &["status"]).status.success();
        if !running {
            let log = format!("{}/server.log", self.0);
            let _ = pg_ctl(&self.0, &["-l", &log, "-w", "-t", "60", "start"]);
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while !cluster_accepts_connections() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(50));
        }
    }
}

// ---------------------------------------------------------------------------------------
// The invariants

/// What breaks "a migration's objects exist if and only if its tracking row and its ledger
/// row do" in any tenant (or in `mt_template`, which has no ledger), what was applied twice,
/// and ledger rows of tenants that do not exist.
fn inconsistencies(client: &mut Client) -> Vec<String> {
    let tracking_table: String = scalar(client, "SELECT mt.get_config('tracking_table')");
    let migrations: Vec<String> = client
        .query("SELECT name FROM mt.migrations WHERE scope = 'tenant' ORDER BY idx", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut schemas: Vec<(Option<String>, String)> = client
        .query("SELECT tenant_id, schema_name FROM mt.tenants ORDER BY tenant_id", &[])
        .unwrap()
        .iter()
        .map(|r| (Some(r.get(0)), r.get(1)))
        .collect();
    if scalar::<bool>(client, "SELECT EXISTS (SELECT FROM pg_namespace WHERE nspname = 'mt_template')") {
        schemas.push((None, "mt_template".to_string()));
    }

    let mut problems = Vec::new();
    for (tenant, schema) in &schemas {
        let names = |rows: Vec<Row>| rows.iter().map(|r| r.get::<_, String>(0)).collect::<HashSet<String>>();
        let tables = names(
            client
                .query(
                    "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                      WHERE n.nspname = $1 AND c.relkind = 'r'",
                    &[schema],
                )
                .unwrap(),
        );
        let tracking_exists = tables.contains(&tracking_table);
        let tracked = if tracking_exists {
            names(client.query(&format!("SELECT name::text FROM \"{schema}\".\"{tracking_table}\""), &[]).unwrap())
        } else {
            HashSet::new()
        };
        // The template has no ledger.
        let ledger = tenant.as_ref().map(|tenant| {
            names(
                client
                    .query("SELECT name FROM mt.tracking_records WHERE tenant_id = $1 AND name IS NOT NULL", &[tenant])
                    .unwrap(),
            )
        });
        let log: HashMap<String, i64> = client
            .query("SELECT migration, count(*) FROM public.applied_log WHERE schema_name = $1 GROUP BY 1", &[schema])
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        for name in &migrations {
            let objects = tables.contains(table_of(name));
            let tracking_row = tracked.contains(name);
            let ledger_row = ledger.as_ref().map_or(tracking_row, |l| l.contains(name));
            if !(objects == tracking_row && tracking_row == ledger_row) {
                problems.push(format!(
                    "{schema}: migration {name}: objects {objects}, tracking row {tracking_row}{}, ledger row {ledger_row}",
                    if tracking_exists { "" } else { " (no tracking table)" }
                ));
            }
            match log.get(name) {
                Some(&times) if times > 1 => {
                    problems.push(format!("{schema}: migration {name} was applied {times} times"))
                }
                Some(_) if !objects => {
                    problems.push(format!("{schema}: migration {name} ran, but its objects are gone"))
                }
                _ => {}
            }
        }
    }
    for row in client
        .query(
            "SELECT DISTINCT r.tenant_id FROM mt.tracking_records r \
              WHERE NOT EXISTS (SELECT FROM mt.tenants t WHERE t.tenant_id = r.tenant_id)",
            &[],
        )
        .unwrap()
    {
        problems
            .push(format!("the ledger holds records of tenant {:?}, which does not exist", row.get::<_, String>(0)));
    }
    problems
}

fn assert_consistent(client: &mut Client) {
    let problems = inconsistencies(client);
    assert!(problems.is_empty(), "objects, tracking rows and ledger rows disagree:\n  {}", problems.join("\n  "));
}

/// No migration was applied twice (tracking tables may be broken on purpose meanwhile).
fn assert_nothing_replayed(client: &mut Client) {
    let replayed: Vec<String> = client
        .query(
            "SELECT format('%s %s: %s times', schema_name, migration, count(*)) FROM public.applied_log \
              GROUP BY schema_name, migration HAVING count(*) > 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(replayed.is_empty(), "migrations applied twice: {replayed:?}");
}

/// Sum of `multitenant_runs_total` samples with `status="…"`.
fn runs_in_metrics(client: &mut Client, status: &str) -> i64 {
    let metrics: String = scalar(client, "SELECT mt.metrics()");
    let label = format!("status=\"{status}\"");
    metrics
        .lines()
        .filter(|l| l.starts_with("multitenant_runs_total{") && l.contains(&label))
        .map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<i64>().ok()).unwrap_or(0))
        .sum()
}

/// No run is, or is shown as, running; every tenant row of every run is finished.
fn assert_no_run_running(client: &mut Client) {
    let shown: Vec<String> = client
        .query("SELECT format('run %s (%s)', run_id, operation) FROM mt.run_progress WHERE status = 'running'", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(shown.is_empty(), "mt.run_progress shows runs as running: {shown:?}");
    assert_eq!(runs_in_metrics(client, "running"), 0, "mt.metrics() counts running runs");
    let recorded: Vec<String> = client
        .query(
            "SELECT format('run %s (%s, launcher %s)', run_id, operation, launcher_pid) FROM mt.runs WHERE status = 'running'",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(recorded.is_empty(), "mt.runs still records runs as running: {recorded:?}");
    let unfinished: Vec<String> = client
        .query(
            "SELECT format('run %s tenant %s: %s', run_id, tenant_id, status) FROM mt.run_tenants \
              WHERE finished_at IS NULL OR status = 'running'",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(unfinished.is_empty(), "mt.run_tenants rows left unfinished: {unfinished:?}");
}

/// Run `run_id` lost its caller and nobody closed it yet: it is shown as abandoned at once.
fn assert_shown_abandoned(client: &mut Client, run_id: i64) {
    assert_eq!(
        run_status(client, run_id),
        ("running".to_string(), "abandoned".to_string()),
        "run {run_id}: (mt.runs, mt.run_progress)"
    );
    assert_eq!(runs_in_metrics(client, "running"), 0, "mt.metrics() counts a dead run as running");
    assert!(runs_in_metrics(client, "abandoned") >= 1, "mt.metrics() shows the dead run as abandoned");
}

/// Run `run_id` was closed as abandoned, with its unfinished tenants.
fn assert_closed_abandoned(client: &mut Client, run_id: i64) {
    assert_eq!(run_status(client, run_id), ("abandoned".to_string(), "abandoned".to_string()), "run {run_id}");
    let open: i64 = client
        .query_one("SELECT count(*) FROM mt.run_tenants WHERE run_id = $1 AND finished_at IS NULL", &[&run_id])
        .unwrap()
        .get(0);
    assert_eq!(open, 0, "run {run_id} keeps unfinished tenants");
    // f1 was inside its slow migration when the run died.
    let f1: String = client
        .query_one("SELECT status FROM mt.run_tenants WHERE run_id = $1 AND tenant_id = 'f1'", &[&run_id])
        .unwrap()
        .get(0);
    assert_eq!(f1, "abandoned", "f1's row in run {run_id}");
}

/// A rerun of `mt.migrate_all()` completes: no tenant fails, nothing stays pending, the run
/// is finished and the invariants hold.
fn assert_rerun_completes(client: &mut Client) {
    let rows = client.query("SELECT tenant_id, status, sqlstate, error, migration FROM mt.migrate_all()", &[]).unwrap();
    let failed: Vec<String> = rows
        .iter()
        .filter(|r| !matches!(r.get::<_, String>(1).as_str(), "migrated" | "up_to_date"))
        .map(|r| {
            format!(
                "{}: {} {:?} in {:?}: {:?}",
                r.get::<_, String>(0),
                r.get::<_, String>(1),
                r.get::<_, Option<String>>(2),
                r.get::<_, Option<String>>(4),
                r.get::<_, Option<String>>(3)
            )
        })
        .collect();
    assert!(failed.is_empty(), "the rerun did not complete:\n  {}", failed.join("\n  "));
    let pending: Vec<String> = client
        .query("SELECT format('%s: %s', tenant_id, pending_names) FROM mt.status WHERE pending > 0", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(pending.is_empty(), "pending after the rerun: {pending:?}");
    let run_id = latest_run(client);
    assert_eq!(run_status(client, run_id), ("finished".to_string(), "finished".to_string()), "the rerun");
    assert_consistent(client);
    assert_no_run_running(client);
}

// ---------------------------------------------------------------------------------------
// Crashes

#[test]
fn kill_9_of_a_worker_mid_run() {
    let (url, mut client) = setup("kill9", 6, 5, SLEEP_MS, true);
    let _cluster = KeepClusterRunning(data_directory(&mut client));

    let caller = Caller::start(&url, "SELECT * FROM mt.migrate_all(concurrency => 2)");
    let worker = worker_in_slow_migration(&mut client);
    flush_wal(&mut client);
    kill_9(worker);
    // The postmaster takes every backend down with the worker, the caller too, and
    // restarts the cluster.
    let error = caller.finish().expect_err("the crash ended the caller's session");
    drop(client);
    wait_for_cluster();

    let mut client = connect(&url);
    let applied = logged(&mut client);
    assert!(applied > 0 && applied < 6 * 5, "the crash stopped the run part way ({applied} applied; caller: {error})");
    assert_consistent(&mut client);
    let run_id = latest_run(&mut client);
    assert_shown_abandoned(&mut client, run_id);
    let closed: i32 = scalar(&mut client, "SELECT mt.close_abandoned_runs()");
    assert_eq!(closed, 1);
    assert_closed_abandoned(&mut client, run_id);
    assert_no_run_running(&mut client);
    assert_rerun_completes(&mut client);
}

#[test]
fn immediate_shutdown_mid_run() {
    let (url, mut client) = setup("immediate", 6, 5, SLEEP_MS, true);
    let data_dir = data_directory(&mut client);
    let _cluster = KeepClusterRunning(data_dir.clone());

    let caller = Caller::start(&url, "SELECT * FROM mt.migrate_all(concurrency => 2)");
    worker_in_slow_migration(&mut client);
    flush_wal(&mut client);
    stop_immediately(&data_dir);
    let error = caller.finish().expect_err("the shutdown ended the caller's session");
    drop(client);
    start_cluster(&data_dir);

    let mut client = connect(&url);
    let applied = logged(&mut client);
    assert!(
        applied > 0 && applied < 6 * 5,
        "the shutdown stopped the run part way ({applied} applied; caller: {error})"
    );
    assert_consistent(&mut client);
    let run_id = latest_run(&mut client);
    assert_shown_abandoned(&mut client, run_id);
    // No explicit mt.close_abandoned_runs(): the rerun closes the dead run first.
    assert_rerun_completes(&mut client);
    assert_closed_abandoned(&mut client, run_id);
}

// ---------------------------------------------------------------------------------------
// Terminating and cancelling

#[test]
fn terminating_the_caller_stops_its_workers() {
    let (url, mut client) = setup("term_caller", 8, 5, SLEEP_MS, true);

    let caller = Caller::start(&url, "SELECT * FROM mt.migrate_all(concurrency => 2)");
    worker_in_slow_migration(&mut client);
    let run_id = latest_run(&mut client);
    assert!(scalar::<bool>(&mut client, &format!("SELECT pg_terminate_backend({})", caller.pid)));
    let error = caller.finish().expect_err("the caller was terminated");
    // 57P01 (admin_shutdown), or the connection closing before the message is read.
    assert!(sqlstate(&error) == Some("57P01") || error.is_closed(), "{error}");

    // The workers notice their launcher is gone and stop between migrations instead of
    // migrating the rest of the fleet.
    wait_for("the workers to stop", || (workers_of_this_database(&mut client) == 0).then_some(()));
    let applied = logged(&mut client);
    assert!(applied > 0 && applied < 8 * 5, "the workers stopped part way ({applied} applied)");
    let (recorded, shown) = run_status(&mut client, run_id);
    assert_ne!(shown, "running", "mt.run_progress shows a run whose caller is gone as running");
    scalar::<i32>(&mut client, "SELECT mt.close_abandoned_runs()");
    let (recorded_after, _) = run_status(&mut client, run_id);
    assert!(
        matches!(recorded_after.as_str(), "cancelled" | "abandoned"),
        "run {run_id} of a terminated caller ends {recorded_after} (was {recorded}/{shown})"
    );
    assert_consistent(&mut client);
    assert_no_run_running(&mut client);
    assert_rerun_completes(&mut client);
}

#[test]
fn cancelling_the_caller_closes_the_run_cancelled() {
    let (url, mut client) = setup("cancel_caller", 8, 5, SLEEP_MS, true);

    let caller = Caller::start(&url, "SELECT * FROM mt.migrate_all(concurrency => 2)");
    worker_in_slow_migration(&mut client);
    let run_id = latest_run(&mut client);
    assert!(scalar::<bool>(&mut client, &format!("SELECT pg_cancel_backend({})", caller.pid)));
    let error = caller.finish().expect_err("the caller was cancelled");
    assert_eq!(sqlstate(&error), Some("57014"), "{error}");

    wait_for("the workers to stop", || (workers_of_this_database(&mut client) == 0).then_some(()));
    let applied = logged(&mut client);
    assert!(applied > 0 && applied < 8 * 5, "the cancel stopped the run part way ({applied} applied)");
    assert_eq!(run_status(&mut client, run_id), ("cancelled".to_string(), "cancelled".to_string()));
    // The slow migration was interrupted: f1 stopped at its last good migration.
    let f1: Vec<String> = client
        .query("SELECT name FROM mt.tracking_records WHERE tenant_id = 'f1' ORDER BY record_id", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(f1, (0..SLOW_MIGRATION).map(migration_name).collect::<Vec<_>>());
    assert_consistent(&mut client);
    assert_no_run_running(&mut client);
    assert_rerun_completes(&mut client);
}

#[test]
fn terminating_a_worker_fails_its_tenant_and_ends_the_run() {
    let (url, mut client) = setup("term_worker", 6, 5, SLEEP_MS, true);

    let caller = Caller::start(
        &url,
        "SELECT tenant_id, status, sqlstate, error, migration FROM mt.migrate_all(concurrency => 2)",
    );
    let worker = worker_in_slow_migration(&mut client);
    assert!(scalar::<bool>(&mut client, &format!("SELECT pg_terminate_backend({worker})")));
    // The run goes on without that worker; its caller gets every tenant's row, and its
    // session stays open (as a pooled connection's would).
    let (_session, rows) = caller.finish_and_stay();
    let rows = rows.expect("the run survives one terminated worker");
    let outcome: HashMap<String, (String, Option<String>, Option<String>)> =
        rows.iter().map(|r| (r.get(0), (r.get(1), r.get(2), r.get(4)))).collect();
    for tenant in ["f2", "f3", "f4", "f5", "f6"] {
        assert_eq!(outcome[tenant].0, "migrated", "{tenant}: {:?}", outcome[tenant]);
    }
    // Everything that then disagrees with "the run ended, f1 failed in the migration its
    // worker was applying", gathered so that one failure tells all.
    let slow = migration_name(SLOW_MIGRATION);
    let mut problems = Vec::new();
    let (status, code, migration) = &outcome["f1"];
    if status != "failed" || code.is_none() {
        problems.push(format!("mt.migrate_all() row of f1: {:?}", outcome["f1"]));
    }
    if migration.as_deref() != Some(slow.as_str()) {
        problems.push(format!("mt.migrate_all() row of f1 names migration {migration:?}, not {slow:?}"));
    }
    let run_id = latest_run(&mut client);
    let (recorded, shown) = run_status(&mut client, run_id);
    if (recorded.as_str(), shown.as_str()) != ("finished", "finished") {
        problems
            .push(format!("run {run_id} is {recorded} (mt.runs) / {shown} (mt.run_progress) after its call returned"));
    }
    let row = client
        .query_one(
            "SELECT status, finished_at IS NOT NULL, sqlstate, migration FROM mt.run_tenants \
              WHERE run_id = $1 AND tenant_id = 'f1'",
            &[&run_id],
        )
        .unwrap();
    let f1_row: (String, bool, Option<String>, Option<String>) = (row.get(0), row.get(1), row.get(2), row.get(3));
    if (f1_row.0.as_str(), f1_row.1, f1_row.2.is_some()) != ("failed", true, true) || f1_row.3.as_deref() != Some(&slow)
    {
        problems.push(format!("mt.run_tenants row of f1 (status, finished, sqlstate, migration): {f1_row:?}"));
    }
    let closed: i32 = scalar(&mut client, "SELECT mt.close_abandoned_runs()");
    if closed != 0 {
        problems.push(format!("mt.close_abandoned_runs() closed {closed} run(s) of a live caller"));
    }
    assert!(problems.is_empty(), "after pg_terminate_backend of a worker:\n  {}", problems.join("\n  "));

    assert_consistent(&mut client);
    assert_no_run_running(&mut client);
    assert_rerun_completes(&mut client);
}

#[test]
fn cancelling_a_worker_fails_the_migration_it_was_running() {
    let (url, mut client) = setup("cancel_worker", 6, 5, SLEEP_MS, true);

    let caller = Caller::start(
        &url,
        "SELECT tenant_id, status, sqlstate, error, migration FROM mt.migrate_all(concurrency => 2)",
    );
    let worker = worker_in_slow_migration(&mut client);
    assert!(scalar::<bool>(&mut client, &format!("SELECT pg_cancel_backend({worker})")));
    let (_session, rows) = caller.finish_and_stay();
    let rows = rows.expect("the run survives one cancelled statement");
    let outcome: HashMap<String, (String, Option<String>, Option<String>)> =
        rows.iter().map(|r| (r.get(0), (r.get(1), r.get(2), r.get(4)))).collect();
    assert_eq!(
        outcome["f1"],
        ("failed".to_string(), Some("57014".to_string()), Some(migration_name(SLOW_MIGRATION))),
        "f1 fails naming the migration that was cancelled"
    );
    for tenant in ["f2", "f3", "f4", "f5", "f6"] {
        assert_eq!(outcome[tenant].0, "migrated", "{tenant}: {:?}", outcome[tenant]);
    }
    let (migration, error): (Option<String>, Option<String>) = {
        let row = client
            .query_one("SELECT migration, error FROM mt.run_tenants WHERE run_id = (SELECT max(run_id) FROM mt.runs) AND tenant_id = 'f1'", &[])
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!(migration.as_deref(), Some(migration_name(SLOW_MIGRATION).as_str()));
    assert!(error.unwrap_or_default().contains("canceling statement"));

    let run_id = latest_run(&mut client);
    assert_eq!(run_status(&mut client, run_id), ("finished".to_string(), "finished".to_string()));
    assert_consistent(&mut client);
    assert_no_run_running(&mut client);
    assert_rerun_completes(&mut client);
}

// ---------------------------------------------------------------------------------------
// Concurrency with provisioning

#[test]
fn three_concurrent_runs_while_tenants_are_created_and_dropped() {
    let (url, mut client) = setup("concurrent", 8, 3, 50, false);
    // A first run makes mt_template current, so some of the new tenants are template
    // copies; the next migrations are then pending everywhere.
    client.query("SELECT * FROM mt.migrate_all(concurrency => 2)", &[]).unwrap();
    add_migrations(&mut client, 3..6, 50, false);
    let dropped = ["f2", "f5", "f8"];
    let created = ["n1", "n2", "n3", "n4"];

    #[derive(Debug)]
    enum Call {
        Run(Result<Vec<(String, String, Option<String>)>, postgres::Error>),
        Create(&'static str, Result<(), postgres::Error>),
        Drop(&'static str, Result<(), postgres::Error>),
    }
    let calls: Vec<Call> = thread::scope(|scope| {
        let mut handles = Vec::new();
        for _ in 0..3 {
            let url = &url;
            handles.push(scope.spawn(move || {
                let mut client = connect(url);
                let rows =
                    client.query("SELECT tenant_id, status, sqlstate FROM mt.migrate_all(concurrency => 2)", &[]);
                vec![Call::Run(rows.map(|rows| rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect()))]
            }));
        }
        let url = &url;
        handles.push(scope.spawn(move || {
            let mut client = connect(url);
            created
                .iter()
                .enumerate()
                .map(|(i, id)| {
                    let done = client
                        .query_one("SELECT mt.create_tenant($1, use_template => $2)", &[id, &(i % 2 == 0)])
                        .map(|_| ());
                    Call::Create(id, done)
                })
                .collect()
        }));
        handles.push(scope.spawn(move || {
            let mut client = connect(url);
            thread::sleep(Duration::from_millis(200));
            dropped
                .iter()
                .map(|id| {
                    Call::Drop(id, client.query_one("SELECT mt.drop_tenant($1, force => true)", &[id]).map(|_| ()))
                })
                .collect()
        }));
        handles.into_iter().flat_map(|h| h.join().expect("thread panicked")).collect()
    });

    let mut problems = Vec::new();
    for call in &calls {
        match call {
            Call::Run(Ok(rows)) => {
                for (tenant, status, code) in rows {
                    let fine = matches!(status.as_str(), "migrated" | "up_to_date");
                    // A tenant dropped while the run was going may fail in it (its schema is
                    // gone), with a clear error.
                    let dropped_meanwhile = dropped.contains(&tenant.as_str())
                        && !matches!(code.as_deref(), Some("40P01" | "XX000") | None);
                    if !fine && !dropped_meanwhile {
                        problems.push(format!("run: {tenant} {status} {code:?}"));
                    }
                }
            }
            Call::Run(Err(e)) => problems.push(format!("run failed: {e}")),
            Call::Create(id, Err(e)) => problems.push(format!("create_tenant({id}) failed: {e}")),
            Call::Drop(id, Err(e)) if sqlstate(e) == Some("40P01") => {
                problems.push(format!("drop_tenant({id}) deadlocked: {e}"))
            }
            Call::Drop(id, Err(e)) => eprintln!("drop_tenant({id}) refused: {e}"),
            Call::Create(_, Ok(())) | Call::Drop(_, Ok(())) => {}
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // A drop refused with a clear error (say, while a run held the tenant) is retried.
    for id in dropped {
        client.query_one("SELECT mt.drop_tenant($1, force => true, if_exists => true)", &[&id]).unwrap();
    }
    let left: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_namespace WHERE nspname = ANY (SELECT 'tenant_' || unnest($1::text[]))",
            &[&dropped.to_vec()],
        )
        .unwrap()
        .get(0);
    assert_eq!(left, 0, "the dropped tenants' schemas are gone");
    assert_eq!(scalar::<i64>(&mut client, "SELECT count(*) FROM mt.tenants"), 8 - 3 + 4);
    assert_consistent(&mut client);
    assert_no_run_running(&mut client);
    assert_rerun_completes(&mut client);
}

// ---------------------------------------------------------------------------------------
// Tracking tables broken by hand

fn run_outcomes(client: &mut Client) -> HashMap<String, (String, Option<String>, String)> {
    client
        .query("SELECT tenant_id, status, sqlstate, coalesce(error, '') FROM mt.migrate_all()", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2), r.get(3))))
        .collect()
}

fn tracking_names(client: &mut Client, schema: &str) -> Vec<String> {
    client
        .query(&format!("SELECT name::text FROM {schema}.__drizzle_migrations ORDER BY id"), &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[test]
fn a_dropped_or_emptied_tracking_table_is_refused_then_repaired() {
    let (_url, mut client) = setup("tracking_lost", 4, 4, 0, false);
    client.query("SELECT * FROM mt.migrate_all()", &[]).unwrap();
    assert_consistent(&mut client);

    client.batch_execute("DROP TABLE tenant_f1.__drizzle_migrations; TRUNCATE tenant_f2.__drizzle_migrations").unwrap();
    add_migrations(&mut client, 4..5, 0, false);
    let health: String = scalar(
        &mut client,
        "SELECT status || ': ' || array_to_string(reasons, '; ') FROM mt.health WHERE tenant_id = 'f1'",
    );
    assert!(health.starts_with("unhealthy") && health.contains("is missing"), "{health}");

    // Neither tenant is replayed: each fails, naming what was lost and how to repair it.
    let outcome = run_outcomes(&mut client);
    let (status, code, error) = &outcome["f1"];
    assert_eq!((status.as_str(), code.as_deref()), ("failed", Some("55000")), "{error}");
    assert!(
        error.contains("is missing")
            && error.contains("4 applied migration(s)")
            && error.contains("mt.repair_tracking"),
        "{error}"
    );
    let (status, code, error) = &outcome["f2"];
    assert_eq!((status.as_str(), code.as_deref()), ("failed", Some("55000")), "{error}");
    assert!(error.contains("lost 4 of the 4 records") && error.contains("mt.repair_tracking"), "{error}");
    for tenant in ["f3", "f4"] {
        assert_eq!(outcome[tenant].0, "migrated", "{tenant}: {:?}", outcome[tenant]);
    }
    assert_nothing_replayed(&mut client);
    assert!(
        !scalar::<bool>(&mut client, "SELECT to_regclass('tenant_f1.__drizzle_migrations') IS NOT NULL"),
        "not recreated empty"
    );

    // A missing table cannot be the source of truth.
    let error = client
        .query("SELECT * FROM mt.repair_tracking(ARRAY['f1'], source => 'tracking')", &[])
        .expect_err("no table to take records from");
    assert_eq!(sqlstate(&error), Some("42P01"), "{error}");

    let repaired: Vec<(String, i32)> = client
        .query("SELECT tenant_id, records FROM mt.repair_tracking(ARRAY['f1', 'f2']) ORDER BY 1", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(repaired, vec![("f1".to_string(), 4), ("f2".to_string(), 4)]);
    let expected: Vec<String> = (0..4).map(migration_name).collect();
    assert_eq!(tracking_names(&mut client, "tenant_f1"), expected);
    assert_eq!(tracking_names(&mut client, "tenant_f2"), expected);
    let triggers: i64 = scalar(
        &mut client,
        "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'tenant_f1.__drizzle_migrations'::regclass AND tgname = 'mt_ledger'",
    );
    assert_eq!(triggers, 1, "the recreated table keeps the ledger informed");
    assert_consistent(&mut client);
    assert_no_run_running(&mut client);
    assert_rerun_completes(&mut client);
}

#[test]
fn hand_inserted_and_hand_deleted_tracking_rows() {
    let (_url, mut client) = setup("tracking_edit", 4, 4, 0, false);
    client.query("SELECT * FROM mt.migrate_all()", &[]).unwrap();
    add_migrations(&mut client, 4..5, 0, false);

    // f1: someone applies the new migration by hand and records it, as drizzle-orm would.
    client
        .batch_execute(
            "BEGIN; \
             CREATE TABLE tenant_f1.t4 (id int); \
             INSERT INTO public.applied_log (schema_name, migration) VALUES ('tenant_f1', '0004_t4'); \
             INSERT INTO tenant_f1.__drizzle_migrations (name) VALUES ('0004_t4'); \
             COMMIT",
        )
        .unwrap();
    // The ledger knows at once, and so does every view built on it.
    let ledger: i64 =
        scalar(&mut client, "SELECT count(*) FROM mt.tracking_records WHERE tenant_id = 'f1' AND name = '0004_t4'");
    assert_eq!(ledger, 1);
    let pending: Vec<(String, i32)> = client
        .query("SELECT tenant_id, pending FROM mt.status ORDER BY tenant_id", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(pending, vec![("f1".into(), 0), ("f2".into(), 1), ("f3".into(), 1), ("f4".into(), 1)]);
    assert_consistent(&mut client);

    // f2: a tracking row deleted by hand, the migration's objects still there.
    client.batch_execute("DELETE FROM tenant_f2.__drizzle_migrations WHERE name = '0001_t1'").unwrap();
    // f3: a migration reverted by hand (its objects and its record), to be applied again.
    client
        .batch_execute(
            "BEGIN; \
             DROP TABLE tenant_f3.t3; \
             DELETE FROM public.applied_log WHERE schema_name = 'tenant_f3' AND migration = '0003_t3'; \
             DELETE FROM tenant_f3.__drizzle_migrations WHERE name = '0003_t3'; \
             COMMIT",
        )
        .unwrap();

    let outcome = run_outcomes(&mut client);
    assert_eq!(outcome["f1"].0, "up_to_date", "the hand-applied migration is not applied again: {:?}", outcome["f1"]);
    assert_eq!(outcome["f4"].0, "migrated");
    for (tenant, lost) in [("f2", "0001_t1"), ("f3", "0003_t3")] {
        let (status, code, error) = &outcome[tenant];
        assert_eq!((status.as_str(), code.as_deref()), ("failed", Some("55000")), "{tenant}: {error}");
        assert!(error.contains("lost 1 of the 4 records") && error.contains(lost), "{tenant}: {error}");
    }
    assert_nothing_replayed(&mut client);
    assert_eq!(tracking_names(&mut client, "tenant_f2"), ["0000_t0", "0002_t2", "0003_t3"]);

    // f2's table lost a record: the ledger is right. f3's table is right: the ledger forgets.
    let repaired: i32 = scalar(&mut client, "SELECT records FROM mt.repair_tracking(ARRAY['f2'])");
    assert_eq!(repaired, 1);
    let repaired: i32 =
        scalar(&mut client, "SELECT records FROM mt.repair_tracking(ARRAY['f3'], source => 'tracking')");
    assert_eq!(repaired, 3);
    // The record is back under its own id.
    assert_eq!(tracking_names(&mut client, "tenant_f2"), ["0000_t0", "0001_t1", "0002_t2", "0003_t3"]);
    let f3_pending: String =
        scalar(&mut client, "SELECT array_to_string(pending_names, ',') FROM mt.status WHERE tenant_id = 'f3'");
    assert_eq!(f3_pending, "0003_t3,0004_t4");
    assert_consistent(&mut client);
    assert_no_run_running(&mut client);
    assert_rerun_completes(&mut client);
    // f3 got its reverted migration once more, and only that one and the new one.
    let f3: i64 = scalar(&mut client, "SELECT count(*) FROM public.applied_log WHERE schema_name = 'tenant_f3'");
    assert_eq!(f3, 5);
}

#[test]
fn a_hand_inserted_row_under_a_deleted_rows_id_is_no_replay() {
    let (_url, mut client) = setup("tracking_reuse", 2, 4, 0, false);
    client.query("SELECT * FROM mt.migrate_all()", &[]).unwrap();

    // Someone deletes f1's record of 0001_t1 and records a hot fix under the freed id.
    client
        .batch_execute(
            "BEGIN; \
             DELETE FROM tenant_f1.__drizzle_migrations WHERE name = '0001_t1'; \
             INSERT INTO tenant_f1.__drizzle_migrations (id, name) VALUES (2, 'hotfix'); \
             COMMIT",
        )
        .unwrap();
    // The ledger still knows 0001_t1 was applied. A run over the fleet trusts it and leaves
    // f1 alone (up to date, nothing applied again) ...
    let outcome = run_outcomes(&mut client);
    assert_nothing_replayed(&mut client);
    assert_eq!(outcome["f1"].0, "up_to_date");
    // ... and a run that names f1 reads its tracking table and refuses it instead of
    // applying 0001_t1 again.
    let row = client
        .query_one("SELECT status, sqlstate, coalesce(error, '') FROM mt.migrate_all(tenant_ids => ARRAY['f1'])", &[])
        .unwrap();
    let (status, code, error): (String, Option<String>, String) = (row.get(0), row.get(1), row.get(2));
    let (status, code, error) = (&status, &code, &error);
    assert_nothing_replayed(&mut client);
    assert_eq!(
        (status.as_str(), code.as_deref()),
        ("failed", Some("55000")),
        "f1 is not refused for the lost record of 0001_t1 (a 42P07 here means the run applied 0001_t1 again, \
         which CREATE TABLE t1 stopped; the ledger row of id 2 was overwritten by the hand-inserted one): {error}"
    );
    assert!(error.contains("0001_t1"), "{error}");

    // Remove the row in the way, then restore the lost record from the ledger.
    client.batch_execute("DELETE FROM tenant_f1.__drizzle_migrations WHERE name = 'hotfix'").unwrap();
    let repaired: i32 = scalar(&mut client, "SELECT records FROM mt.repair_tracking(ARRAY['f1'])");
    assert_eq!(repaired, 1);
    assert_consistent(&mut client);
    assert_no_run_running(&mut client);
    assert_rerun_completes(&mut client);
}
