//! Shared by the benchmark binaries: connecting, timing, printing.

use std::time::{Duration, Instant};

pub use postgres::{Client, NoTls};

pub fn url(database: &str) -> String {
    let base = std::env::var("MT_BENCH_URL").unwrap_or_else(|_| "postgresql://postgres@127.0.0.1:25353".into());
    format!("{base}/{database}")
}

pub fn connect(database: &str) -> Client {
    Client::connect(&url(database), NoTls).unwrap_or_else(|e| panic!("connect to {}: {e}", url(database)))
}

/// A fresh database with the extension.
pub fn fresh_database(name: &str) -> Client {
    let mut admin = connect("postgres");
    admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).unwrap();
    // Tenant roles outlive their database (roles are cluster-wide): the last round's go too.
    admin
        .batch_execute(&format!(
            "DO $$ DECLARE r record; BEGIN \
               FOR r IN SELECT a.rolname FROM pg_authid a \
                          JOIN pg_shdescription d ON d.objoid = a.oid AND d.classoid = 'pg_authid'::regclass \
                         WHERE d.description LIKE 'multitenant: role of tenant % in database {name}' LOOP \
                   EXECUTE format('DROP ROLE %I', r.rolname); \
               END LOOP; END $$"
        ))
        .unwrap();
    admin.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
    let mut client = connect(name);
    client.batch_execute("SET client_min_messages = warning; CREATE EXTENSION multitenant").unwrap();
    client
}

pub fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let start = Instant::now();
    let value = f();
    (value, start.elapsed())
}

pub fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

pub fn ratio(ours: Duration, baseline: Duration) -> String {
    format!("{:.2}x", ours.as_secs_f64() / baseline.as_secs_f64())
}
