//! mt.migrate_all against the floor: the same SQL with no tracking at all.
//!
//! For each N, on fresh databases:
//! (a) `mt.migrate_all()` on N fresh tenants (the example drizzle-kit folder, 22 migrations);
//! (c) the floor: each migration's text sent as one query per tenant schema, no tracking,
//!     from one session and from as many concurrent sessions as the machine has cores;
//! (b) `mt.migrate_all()` again with nothing pending, and `mt.status`.
//!
//! Usage: migrate [N[xREPS] ...]     (default: 100x5 1000; medians of REPS rounds)
//!        migrate --noop N           (only the no-op and status case, tenants marked applied)
//!        migrate --floor N SESSIONS (only the floor)

use std::collections::BTreeSet;
use std::path::Path;
use std::thread;
use std::time::Duration;

use multitenant_bench::{connect, fresh_database, ratio, secs, timed};
use multitenant_core::migrations::parse_folder;
use multitenant_core::sql_text;

fn example_folder() -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/drizzle");
    let mut files = std::collections::BTreeMap::new();
    for entry in std::fs::read_dir(&root).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "sql") {
            files.insert(
                path.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read_to_string(&path).unwrap(),
            );
        }
    }
    files.insert("meta/_journal.json".into(), std::fs::read_to_string(root.join("meta/_journal.json")).unwrap());
    let folder = parse_folder(&files).unwrap();
    // The SQL as the engine runs it: "public". qualifiers of tenant objects removed.
    let mut created = BTreeSet::new();
    folder
        .migrations
        .iter()
        .map(|m| {
            created.extend(sql_text::created_names(&m.sql, "public"));
            sql_text::unqualify(&m.sql, "public", &created)
        })
        .collect()
}

fn register(client: &mut postgres::Client, migrations: &[String]) {
    for (i, sql) in migrations.iter().enumerate() {
        client.execute("SELECT mt.add_migration($1, $2)", &[&format!("{i:04}_m"), sql]).unwrap();
    }
}

/// The floor: plain schemas, each migration's text as one simple query, `sessions` in parallel.
fn floor(database: &str, tenants: usize, sessions: usize, migrations: &[String]) -> Duration {
    let mut setup = connect(database);
    for t in 0..tenants {
        setup.batch_execute(&format!("CREATE SCHEMA floor_{t}")).unwrap();
    }
    setup.batch_execute("CHECKPOINT").unwrap();
    let (_, elapsed) = timed(|| {
        thread::scope(|scope| {
            for s in 0..sessions {
                scope.spawn(move || {
                    let mut client = connect(database);
                    for t in (s..tenants).step_by(sessions) {
                        client.batch_execute(&format!("SET search_path = floor_{t}, public")).unwrap();
                        for sql in migrations {
                            client.batch_execute(sql).unwrap();
                        }
                    }
                });
            }
        })
    });
    elapsed
}

fn migrate_all(client: &mut postgres::Client, workers: usize) -> (i64, Duration) {
    let (row, elapsed) = timed(|| {
        client
            .query_one(
                "SELECT count(*) FILTER (WHERE status = 'failed') FROM mt.migrate_all(concurrency => $1)",
                &[&(workers as i32)],
            )
            .unwrap()
    });
    (row.get(0), elapsed)
}

fn create_tenants(client: &mut postgres::Client, count: usize) {
    client
        .execute(
            "SELECT count(*) FROM (SELECT mt.create_tenant('t' || g, migrate => false) FROM generate_series(1, $1) g) s",
            &[&(count as i32)],
        )
        .unwrap();
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn samples(values: &[Duration]) -> String {
    values.iter().map(|d| format!("{:.2}", d.as_secs_f64())).collect::<Vec<_>>().join(" / ")
}

/// One repetition: the two floors and ours, each on a fresh database, in that order.
fn one_round(n: usize, cores: usize, migrations: &[String]) -> [Duration; 5] {
    let floor_db = format!("bench_floor_{n}");
    drop(fresh_database(&floor_db));
    let one = floor(&floor_db, n, 1, migrations);
    drop(fresh_database(&floor_db));
    let many = floor(&floor_db, n, cores, migrations);
    connect("postgres").batch_execute(&format!("DROP DATABASE {floor_db} WITH (FORCE)")).unwrap();

    let db = format!("bench_migrate_{n}");
    let mut client = fresh_database(&db);
    register(&mut client, migrations);
    create_tenants(&mut client, n);
    client.batch_execute("CHECKPOINT").unwrap();
    let (failed, ours) = migrate_all(&mut client, cores);
    assert_eq!(failed, 0);
    let (noop_failed, noop) = migrate_all(&mut client, cores);
    assert_eq!(noop_failed, 0);
    let (_, status) = timed(|| client.query("SELECT * FROM mt.status", &[]).unwrap().len());
    drop(client);
    connect("postgres").batch_execute(&format!("DROP DATABASE {db} WITH (FORCE)")).unwrap();
    [one, many, ours, noop, status]
}

fn full(n: usize, reps: usize, cores: usize, migrations: &[String]) {
    let rounds: Vec<[Duration; 5]> = (0..reps).map(|_| one_round(n, cores, migrations)).collect();
    let column = |i: usize| rounds.iter().map(|r| r[i]).collect::<Vec<_>>();
    let [one, many, ours, noop, status] = [0, 1, 2, 3, 4].map(|i| median(column(i)));
    println!("N = {n} tenants x {} migrations, {cores} cores, median of {reps} (samples in s)", migrations.len());
    println!("  (c) floor, 1 session:                {}  [{}]", secs(one), samples(&column(0)));
    println!("  (c) floor, {cores} sessions:               {}  [{}]", secs(many), samples(&column(1)));
    println!(
        "  (a) mt.migrate_all, {cores} workers:       {}  [{}]  = {} of the {cores}-session floor, {} of the 1-session floor",
        secs(ours),
        samples(&column(2)),
        ratio(ours, many),
        ratio(ours, one)
    );
    println!("  (b) mt.migrate_all, nothing pending: {}  [{}]", secs(noop), samples(&column(3)));
    println!("      mt.status:                       {}  [{}]", secs(status), samples(&column(4)));
}

fn noop_only(n: usize, cores: usize, migrations: &[String]) {
    let db = format!("bench_noop_{n}");
    let mut client = fresh_database(&db);
    register(&mut client, migrations);
    create_tenants(&mut client, n);
    let (_, setup) = timed(|| {
        client
            .query("SELECT * FROM mt.migrate_all(mark_applied => true, concurrency => $1)", &[&(cores as i32)])
            .unwrap()
    });
    client.batch_execute("CHECKPOINT").unwrap();
    let (failed, noop) = migrate_all(&mut client, cores);
    assert_eq!(failed, 0);
    let (rows, status) = timed(|| client.query("SELECT * FROM mt.status", &[]).unwrap().len());
    assert_eq!(rows, n);
    println!(
        "N = {n} tenants x {} migrations (recorded with mark_applied in {}), {cores} workers",
        migrations.len(),
        secs(setup)
    );
    println!("  (b) mt.migrate_all, nothing pending: {}", secs(noop));
    println!("      mt.status:                   {}", secs(status));
}

fn main() {
    let cores = thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    let migrations = example_folder();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--floor") {
        let (n, sessions): (usize, usize) = (args[1].parse().expect("N"), args[2].parse().expect("sessions"));
        drop(fresh_database("bench_floor_only"));
        println!("floor, N = {n}, {sessions} sessions: {}", secs(floor("bench_floor_only", n, sessions, &migrations)));
        return;
    }
    if args.first().map(String::as_str) == Some("--noop") {
        for n in &args[1..] {
            noop_only(n.parse().expect("N"), cores, &migrations);
        }
        return;
    }
    // Arguments: N[xREPS] ..., e.g. 100x5 1000
    let sizes: Vec<String> = if args.is_empty() { vec!["100x5".into(), "1000".into()] } else { args };
    for size in sizes {
        let (n, reps) = size.split_once('x').unwrap_or((&size, "1"));
        full(n.parse().expect("N"), reps.parse().expect("REPS"), cores, &migrations);
    }
}
