//! The client library against a real cluster: both modes, isolation (search_path, and roles
//! for an application role), the tenant directory and its cache, the naming check, prepared
//! statements across tenants, retry against a late server, health of a stopped server,
//! warmup, LRU, tenant context and the axum layer.

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::routing::get;
use axum::Router;
use multitenant_client::web::{resolve_tenant, TenantDb, TenantResolver, TenantSource};
use multitenant_client::{
    with_tenant, Config, Error, HealthCheckOptions, HealthStatus, RetryConfig, Statements, TenantCacheConfig,
    TenantManager, WarmupOptions,
};
use multitenant_integration::{base_url, connect, fresh_database, Client};
use tower::ServiceExt;

/// The database name at the end of a connection URL.
fn db_name(url: &str) -> &str {
    url.rsplit('/').next().unwrap()
}

/// A database with tenants `t1..tN`, each holding `marker(name)` = its own id. Roles are
/// cluster-wide: this database's tenant roles carry its name (`fresh_database` sets
/// `tenant_role_template`), and roles left by an earlier database of the same name (a reused
/// process id) are dropped first.
fn database_with_tenants(name: &str, count: usize) -> String {
    let url = fresh_database(name);
    let db = db_name(&url).to_string();
    let mut admin = connect(&url);
    for row in
        admin.query("SELECT rolname::text FROM pg_roles WHERE starts_with(rolname, $1)", &[&format!("{db}_")]).unwrap()
    {
        admin.batch_execute(&format!("DROP ROLE \"{}\"", row.get::<_, String>(0))).unwrap();
    }
    admin
        .batch_execute("SELECT mt.add_migration('0000_marker', 'CREATE TABLE marker (name text); INSERT INTO marker SELECT substr(current_schema(), 8)')")
        .unwrap();
    for n in 1..=count {
        admin.execute("SELECT mt.create_tenant($1)", &[&format!("t{n}")]).unwrap();
    }
    url
}

/// Runs `sql` as `tenant`'s role (objects it creates belong to the tenant, as a
/// migration's would).
fn as_tenant(admin: &mut Client, tenant: &str, sql: &str) {
    let mut tx = admin.transaction().unwrap();
    let row = tx
        .query_one(
            "SELECT set_config('role', role_name, true) FROM mt.tenant_directory WHERE tenant_id = $1",
            &[&tenant],
        )
        .unwrap();
    assert!(row.get::<_, Option<String>>(0).is_some(), "{tenant} has a role");
    tx.batch_execute(sql).unwrap();
    tx.commit().unwrap();
}

/// Makes `<database>_app` (LOGIN NOINHERIT) the database's application role with
/// `mt.grant_application_role`; returns the URL that logs in as it.
fn application_role(url: &str) -> String {
    let app = format!("{}_app", db_name(url));
    let mut admin = connect(url);
    admin.batch_execute(&format!("CREATE ROLE {app} LOGIN NOINHERIT")).unwrap();
    admin.execute("SELECT mt.grant_application_role($1)", &[&app]).unwrap();
    let app_url = url.replacen("://postgres@", &format!("://{app}@"), 1);
    assert_ne!(app_url, url, "MT_TEST_URL logs in as postgres");
    app_url
}

/// Runs administrative SQL as the superuser from async code (the blocking client cannot run
/// inside the runtime): a shared-schema checkout of a superuser's manager.
async fn admin_sql(url: &str, sql: &str) {
    let manager = TenantManager::new(config(url, 1)).unwrap();
    let mut db = manager.shared_db().await.unwrap();
    db.batch_execute(sql).await.unwrap();
    db.commit().await.unwrap();
    manager.dispose();
}

/// Runs the async part of a test; setup with the blocking `postgres` client happens outside.
fn run<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap().block_on(future)
}

fn config(url: &str, pool_size: usize) -> Config {
    let mut config = Config::new(url);
    config.pool_size = pool_size;
    config
}

async fn marker(manager: &TenantManager, tenant: &str) -> (String, i32) {
    let mut db = manager.db(tenant).await.unwrap();
    let row = db.query_one("SELECT name, pg_backend_pid() FROM marker", &[]).await.unwrap();
    db.commit().await.unwrap();
    (row.get(0), row.get(1))
}

#[test]
fn shared_pool_switches_tenants_on_one_connection() {
    let url = database_with_tenants("shared_switch", 6);
    run(async move {
        let manager = TenantManager::new(config(&url, 1)).unwrap();
        let mut pids = std::collections::BTreeSet::new();
        for round in 0..5 {
            for n in 1..=6 {
                let (name, pid) = marker(&manager, &format!("t{n}")).await;
                assert_eq!(name, format!("t{n}"), "round {round}");
                pids.insert(pid);
            }
        }
        assert_eq!(pids.len(), 1, "one connection served every tenant");

        // Nothing leaks to the next checkout: dropped work rolls back, search_path resets.
        let mut db = manager.db("t1").await.unwrap();
        db.execute("INSERT INTO marker VALUES ('uncommitted')", &[]).await.unwrap();
        drop(db);
        let mut shared = manager.shared_db().await.unwrap();
        let row = shared
            .query_one("SELECT (SELECT count(*) FROM tenant_t1.marker), current_setting('search_path')", &[])
            .await
            .unwrap();
        assert_eq!(row.get::<_, i64>(0), 1);
        assert_eq!(row.get::<_, String>(1), "\"public\"");
        shared.commit().await.unwrap();
        assert_eq!(manager.metrics().checkouts, 32);
    });
}

#[test]
fn a_tenant_cannot_see_another_tenants_tables() {
    let url = database_with_tenants("isolation", 2);
    as_tenant(&mut connect(&url), "t2", "CREATE TABLE tenant_t2.only_t2 (id int)");
    run(async move {
        let manager = TenantManager::new(config(&url, 2)).unwrap();
        let mut db = manager.db("t1").await.unwrap();
        let error = db.query("SELECT * FROM only_t2", &[]).await.unwrap_err();
        assert_eq!(error.sqlstate(), Some("42P01"), "{error}");
        let mut db = manager.db("t2").await.unwrap();
        assert!(db.query("SELECT * FROM only_t2", &[]).await.unwrap().is_empty());
    });
}

#[test]
fn prepared_statements_follow_the_tenant_not_the_text() {
    let url = database_with_tenants("prepared", 2);
    let mut admin = connect(&url);
    as_tenant(
        &mut admin,
        "t1",
        "CREATE TABLE tenant_t1.users (id int, email text); INSERT INTO tenant_t1.users VALUES (1, 'a@x');",
    );
    as_tenant(
        &mut admin,
        "t2",
        "CREATE TABLE tenant_t2.users (id text, email int, active boolean); INSERT INTO tenant_t2.users VALUES ('u', 7, true);",
    );
    run(async move {
        let manager = TenantManager::new(config(&url, 1)).unwrap();
        for _ in 0..3 {
            let mut db = manager.db("t1").await.unwrap();
            let row = db.query_one("SELECT * FROM users", &[]).await.unwrap();
            assert_eq!((row.len(), row.get::<_, i32>(0)), (2, 1));
            db.commit().await.unwrap();
            let mut db = manager.db("t2").await.unwrap();
            let row = db.query_one("SELECT * FROM users", &[]).await.unwrap();
            assert_eq!((row.len(), row.get::<_, String>(0), row.get::<_, bool>(2)), (3, "u".to_string(), true));
            db.commit().await.unwrap();
        }
    });
}

#[test]
fn invalid_tenant_ids_fail_before_any_connection() {
    run(async move {
        // Nothing listens on port 1: a connection attempt would be a pool error.
        let manager = TenantManager::new(Config::new("postgresql://postgres@127.0.0.1:1/none")).unwrap();
        for id in ["x; drop table t", "Acme", "", "a\"b"] {
            assert!(matches!(manager.db(id).await, Err(Error::InvalidTenant(_))), "{id:?}");
        }
        assert!(matches!(manager.db("fine").await, Err(Error::Pool(_))));
    });
}

#[test]
fn pool_per_tenant_evicts_the_least_recently_used_pool() {
    let url = database_with_tenants("lru", 3);
    run(async move {
        let evicted = Arc::new(std::sync::Mutex::new(Vec::new()));
        let created = Arc::new(AtomicUsize::new(0));
        let mut config = config(&url, 2).pool_per_tenant(2, Duration::from_secs(600));
        let (e, c) = (evicted.clone(), created.clone());
        config.hooks.on_pool_evicted = Some(Arc::new(move |t: &str| e.lock().unwrap().push(t.to_string())));
        config.hooks.on_pool_created = Some(Arc::new(move |_: &str| {
            c.fetch_add(1, Ordering::SeqCst);
        }));
        let manager = TenantManager::new(config).unwrap();

        assert_eq!(marker(&manager, "t1").await.0, "t1");
        assert_eq!(marker(&manager, "t2").await.0, "t2");
        assert_eq!(marker(&manager, "t1").await.0, "t1"); // t2 is now the least recently used
        assert_eq!(marker(&manager, "t3").await.0, "t3");
        assert_eq!(*evicted.lock().unwrap(), vec!["t2".to_string()]);
        assert!(manager.has_pool("t1") && manager.has_pool("t3") && !manager.has_pool("t2"));
        assert_eq!(manager.pool_count(), 3, "two tenant pools and the shared one");
        assert_eq!(manager.active_tenant_ids(), vec!["t3".to_string(), "t1".to_string()]);
        assert_eq!(created.load(Ordering::SeqCst), 3);
        assert!(manager.evict("t1"));
        assert!(!manager.has_pool("t1"));
        let metrics = manager.metrics();
        assert_eq!((metrics.pools_created, metrics.pools_evicted), (3, 2));

        // Idle pools close after the TTL.
        let manager = TenantManager::new(config_with_ttl(&url, Duration::from_millis(100))).unwrap();
        marker(&manager, "t1").await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        marker(&manager, "t2").await;
        assert!(!manager.has_pool("t1") && manager.has_pool("t2"));
    });
}

fn config_with_ttl(url: &str, ttl: Duration) -> Config {
    config(url, 1).pool_per_tenant(50, ttl)
}

#[test]
fn warmup_reports_successes_failures_and_warm_pools() {
    let url = database_with_tenants("warmup", 4);
    run(async move {
        let manager = TenantManager::new(config(&url, 2).pool_per_tenant(10, Duration::from_secs(60))).unwrap();
        let progress = Arc::new(AtomicUsize::new(0));
        let p = progress.clone();
        let options = WarmupOptions {
            concurrency: 2,
            ping: true,
            on_progress: Some(Arc::new(move |_: &str, _: &str| {
                p.fetch_add(1, Ordering::SeqCst);
            })),
        };
        let ids: Vec<String> = ["t1", "t2", "t3", "t4", "ghost"].iter().map(|s| s.to_string()).collect();
        let first = manager.warmup(&ids, options.clone()).await;
        assert_eq!((first.total, first.succeeded, first.failed, first.already_warm), (5, 4, 1, 0));
        let ghost = first.details.iter().find(|d| d.tenant_id == "ghost").unwrap();
        assert!(ghost.error.as_deref().unwrap_or_default().contains("not found"), "{ghost:?}");
        assert!(!manager.has_pool("ghost"), "no pool for an unregistered tenant");
        let second = manager.warmup(&ids[..2], options).await;
        assert_eq!((second.succeeded, second.already_warm), (2, 2));
        assert_eq!(progress.load(Ordering::SeqCst), 7);
    });
}

#[test]
fn tenant_context_follows_the_task() {
    let url = database_with_tenants("context", 2);
    run(async move {
        let manager = TenantManager::new(config(&url, 2)).unwrap();
        assert!(matches!(manager.tenant_db().await, Err(Error::NoTenantContext)));
        let name = with_tenant("t2", async {
            let mut db = manager.tenant_db().await.unwrap();
            db.query_one("SELECT name FROM marker", &[]).await.unwrap().get::<_, String>(0)
        })
        .await;
        assert_eq!(name, "t2");
    });
}

#[test]
fn health_and_metrics_of_a_live_server() {
    let url = database_with_tenants("health", 2);
    run(async move {
        let manager = TenantManager::new(config(&url, 2)).unwrap();
        marker(&manager, "t1").await;
        let health = manager
            .health_check(HealthCheckOptions {
                tenant_ids: Some(vec!["t1".into(), "t2".into(), "ghost".into()]),
                ..Default::default()
            })
            .await;
        let statuses: Vec<(&str, HealthStatus)> =
            health.pools.iter().map(|p| (p.tenant_id.as_str(), p.status)).collect();
        assert_eq!(
            statuses,
            vec![("t1", HealthStatus::Ok), ("t2", HealthStatus::Ok), ("ghost", HealthStatus::Unhealthy)]
        );
        assert_eq!((health.healthy, health.unhealthy_pools, health.http_status()), (false, 1, 503));
        assert_eq!(health.shared_db.as_ref().unwrap().status, HealthStatus::Ok);
        let text = manager.prometheus();
        assert!(text.contains("multitenant_client_checkouts_total"), "{text}");
        assert!(manager.metrics().checkouts >= 4);
    });
}

/// A cluster of its own, started late and stopped, for retry and health.
#[test]
fn retry_waits_for_a_late_server_and_health_sees_it_stop() {
    let scripts = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/cluster.sh");
    let port = "25354";
    let cluster = move |action: &str| {
        let mut command = Command::new(scripts);
        command.arg(action).arg("late");
        if action == "start" {
            command.arg(port);
        }
        assert!(command.status().unwrap().success(), "cluster.sh {action}");
    };
    cluster("start"); // initdb once, so that the late start below is quick
                      // A database with the extension as installed now (the client reads its settings).
    let base = format!("postgresql://postgres@127.0.0.1:{port}");
    let mut postgres = connect(&format!("{base}/postgres"));
    postgres.batch_execute("DROP DATABASE IF EXISTS late WITH (FORCE)").unwrap();
    postgres.batch_execute("CREATE DATABASE late").unwrap();
    drop(postgres);
    connect(&format!("{base}/late"))
        .batch_execute("SET client_min_messages = warning; CREATE EXTENSION multitenant")
        .unwrap();
    cluster("stop");
    run(async move {
        let mut config = Config::new(format!("{base}/late"));
        config.checkout_timeout = Duration::from_millis(500);
        let retries = Arc::new(AtomicUsize::new(0));
        let r = retries.clone();
        config.retry = RetryConfig {
            max_attempts: 30,
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(300),
            on_retry: Some(Arc::new(move |_| {
                r.fetch_add(1, Ordering::SeqCst);
            })),
            ..Default::default()
        };
        let manager = TenantManager::new(config).unwrap();
        let starter = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(1000));
            cluster("start");
        });
        let shared = manager.shared_db_with_retry().await.expect("connects once the server is up");
        shared.rollback().await.unwrap();
        starter.join().unwrap();
        assert!(retries.load(Ordering::SeqCst) > 0, "it had to retry");
        assert!(manager.metrics().retries > 0);

        // Not retried: an error that is not transient.
        let mut shared = manager.shared_db().await.unwrap();
        let error = shared.query("SELEC 1", &[]).await.unwrap_err();
        assert_eq!(error.sqlstate(), Some("42601"));
        assert!(!multitenant_client::is_retryable(&error));
        drop(shared);

        let up = manager.health_check(HealthCheckOptions { tenant_ids: Some(vec![]), ..Default::default() }).await;
        assert!(up.healthy);
        Command::new(scripts).args(["stop", "late"]).status().unwrap();
        let down = manager
            .health_check(HealthCheckOptions {
                tenant_ids: Some(vec![]),
                ping_timeout: Duration::from_secs(2),
                ..Default::default()
            })
            .await;
        assert!(!down.healthy);
        assert_eq!(down.shared_db.unwrap().status, HealthStatus::Unhealthy);
    });
}

async fn tenant_name(TenantDb(mut db): TenantDb) -> String {
    db.query_one("SELECT name FROM marker", &[]).await.unwrap().get(0)
}

#[test]
fn axum_layer_resolves_and_rejects_tenants() {
    let url = database_with_tenants("axum", 3);
    connect(&url).batch_execute("UPDATE mt.tenants SET status = 'suspended' WHERE tenant_id = 't3'").unwrap();
    run(async move {
        let manager = TenantManager::new(config(&url, 2)).unwrap();
        let resolver = TenantResolver::new(manager.clone(), TenantSource::Header("x-tenant-id".into()));
        let app = Router::new()
            .route("/whoami", get(tenant_name))
            .layer(axum::middleware::from_fn_with_state(resolver, resolve_tenant));
        let call = |tenant: Option<&str>| {
            let mut request = Request::builder().uri("/whoami");
            if let Some(t) = tenant {
                request = request.header("x-tenant-id", t);
            }
            app.clone().oneshot(request.body(Body::empty()).unwrap())
        };
        let ok = call(Some("t2")).await.unwrap();
        assert_eq!(ok.status(), StatusCode::OK);
        let body = axum::body::to_bytes(ok.into_body(), 1024).await.unwrap();
        assert_eq!(&body[..], b"t2");
        assert_eq!(call(None).await.unwrap().status(), StatusCode::BAD_REQUEST);
        assert_eq!(call(Some("Bad Id")).await.unwrap().status(), StatusCode::BAD_REQUEST);
        assert_eq!(call(Some("nobody")).await.unwrap().status(), StatusCode::NOT_FOUND, "not registered");
        assert_eq!(call(Some("t3")).await.unwrap().status(), StatusCode::FORBIDDEN, "suspended");
        // Dropped: refused once the cached answer expires (here at once, invalidated).
        assert_eq!(call(Some("t1")).await.unwrap().status(), StatusCode::OK);
        admin_sql(&url, "SELECT mt.drop_tenant('t1', force => true)").await;
        manager.invalidate("t1").await;
        assert_eq!(call(Some("t1")).await.unwrap().status(), StatusCode::NOT_FOUND, "dropped");
    });
}

#[test]
fn one_statement_and_its_commit_go_out_together() {
    let url = database_with_tenants("and_commit", 2);
    run(async move {
        let manager = TenantManager::new(config(&url, 1)).unwrap();
        // First use of the statement on this connection (prepared on the way), then cached:
        // either way it runs in the tenant's transaction, before the COMMIT.
        for tenant in ["t1", "t2", "t1"] {
            let db = manager.db(tenant).await.unwrap();
            let changed = db.execute_and_commit("INSERT INTO marker VALUES ($1)", &[&"written"]).await.unwrap();
            assert_eq!(changed, 1);
        }
        let db = manager.db("t2").await.unwrap();
        let rows = db.query_and_commit("INSERT INTO marker VALUES ('returned') RETURNING name", &[]).await.unwrap();
        assert_eq!(rows[0].get::<_, String>(0), "returned");

        // A failing statement rolls back the whole checkout, earlier statements included.
        let mut db = manager.db("t1").await.unwrap();
        db.execute("INSERT INTO marker VALUES ('before the failure')", &[]).await.unwrap();
        let failed = db.execute_and_commit("INSERT INTO marker SELECT (1 / 0)::text", &[]).await;
        assert!(matches!(failed, Err(Error::Db(ref e)) if e.code().map(|c| c.code()) == Some("22012")), "{failed:?}");

        let mut shared = manager.shared_db().await.unwrap();
        let row = shared
            .query_one(
                "SELECT (SELECT array_agg(name ORDER BY name) FROM tenant_t1.marker),
                        (SELECT array_agg(name ORDER BY name) FROM tenant_t2.marker),
                        current_setting('search_path')",
                &[],
            )
            .await
            .unwrap();
        assert_eq!(row.get::<_, Vec<String>>(0), ["t1", "written", "written"]);
        assert_eq!(row.get::<_, Vec<String>>(1), ["returned", "t2", "written"]);
        assert_eq!(row.get::<_, String>(2), "\"public\"", "the connection is back to the shared schema");
        shared.commit().await.unwrap();

        // Pool per tenant: autocommit, no COMMIT needed.
        let per_tenant = TenantManager::new(config(&url, 1).pool_per_tenant(5, Duration::from_secs(60))).unwrap();
        let db = per_tenant.db("t2").await.unwrap();
        assert_eq!(db.execute_and_commit("DELETE FROM marker WHERE name = 'returned'", &[]).await.unwrap(), 1);
        let mut shared = manager.shared_db().await.unwrap();
        let left =
            shared.query_one("SELECT count(*) FROM tenant_t2.marker WHERE name = 'returned'", &[]).await.unwrap();
        assert_eq!(left.get::<_, i64>(0), 0);
    });
}

/// The role of `tenant` and the application role of the database at `url`.
fn roles(url: &str, tenant: &str) -> (String, String) {
    let row = connect(url)
        .query_one(
            "SELECT role_name::text, (SELECT value FROM mt.settings WHERE key = 'application_role') \
               FROM mt.tenant_directory WHERE tenant_id = $1",
            &[&tenant],
        )
        .unwrap();
    (row.get(0), row.get(1))
}

/// The SQLSTATE `sql` fails with in a checkout of `tenant` (`None`: it worked); the
/// checkout is rolled back either way.
async fn sqlstate_of(manager: &TenantManager, tenant: &str, sql: &str) -> Option<String> {
    let mut db = manager.db(tenant).await.unwrap();
    let result = db.batch_execute(sql).await;
    db.rollback().await.unwrap();
    result.err().map(|e| e.sqlstate().unwrap_or_else(|| panic!("{sql}: {e}")).to_string())
}

/// What a request switched to tenant A may try against tenant B, schema-qualified.
const REACH_INTO_T2: &[&str] = &[
    "SELECT * FROM tenant_t2.marker",
    "SELECT * FROM tenant_t2.secrets",
    "INSERT INTO tenant_t2.marker VALUES ('from t1')",
    "UPDATE tenant_t2.marker SET name = 'from t1'",
    "DELETE FROM tenant_t2.marker",
    "TRUNCATE tenant_t2.marker",
    "DROP TABLE tenant_t2.marker",
    "CREATE TABLE tenant_t2.planted (id int)",
    "CREATE VIEW tenant_t2.planted AS SELECT 1",
];

/// Tenants t1 and t2 (t2 with a `secrets` table), a shared `public.secrets` tenants may
/// read, and an application role; returns (admin URL, application URL).
fn isolation_setup(name: &str) -> (String, String) {
    let url = database_with_tenants(name, 2);
    let app_url = application_role(&url);
    let mut admin = connect(&url);
    as_tenant(
        &mut admin,
        "t2",
        "CREATE TABLE tenant_t2.secrets (s text); INSERT INTO tenant_t2.secrets VALUES ('t2 only')",
    );
    admin
        .batch_execute(
            "CREATE TABLE public.secrets (s text); INSERT INTO public.secrets VALUES ('shared');
             GRANT SELECT ON public.secrets TO mt_tenant;",
        )
        .unwrap();
    (url, app_url)
}

#[test]
fn the_application_role_switched_to_a_tenant_cannot_reach_another() {
    let (url, app_url) = isolation_setup("approle");
    let (t1_role, app) = roles(&url, "t1");
    let (t2_role, _) = roles(&url, "t2");
    run(async move {
        let manager = TenantManager::connect(config(&app_url, 1)).await.expect("the naming settings match");

        // Switched to t1: its rows, as its role, with its schema alone on the path.
        let mut db = manager.db("t1").await.unwrap();
        let row = db
            .query_one(
                "SELECT name, current_user::text, session_user::text, current_setting('search_path') FROM marker",
                &[],
            )
            .await
            .unwrap();
        db.commit().await.unwrap();
        assert_eq!(row.get::<_, String>(0), "t1");
        assert_eq!((row.get::<_, String>(1), row.get::<_, String>(2)), (t1_role.clone(), app.clone()));
        assert_eq!(row.get::<_, String>(3), "\"tenant_t1\"");

        // Nothing of t2, even schema-qualified: permission denied.
        for sql in REACH_INTO_T2 {
            assert_eq!(sqlstate_of(&manager, "t1", sql).await.as_deref(), Some("42501"), "{sql}");
        }
        // Nor listed: information_schema shows what the role may use.
        let mut db = manager.db("t1").await.unwrap();
        let listed = db
            .query_one(
                "SELECT count(*) FILTER (WHERE table_schema = 'tenant_t2'), count(*) FILTER (WHERE table_schema = 'tenant_t1')
                   FROM information_schema.tables",
                &[],
            )
            .await
            .unwrap();
        assert_eq!((listed.get::<_, i64>(0), listed.get::<_, i64>(1) > 0), (0, true));
        db.commit().await.unwrap();
        // t2 itself is fine.
        assert_eq!(
            sqlstate_of(&manager, "t2", "SELECT * FROM secrets; INSERT INTO marker VALUES ('t2 again')").await,
            None
        );

        // An unqualified name t1 lacks is an error, not the shared table of that name.
        assert_eq!(sqlstate_of(&manager, "t1", "SELECT * FROM secrets").await.as_deref(), Some("42P01"));

        // Without a switch, the application role (NOINHERIT) reads no tenant.
        let mut shared = manager.shared_db().await.unwrap();
        let error = shared.query("SELECT * FROM tenant_t1.marker", &[]).await.unwrap_err();
        assert_eq!(error.sqlstate(), Some("42501"), "{error}");
        drop(shared);
        // A checkout that SETs a role at session level and commits does not hand it on.
        let mut db = manager.db("t1").await.unwrap();
        db.batch_execute(&format!("SET ROLE {t2_role}; SET search_path = tenant_t2")).await.unwrap();
        db.commit().await.unwrap();
        assert_eq!(marker(&manager, "t1").await.0, "t1");
        // And the switch ended with the transaction: the one connection is the application's again.
        let mut shared = manager.shared_db().await.unwrap();
        let row = shared.query_one("SELECT current_user::text, current_setting('search_path')", &[]).await.unwrap();
        assert_eq!((row.get::<_, String>(0), row.get::<_, String>(1)), (app.clone(), "\"public\"".to_string()));
        shared.commit().await.unwrap();
        // Directory lookups on that connection run as the application role too.
        manager.invalidate_all();
        assert_eq!(marker(&manager, "t2").await.0, "t2");

        // The option that adds the shared schema: shared tables by their plain names.
        let mut with_shared = config(&app_url, 1);
        with_shared.search_path_includes_shared = true;
        let manager = TenantManager::connect(with_shared).await.unwrap();
        for (tenant, expected) in [("t1", "shared"), ("t2", "t2 only")] {
            let mut db = manager.db(tenant).await.unwrap();
            let row = db.query_one("SELECT s, current_setting('search_path') FROM secrets", &[]).await.unwrap();
            assert_eq!(row.get::<_, String>(0), expected, "{tenant}");
            assert_eq!(row.get::<_, String>(1), format!("\"tenant_{tenant}\",\"public\""));
            db.commit().await.unwrap();
        }
        assert_eq!(sqlstate_of(&manager, "t1", "SELECT * FROM tenant_t2.secrets").await.as_deref(), Some("42501"));
    });
}

#[test]
fn pool_per_tenant_switches_to_the_tenants_role_and_resets_it() {
    let (url, app_url) = isolation_setup("ppt_roles");
    let (t1_role, _) = roles(&url, "t1");
    let (t2_role, _) = roles(&url, "t2");
    run(async move {
        let manager =
            TenantManager::connect(config(&app_url, 1).pool_per_tenant(10, Duration::from_secs(60))).await.unwrap();
        let mut db = manager.db("t1").await.unwrap();
        let row = db
            .query_one("SELECT name, current_user::text, current_setting('search_path') FROM marker", &[])
            .await
            .unwrap();
        assert_eq!(
            (row.get::<_, String>(0), row.get::<_, String>(1), row.get::<_, String>(2)),
            ("t1".to_string(), t1_role.clone(), "\"tenant_t1\"".to_string())
        );
        drop(db);
        for sql in REACH_INTO_T2 {
            assert_eq!(sqlstate_of(&manager, "t1", sql).await.as_deref(), Some("42501"), "{sql}");
        }
        // A checkout that changes role or search_path does not hand them to the next one
        // (one connection per pool here).
        let mut db = manager.db("t1").await.unwrap();
        db.batch_execute(&format!("SET ROLE {t2_role}; SET search_path = public")).await.unwrap();
        drop(db);
        let mut db = manager.db("t1").await.unwrap();
        let row = db.query_one("SELECT name, current_user::text FROM marker", &[]).await.unwrap();
        assert_eq!((row.get::<_, String>(0), row.get::<_, String>(1)), ("t1".to_string(), t1_role.clone()));
        drop(db);

        // Unregistered: refused before a pool is made for it.
        assert!(matches!(manager.db("ghost").await, Err(Error::TenantNotFound(_))));
        assert!(!manager.has_pool("ghost"));
        assert_eq!(manager.metrics().pools_created, 1);
        // Suspended: refused, and its pool closed.
        admin_sql(&url, "UPDATE mt.tenants SET status = 'suspended' WHERE tenant_id = 't1'").await;
        manager.invalidate("t1").await;
        assert!(matches!(manager.db("t1").await, Err(Error::TenantNotActive { .. })));
        assert!(!manager.has_pool("t1"));
    });
}

#[test]
fn unregistered_suspended_and_dropped_tenants_are_refused() {
    let url = database_with_tenants("directory", 3);
    let app_url = application_role(&url);
    let (_, app) = roles(&url, "t1");
    // What `db('ghost')` used to read: the shared schema's table of the same name.
    connect(&url)
        .batch_execute(&format!(
            "CREATE TABLE public.marker (name text); INSERT INTO public.marker VALUES ('shared'); GRANT SELECT ON public.marker TO {app}"
        ))
        .unwrap();
    run(async move {
        let ttl = Duration::from_millis(400);
        let mut config = config(&app_url, 2);
        config.search_path_includes_shared = true; // even with the shared schema on the path
        config.tenant_cache = TenantCacheConfig { ttl, negative_ttl: Duration::from_secs(5), max_capacity: 100 };
        let manager = TenantManager::new(config).unwrap();

        // A valid id, not registered: refused before any connection is switched.
        assert!(matches!(manager.db("ghost").await, Err(Error::TenantNotFound(ref id)) if id == "ghost"));
        assert!(matches!(manager.tenant("ghost").await, Err(Error::TenantNotFound(_))));
        assert!(matches!(manager.db_with_retry("ghost").await, Err(Error::TenantNotFound(_))), "not retried");
        assert!(!manager.has_pool("ghost") && manager.active_tenant_ids().is_empty());
        assert_eq!(manager.metrics().checkouts, 0);
        assert_eq!(manager.metrics().errors, 2, "db and db_with_retry count their refusals");

        // Registered later: the negative answer lasts until it expires or is invalidated.
        assert!(matches!(manager.db("newcomer").await, Err(Error::TenantNotFound(_))));
        admin_sql(&url, "SELECT mt.create_tenant('newcomer')").await;
        assert!(matches!(manager.db("newcomer").await, Err(Error::TenantNotFound(_))), "cached negative answer");
        manager.invalidate("newcomer").await;
        assert_eq!(marker(&manager, "newcomer").await.0, "newcomer");

        // Suspended: refused once the cached answer expires.
        assert_eq!(marker(&manager, "t2").await.0, "t2");
        admin_sql(&url, "UPDATE mt.tenants SET status = 'suspended' WHERE tenant_id = 't2'").await;
        tokio::time::sleep(ttl + Duration::from_millis(200)).await;
        match manager.db("t2").await {
            Err(Error::TenantNotActive { tenant_id, status }) => {
                assert_eq!((tenant_id.as_str(), status.as_str()), ("t2", "suspended"))
            }
            other => panic!("{:?}", other.err()),
        }
        let info = manager.tenant("t1").await.unwrap();
        assert_eq!((info.schema_name.as_str(), info.status.as_str()), ("tenant_t1", "active"));
        assert!(info.role_name.is_some());
        // Resumed: served again.
        admin_sql(&url, "UPDATE mt.tenants SET status = 'active' WHERE tenant_id = 't2'").await;
        manager.invalidate("t2").await;
        assert_eq!(marker(&manager, "t2").await.0, "t2");

        // Dropped: until the cached answer expires, a checkout fails at the switch (the
        // role is gone) and reads nothing; then it is refused.
        assert_eq!(marker(&manager, "t3").await.0, "t3");
        admin_sql(&url, "SELECT mt.drop_tenant('t3', force => true)").await;
        let mut db = manager.db("t3").await.expect("still cached");
        let error = db.query("SELECT name FROM marker", &[]).await.unwrap_err();
        assert!(error.sqlstate().is_some(), "{error}");
        drop(db);
        tokio::time::sleep(ttl + Duration::from_millis(200)).await;
        assert!(matches!(manager.db("t3").await, Err(Error::TenantNotFound(_))));
        assert_eq!(marker(&manager, "t1").await.0, "t1", "the pool is fine");
    });
}

#[test]
fn the_naming_config_must_match_the_servers() {
    let url = database_with_tenants("naming", 1);
    run(async move {
        let mut other_template = config(&url, 1);
        other_template.schema_template = "org_{id}".into();
        match TenantManager::connect(other_template.clone()).await {
            Err(Error::SettingsMismatch { key, server, client }) => {
                assert_eq!(
                    (key, server.as_deref(), client.as_str()),
                    ("schema_template", Some("tenant_{id}"), "org_{id}")
                )
            }
            other => panic!("{:?}", other.err()),
        }
        // Built without connecting: the first checkout of any kind checks.
        let manager = TenantManager::new(other_template).unwrap();
        assert!(matches!(manager.db("t1").await, Err(Error::SettingsMismatch { .. })));
        assert!(matches!(manager.shared_db().await, Err(Error::SettingsMismatch { .. })));

        let mut other_shared = config(&url, 1);
        other_shared.shared_schema = "common".into();
        let error = TenantManager::connect(other_shared).await.err().expect("mismatch");
        assert!(matches!(error, Error::SettingsMismatch { key: "shared_schema", .. }), "{error}");
        assert!(error.to_string().contains("shared_schema"), "{error}");

        let manager = TenantManager::connect(config(&url, 1)).await.unwrap();
        assert_eq!(marker(&manager, "t1").await.0, "t1");
    });
}

/// The same checks in both modes, named and unnamed statements.
fn every_mode(url: &str, pool_size: usize) -> Vec<(&'static str, Config)> {
    vec![
        ("shared", config(url, pool_size)),
        ("shared, unnamed", config(url, pool_size).behind_transaction_pooler()),
        ("per tenant", config(url, pool_size).pool_per_tenant(10, Duration::from_secs(60))),
        (
            "per tenant, unnamed",
            config(url, pool_size).pool_per_tenant(10, Duration::from_secs(60)).behind_transaction_pooler(),
        ),
    ]
}

#[test]
fn a_dropped_checkout_rolls_back_in_both_modes() {
    let url = database_with_tenants("rollback_modes", 2);
    run(async move {
        for (mode, config) in every_mode(&url, 1) {
            let manager = TenantManager::new(config).unwrap();
            let count = || async {
                let mut db = manager.db("t1").await.unwrap();
                let n: i64 = db.query_one("SELECT count(*) FROM marker", &[]).await.unwrap().get(0);
                db.commit().await.unwrap();
                n
            };
            let before = count().await;
            let mut db = manager.db("t1").await.unwrap();
            assert_eq!(db.execute("INSERT INTO marker VALUES ('dropped')", &[]).await.unwrap(), 1);
            drop(db);
            assert_eq!(count().await, before, "{mode}: dropped without commit, rolled back");
            let mut db = manager.db("t1").await.unwrap();
            db.execute("INSERT INTO marker VALUES ('committed')", &[]).await.unwrap();
            db.commit().await.unwrap();
            assert_eq!(count().await, before + 1, "{mode}: committed");
            let db = manager.db("t1").await.unwrap();
            db.execute_and_commit("DELETE FROM marker WHERE name = 'committed'", &[]).await.unwrap();
            assert_eq!(count().await, before, "{mode}");
        }
    });
}

#[test]
fn the_raw_client_used_first_is_switched() {
    let url = database_with_tenants("raw_client", 2);
    let t2_role: String = connect(&url)
        .query_one("SELECT role_name::text FROM mt.tenant_directory WHERE tenant_id = 't2'", &[])
        .unwrap()
        .get(0);
    run(async move {
        for (mode, config) in every_mode(&url, 1) {
            let manager = TenantManager::new(config).unwrap();
            let mut db = manager.db("t2").await.unwrap();
            let client = db.client().await.unwrap();
            let row = client
                .query_typed_one("SELECT name, current_user::text, current_setting('search_path') FROM marker", &[])
                .await
                .unwrap();
            assert_eq!(
                (row.get::<_, String>(0), row.get::<_, String>(1), row.get::<_, String>(2)),
                ("t2".to_string(), t2_role.clone(), "\"tenant_t2\"".to_string()),
                "{mode}"
            );
            drop(db);
        }
    });
}

#[test]
fn spawned_tasks_keep_the_tenant_through_the_helper() {
    let url = database_with_tenants("spawn", 2);
    run(async move {
        let manager = TenantManager::new(config(&url, 2)).unwrap();
        let (carried, lost) = with_tenant("t2", async {
            let m = manager.clone();
            let carried = multitenant_client::spawn(async move {
                let mut db = m.tenant_db().await.unwrap();
                db.query_one("SELECT name FROM marker", &[]).await.unwrap().get::<_, String>(0)
            });
            let m = manager.clone();
            let lost = tokio::spawn(async move { m.tenant_db().await.err() });
            (carried.await.unwrap(), lost.await.unwrap())
        })
        .await;
        assert_eq!(carried, "t2");
        assert!(matches!(lost, Some(Error::NoTenantContext)), "a plain spawn has no tenant, and reads nothing");
    });
}

/// Named statements on the server of one connection, counted from inside a checkout.
async fn server_statements(manager: &TenantManager) -> (i64, i32) {
    let mut db = manager.db("t1").await.unwrap();
    let row = db.query_one("SELECT count(*), pg_backend_pid() FROM pg_prepared_statements", &[]).await.unwrap();
    db.commit().await.unwrap();
    (row.get(0), row.get(1))
}

#[test]
fn the_statement_cache_is_bounded_per_connection() {
    let url = database_with_tenants("statement_lru", 3);
    run(async move {
        let with = |statements| {
            let mut config = config(&url, 1);
            config.statements = statements;
            TenantManager::new(config).unwrap()
        };
        let busy = |manager: TenantManager| async move {
            for i in 0..40 {
                let mut db = manager.db(&format!("t{}", i % 3 + 1)).await.unwrap();
                let n: i32 = db.query_one(&format!("SELECT {i} AS n{i} FROM marker"), &[]).await.unwrap().get(0);
                assert_eq!(n, i);
                db.commit().await.unwrap();
            }
            manager
        };
        let bounded = busy(with(Statements::Prepared { per_connection: 5 })).await;
        let (count, pid) = server_statements(&bounded).await;
        assert!((1..=5).contains(&count), "{count} statements kept, at most 5");
        assert_eq!(server_statements(&bounded).await, (count, pid), "the count's own statement was reused");

        let uncached = busy(with(Statements::Prepared { per_connection: 0 })).await;
        assert_eq!(server_statements(&uncached).await.0, 1, "only the counting statement, while it runs");

        let unnamed = busy(with(Statements::UNNAMED)).await;
        assert_eq!(server_statements(&unnamed).await.0, 0, "no named statement at all");
    });
}

#[test]
fn unnamed_statements_survive_custom_types_and_changed_tables() {
    let url = database_with_tenants("unnamed_types", 2);
    as_tenant(
        &mut connect(&url),
        "t1",
        "CREATE TYPE tenant_t1.mood AS ENUM ('happy', 'sad'); \
         CREATE TABLE tenant_t1.feelings (m tenant_t1.mood); INSERT INTO tenant_t1.feelings VALUES ('sad');",
    );
    run(async move {
        let manager = TenantManager::new(config(&url, 1).behind_transaction_pooler()).unwrap();
        let mut pids = std::collections::BTreeSet::new();
        for _ in 0..3 {
            // An enum column: tokio-postgres looks the type up with statements it keeps, so
            // the connection is cleaned (DEALLOCATE ALL) and closed after the checkout.
            let mut db = manager.db("t1").await.unwrap();
            let row = db.query_one("SELECT m, pg_backend_pid() AS pid FROM feelings", &[]).await.unwrap();
            assert_eq!(row.columns()[0].type_().name(), "mood");
            pids.insert(row.get::<_, i32>(1));
            db.commit().await.unwrap();
        }
        assert_eq!(pids.len(), 3, "a new connection each time");
        // Built-in types only: the connection is kept.
        let (a, b) = (marker(&manager, "t1").await.1, marker(&manager, "t1").await.1);
        assert_eq!(a, b);
        // Parameter counts are checked before anything is sent.
        let mut db = manager.db("t2").await.unwrap();
        let error = db.query("SELECT name FROM marker WHERE name = $1", &[]).await.unwrap_err();
        assert!(matches!(error, Error::Parameters { expected: 1, given: 0 }), "{error}");
        drop(db);
        // A table whose column type changed: the remembered parameter types are forgotten
        // after the error, and the next call works.
        let mut db = manager.db("t2").await.unwrap();
        db.query("SELECT count(*) FROM marker WHERE name = $1", &[&"t2"]).await.unwrap();
        db.commit().await.unwrap();
        admin_sql(&url, "ALTER TABLE tenant_t2.marker ALTER COLUMN name TYPE int USING 2").await;
        let mut db = manager.db("t2").await.unwrap();
        assert!(db.query("SELECT count(*) FROM marker WHERE name = $1", &[&"t2"]).await.is_err());
        drop(db);
        let mut db = manager.db("t2").await.unwrap();
        let n: i64 = db.query_one("SELECT count(*) FROM marker WHERE name = $1", &[&2_i32]).await.unwrap().get(0);
        assert_eq!(n, 1);
    });
}

#[test]
fn evicting_a_pool_never_fails_a_checkout_in_progress() {
    let url = database_with_tenants("evict_busy", 6);
    run(async move {
        let mut config = config(&url, 1).pool_per_tenant(2, Duration::from_secs(60));
        config.checkout_timeout = Duration::from_secs(20);
        let manager = TenantManager::new(config).unwrap();
        let tasks: Vec<_> = (0..48)
            .map(|i| {
                let manager = manager.clone();
                tokio::spawn(async move {
                    let tenant = format!("t{}", i % 6 + 1);
                    let mut db = manager.db(&tenant).await?;
                    let name: String = db.query_one("SELECT name FROM marker", &[]).await?.get(0);
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    db.commit().await?;
                    assert_eq!(name, tenant);
                    Ok::<_, Error>(())
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap().expect("no checkout fails because its pool was evicted");
        }
        assert!(manager.metrics().pools_evicted > 0, "pools were evicted meanwhile");
        assert!(manager.pool_count() <= 3);
    });
}

async fn insert_email(TenantDb(db): TenantDb) -> Result<String, Error> {
    db.execute_and_commit("INSERT INTO emails VALUES ('a@example.com')", &[]).await?;
    Ok("created".into())
}

#[test]
fn metrics_go_to_the_applications_registry_and_errors_keep_the_servers_cause() {
    use multitenant_client::prometheus_client::{
        encoding::text::encode, metrics::counter::Counter, registry::Registry,
    };
    let url = database_with_tenants("observe", 2);
    as_tenant(&mut connect(&url), "t1", "CREATE TABLE tenant_t1.emails (email text PRIMARY KEY)");
    run(async move {
        let manager = TenantManager::new(config(&url, 2)).unwrap();
        // The application's registry, with a metric of its own.
        let mut registry = Registry::default();
        let requests = Counter::<u64>::default();
        registry.register("app_requests", "Requests", requests.clone());
        manager.register_metrics(&mut registry);
        requests.inc();
        let scrape = |registry: &Registry| {
            let mut text = String::new();
            encode(&mut text, registry).unwrap();
            text
        };

        for _ in 0..3 {
            marker(&manager, "t1").await;
        }
        marker(&manager, "t2").await;
        manager.db("t1").await.unwrap().execute_and_commit("INSERT INTO emails VALUES ('a@x')", &[]).await.unwrap();
        let duplicate = manager
            .db("t1")
            .await
            .unwrap()
            .execute_and_commit("INSERT INTO emails VALUES ('a@x')", &[])
            .await
            .unwrap_err();
        // The server's SQLSTATE and message, never tokio-postgres's bare "db error".
        assert_eq!((duplicate.sqlstate(), duplicate.kind()), (Some("23505"), "database"));
        let text = duplicate.to_string();
        assert!(text.starts_with("23505: duplicate key value violates unique constraint \"emails_pkey\""), "{text}");
        assert!(!text.contains("db error"), "{text}");
        assert_eq!(multitenant_client::web::status_of(&duplicate), StatusCode::CONFLICT);
        let missing = manager.db("t2").await.unwrap().query("SELECT * FROM nope", &[]).await.unwrap_err();
        assert!(missing.to_string().starts_with("42P01: relation \"nope\" does not exist"), "{missing}");
        assert!(matches!(manager.db("ghost").await, Err(Error::TenantNotFound(_))));

        let text = scrape(&registry);
        for expected in [
            "app_requests_total 1",
            "multitenant_client_checkouts_total 7",
            "multitenant_client_query_duration_seconds_count{tenant=\"t1\"} 5",
            "multitenant_client_query_duration_seconds_count{tenant=\"t2\"} 2",
            "multitenant_client_errors_total{tenant=\"t1\",kind=\"database\",sqlstate=\"23505\"} 1",
            "multitenant_client_errors_total{tenant=\"t2\",kind=\"database\",sqlstate=\"42P01\"} 1",
            "multitenant_client_errors_total{tenant=\"_unregistered\",kind=\"tenant_not_found\",sqlstate=\"\"} 1",
            "multitenant_client_connections{pool=\"_shared\",state=\"total\"}",
            "# TYPE multitenant_client_checkout_duration_seconds histogram",
        ] {
            assert!(text.contains(expected), "{expected} missing from\n{text}");
        }
        assert!(!text.contains("ghost"), "a made-up id never becomes a label: {text}");
        // Read at each scrape, from the same registry; prometheus() shows the same metrics.
        marker(&manager, "t2").await;
        assert!(scrape(&registry).contains("multitenant_client_query_duration_seconds_count{tenant=\"t2\"} 3"));
        assert!(manager.prometheus().contains("multitenant_client_query_duration_seconds_count{tenant=\"t2\"} 3"));

        // Snapshots and health serialize to JSON.
        let metrics = serde_json::to_value(manager.metrics()).unwrap();
        assert_eq!((metrics["checkouts"].as_u64(), metrics["errors"].as_u64()), (Some(8), Some(3)), "{metrics}");
        let health = manager
            .health_check(HealthCheckOptions {
                tenant_ids: Some(vec!["t1".into(), "ghost".into()]),
                ..Default::default()
            })
            .await;
        let health = serde_json::to_value(&health).unwrap();
        assert_eq!(health["healthy"], false, "{health}");
        assert_eq!(health["pools"][0]["status"], "ok", "{health}");
        assert_eq!(health["pools"][1]["status"], "unhealthy", "{health}");
        assert!(health["pools"][1]["error"].as_str().unwrap().contains("not found"), "{health}");
        assert_eq!(health["shared_db"]["status"], "ok", "{health}");

        // Through axum: a handler returning the error answers 409 with the SQLSTATE.
        let resolver = TenantResolver::new(manager.clone(), TenantSource::Header("x-tenant-id".into()));
        let app = Router::new()
            .route("/emails", axum::routing::post(insert_email))
            .layer(axum::middleware::from_fn_with_state(resolver, resolve_tenant));
        let post = || {
            let request = Request::builder().method("POST").uri("/emails").header("x-tenant-id", "t1");
            app.clone().oneshot(request.body(Body::empty()).unwrap())
        };
        assert_eq!(post().await.unwrap().status(), StatusCode::OK);
        let conflict = post().await.unwrap();
        assert_eq!(conflict.status(), StatusCode::CONFLICT);
        let body: serde_json::Value =
            serde_json::from_slice(&axum::body::to_bytes(conflict.into_body(), 4096).await.unwrap()).unwrap();
        assert_eq!((body["sqlstate"].as_str(), body["kind"].as_str()), (Some("23505"), Some("database")), "{body}");

        // A connection refused by the server keeps its cause too.
        let nowhere = TenantManager::new(config(&format!("{}/no_such_database", base_url()), 1)).unwrap();
        let error = nowhere.db("t1").await.err().expect("no such database");
        assert_eq!(error.sqlstate(), Some("3D000"), "{error}");
        let text = error.to_string();
        assert!(text.contains("cannot connect: 3D000: database \"no_such_database\" does not exist"), "{text}");
    });
}
