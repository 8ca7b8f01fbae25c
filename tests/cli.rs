//! The `mt` binary against a real cluster, over TCP like a deploy pipeline: the migration
//! folders are read on this side and pushed through `mt.add_migration`, never read by the
//! server. The binary is built once with escargot.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use multitenant_integration::{base_url, connect, fresh_database};
use serde_json::Value;

fn mt_binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        escargot::CargoBuild::new()
            .manifest_path(Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml"))
            .package("multitenant-cli")
            .bin("mt")
            .run()
            .expect("build the mt binary")
            .path()
            .to_path_buf()
    })
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", self.stdout, self.stderr))
    }
}

fn mt_command(url: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(mt_binary());
    cmd.args(args)
        .env("DATABASE_URL", url)
        .env("NO_COLOR", "1")
        .env_remove("PGHOST")
        .env_remove("PGPORT")
        .env_remove("PGUSER")
        .env_remove("PGDATABASE")
        .stdin(Stdio::null());
    cmd
}

fn mt(url: &str, args: &[&str]) -> Run {
    let output = mt_command(url, args).output().expect("run mt");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// `mt` that must exit with `code`.
fn mt_exit(url: &str, args: &[&str], code: i32) -> Run {
    let run = mt(url, args);
    assert_eq!(run.code, code, "mt {args:?} exited {}:\nstdout: {}\nstderr: {}", run.code, run.stdout, run.stderr);
    run
}

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/drizzle")
}

/// A scratch directory that the server's `postgres` user can read too.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mt-cli-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn open_to_postgres(dir: &Path) {
    let status = Command::new("chmod").arg("-R").arg("a+rX").arg(dir).status().unwrap();
    assert!(status.success());
}

fn write(dir: &Path, file: &str, content: &str) {
    let path = dir.join(file);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
}

#[test]
fn migrate_a_drizzle_folder_with_the_hashes_of_the_server_loader() {
    let url = fresh_database("cli_drizzle");
    let dir = scratch("drizzle");
    copy_dir(&examples(), &dir);
    open_to_postgres(&dir);
    mt_exit(&url, &["tenant", "create", "acme", "globex"], 0);

    let first = mt_exit(&url, &["migrate", "--folder", dir.to_str().unwrap(), "--json"], 0).json();
    assert_eq!(first["folder"]["format"], "drizzle-kit");
    assert_eq!(first["folder"]["migrations"], 22);
    assert_eq!(first["registered"].as_array().unwrap().len(), 22);
    assert!(first["registered"].as_array().unwrap().iter().all(|r| r["action"] == "added"), "{first}");
    assert_eq!(first["summary"]["migrated"], 2);
    assert_eq!(first["summary"]["failed"], 0);
    assert_eq!(first["summary"]["applied"], 44);
    assert_eq!(first["shared"]["status"], "up_to_date");
    assert!(first["failures"].as_array().unwrap().is_empty());

    // Byte for byte what the server's own loader reads from the same folder.
    let mut client = connect(&url);
    let server: Vec<(i32, String, String, Option<i64>, String)> = client
        .query(
            "SELECT idx, name, sha256, journal_when, sql FROM mt.read_migration_folder($1) ORDER BY idx",
            &[&dir.to_str()],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect();
    let registered: Vec<(i32, String, String, Option<i64>, String)> = client
        .query(
            "SELECT idx, name, sha256, journal_when, sql FROM mt.migrations WHERE scope = 'tenant' ORDER BY idx",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect();
    assert_eq!(registered.len(), 22);
    assert_eq!(registered, server);
    for (_, name, sha256, _, _) in &registered {
        let bytes = std::fs::read(dir.join(format!("{name}.sql"))).unwrap();
        assert!(bytes.ends_with(b"\n"), "{name} keeps its trailing newline");
        assert_eq!(sha256, &multitenant_core::migrations::sha256_hex(std::str::from_utf8(&bytes).unwrap()));
    }

    // Again: nothing to do, nothing registered.
    let again = mt_exit(&url, &["migrate", "--folder", dir.to_str().unwrap(), "--json"], 0).json();
    assert!(again["registered"].as_array().unwrap().iter().all(|r| r["action"] == "unchanged"), "{again}");
    assert_eq!(again["summary"]["up_to_date"], 2);
    assert_eq!(again["summary"]["migrated"], 0);
    let human = mt_exit(&url, &["migrate", "--folder", dir.to_str().unwrap()], 0);
    assert!(human.stdout.contains("22 migration(s): 0 registered, 22 unchanged"), "{}", human.stdout);
    assert!(human.stdout.contains("migrate: 2 tenants: 0 migrated, 2 up to date, 0 failed"), "{}", human.stdout);

    // A changed file is refused, named, and nothing is registered.
    let file = dir.join("0003_projects.sql");
    let original = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, original.trim_end()).unwrap();
    write(&dir, "0022_new.sql", "CREATE TABLE extra (id int);\n");
    let mut journal: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("meta/_journal.json")).unwrap()).unwrap();
    journal["entries"].as_array_mut().unwrap().push(serde_json::json!(
        {"idx": 22, "version": "7", "when": 1800000000000i64, "tag": "0022_new", "breakpoints": true}));
    write(&dir, "meta/_journal.json", &journal.to_string());
    let refused = mt_exit(&url, &["migrate", "--folder", dir.to_str().unwrap()], 2);
    assert!(refused.stderr.contains("0003_projects.sql"), "{}", refused.stderr);
    assert!(refused.stderr.contains("already registered with different content"), "{}", refused.stderr);
    let refused_json = mt_exit(&url, &["migrate", "--folder", dir.to_str().unwrap(), "--json"], 2).json();
    assert_eq!(refused_json["error"]["sqlstate"], "23505");
    assert_eq!(refused_json["error"]["kind"], "bad_input");
    let count: i64 = client.query_one("SELECT count(*) FROM mt.migrations", &[]).unwrap().get(0);
    assert_eq!(count, 22, "the transaction registered nothing");

    std::fs::write(&file, original).unwrap();
    let dry = mt_exit(&url, &["migrate", "--folder", dir.to_str().unwrap(), "--dry-run", "--json"], 0).json();
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["summary"]["pending"], 2, "{dry}");
    let count: i64 = client.query_one("SELECT count(*) FROM mt.migrations", &[]).unwrap().get(0);
    assert_eq!(count, 22, "a dry run registers nothing");
    let status = mt_exit(&url, &["status", "--json"], 0).json();
    assert_eq!(status["summary"]["pending_migrations"], 0);

    let done = mt_exit(&url, &["migrate", "--folder", dir.to_str().unwrap(), "--json"], 0).json();
    assert_eq!(done["summary"]["migrated"], 2);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_failing_tenant_is_named_with_its_migration_and_sqlstate() {
    let url = fresh_database("cli_fail");
    let dir = scratch("fail");
    write(&dir, "0001_items.sql", "CREATE TABLE items (id int);\n");
    mt_exit(&url, &["tenant", "create", "a", "b", "c"], 0);
    mt_exit(&url, &["migrate", "--folder", dir.to_str().unwrap()], 0);
    connect(&url).batch_execute("ALTER TABLE tenant_b.items ADD COLUMN note text").unwrap();
    write(&dir, "0002_note.sql", "ALTER TABLE items ADD COLUMN note text;\n");

    let human = mt_exit(&url, &["migrate", "--folder", dir.to_str().unwrap(), "--no-progress"], 3);
    assert!(human.stdout.contains("migrate: 3 tenants: 2 migrated, 0 up to date, 1 failed"), "{}", human.stdout);
    assert!(human.stdout.contains("failed b at 0002_note: 42701"), "{}", human.stdout);

    let json = mt_exit(&url, &["migrate", "--folder", dir.to_str().unwrap(), "--json"], 3).json();
    assert_eq!(json["summary"]["failed"], 1);
    assert_eq!(json["summary"]["up_to_date"], 2);
    let failure = &json["failures"][0];
    assert_eq!(failure["tenant_id"], "b");
    assert_eq!(failure["migration"], "0002_note");
    assert_eq!(failure["sqlstate"], "42701");
    assert!(failure["error"].as_str().unwrap().contains("note"), "{failure}");

    // Plain progress lines when stderr is not a terminal.
    let lines = mt_exit(&url, &["migrate", "--folder", dir.to_str().unwrap()], 3);
    assert!(lines.stderr.contains("migrate: run "), "{}", lines.stderr);
    assert!(lines.stderr.contains("b failed at 0002_note: 42701"), "{}", lines.stderr);

    // The status says what is pending, and --check makes it an exit code.
    mt_exit(&url, &["status", "--check"], 7);
    let pending = mt_exit(&url, &["status", "--pending", "--json"], 0).json();
    assert_eq!(pending["tenants"].as_array().unwrap().len(), 1);
    assert_eq!(pending["tenants"][0]["pending_names"][0], "0002_note");
    connect(&url).batch_execute("ALTER TABLE tenant_b.items DROP COLUMN note").unwrap();
    mt_exit(&url, &["migrate"], 0);
    mt_exit(&url, &["status", "--check"], 0);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn diesel_and_timestamped_folders() {
    let url = fresh_database("cli_diesel");
    let dir = scratch("diesel");
    write(&dir, "00000000000000_diesel_initial_setup/up.sql", "-- setup\n");
    write(&dir, "00000000000000_diesel_initial_setup/down.sql", "-- nothing\n");
    write(&dir, "2019-02-26-002946_create_users/up.sql", "CREATE TABLE users (id int);\r\n");
    write(&dir, "2019-02-26-002946_create_users/down.sql", "DROP TABLE users;\n");
    let shared = scratch("timestamps");
    write(&shared, "20190226002946_plans.sql", "CREATE TABLE plans (id int);\n");
    write(&shared, "20190301000000_plan_names.sql", "ALTER TABLE plans ADD COLUMN name text;");
    mt_exit(&url, &["tenant", "create", "acme"], 0);
    let run = mt_exit(
        &url,
        &["migrate", "--folder", dir.to_str().unwrap(), "--shared-folder", shared.to_str().unwrap(), "--json"],
        0,
    )
    .json();
    assert_eq!(run["folder"]["format"], "diesel");
    assert_eq!(run["shared_folder"]["format"], "numbered");
    assert_eq!(run["shared"]["applied"], 2);
    assert_eq!(run["summary"]["migrated"], 1);
    let mut client = connect(&url);
    let rows: Vec<(String, i32, String, String)> = client
        .query("SELECT scope, idx, name, sha256 FROM mt.migrations ORDER BY scope, idx", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    let sha = multitenant_core::migrations::sha256_hex;
    assert_eq!(
        rows,
        vec![
            ("shared".into(), 0, "20190226002946_plans".into(), sha("CREATE TABLE plans (id int);\n")),
            ("shared".into(), 1, "20190301000000_plan_names".into(), sha("ALTER TABLE plans ADD COLUMN name text;")),
            ("tenant".into(), 0, "00000000000000_diesel_initial_setup".into(), sha("-- setup\n")),
            ("tenant".into(), 1, "2019-02-26-002946_create_users".into(), sha("CREATE TABLE users (id int);\r\n")),
        ]
    );
    let has_users: bool = client.query_one("SELECT to_regclass('tenant_acme.users') IS NOT NULL", &[]).unwrap().get(0);
    assert!(has_users);

    // mt generate continues each folder in its own layout.
    let generated = mt_exit(&url, &["generate", "add_posts", "--folder", dir.to_str().unwrap(), "--json"], 0).json();
    assert_eq!(generated["format"], "diesel");
    let generated = mt_exit(&url, &["generate", "more", "--folder", shared.to_str().unwrap(), "--json"], 0).json();
    assert_eq!(generated["format"], "numbered");
    mt_exit(&url, &["migrate", "--folder", dir.to_str().unwrap(), "--shared-folder", shared.to_str().unwrap()], 0);
    let count: i64 = client.query_one("SELECT count(*) FROM mt.migrations", &[]).unwrap().get(0);
    assert_eq!(count, 6);

    // Not a migration folder: the accepted layouts are named.
    let junk = scratch("junk");
    write(&junk, "notes.sql", "SELECT 1;");
    let refused = mt_exit(&url, &["migrate", "--folder", junk.to_str().unwrap()], 2);
    assert!(refused.stderr.contains("accepted layouts"), "{}", refused.stderr);
    for d in [dir, shared, junk] {
        std::fs::remove_dir_all(d).unwrap();
    }
}

#[test]
fn drift_health_and_their_exit_codes() {
    let url = fresh_database("cli_drift");
    let dir = scratch("drift");
    write(&dir, "0001_items.sql", "CREATE TABLE items (id int PRIMARY KEY, name varchar(100));\n");
    mt_exit(&url, &["tenant", "create", "a", "b"], 0);
    mt_exit(&url, &["migrate", "--folder", dir.to_str().unwrap()], 0);
    mt_exit(&url, &["drift"], 0);
    mt_exit(&url, &["health"], 0);

    connect(&url).batch_execute("ALTER TABLE tenant_b.items ALTER COLUMN name TYPE varchar(255)").unwrap();
    let drift = mt_exit(&url, &["drift", "--json"], 4).json();
    assert_eq!(drift["tenants_with_drift"], 1);
    assert_eq!(drift["reference"], "mt_template");
    let difference = &drift["differences"][0];
    assert_eq!(difference["tenant_id"], "b");
    assert_eq!(difference["object_name"], "items.name");
    assert_eq!(difference["change"], "changed");
    let human = mt_exit(&url, &["diff", "--tenant", "b", "--reference", "a"], 4);
    assert!(human.stdout.contains("1 tenant(s) compared with a, 1 drifted"), "{}", human.stdout);
    mt_exit(&url, &["drift", "--tenant", "a"], 0);

    // Degraded (drift) is healthy for a load balancer; unhealthy is not.
    let health = mt_exit(&url, &["health", "--json"], 0).json();
    assert_eq!(health["healthy"], true);
    assert_eq!(health["degradedPools"], 1);
    mt_exit(&url, &["health", "--fail-on-degraded"], 5);
    let failing = mt_exit(&url, &["health", "--pools", "failing", "--json"], 0).json();
    let listed: Vec<&str> =
        failing["pools"].as_array().unwrap().iter().map(|p| p["tenantId"].as_str().unwrap()).collect();
    assert_eq!((listed, &failing["totalPools"]), (vec!["b"], &serde_json::json!(2)));
    let counts = mt_exit(&url, &["health", "--pools", "none", "--json"], 0).json();
    assert!(counts.get("pools").is_none() && counts["degradedPools"] == 1, "{counts}");
    connect(&url).batch_execute("DROP SCHEMA tenant_a CASCADE").unwrap();
    let unhealthy = mt_exit(&url, &["health"], 5);
    assert!(unhealthy.stdout.contains("unhealthy"), "{}", unhealthy.stdout);

    // Unknown tenants are bad input.
    let unknown = mt_exit(&url, &["status", "--tenant", "nope"], 2);
    assert!(unknown.stderr.contains("unknown tenant(s): \"nope\""), "{}", unknown.stderr);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn tenants_seeds_and_settings_from_the_command_line() {
    let url = fresh_database("cli_tenants");
    let dir = scratch("tenants");
    write(&dir, "0001_users.sql", "CREATE TABLE users (id serial PRIMARY KEY, email text);\n");
    mt_exit(&url, &["migrate", "--folder", dir.to_str().unwrap()], 0);
    let created = mt_exit(&url, &["tenant", "create", "acme", "--metadata", "{\"plan\": \"pro\"}", "--json"], 0).json();
    assert_eq!(created["tenants"][0]["schema_name"], "tenant_acme");
    assert_eq!(created["tenants"][0]["metadata"]["plan"], "pro");
    mt_exit(&url, &["tenant", "create", "acme"], 2);

    write(&dir, "seed.sql", "INSERT INTO users (email) VALUES ('owner@acme.test');\n");
    let seed = dir.join("seed.sql");
    let seeded = mt_exit(&url, &["seed", "owner", "--file", seed.to_str().unwrap(), "--all", "--json"], 0).json();
    assert_eq!(seeded["registered"], "added");
    assert_eq!(seeded["summary"]["by_status"]["seeded"], 1);
    let again = mt_exit(&url, &["seed", "owner", "--file", seed.to_str().unwrap(), "--all", "--json"], 0).json();
    assert_eq!(again["registered"], "unchanged");
    assert_eq!(again["summary"]["by_status"]["skipped"], 1);
    write(&dir, "seed.sql", "SELECT 1;\n");
    mt_exit(&url, &["seed", "owner", "--file", seed.to_str().unwrap()], 2);

    write(&dir, "anonymize.json", "{\"users\": {\"email\": {\"template\": \"user-{hash}@example.com\"}}}");
    let anonymize = dir.join("anonymize.json");
    let clone = mt_exit(
        &url,
        &[
            "tenant",
            "clone",
            "acme",
            "acme-staging",
            "--include-data",
            "--anonymize",
            anonymize.to_str().unwrap(),
            "--json",
        ],
        0,
    )
    .json();
    assert_eq!(clone["tenant"]["schema_name"], "tenant_acme_staging");
    let email: String = connect(&url).query_one("SELECT email FROM tenant_acme_staging.users", &[]).unwrap().get(0);
    assert!(email.starts_with("user-") && email.ends_with("@example.com"), "{email}");

    let list = mt_exit(&url, &["tenant", "list", "--json"], 0).json();
    let ids: Vec<&str> = list["tenants"].as_array().unwrap().iter().map(|t| t["tenant_id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec!["acme", "acme-staging"]);
    assert_eq!(list["tenants"][0]["pending"], 0);

    // Dropping needs --yes without a terminal.
    mt_exit(&url, &["tenant", "drop", "acme-staging"], 2);
    mt_exit(&url, &["tenant", "drop", "acme-staging", "--yes"], 2); // holds objects: 2BP01
    let dropped = mt_exit(&url, &["tenant", "drop", "acme-staging", "--yes", "--force", "--json"], 0).json();
    assert!(dropped["dropped"][0]["objects"].as_i64().unwrap() > 0);

    let settings = mt_exit(&url, &["config", "get", "--json"], 0).json();
    assert!(settings["settings"].as_array().unwrap().iter().any(|s| s["key"] == "schema_template"));
    let set = mt_exit(&url, &["config", "set", "tracking_format", "hash", "--json"], 0).json();
    assert_eq!(set, serde_json::json!({"key": "tracking_format", "value": "hash"}));
    mt_exit(&url, &["config", "set", "tracking_format", "xml"], 2);
    mt_exit(&url, &["config", "reset", "tracking_format"], 0);
    let init = mt_exit(&url, &["init", "--json"], 0).json();
    assert_eq!(init["extension"]["created"], false);

    let sync = mt_exit(&url, &["sync", "--status", "--json"], 0).json();
    assert_eq!(sync["summary"]["in_sync"], 1);
    let converted = mt_exit(&url, &["convert-tracking", "--to", "drizzle-kit", "--json"], 0).json();
    assert_eq!(converted["summary"]["by_status"]["converted"], 1, "{converted}");
    let metrics = mt_exit(&url, &["metrics"], 0);
    assert!(metrics.stdout.contains("# TYPE multitenant_tenants gauge"), "{}", metrics.stdout);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn connections_from_pg_variables_and_their_failures() {
    let url = fresh_database("cli_conn");
    let db = url.rsplit('/').next().unwrap().to_string();
    let base = base_url();
    let authority = base.trim_start_matches("postgresql://").trim_start_matches("postgres://");
    let (user, hostport) = authority.split_once('@').unwrap_or(("postgres", authority));
    let (host, port) = hostport.split_once(':').unwrap_or((hostport, "5432"));
    let output = Command::new(mt_binary())
        .args(["status", "--json"])
        .env_remove("DATABASE_URL")
        .env("PGHOST", host)
        .env("PGPORT", port)
        .env("PGUSER", user)
        .env("PGPASSWORD", "not-checked-by-trust")
        .env("PGDATABASE", &db)
        .env("PGSSLMODE", "prefer")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));

    // A URL with libpq options tokio-postgres does not know.
    mt_exit(&format!("{url}?sslmode=disable&application_name=deploy"), &["status"], 0);
    // The cluster has no TLS: require fails as a connection failure.
    let refused = mt_exit(&format!("{url}?sslmode=require"), &["status"], 6);
    assert!(refused.stderr.contains("cannot connect"), "{}", refused.stderr);
    mt_exit("postgres://postgres@127.0.0.1:1/nothing?connect_timeout=2", &["status"], 6);
    mt_exit(&format!("{base}/no_such_database_here"), &["status"], 6);
    mt_exit(&format!("{url}?sslmode=sometimes"), &["status"], 2);
    mt_exit(&url, &["migrate", "--concurrency", "0"], 2);
    let json_error = mt_exit("postgres://postgres@127.0.0.1:1/x", &["health", "--json"], 6).json();
    assert_eq!(json_error["error"]["kind"], "connection_failure");
}

#[test]
fn ctrl_c_cancels_the_run_and_leaves_nothing_half_applied() {
    let url = fresh_database("cli_cancel");
    let dir = scratch("cancel");
    write(&dir, "0001_base.sql", "CREATE TABLE base (id int);\n");
    mt_exit(&url, &["tenant", "create", "a", "b", "c", "d"], 0);
    mt_exit(&url, &["migrate", "--folder", dir.to_str().unwrap()], 0);
    write(&dir, "0002_slow.sql", "CREATE TABLE slow (id int);\nSELECT pg_sleep(30);\n");

    let mut client = connect(&url);
    let before: i64 = client.query_one("SELECT coalesce(max(run_id), 0) FROM mt.runs", &[]).unwrap().get(0);
    let started = Instant::now();
    let child = mt_command(&url, &["migrate", "--folder", dir.to_str().unwrap(), "--concurrency", "2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until a worker is inside the slow migration.
    loop {
        let busy: i64 = client
            .query_one(
                "SELECT count(*) FROM mt.run_tenants t JOIN mt.runs r USING (run_id) \
                  WHERE r.run_id > $1 AND r.operation <> 'migrate_shared' AND t.finished_at IS NULL",
                &[&before],
            )
            .unwrap()
            .get(0);
        if busy > 0 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "the run did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(300));
    let status = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("cancelled"), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(25), "the cancel took {:?}", started.elapsed());

    let run_status: String = client
        .query_one(
            "SELECT status FROM mt.runs WHERE run_id > $1 AND operation <> 'migrate_shared' ORDER BY run_id LIMIT 1",
            &[&before],
        )
        .unwrap()
        .get(0);
    assert_eq!(run_status, "cancelled");
    let half: i64 = client.query_one("SELECT count(*) FROM pg_tables WHERE tablename = 'slow'", &[]).unwrap().get(0);
    assert_eq!(half, 0, "no tenant kept part of the cancelled migration");
    let pending: Vec<i32> =
        client.query("SELECT pending FROM mt.status", &[]).unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(pending, vec![1, 1, 1, 1]);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The menu, driven through a pseudo-terminal (`script` from util-linux): create a tenant,
/// then drop it through the tenant picker, which shows pending counts.
#[test]
fn the_interactive_menu_through_a_pseudo_terminal() {
    let url = fresh_database("cli_menu");
    let dir = scratch("menu");
    write(&dir, "0001_items.sql", "CREATE TABLE items (id int);\n");
    mt_exit(&url, &["migrate", "--folder", dir.to_str().unwrap()], 0);
    let command = format!("{} menu", mt_binary().display());
    let mut child = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env("DATABASE_URL", &url)
        .env("TERM", "xterm")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script (util-linux)");
    let mut stdin = child.stdin.take().unwrap();
    let keys: [&[u8]; 10] = [
        b"\x1b[B\x1b[B",       // down twice: "Create a tenant"
        b"\r",                 // choose it
        b"from-menu\r",        // the id
        b"\x1b[B\x1b[B\x1b[B", // "Drop a tenant"
        b"\r",
        b"\r",   // the first (and only) tenant in the picker
        b"y",    // even if it holds tables
        b"y",    // confirm the drop
        b"\x1b", // leave
        b"",
    ];
    for key in keys {
        std::thread::sleep(Duration::from_millis(1200));
        use std::io::Write;
        let _ = stdin.write_all(key);
        let _ = stdin.flush();
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the menu did not exit");
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(stdin);
    let output = child.wait_with_output().unwrap();
    let screen = strip_ansi(&String::from_utf8_lossy(&output.stdout));
    assert_eq!(output.status.code(), Some(0), "{screen}");
    assert!(screen.contains("tenant from-menu created"), "{screen}");
    assert!(screen.contains("from-menu (up to date)"), "the picker shows pending counts: {screen}");
    assert!(screen.contains("tenant from-menu dropped"), "{screen}");
    let left: i64 = connect(&url).query_one("SELECT count(*) FROM mt.tenants", &[]).unwrap().get(0);
    assert_eq!(left, 0);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The text of a terminal screen without its escape sequences.
fn strip_ansi(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// A deploy over TCP as a real pipeline does it: a password (scram-sha-256), TLS checked
/// against a CA the test makes with openssl, on a cluster of its own (`cli-tls`, port
/// `MT_CLI_TLS_PORT`, default 25361) that is stopped at the end. The role is an `mt_admin`
/// member, not a superuser.
#[test]
fn a_remote_deploy_with_a_password_over_verified_tls() {
    let port = std::env::var("MT_CLI_TLS_PORT").unwrap_or_else(|_| "25361".to_string());
    let scripts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/cluster.sh");
    let cluster = |args: &[&str]| {
        let output = Command::new(&scripts).args(args).output().unwrap();
        assert!(output.status.success(), "cluster.sh {args:?}: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap().trim().to_string()
    };
    struct Stop(PathBuf);
    impl Drop for Stop {
        fn drop(&mut self) {
            let _ = Command::new(&self.0).args(["stop", "cli-tls"]).status();
        }
    }
    let _stop = Stop(scripts.clone());

    let certs = scratch("certs");
    let openssl = |args: &[&str]| {
        let output = Command::new("openssl").current_dir(&certs).args(args).output().expect("openssl");
        assert!(output.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    };
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    openssl(
        &[
            &["req", "-x509"][..],
            &ec,
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
                "-days",
                "2",
                "-subj",
                "/CN=mt cli test CA",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        ]
        .concat(),
    );
    std::fs::write(
        certs.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(&[&["req"][..], &ec, &["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1"]].concat());
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "server.ext",
    ]);

    cluster(&["start", "cli-tls", &port]);
    let data = PathBuf::from(cluster(&["dir", "cli-tls"]));
    for file in ["server.crt", "server.key"] {
        std::fs::copy(certs.join(file), data.join(file)).unwrap();
        Command::new("chown").arg("postgres:").arg(data.join(file)).status().unwrap();
    }
    Command::new("chmod").arg("600").arg(data.join("server.key")).status().unwrap();
    let conf = data.join("postgresql.conf");
    let text = std::fs::read_to_string(&conf).unwrap();
    if !text.contains("\nssl = on") {
        std::fs::write(&conf, text + "\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n")
            .unwrap();
    }
    let hba = data.join("pg_hba.conf");
    let text = std::fs::read_to_string(&hba).unwrap();
    if !text.starts_with("# mt cli test") {
        std::fs::write(
            &hba,
            format!(
                "# mt cli test\nhostssl all mt_cli_deploy 127.0.0.1/32 scram-sha-256\nhost all mt_cli_deploy 127.0.0.1/32 reject\n\
                 hostssl all mt_cli_deploy ::1/128 scram-sha-256\n{text}"
            ),
        )
        .unwrap();
    }
    cluster(&["stop", "cli-tls"]);
    cluster(&["start", "cli-tls", &port]);

    let admin_url = format!("postgresql://postgres@127.0.0.1:{port}");
    let db = format!("cli_tls_{}", std::process::id());
    let mut admin = connect(&format!("{admin_url}/postgres"));
    admin.batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)")).unwrap();
    admin.batch_execute(&format!("CREATE DATABASE {db}")).unwrap();
    let mut setup = connect(&format!("{admin_url}/{db}"));
    setup
        .batch_execute(&format!(
            "SET client_min_messages = warning; CREATE EXTENSION multitenant; \
             SELECT mt.set_config('tenant_role_template', '{db}_{{schema}}'); \
             DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'mt_cli_deploy') THEN \
                CREATE ROLE mt_cli_deploy LOGIN; END IF; END $$; \
             ALTER ROLE mt_cli_deploy PASSWORD 'deploy-secret'; GRANT mt_admin TO mt_cli_deploy;"
        ))
        .unwrap();

    let ca = certs.join("ca.crt");
    let url = |host: &str, password: &str, mode: &str| {
        format!("postgres://mt_cli_deploy:{password}@{host}:{port}/{db}?sslmode={mode}&sslrootcert={}", ca.display())
    };
    let dir = scratch("tls-drizzle");
    copy_dir(&examples(), &dir);
    let deploy = url("127.0.0.1", "deploy-secret", "verify-full");
    mt_exit(&deploy, &["tenant", "create", "acme", "globex"], 0);
    let run = mt_exit(&deploy, &["migrate", "--folder", dir.to_str().unwrap(), "--json"], 0).json();
    assert_eq!(run["summary"]["migrated"], 2);
    let ssl: bool = setup
        .query_one(
            "SELECT bool_and(ssl) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) WHERE usename = 'mt_cli_deploy'",
            &[],
        )
        .unwrap()
        .get::<_, Option<bool>>(0)
        .unwrap_or(true);
    assert!(ssl);
    mt_exit(&url("127.0.0.1", "deploy-secret", "require"), &["status", "--check"], 0);
    // The certificate names 127.0.0.1, not localhost: verify-ca accepts it, verify-full does not.
    mt_exit(&url("localhost", "deploy-secret", "verify-ca"), &["status"], 0);
    let wrong_name = mt_exit(&url("localhost", "deploy-secret", "verify-full"), &["status"], 6);
    assert!(wrong_name.stderr.contains("cannot connect"), "{}", wrong_name.stderr);
    let wrong_password = mt_exit(&url("127.0.0.1", "nope", "verify-full"), &["status"], 6);
    assert!(wrong_password.stderr.contains("password"), "{}", wrong_password.stderr);
    mt_exit(&url("127.0.0.1", "deploy-secret", "disable"), &["status"], 6);
    // Another CA: refused.
    let other = certs.join("other-ca.crt");
    std::fs::copy(certs.join("server.crt"), &other).unwrap();
    let untrusted = format!(
        "postgres://mt_cli_deploy:deploy-secret@127.0.0.1:{port}/{db}?sslmode=verify-ca&sslrootcert={}",
        other.display()
    );
    mt_exit(&untrusted, &["status"], 6);

    drop(setup);
    admin.batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)")).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::remove_dir_all(&certs).unwrap();
}
