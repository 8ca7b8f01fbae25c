//! A realistic migration history against the no-tracking psql floor, in one run.
//!
//! The corpus is `bench/corpus/saas/` (42 drizzle-kit migrations: 36 tables, 14 enums, 62
//! foreign keys, trigram, partial and unique indexes, row level security, ALTER steps and
//! backfills; `bench/corpus/generate_saas.py` writes it) or, with `--small`,
//! `bench/corpus/small/` (5 numbered migrations, 5 tables) for runs over many tenants. For
//! each N, on fresh databases of one cluster, in this order:
//!
//! 1. the floor: the SQL as the engine runs it (drizzle-kit's `"public".` qualifiers of tenant
//!    objects removed, `CREATE EXTENSION` run once beforehand in `public`), each migration
//!    file run with `psql -f` semantics (`\i`, one statement at a time in autocommit; with
//!    `--floor-per-migration`, one transaction per file; with `--floor-per-tenant`, one
//!    transaction per schema, as drizzle-orm's migrator runs a folder) into N empty schemas with
//!    `search_path = <schema>, public`, no tracking at all, from as many psql sessions as
//!    the machine has cores, then again from 10 sessions;
//! 2. the predecessor (drizzle-multitenant 1.3.5's CLI, `bench/predecessor/`, 10 tenants at
//!    once) on the floor's SQL in N empty schemas, its no-op rerun and its `status` (unless
//!    `--no-predecessor`, or when `bench/predecessor/run.sh install` has not been run);
//! 3. `mt.migrate_all(concurrency => W)` on N fresh tenants (W = cores unless `--workers`),
//!    the folder registered with `mt.load_migrations`;
//!    (they are empty: each gets a copy of the template);
//! 4. `mt.migrate_all()` again with nothing pending, `mt.status`, and (unless `--no-drift`)
//!    `mt.drift_summary` over all tenants, cold, then again after one tenant changed, the
//!    health probe and one more tenant;
//! 5. in a fresh database again, `mt.migrate_all` on N tenants with template copies off
//!    (`mt.provision_from_template`), so that every migration is replayed.
//!
//! Every schema of the floor and every tenant is then checked against
//! `bench/corpus/<corpus>.expected.json` (tables, columns, enums, foreign keys, indexes,
//! policies, ...), and no tenant may show drift. The cluster's durability settings and the
//! file system of its data directory are printed with the figures: `bench/run.sh corpus`
//! runs on a cluster with fsync, synchronous_commit and full_page_writes on.
//!
//! With `--scale`, for fleets of 10,000 tenants and more, steps 1, 2 and 5 are left out: the
//! figures are those of the catalog's scale (no-op run, status, drift, the health probe, one
//! more tenant), not ratios.
//!
//! The workers' memory (peak RSS and private memory of any one worker process, read from
//! /proc) is sampled during the runs of steps 3 and 5.
//!
//! Usage: corpus [--small] [--scale] [--workers W] [--floor-per-migration | --floor-per-tenant] [--no-drift]
//!               [--no-predecessor] [N ...]
//!        (default N: 100)

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::Duration;

use multitenant_bench::{
    connect, drop_tenant_roles, fresh_database, in_batches, ratio, secs, timed, url, MemoryPeak, WorkerMemory,
};
use multitenant_core::migrations::{parse_folder, read_folder};
use multitenant_core::sql_text;

/// Tenant roles are cluster-wide: this database's get their own names, and go with it.
const ROLE_TEMPLATE: &str = "bcorpus_{schema}";
const FLOOR_DB: &str = "bench_corpus_floor";
const MT_DB: &str = "bench_corpus";
const PREDECESSOR_DB: &str = "bench_corpus_predecessor";
/// Tenants the predecessor's CLI migrates at once, one connection each (its users' setting
/// in the issue that asked for the comparison).
const PREDECESSOR_CONCURRENCY: usize = 10;

/// How the floor's psql sessions bracket the statements in transactions.
#[derive(Clone, Copy)]
enum FloorMode {
    Autocommit,
    PerMigration,
    PerTenant,
}

impl FloorMode {
    fn describe(self) -> &'static str {
        match self {
            FloorMode::Autocommit => "autocommit, as psql -f",
            FloorMode::PerMigration => "one transaction per file",
            FloorMode::PerTenant => "one transaction per schema",
        }
    }
}

struct Options {
    corpus: &'static str,
    workers: usize,
    floor_mode: FloorMode,
    drift: bool,
    /// Only the figures of scale: no floors, no replay.
    scale: bool,
    /// The predecessor's CLI on the same SQL (when bench/predecessor/ is installed).
    predecessor: bool,
    sizes: Vec<usize>,
}

fn options(cores: usize) -> Options {
    let mut o = Options {
        corpus: "saas",
        workers: cores,
        floor_mode: FloorMode::Autocommit,
        drift: true,
        scale: false,
        predecessor: true,
        sizes: Vec::new(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--small" => o.corpus = "small",
            "--workers" => o.workers = args.next().and_then(|w| w.parse().ok()).expect("--workers W"),
            "--floor-per-migration" => o.floor_mode = FloorMode::PerMigration,
            "--floor-per-tenant" => o.floor_mode = FloorMode::PerTenant,
            "--no-drift" => o.drift = false,
            "--scale" => o.scale = true,
            "--no-predecessor" => o.predecessor = false,
            n => o.sizes.push(n.parse().unwrap_or_else(|_| panic!("not a number of tenants: {n}"))),
        }
    }
    if o.sizes.is_empty() {
        o.sizes.push(100);
    }
    o
}

/// The corpus folder, its migrations as the engine runs them, the extensions they create
/// and what one tenant schema holds afterwards.
struct Corpus {
    folder: PathBuf,
    migrations: Vec<String>,
    extensions: BTreeSet<String>,
    expected: BTreeMap<String, i64>,
}

fn load(corpus: &str) -> Corpus {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let folder = root.join(corpus).canonicalize().unwrap();
    let parsed = parse_folder(&read_folder(&folder).unwrap()).unwrap();
    // What `Plan::load` in src/engine.rs does to tenant migrations.
    let (mut created, mut extensions) = (BTreeSet::new(), BTreeSet::new());
    let migrations = parsed
        .migrations
        .iter()
        .map(|m| {
            created.extend(sql_text::created_names(&m.sql, "public"));
            let sql = sql_text::unqualify(&m.sql, "public", &created);
            let found = sql_text::extension_statements(&sql);
            extensions.extend(found.iter().map(|e| e.name.clone()));
            sql_text::without(&sql, &found)
        })
        .collect::<Vec<_>>();
    let text = std::fs::read_to_string(root.join(format!("{corpus}.expected.json"))).unwrap();
    let expected: BTreeMap<String, i64> = serde_json::from_str(&text).unwrap();
    assert_eq!(expected["migrations"], migrations.len() as i64, "{corpus}.expected.json is out of date");
    Corpus { folder, migrations, extensions, expected }
}

/// A scratch directory under /tmp the server (running as postgres) can read.
fn scratch() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mt_bench_corpus_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

fn psql() -> PathBuf {
    Path::new(&std::env::var("PG_BIN").unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".into())).join("psql")
}

/// A fresh database for a baseline: the corpus's extensions created once in `public` (as the
/// engine creates them) and the given empty schemas, checkpointed.
fn baseline_database(name: &str, corpus: &Corpus, schemas: impl Iterator<Item = String>) -> postgres::Client {
    let mut client = fresh_database(name);
    for extension in &corpus.extensions {
        client.batch_execute(&format!("CREATE EXTENSION IF NOT EXISTS \"{extension}\" SCHEMA public")).unwrap();
    }
    in_batches(&mut client, schemas.map(|schema| format!("CREATE SCHEMA {schema}")));
    client.batch_execute("CHECKPOINT").unwrap();
    client
}

/// The corpus's migrations as the engine runs them, a numbered file each (`0000_migration.sql`,
/// the names the predecessor's CLI sorts by) in `dir/migrations`, written once per run.
fn write_migrations(corpus: &Corpus, dir: &Path) -> Vec<PathBuf> {
    let folder = dir.join("migrations");
    std::fs::create_dir_all(&folder).unwrap();
    let files: Vec<PathBuf> =
        (0..corpus.migrations.len()).map(|i| folder.join(format!("{i:04}_migration.sql"))).collect();
    for (file, sql) in files.iter().zip(&corpus.migrations) {
        std::fs::write(file, sql).unwrap();
    }
    files
}

/// The floor: N empty schemas, the migrations run into each by `sessions` psql processes.
fn floor(corpus: &Corpus, dir: &Path, n: usize, sessions: usize, mode: FloorMode) -> Duration {
    let mut client = baseline_database(FLOOR_DB, corpus, (0..n).map(|t| format!("floor_{t}")));
    let files = write_migrations(corpus, dir);
    let scripts: Vec<PathBuf> = (0..sessions)
        .map(|s| {
            let mut script = String::from("SET client_min_messages = warning;\n");
            for t in (s..n).step_by(sessions) {
                writeln!(script, "SET search_path = floor_{t}, public;").unwrap();
                if let FloorMode::PerTenant = mode {
                    writeln!(script, "BEGIN;").unwrap();
                }
                for file in &files {
                    let include = format!("\\i {}", file.display());
                    if let FloorMode::PerMigration = mode {
                        writeln!(script, "BEGIN;\n{include}\nCOMMIT;").unwrap();
                    } else {
                        writeln!(script, "{include}").unwrap();
                    }
                }
                if let FloorMode::PerTenant = mode {
                    writeln!(script, "COMMIT;").unwrap();
                }
            }
            let path = dir.join(format!("session_{s}.sql"));
            std::fs::write(&path, script).unwrap();
            path
        })
        .collect();
    // Errors go to a file per session: a pipe nobody reads yet could fill and stall psql.
    let errors: Vec<PathBuf> = (0..sessions).map(|s| dir.join(format!("session_{s}.err"))).collect();
    let (_, elapsed) = timed(|| {
        let children: Vec<_> = scripts
            .iter()
            .zip(&errors)
            .map(|(script, errors)| {
                Command::new(psql())
                    .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", &url(FLOOR_DB), "-f"])
                    .arg(script)
                    .stdout(Stdio::null())
                    .stderr(std::fs::File::create(errors).unwrap())
                    .spawn()
                    .expect("psql")
            })
            .collect();
        for (mut child, errors) in children.into_iter().zip(&errors) {
            let status = child.wait().unwrap();
            assert!(status.success(), "psql failed: {}", std::fs::read_to_string(errors).unwrap_or_default());
        }
    });
    check_shapes(
        &mut client,
        "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'floor\\_%'",
        "floor_0",
        corpus,
        n,
        "floor",
    );
    drop(client);
    connect("postgres").batch_execute(&format!("DROP DATABASE {FLOOR_DB} WITH (FORCE)")).unwrap();
    elapsed
}

/// Per schema, the count of each kind of object the corpus makes, as `name=count` pairs:
/// how many schemas of `schemas` (a query of schema names) have each shape.
fn shapes(client: &mut postgres::Client, schemas: &str) -> Vec<(String, i64)> {
    // Grouped joins only: correlated subqueries per schema grow quadratically with tenants.
    let sql = format!(
        "WITH s AS (
             SELECT n.oid FROM pg_namespace n JOIN ({schemas}) x(name) ON x.name = n.nspname
         ), tracking AS (
             SELECT c.oid FROM pg_class c JOIN s ON s.oid = c.relnamespace WHERE c.relname = mt.get_config('tracking_table')
         ), rel AS (
             SELECT c.oid, c.relnamespace AS ns, c.relkind, c.relrowsecurity FROM pg_class c JOIN s ON s.oid = c.relnamespace
              WHERE c.oid NOT IN (SELECT oid FROM tracking)
                AND c.oid NOT IN (SELECT d.objid FROM pg_depend d JOIN tracking t ON t.oid = d.refobjid
                                   WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass)
         ), tab AS (
             SELECT * FROM rel WHERE relkind IN ('r', 'p')
         ), metric (ns, name, n) AS (
             SELECT ns, 'tables', count(*) FROM tab GROUP BY 1
             UNION ALL SELECT tab.ns, 'columns', count(*) FROM tab
                JOIN pg_attribute a ON a.attrelid = tab.oid AND a.attnum > 0 AND NOT a.attisdropped GROUP BY 1
             UNION ALL SELECT ty.typnamespace, 'enums', count(*) FROM pg_type ty JOIN s ON s.oid = ty.typnamespace
              WHERE ty.typtype = 'e' GROUP BY 1
             UNION ALL SELECT ty.typnamespace, 'enum_labels', count(*) FROM pg_type ty JOIN s ON s.oid = ty.typnamespace
                JOIN pg_enum e ON e.enumtypid = ty.oid GROUP BY 1
             UNION ALL SELECT tab.ns, CASE k.contype WHEN 'f' THEN 'foreign_keys' WHEN 'u' THEN 'unique_constraints'
                                                     ELSE 'check_constraints' END, count(*)
                FROM tab JOIN pg_constraint k ON k.conrelid = tab.oid AND k.contype IN ('f', 'u', 'c') GROUP BY 1, 2
             UNION ALL SELECT tab.ns, 'indexes', count(*) FROM tab JOIN pg_index i ON i.indrelid = tab.oid GROUP BY 1
             UNION ALL SELECT ns, 'sequences', count(*) FROM rel WHERE relkind = 'S' GROUP BY 1
             UNION ALL SELECT ns, 'rls_tables', count(*) FROM tab WHERE relrowsecurity GROUP BY 1
             UNION ALL SELECT tab.ns, 'policies', count(*) FROM tab JOIN pg_policy p ON p.polrelid = tab.oid GROUP BY 1
             UNION ALL SELECT ns, 'views', count(*) FROM rel WHERE relkind IN ('v', 'm') GROUP BY 1
             UNION ALL SELECT p.pronamespace, 'functions', count(*) FROM pg_proc p JOIN s ON s.oid = p.pronamespace GROUP BY 1
             UNION ALL SELECT tab.ns, 'triggers', count(*) FROM tab
                JOIN pg_trigger tg ON tg.tgrelid = tab.oid AND NOT tg.tgisinternal GROUP BY 1
         ), per_schema AS (
             SELECT ns, string_agg(name || '=' || n, ' ' ORDER BY name) AS shape FROM metric GROUP BY ns
         )
         SELECT coalesce(p.shape, ''), count(*) FROM s LEFT JOIN per_schema p ON p.ns = s.oid GROUP BY 1 ORDER BY 2 DESC"
    );
    client.query(&sql, &[]).unwrap().iter().map(|row| (row.get(0), row.get(1))).collect()
}

/// The shape `expected.json` describes, written as [`shapes`] writes them.
fn expected_shape(expected: &BTreeMap<String, i64>) -> String {
    let mut pairs: Vec<_> =
        expected.iter().filter(|(k, v)| !["migrations", "rows"].contains(&k.as_str()) && **v > 0).collect();
    pairs.sort_by(|a, b| a.0.cmp(b.0));
    pairs.into_iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ")
}

/// Every schema has the intended shape, and `sample` the rows the migrations insert.
fn check_shapes(client: &mut postgres::Client, schemas: &str, sample: &str, corpus: &Corpus, n: usize, what: &str) {
    let want = expected_shape(&corpus.expected);
    let found = shapes(client, schemas);
    assert!(found == [(want.clone(), n as i64)], "{what}: expected {n} schemas with {want}, found {found:?}");
    let tables: Vec<String> = client
        .query(
            "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = $1 AND c.relkind = 'r' AND c.relname <> mt.get_config('tracking_table')",
            &[&sample],
        )
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    let rows: i64 = tables
        .iter()
        .map(|t| client.query_one(&format!("SELECT count(*) FROM {t}"), &[]).unwrap().get::<_, i64>(0))
        .sum();
    assert_eq!(rows, corpus.expected["rows"], "{what}: rows the migrations insert, in {sample}");
}

fn drop_mt_database() {
    let mut admin = connect("postgres");
    admin.batch_execute(&format!("DROP DATABASE IF EXISTS {MT_DB} WITH (FORCE)")).unwrap();
    drop_tenant_roles(&mut admin, MT_DB);
}

struct Ours {
    setup: Duration,
    fresh: Duration,
    noop: Duration,
    status: Duration,
    /// Cold (nothing kept), then with one tenant changed since the last read.
    drift: Option<(Duration, Duration)>,
    /// N tenants with template copies off, so every migration is replayed (not with --scale).
    replay: Option<(Duration, MemoryPeak)>,
    /// The workers' memory during the fresh run.
    fresh_memory: MemoryPeak,
    /// `mt.health_check()`: the first call (computes), the median of five more (snapshot),
    /// and the median of five `pools => 'none'` (the counts, from the snapshot).
    health: (Duration, Duration, Duration),
    /// One `mt.create_tenant` among N tenants (median of three).
    create_tenant: Duration,
}

fn migrate_all(client: &mut postgres::Client, workers: usize, n: usize) -> Duration {
    let (row, elapsed) = timed(|| {
        client
            .query_one(
                "SELECT count(*), count(*) FILTER (WHERE status = 'failed'), min(error)
                   FROM mt.migrate_all(concurrency => $1)",
                &[&(workers as i32)],
            )
            .unwrap()
    });
    let (rows, failed, error): (i64, i64, Option<String>) = (row.get(0), row.get(1), row.get(2));
    assert_eq!((rows, failed), (n as i64, 0), "mt.migrate_all: {failed} failed, first error {error:?}");
    elapsed
}

/// A fresh database with the extension and the corpus registered.
fn mt_database(corpus: &Corpus, dir: &Path, options: &Options) -> postgres::Client {
    // In batches first: a thousand roles dropped in fresh_database's one transaction could
    // run out of lock slots.
    drop_mt_database();
    let mut client = fresh_database(MT_DB);
    // The server reads the folder itself: give it a copy it can read.
    let copy = dir.join(options.corpus);
    if !copy.exists() {
        let status = Command::new("cp").arg("-r").arg(&corpus.folder).arg(&copy).status().unwrap();
        assert!(status.success());
        Command::new("chmod").arg("-R").arg("a+rX").arg(&copy).status().unwrap();
    }
    client.execute("SELECT mt.set_config('tenant_role_template', $1)", &[&ROLE_TEMPLATE]).unwrap();
    client.execute("SELECT count(*) FROM mt.load_migrations($1)", &[&copy.to_str().unwrap()]).unwrap();
    client
}

fn ours(corpus: &Corpus, dir: &Path, n: usize, options: &Options) -> Ours {
    let mut client = mt_database(corpus, dir, options);
    let (_, setup) = timed(|| {
        for start in (0..n).step_by(1000) {
            let end = (start + 1000).min(n) as i32;
            client
                .execute(
                    "SELECT count(*) FROM (SELECT mt.create_tenant('t' || g, migrate => false)
                       FROM generate_series($1::int, $2::int) g) s",
                    &[&(start as i32 + 1), &end],
                )
                .unwrap();
        }
    });
    client.batch_execute("CHECKPOINT").unwrap();
    let memory = WorkerMemory::start();
    let fresh = migrate_all(&mut client, options.workers, n);
    let fresh_memory = memory.finish();
    let noop = migrate_all(&mut client, options.workers, n);
    let (pending, status) =
        timed(|| client.query_one("SELECT count(*), coalesce(sum(pending), 0) FROM mt.status", &[]).unwrap());
    assert_eq!((pending.get::<_, i64>(0), pending.get::<_, i64>(1)), (n as i64, 0), "mt.status");
    let drift = options.drift.then(|| {
        let drifted = |client: &mut postgres::Client, expected: i64| {
            let (drifted, elapsed) = timed(|| {
                client
                    .query_one("SELECT count(*) FILTER (WHERE has_drift) FROM mt.drift_summary", &[])
                    .unwrap()
                    .get::<_, i64>(0)
            });
            assert_eq!(drifted, expected, "tenants with drift");
            elapsed
        };
        let cold = drifted(&mut client, 0);
        client.batch_execute("CREATE TABLE tenant_t1.bench_hotfix (id int)").unwrap();
        let steady = drifted(&mut client, 1);
        client.batch_execute("DROP TABLE tenant_t1.bench_hotfix").unwrap();
        drifted(&mut client, 0);
        (cold, steady)
    });
    // The load balancer's probe, computing and then answering from its snapshot, and one more
    // tenant, created with its schema (a copy of the template), three times: the median.
    let (_, health_first) = timed(|| client.query_one("SELECT mt.health_check()", &[]).unwrap());
    let mut median_of_5 = |sql: &str| {
        let mut probes: Vec<Duration> = (0..5).map(|_| timed(|| client.query_one(sql, &[]).unwrap()).1).collect();
        probes.sort();
        probes[2]
    };
    let health = median_of_5("SELECT mt.health_check()");
    let health_counts = median_of_5("SELECT mt.health_check(pools => 'none')");
    let mut creates: Vec<Duration> = (1..=3)
        .map(|i| timed(|| client.execute("SELECT mt.create_tenant($1)", &[&format!("probe{i}")]).unwrap()).1)
        .collect();
    creates.sort();
    client.batch_execute("SELECT mt.drop_tenant('probe' || g, force => true) FROM generate_series(1, 3) g").unwrap();
    check_shapes(&mut client, "SELECT schema_name FROM mt.tenants", "tenant_t1", corpus, n, "mt");
    drop(client);
    drop_mt_database();
    let replay = (!options.scale).then(|| replay(corpus, dir, n, options));
    Ours {
        setup,
        fresh,
        fresh_memory,
        noop,
        status,
        drift,
        replay,
        health: (health_first, health, health_counts),
        create_tenant: creates[1],
    }
}

/// The replay path, in a database of its own with N tenants like the floor's, template copies
/// off (`mt.provision_from_template`), so every migration is applied.
fn replay(corpus: &Corpus, dir: &Path, n: usize, options: &Options) -> (Duration, MemoryPeak) {
    let mut client = mt_database(corpus, dir, options);
    client
        .batch_execute(&format!(
            "SELECT count(*) FROM (SELECT mt.create_tenant('t' || g, migrate => false) FROM generate_series(1, {n}) g) s;
             SET mt.provision_from_template = off;
             CHECKPOINT"
        ))
        .unwrap();
    let memory = WorkerMemory::start();
    let (row, replay) = timed(|| {
        client
            .query_one(
                "SELECT count(*) FILTER (WHERE status = 'migrated'), min(error) FROM mt.migrate_all(concurrency => $1)",
                &[&(options.workers as i32)],
            )
            .unwrap()
    });
    let memory = memory.finish();
    let (migrated, error): (i64, Option<String>) = (row.get(0), row.get(1));
    assert_eq!(migrated, n as i64, "replayed tenants, first error {error:?}");
    check_shapes(&mut client, "SELECT schema_name FROM mt.tenants", "tenant_t1", corpus, n, "mt, replayed");
    drop(client);
    drop_mt_database();
    (replay, memory)
}

/// The predecessor's figures: a run migrating N empty schemas, the same run again with
/// nothing pending, and its `status`.
struct Predecessor {
    migrate: Duration,
    noop: Duration,
    status: Duration,
}

fn predecessor_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("predecessor")
}

/// The predecessor's CLI (drizzle-multitenant 1.3.5 from npm, `bench/predecessor/`), with its
/// --json output parsed. Its config reads the database, the tenants (t1..tN, schemas
/// pred_t1..) and the folder from the environment.
fn predecessor_cli(folder: &Path, n: usize, args: &[&str]) -> (serde_json::Value, Duration) {
    let dir = predecessor_dir();
    // Into a file: node cuts output to a pipe short when the CLI exits (at 64 kB).
    let out = folder.with_extension("json");
    let (status, elapsed) = timed(|| {
        Command::new("node")
            .current_dir(&dir)
            .arg("node_modules/drizzle-multitenant/bin/drizzle-multitenant.js")
            .args(["--json", "--no-color"])
            .args(args)
            .args(["--config", "tenant.config.js"])
            .env("MT_PRED_DATABASE_URL", url(PREDECESSOR_DB))
            .env("MT_PRED_TENANT_COUNT", n.to_string())
            .env("MT_PRED_MIGRATIONS", folder)
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(Stdio::null())
            .status()
            .expect("node")
    });
    let text = std::fs::read_to_string(&out).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!("predecessor {args:?} ({status}): no JSON ({e}): {}", &text[..text.len().min(2000)])
    });
    assert!(json.get("error").is_none(), "predecessor {args:?}: {}", json["error"]);
    (json, elapsed)
}

/// The predecessor on the SQL the floor runs, in N empty schemas of a database of its own,
/// with the corpus's extensions created in `public` beforehand, as for the floor. Its CLI runs
/// each file verbatim in one transaction, `search_path = <schema>, public`: drizzle-kit's own
/// files, with their `"public".` qualifiers, fail in every tenant (`relation
/// "public.organizations" does not exist`); it does not create the schemas either.
fn predecessor(corpus: &Corpus, dir: &Path, n: usize) -> Predecessor {
    let files = write_migrations(corpus, dir);
    let folder = files[0].parent().unwrap();
    let mut client = baseline_database(PREDECESSOR_DB, corpus, (1..=n).map(|t| format!("pred_t{t}")));
    let concurrency = PREDECESSOR_CONCURRENCY.to_string();
    let migrate_args = ["migrate", "--all", "--concurrency", concurrency.as_str()];
    let (run, migrate) = predecessor_cli(folder, n, &migrate_args);
    let summary = &run["summary"];
    assert_eq!((summary["succeeded"].as_u64(), summary["failed"].as_u64()), (Some(n as u64), Some(0)), "{summary}");
    let (rerun, noop) = predecessor_cli(folder, n, &migrate_args);
    let applied: usize = rerun["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["appliedMigrations"].as_array().map_or(0, Vec::len))
        .sum();
    assert_eq!((rerun["summary"]["succeeded"].as_u64(), applied), (Some(n as u64), 0), "the predecessor's rerun");
    let (state, status) = predecessor_cli(folder, n, &["status"]);
    assert_eq!(state["summary"]["upToDate"].as_u64(), Some(n as u64), "the predecessor's status: {}", state["summary"]);
    check_shapes(
        &mut client,
        "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'pred\\_%'",
        "pred_t1",
        corpus,
        n,
        "predecessor",
    );
    drop(client);
    connect("postgres").batch_execute(&format!("DROP DATABASE {PREDECESSOR_DB} WITH (FORCE)")).unwrap();
    Predecessor { migrate, noop, status }
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The durability settings and where the data directory lives, printed with the figures.
fn describe_cluster() -> String {
    let mut client = connect("postgres");
    let show = |client: &mut postgres::Client, name: &str| -> String {
        client.query_one(&format!("SHOW {name}"), &[]).unwrap().get(0)
    };
    let settings =
        ["fsync", "synchronous_commit", "full_page_writes"].map(|s| format!("{s}={}", show(&mut client, s))).join(" ");
    let data = show(&mut client, "data_directory");
    let fs = Command::new("stat").args(["-f", "-c", "%T", &data]).output().ok();
    let fs = fs.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string()).unwrap_or_default();
    format!("{settings}, data directory on {fs} ({data})")
}

fn main() {
    let cores = thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    let options = options(cores);
    let corpus = load(options.corpus);
    let dir = scratch();
    let floor_mode = options.floor_mode.describe();
    for &n in &options.sizes {
        println!(
            "corpus {} ({} migrations), N = {n} tenants, {cores} cores; {}",
            options.corpus,
            corpus.migrations.len(),
            describe_cluster()
        );
        let floors = (!options.scale).then(|| {
            let per_core = floor(&corpus, &dir, n, cores, options.floor_mode);
            (per_core, floor(&corpus, &dir, n, 10, options.floor_mode))
        });
        let installed = predecessor_dir().join("node_modules/drizzle-multitenant").exists();
        if options.predecessor && !options.scale && !installed {
            println!("  (the predecessor is not installed: bench/predecessor/run.sh install)");
        }
        let predecessor = (options.predecessor && !options.scale && installed).then(|| predecessor(&corpus, &dir, n));
        let ours = ours(&corpus, &dir, n, &options);
        let w = options.workers;
        let line = |label: String, value: String| println!("  {label:<52} {value}");
        let against_floors = |d: Duration| match floors {
            Some((per_core, ten)) => format!(
                "{}  = {} of the {cores}-session floor, {} of the 10-session floor",
                secs(d),
                ratio(d, per_core),
                ratio(d, ten)
            ),
            None => secs(d),
        };
        if let Some((per_core, ten)) = floors {
            line(format!("floor, psql, {cores} sessions ({floor_mode}):"), secs(per_core));
            line(format!("floor, psql, 10 sessions ({floor_mode}):"), secs(ten));
        }
        if let Some(p) = &predecessor {
            let c = PREDECESSOR_CONCURRENCY;
            line(format!("predecessor (drizzle-multitenant 1.3.5), {c} at once:"), against_floors(p.migrate));
        }
        let of_predecessor = |d: Duration| {
            predecessor.as_ref().map(|p| format!(", {} of the predecessor", ratio(d, p.migrate))).unwrap_or_default()
        };
        line(
            format!("mt.migrate_all, {w} workers, fresh tenants:"),
            against_floors(ours.fresh) + &of_predecessor(ours.fresh),
        );
        line("  its workers' memory:".into(), ours.fresh_memory.to_string());
        if let Some((replay, memory)) = ours.replay {
            line(
                format!("mt.migrate_all, {w} workers, tenants replaying:"),
                against_floors(replay) + &of_predecessor(replay),
            );
            line("  its workers' memory:".into(), memory.to_string());
        }
        let against_predecessor = |ours: Duration, theirs: Option<Duration>| match theirs {
            Some(theirs) => {
                format!("{}  (the predecessor: {}, {} of it)", secs(ours), secs(theirs), ratio(ours, theirs))
            }
            None => secs(ours),
        };
        line(
            "mt.migrate_all, nothing pending:".into(),
            against_predecessor(ours.noop, predecessor.as_ref().map(|p| p.noop)),
        );
        line("mt.status:".into(), against_predecessor(ours.status, predecessor.as_ref().map(|p| p.status)));
        if let Some((cold, steady)) = ours.drift {
            line("mt.drift_summary, every tenant (cold):".into(), secs(cold));
            line("mt.drift_summary, one tenant changed since:".into(), secs(steady));
        }
        line(
            "mt.health_check(), computing, then from its snapshot:".into(),
            format!("{:.1} ms, {:.1} ms (median of 5)", millis(ours.health.0), millis(ours.health.1)),
        );
        line("mt.health_check(pools => 'none'), from its snapshot:".into(), format!("{:.1} ms", millis(ours.health.2)));
        line(
            "mt.create_tenant, one more tenant (median of 3):".into(),
            format!("{:.1} ms", millis(ours.create_tenant)),
        );
        println!("  (setup, not timed: mt.create_tenant(migrate => false) x {n} in {})", secs(ours.setup));
        println!("  (every schema, floor and mt alike: {})", expected_shape(&corpus.expected));
    }
    std::fs::remove_dir_all(&dir).ok();
}
