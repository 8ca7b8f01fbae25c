//! Provisioning tenants: copying the template against replaying every migration, and a
//! schema-only clone against `pg_dump -n | psql`, in one run.
//!
//! The schema: 24 tables grown over 8 migrations each (created, three columns added, a
//! foreign key to the previous table, an index, a backfill, a default changed), 192
//! migrations in all, the way an application's history accumulates. Timed, N tenants each,
//! one `mt.create_tenant` per transaction:
//! - the baseline: `mt.create_tenant(id, use_template => false)`, every migration replayed;
//! - for reference, the same replay driven from the application the way client-side
//!   toolkits do it: one transaction per migration per tenant;
//! - `mt.create_tenant(id)` with `mt_template` current: a copy of the template;
//! - `mt.create_tenants(ids)`, the same copies in background workers.
//!
//! Then one tenant's schema copied 5 times: `mt.clone_tenant(source, target)` against
//! `pg_dump --schema-only -n <schema> | psql` into an empty database (median of 5 each).
//!
//! Usage: provision [N ...]       (default 100)

use std::process::{Command, Stdio};
use std::time::Duration;

use multitenant_bench::{fresh_database, ratio, secs, timed, url};

const TABLES: usize = 24;

/// The migration history: (name, sql).
fn migrations() -> Vec<(String, String)> {
    let mut steps: Vec<Vec<String>> = vec![Vec::new(); 8];
    for t in 1..=TABLES {
        let parent = if t > 1 { format!("REFERENCES table_{:02} (id)", t - 1) } else { String::new() };
        steps[0].push(format!(
            "CREATE TABLE table_{t:02} (id serial PRIMARY KEY, name varchar(120) NOT NULL, created_at timestamptz NOT NULL DEFAULT now())"
        ));
        steps[1].push(format!("ALTER TABLE table_{t:02} ADD COLUMN status text NOT NULL DEFAULT 'new'"));
        steps[2].push(format!("ALTER TABLE table_{t:02} ADD COLUMN amount numeric(12, 2)"));
        steps[3].push(format!("ALTER TABLE table_{t:02} ADD COLUMN parent_id integer {parent}"));
        steps[4].push(format!("CREATE INDEX table_{t:02}_status_idx ON table_{t:02} (status, created_at)"));
        steps[5].push(format!("UPDATE table_{t:02} SET amount = 0 WHERE amount IS NULL"));
        steps[6].push(format!("ALTER TABLE table_{t:02} ALTER COLUMN status SET DEFAULT 'open'"));
        steps[7].push(format!(
            "ALTER TABLE table_{t:02} ADD COLUMN notes jsonb NOT NULL DEFAULT '{{}}', ADD CONSTRAINT table_{t:02}_amount_check CHECK (amount >= 0)"
        ));
    }
    // Table by table, as features are added: table 1's eight steps, then table 2's, ...
    let mut history = Vec::new();
    for t in 0..TABLES {
        for (s, step) in steps.iter().enumerate() {
            history.push((format!("{:04}_table_{:02}_step_{s}", history.len(), t + 1), step[t].clone()));
        }
    }
    history
}

/// What client-side toolkits do: per tenant, create the schema and a tracking table, then
/// per migration one transaction from the application (switch schema, run it, record it).
fn replay_from_application(client: &mut postgres::Client, history: &[(String, String)], n: usize) {
    for i in 1..=n {
        let schema = format!("app_replayed_{i}");
        client
            .batch_execute(&format!(
                "CREATE SCHEMA {schema}; CREATE TABLE {schema}.__migrations (id serial PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
            ))
            .unwrap();
        for (name, sql) in history {
            let mut tx = client.transaction().unwrap();
            tx.batch_execute(&format!("SET LOCAL search_path = {schema}; {sql}")).unwrap();
            tx.execute(&format!("INSERT INTO {schema}.__migrations (name) VALUES ($1)"), &[name]).unwrap();
            tx.commit().unwrap();
        }
    }
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn main() {
    let sizes: Vec<usize> = std::env::args().skip(1).map(|a| a.parse().expect("N")).collect();
    for n in if sizes.is_empty() { vec![100] } else { sizes } {
        let db = format!("bench_provision_{n}");
        let mut client = fresh_database(&db);
        let history = migrations();
        for (name, sql) in &history {
            client.execute("SELECT mt.add_migration($1, $2)", &[name, sql]).unwrap();
        }
        let create = |client: &mut postgres::Client, prefix: &str, use_template: bool| {
            for i in 1..=n {
                client
                    .execute(
                        "SELECT mt.create_tenant($1, use_template => $2)",
                        &[&format!("{prefix}{i}"), &use_template],
                    )
                    .unwrap();
            }
        };
        let (_, replayed) = timed(|| create(&mut client, "replayed-", false));
        let (_, from_app) = timed(|| replay_from_application(&mut client, &history, n));
        let (_, template) = timed(|| client.query("SELECT * FROM mt.refresh_template()", &[]).unwrap());
        assert!(client.query_one("SELECT mt.template_is_current()", &[]).unwrap().get::<_, bool>(0));
        let (_, cloned) = timed(|| create(&mut client, "cloned-", true));
        let ids: Vec<String> = (1..=n).map(|i| format!("parallel-{i}")).collect();
        let (created, parallel) = timed(|| {
            client
                .query("SELECT status FROM mt.create_tenants($1)", &[&ids])
                .unwrap()
                .iter()
                .filter(|row| row.get::<_, String>(0) == "created")
                .count()
        });
        assert_eq!(created, n);
        let (drifted, fingerprints): (i64, i64) = {
            let row = client
                .query_one(
                    "SELECT count(*) FILTER (WHERE has_drift), count(DISTINCT fingerprint) FROM mt.drift_summary",
                    &[],
                )
                .unwrap();
            (row.get(0), row.get(1))
        };
        assert_eq!((drifted, fingerprints), (0, 1), "every tenant is the same schema");

        // One schema, copied: in the database, and with pg_dump | psql into an empty database.
        let mut ours = Vec::new();
        let mut dumped = Vec::new();
        let target_db = format!("{db}_restore");
        for round in 0..5 {
            let (_, took) = timed(|| {
                client.execute("SELECT mt.clone_tenant('cloned-1', $1)", &[&format!("copy-{round}")]).unwrap()
            });
            ours.push(took);
            let mut admin = multitenant_bench::connect("postgres");
            admin.batch_execute(&format!("DROP DATABASE IF EXISTS {target_db} WITH (FORCE)")).unwrap();
            admin.batch_execute(&format!("CREATE DATABASE {target_db}")).unwrap();
            let (_, took) = timed(|| {
                let mut dump = Command::new("/usr/lib/postgresql/15/bin/pg_dump")
                    .args(["--schema-only", "-n", "tenant_cloned_1", &url(&db)])
                    .stdout(Stdio::piped())
                    .spawn()
                    .unwrap();
                let status = Command::new("/usr/lib/postgresql/15/bin/psql")
                    .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", &url(&target_db)])
                    .stdin(dump.stdout.take().unwrap())
                    .stdout(Stdio::null())
                    .status()
                    .unwrap();
                assert!(status.success() && dump.wait().unwrap().success(), "pg_dump | psql failed");
            });
            dumped.push(took);
            admin.batch_execute(&format!("DROP DATABASE {target_db} WITH (FORCE)")).unwrap();
        }
        let (ours, dumped) = (median(ours), median(dumped));

        println!("N = {n} tenants, {TABLES} tables, {} migrations each", history.len());
        println!("  baseline, replaying every migration:  {}  ({:.1} ms per tenant)", secs(replayed), per(replayed, n));
        println!(
            "  replayed from the application:        {}  ({:.1} ms per tenant) = {} of the baseline",
            secs(from_app),
            per(from_app, n),
            ratio(from_app, replayed)
        );
        println!("  template refreshed once:              {}", secs(template));
        println!(
            "  copying the template:                 {}  ({:.1} ms per tenant) = {} of the baseline, {:.1}x faster",
            secs(cloned),
            per(cloned, n),
            ratio(cloned, replayed),
            replayed.as_secs_f64() / cloned.as_secs_f64()
        );
        println!(
            "  mt.create_tenants (workers):          {}  ({:.1} ms per tenant) = {} of the baseline",
            secs(parallel),
            per(parallel, n),
            ratio(parallel, replayed)
        );
        println!(
            "  copying the template against replaying from the application: {:.1}x faster",
            from_app.as_secs_f64() / cloned.as_secs_f64()
        );
        println!("One schema copied, median of 5:");
        println!("  baseline, pg_dump -n | psql:          {:.1} ms", dumped.as_secs_f64() * 1000.0);
        println!(
            "  mt.clone_tenant:                      {:.1} ms = {} of the baseline",
            ours.as_secs_f64() * 1000.0,
            ratio(ours, dumped)
        );
        drop(client);
        let mut admin = multitenant_bench::connect("postgres");
        admin.batch_execute(&format!("DROP DATABASE {db} WITH (FORCE)")).unwrap();
    }
}

fn per(total: Duration, n: usize) -> f64 {
    total.as_secs_f64() * 1000.0 / n as f64
}
