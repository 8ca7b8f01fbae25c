//! The background-worker engine under concurrency, cancellation and scarce worker slots.

use std::thread;
use std::time::{Duration, Instant};

use multitenant_integration::{concurrently, connect, create_tenants, fresh_database, replay_migrations, Client};

/// Registers `count` migrations that each log their own application into a shared table,
/// so a migration applied twice shows up as a duplicate row.
fn logged_migrations(client: &mut Client, count: i32, sleep_ms: i32) {
    client
        .batch_execute(
            "CREATE TABLE public.applied_log (schema_name text, migration text, at timestamptz DEFAULT clock_timestamp()); \
             GRANT INSERT ON public.applied_log TO mt_tenant",
        )
        .unwrap();
    for n in 0..count {
        let sql = format!(
            "SELECT pg_sleep({sleep}); CREATE TABLE t{n} (id int); INSERT INTO public.applied_log (schema_name, migration) VALUES (current_schema(), 'm{n}');",
            sleep = sleep_ms as f64 / 1000.0
        );
        client.execute("SELECT mt.add_migration($1, $2)", &[&format!("{n:04}_m{n}"), &sql]).unwrap();
    }
}

fn scalar_i64(client: &mut Client, sql: &str) -> i64 {
    client.query_one(sql, &[]).unwrap().get(0)
}

fn workers_running(client: &mut Client) -> i64 {
    scalar_i64(client, "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'multitenant worker'")
}

#[test]
fn two_concurrent_runs_never_apply_a_migration_twice() {
    let url = fresh_database("concurrent");
    let mut client = connect(&url);
    logged_migrations(&mut client, 4, 20);
    create_tenants(&mut client, "c", 24);
    replay_migrations(&mut client);

    let results: Vec<Vec<(String, i32)>> = concurrently(&url, 2, |client| {
        let rows = client.query("SELECT status, applied FROM mt.migrate_all(concurrency => 3)", &[]).unwrap();
        rows.iter().map(|r| (r.get(0), r.get(1))).collect()
    });

    let applied: i32 = results.iter().flatten().map(|(_, applied)| applied).sum();
    assert_eq!(applied, 24 * 4, "between them the two runs apply each migration exactly once");
    assert!(results.iter().flatten().all(|(status, _)| status == "migrated" || status == "up_to_date"), "{results:?}");
    let duplicates = scalar_i64(
        &mut client,
        "SELECT count(*) FROM (SELECT schema_name, migration FROM applied_log GROUP BY 1, 2 HAVING count(*) > 1) d",
    );
    assert_eq!(duplicates, 0, "the template (mt_template) too, though both runs refresh it");
    assert_eq!(scalar_i64(&mut client, "SELECT count(*) FROM applied_log WHERE schema_name LIKE 'tenant%'"), 24 * 4);
    assert_eq!(scalar_i64(&mut client, "SELECT count(*) FROM mt.status WHERE pending = 0"), 24);
}

#[test]
fn cancelling_the_caller_stops_workers_and_leaves_no_half_applied_migration() {
    let url = fresh_database("cancel");
    let mut client = connect(&url);
    logged_migrations(&mut client, 6, 300);
    create_tenants(&mut client, "k", 12);
    replay_migrations(&mut client);

    let caller_pid: i32 = {
        let url = url.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        let handle = thread::spawn(move || {
            let mut caller = connect(&url);
            let pid: i32 = caller.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
            tx.send(pid).unwrap();
            caller.query("SELECT * FROM mt.migrate_all(concurrency => 2)", &[])
        });
        let pid = rx.recv().unwrap();
        // Once tenants are being migrated (the template comes first).
        let deadline = Instant::now() + Duration::from_secs(60);
        while scalar_i64(&mut client, "SELECT count(*) FROM applied_log WHERE schema_name LIKE 'tenant%'") == 0 {
            assert!(Instant::now() < deadline, "no tenant migration started");
            thread::sleep(Duration::from_millis(20));
        }
        let cancelled_at = Instant::now();
        client.execute("SELECT pg_cancel_backend($1)", &[&pid]).unwrap();
        let error = handle.join().unwrap().expect_err("the run was cancelled");
        assert_eq!(error.code().map(|c| c.code()), Some("57014"), "{error}");
        assert!(cancelled_at.elapsed() < Duration::from_secs(3), "cancel took {:?}", cancelled_at.elapsed());
        pid
    };
    assert!(caller_pid > 0);

    let deadline = Instant::now() + Duration::from_secs(5);
    while workers_running(&mut client) > 0 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(workers_running(&mut client), 0, "workers stop with their launcher");

    // Every migration is either applied and recorded, or neither.
    let mismatched = scalar_i64(
        &mut client,
        "SELECT count(*) FROM mt.tenants t \
          WHERE (SELECT count(*) FROM applied_log l WHERE l.schema_name = t.schema_name) \
             <> (SELECT count(*) FROM mt.tracking_records r WHERE r.tenant_id = t.tenant_id)",
    );
    assert_eq!(mismatched, 0);
    let logged = scalar_i64(&mut client, "SELECT count(*) FROM applied_log WHERE schema_name LIKE 'tenant%'");
    assert!(logged > 0 && logged < 12 * 6, "the run was stopped part way ({logged} applied)");
    let status: String =
        client.query_one("SELECT status FROM mt.runs ORDER BY run_id DESC LIMIT 1", &[]).unwrap().get(0);
    assert_eq!(status, "cancelled");

    // Rerunning resumes where it stopped.
    let rows = client.query("SELECT status FROM mt.migrate_all() WHERE status = 'failed'", &[]).unwrap();
    assert!(rows.is_empty());
    assert_eq!(scalar_i64(&mut client, "SELECT count(*) FROM applied_log WHERE schema_name LIKE 'tenant%'"), 12 * 6);
}

#[test]
fn runs_wait_for_worker_slots_instead_of_failing() {
    // The cluster runs with max_worker_processes = 4; these two runs ask for 16 workers.
    let url = fresh_database("slots");
    let mut client = connect(&url);
    let slots = scalar_i64(&mut client, "SELECT current_setting('max_worker_processes')::bigint");
    assert!(slots <= 4, "the integration cluster is meant to have few worker slots, has {slots}");
    logged_migrations(&mut client, 3, 10);
    create_tenants(&mut client, "s", 30);
    replay_migrations(&mut client);

    let succeeded = concurrently(&url, 2, |client| {
        let row = client
            .query_one("SELECT count(*) FROM mt.migrate_all(concurrency => 8) WHERE status <> 'failed'", &[])
            .unwrap();
        row.get::<_, i64>(0)
    });
    assert_eq!(succeeded, vec![30, 30]);
    assert_eq!(scalar_i64(&mut client, "SELECT count(*) FROM applied_log WHERE schema_name LIKE 'tenant%'"), 30 * 3);
}

#[test]
fn lock_and_statement_timeouts_fail_one_tenant_not_the_run() {
    let url = fresh_database("timeouts");
    let mut client = connect(&url);
    client.execute("SELECT mt.add_migration('0000_t', 'CREATE TABLE t (id int)')", &[]).unwrap();
    create_tenants(&mut client, "x", 3);
    replay_migrations(&mut client);
    client.query("SELECT * FROM mt.migrate_all()", &[]).unwrap();
    client.execute("SELECT mt.add_migration('0001_alter', 'ALTER TABLE t ADD COLUMN note text')", &[]).unwrap();

    // Another session holds a lock on x2's table.
    let mut blocker = connect(&url);
    let mut blocking = blocker.transaction().unwrap();
    blocking.batch_execute("LOCK TABLE tenant_x2.t IN ACCESS EXCLUSIVE MODE").unwrap();

    let started = Instant::now();
    client.batch_execute("SET mt.lock_timeout = 300").unwrap();
    let rows =
        client.query("SELECT tenant_id, status, sqlstate FROM mt.migrate_all() ORDER BY tenant_id", &[]).unwrap();
    let outcome: Vec<(String, String, Option<String>)> = rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(
        outcome,
        vec![
            ("x1".into(), "migrated".into(), None),
            ("x2".into(), "failed".into(), Some("55P03".into())),
            ("x3".into(), "migrated".into(), None),
        ]
    );
    blocking.rollback().unwrap();

    client.execute("SELECT mt.add_migration('0002_slow', 'SELECT pg_sleep(5)')", &[]).unwrap();
    client.batch_execute("SET mt.statement_timeout = 200").unwrap();
    let started = Instant::now();
    let rows =
        client.query("SELECT status, sqlstate, error FROM mt.migrate_all(tenant_ids => ARRAY['x1'])", &[]).unwrap();
    assert!(started.elapsed() < Duration::from_secs(3));
    let (status, sqlstate, error): (String, Option<String>, Option<String>) =
        (rows[0].get(0), rows[0].get(1), rows[0].get(2));
    assert_eq!((status.as_str(), sqlstate.as_deref()), ("failed", Some("57014")));
    assert!(error.unwrap_or_default().contains("statement timeout"));
}
