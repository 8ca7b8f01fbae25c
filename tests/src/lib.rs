//! Helpers for the integration tests: each test gets a fresh database with the extension
//! in the cluster `scripts/integration.sh` starts (URL in `MT_TEST_URL`).

use std::sync::atomic::{AtomicUsize, Ordering};

pub mod pgbouncer;

pub use postgres::{Client, NoTls};

/// The cluster's base URL, without a database name.
pub fn base_url() -> String {
    std::env::var("MT_TEST_URL").unwrap_or_else(|_| "postgresql://postgres@127.0.0.1:25352".to_string())
}

/// A new empty database with `CREATE EXTENSION multitenant`; returns its connection URL.
pub fn fresh_database(name: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let db = format!("it_{name}_{}_{}", std::process::id(), COUNTER.fetch_add(1, Ordering::SeqCst));
    let mut admin = Client::connect(&format!("{}/postgres", base_url()), NoTls).expect("connect to the test cluster");
    admin.batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)")).unwrap();
    admin.batch_execute(&format!("CREATE DATABASE {db}")).unwrap();
    let url = format!("{}/{db}", base_url());
    // Tenant roles are cluster-wide: each test database names its own after itself.
    connect(&url)
        .batch_execute(&format!(
            "SET client_min_messages = warning; CREATE EXTENSION multitenant; \
             SELECT mt.set_config('tenant_role_template', '{db}_{{schema}}')"
        ))
        .unwrap();
    url
}

pub fn connect(url: &str) -> Client {
    Client::connect(url, NoTls).unwrap_or_else(|e| panic!("connect to {url}: {e}"))
}

/// Creates `count` tenants named `{prefix}{n}` without migrating them.
pub fn create_tenants(client: &mut Client, prefix: &str, count: i32) {
    client
        .execute(
            "SELECT count(*) FROM (SELECT mt.create_tenant($1 || g, migrate => false) FROM generate_series(1, $2) g) s",
            &[&prefix, &count],
        )
        .unwrap();
}

/// Turns template copies off in this database (for later sessions) and this session, so that
/// `mt.migrate_all` applies every migration in empty tenants too: the path the fault and
/// worker tests are about (`mt.provision_from_template`).
pub fn replay_migrations(client: &mut Client) {
    client
        .batch_execute(
            "DO $$ BEGIN EXECUTE pg_catalog.format('ALTER DATABASE %I SET mt.provision_from_template = off', \
                                                   pg_catalog.current_database()); END $$; \
             SET mt.provision_from_template = off",
        )
        .unwrap();
}

/// Runs `f` on `count` threads at once, each with its own connection, and collects what
/// they return.
pub fn concurrently<T: Send>(url: &str, count: usize, f: impl Fn(&mut Client) -> T + Sync) -> Vec<T> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..count).map(|_| scope.spawn(|| f(&mut connect(url)))).collect();
        handles.into_iter().map(|h| h.join().expect("thread panicked")).collect()
    })
}
