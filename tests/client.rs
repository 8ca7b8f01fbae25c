//! The client library against a real cluster: both modes, isolation, prepared statements
//! across tenants, retry against a late server, health of a stopped server, warmup, LRU,
//! tenant context and the axum layer.

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
    with_tenant, Config, Error, HealthCheckOptions, HealthStatus, RetryConfig, TenantManager, WarmupOptions,
};
use multitenant_integration::{connect, fresh_database};
use tower::ServiceExt;

/// A database with tenants `t1..tN`, each holding `marker(name)` = its own id.
fn database_with_tenants(name: &str, count: usize) -> String {
    let url = fresh_database(name);
    let mut admin = connect(&url);
    admin
        .batch_execute("SELECT mt.add_migration('0000_marker', 'CREATE TABLE marker (name text); INSERT INTO marker SELECT substr(current_schema(), 8)')")
        .unwrap();
    for n in 1..=count {
        admin.execute("SELECT mt.create_tenant($1)", &[&format!("t{n}")]).unwrap();
    }
    url
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
    connect(&url).batch_execute("CREATE TABLE tenant_t2.only_t2 (id int)").unwrap();
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
    connect(&url)
        .batch_execute(
            "CREATE TABLE tenant_t1.users (id int, email text); INSERT INTO tenant_t1.users VALUES (1, 'a@x');
             CREATE TABLE tenant_t2.users (id text, email int, active boolean); INSERT INTO tenant_t2.users VALUES ('u', 7, true);",
        )
        .unwrap();
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
        assert!(ghost.error.as_deref().unwrap_or_default().contains("unknown tenant"), "{ghost:?}");
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
    run(async move {
        let scripts = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/cluster.sh");
        let port = "54354";
        let cluster = move |action: &str| {
            let mut command = Command::new(scripts);
            command.arg(action).arg("late");
            if action == "start" {
                command.arg(port);
            }
            assert!(command.status().unwrap().success(), "cluster.sh {action}");
        };
        cluster("start"); // initdb once, so that the late start below is quick
        cluster("stop");

        let mut config = Config::new(format!("postgresql://postgres@127.0.0.1:{port}/postgres"));
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
    let url = database_with_tenants("axum", 2);
    run(async move {
        let manager = TenantManager::new(config(&url, 2)).unwrap();
        let resolver = TenantResolver::new(manager, TenantSource::Header("x-tenant-id".into()));
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
        assert_eq!(call(Some("nobody")).await.unwrap().status(), StatusCode::NOT_FOUND);
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
