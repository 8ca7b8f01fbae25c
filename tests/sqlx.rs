//! The sqlx driver (feature `sqlx`) against a real cluster: checkouts switched to the
//! tenant's role and schema in their BEGIN, isolation, rollback on drop, refusals from the
//! directory, a failed switch that leaves the connection clean, unnamed statements for
//! poolers, and the axum layer with a sqlx resolver. (Behind PgBouncer: tests/pgbouncer.rs.)

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::routing::get;
use axum::Router;
use multitenant_client::sqlx::{SqlxConfig, SqlxTenantPool};
use multitenant_client::web::{resolve_tenant, ResolvedTenant, SqlxTenantDb, TenantResolver, TenantSource};
use multitenant_client::Error;
use multitenant_integration::{connect, fresh_database};
use sqlx::Row;
use tower::ServiceExt;

/// Tenants `t1..tN` with `marker(name)` = their id, and an application role; returns the
/// superuser's URL and the application role's.
fn setup(name: &str, tenants: usize) -> (String, String, String) {
    let url = fresh_database(name);
    let db = url.rsplit('/').next().unwrap().to_string();
    let mut admin = connect(&url);
    for row in
        admin.query("SELECT rolname::text FROM pg_roles WHERE starts_with(rolname, $1)", &[&format!("{db}_")]).unwrap()
    {
        admin.batch_execute(&format!("DROP ROLE \"{}\"", row.get::<_, String>(0))).unwrap();
    }
    admin
        .batch_execute("SELECT mt.add_migration('0000_marker', 'CREATE TABLE marker (name text); INSERT INTO marker SELECT substr(current_schema(), 8)')")
        .unwrap();
    for n in 1..=tenants {
        admin.execute("SELECT mt.create_tenant($1)", &[&format!("t{n}")]).unwrap();
    }
    let app = format!("{db}_app");
    admin.batch_execute(&format!("CREATE ROLE {app} LOGIN NOINHERIT")).unwrap();
    admin.execute("SELECT mt.grant_application_role($1)", &[&app]).unwrap();
    let app_url = url.replacen("://postgres@", &format!("://{app}@"), 1);
    (url, app_url, db)
}

fn run<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap().block_on(future)
}

async fn admin_sql(url: &str, sql: &str) {
    let pool = sqlx::PgPool::connect(url).await.unwrap();
    sqlx::raw_sql(sql).execute(&pool).await.unwrap();
    pool.close().await;
}

async fn count_markers(pool: &SqlxTenantPool, tenant: &str) -> i64 {
    let mut tx = pool.begin(tenant).await.unwrap();
    let n: i64 = sqlx::query("SELECT count(*) FROM marker").fetch_one(&mut tx).await.unwrap().get(0);
    tx.commit().await.unwrap();
    n
}

#[test]
fn checkouts_are_switched_isolated_and_roll_back_when_dropped() {
    let (url, app_url, db) = setup("sqlx_switch", 3);
    run(async move {
        for config in [SqlxConfig::default(), SqlxConfig::default().behind_transaction_pooler()] {
            let pooler = config.transaction_pooler;
            let pool = SqlxTenantPool::connect(&app_url, 2, config).await.unwrap();
            for tenant in ["t1", "t2", "t1", "t3"] {
                let mut tx = pool.begin(tenant).await.unwrap();
                let row = sqlx::query("SELECT name, current_user::text, current_setting('search_path') FROM marker")
                    .fetch_one(&mut tx)
                    .await
                    .unwrap();
                assert_eq!(row.get::<String, _>(0), tenant);
                assert_eq!(row.get::<String, _>(1), format!("{db}_tenant_{tenant}"));
                assert_eq!(row.get::<String, _>(2), format!("\"tenant_{tenant}\""));
                tx.commit().await.unwrap();
            }
            // Another tenant's tables: denied to the tenant's role.
            let mut tx = pool.begin("t1").await.unwrap();
            let error =
                Error::from(sqlx::query("SELECT * FROM tenant_t2.marker").fetch_all(&mut tx).await.unwrap_err());
            assert_eq!(error.sqlstate(), Some("42501"), "{error}");
            drop(tx);

            // Dropped without commit: rolled back. Committed: kept.
            let before = count_markers(&pool, "t2").await;
            let mut tx = pool.begin("t2").await.unwrap();
            sqlx::query("INSERT INTO marker VALUES ($1)").bind("dropped").execute(&mut tx).await.unwrap();
            drop(tx);
            assert_eq!(count_markers(&pool, "t2").await, before);
            let mut tx = pool.begin("t2").await.unwrap();
            sqlx::query("INSERT INTO marker VALUES ($1)").bind("kept").execute(&mut tx).await.unwrap();
            tx.commit().await.unwrap();
            assert_eq!(count_markers(&pool, "t2").await, before + 1);
            sqlx::raw_sql("SELECT 1").execute(pool.pool()).await.unwrap();

            // The shared schema, as the login role: no tenant's tables.
            let mut tx = pool.begin_shared().await.unwrap();
            let row = sqlx::query("SELECT current_user::text, current_setting('search_path')")
                .fetch_one(&mut tx)
                .await
                .unwrap();
            assert_eq!((row.get::<String, _>(0), row.get::<String, _>(1)), (format!("{db}_app"), "\"public\"".into()));
            drop(tx);

            // Unnamed statements leave nothing named on the server; prepare is refused.
            let mut tx = pool.begin("t3").await.unwrap();
            let named: i64 =
                sqlx::query("SELECT count(*) FROM pg_prepared_statements").fetch_one(&mut tx).await.unwrap().get(0);
            if pooler {
                assert_eq!(named, 0);
                use sqlx::Executor;
                assert!((&mut tx).prepare("SELECT 1").await.is_err());
            } else {
                assert!(named > 0, "sqlx caches named statements on a direct connection");
            }
            tx.commit().await.unwrap();
        }
        let _ = url;
    });
}

#[test]
fn the_directory_refuses_and_a_failed_switch_leaves_the_connection_clean() {
    let (url, app_url, _) = setup("sqlx_directory", 3);
    run(async move {
        let pool = SqlxTenantPool::connect(&app_url, 1, SqlxConfig::default()).await.unwrap();
        assert!(matches!(pool.begin("Bad Id").await, Err(Error::InvalidTenant(_))));
        assert!(matches!(pool.begin("ghost").await, Err(Error::TenantNotFound(_))));
        admin_sql(&url, "UPDATE mt.tenants SET status = 'suspended' WHERE tenant_id = 't2'").await;
        assert!(matches!(pool.begin("t2").await, Err(Error::TenantNotActive { .. })));
        let info = pool.tenant("t1").await.unwrap();
        assert_eq!((info.schema_name.as_str(), info.status.as_str()), ("tenant_t1", "active"));

        // t3 is cached, then dropped: its switch fails (the role is gone). The one
        // connection of the pool is then fine for t1: the failed switch rolled back whole.
        assert_eq!(count_markers(&pool, "t3").await, 1);
        admin_sql(&url, "SELECT mt.drop_tenant('t3', force => true)").await;
        let error = pool.begin("t3").await.expect_err("the role is gone");
        assert!(error.sqlstate().is_some(), "{error}");
        assert_eq!(count_markers(&pool, "t1").await, 1);
        pool.invalidate("t3").await;
        assert!(matches!(pool.begin("t3").await, Err(Error::TenantNotFound(_))));

        // The naming settings are checked against the server's.
        let other = SqlxConfig { schema_template: "org_{id}".into(), ..SqlxConfig::default() };
        assert!(matches!(
            SqlxTenantPool::connect(&app_url, 1, other).await,
            Err(Error::SettingsMismatch { key: "schema_template", .. })
        ));
    });
}

async fn whoami(tenant: ResolvedTenant, SqlxTenantDb(mut tx): SqlxTenantDb) -> String {
    let name: String = sqlx::query("SELECT name FROM marker").fetch_one(&mut tx).await.unwrap().get(0);
    tx.commit().await.unwrap();
    format!("{} {name}", tenant.0)
}

#[test]
fn the_axum_layer_resolves_tenants_with_sqlx() {
    let (url, app_url, _) = setup("sqlx_axum", 3);
    connect(&url).batch_execute("UPDATE mt.tenants SET status = 'suspended' WHERE tenant_id = 't3'").unwrap();
    run(async move {
        let pool = SqlxTenantPool::connect(&app_url, 2, SqlxConfig::default()).await.unwrap();
        let resolver = TenantResolver::new(pool, TenantSource::Header("x-tenant-id".into()));
        let app = Router::new()
            .route("/whoami", get(whoami))
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
        assert_eq!(&axum::body::to_bytes(ok.into_body(), 1024).await.unwrap()[..], b"t2 t2");
        assert_eq!(call(None).await.unwrap().status(), StatusCode::BAD_REQUEST);
        assert_eq!(call(Some("Bad Id")).await.unwrap().status(), StatusCode::BAD_REQUEST);
        assert_eq!(call(Some("nobody")).await.unwrap().status(), StatusCode::NOT_FOUND);
        assert_eq!(call(Some("t3")).await.unwrap().status(), StatusCode::FORBIDDEN);
    });
}

async fn insert_email(SqlxTenantDb(mut tx): SqlxTenantDb) -> Result<String, Error> {
    sqlx::query("INSERT INTO emails VALUES ($1)").bind("a@example.com").execute(&mut tx).await?;
    tx.commit().await?;
    Ok("created".into())
}

async fn first_email(SqlxTenantDb(mut tx): SqlxTenantDb) -> Result<String, Error> {
    let row = sqlx::query("SELECT email FROM emails WHERE email = 'nobody'").fetch_one(&mut tx).await?;
    Ok(row.get(0))
}

#[test]
fn sqlx_metrics_errors_and_statuses() {
    use multitenant_client::prometheus_client::{encoding::text::encode, registry::Registry};
    let (url, app_url, _) = setup("sqlx_observe", 2);
    let mut admin = connect(&url);
    for tenant in ["t1", "t2"] {
        admin
            .batch_execute(&format!(
                "BEGIN; SELECT set_config('role', role_name, true) FROM mt.tenant_directory WHERE tenant_id = '{tenant}'; \
                 CREATE TABLE tenant_{tenant}.emails (email text PRIMARY KEY); COMMIT"
            ))
            .unwrap();
    }
    run(async move {
        let pool = SqlxTenantPool::connect(&app_url, 2, SqlxConfig::default()).await.unwrap();
        let mut registry = Registry::default();
        pool.register_metrics(&mut registry);
        for _ in 0..2 {
            count_markers(&pool, "t1").await;
        }
        count_markers(&pool, "t2").await;
        assert!(matches!(pool.begin("ghost").await, Err(Error::TenantNotFound(_))));

        let resolver = TenantResolver::new(pool.clone(), TenantSource::Header("x-tenant-id".into()));
        let app = Router::new()
            .route("/emails", get(first_email).post(insert_email))
            .layer(axum::middleware::from_fn_with_state(resolver, resolve_tenant));
        let call = |method: &str| {
            let request = Request::builder().method(method).uri("/emails").header("x-tenant-id", "t2");
            app.clone().oneshot(request.body(Body::empty()).unwrap())
        };
        assert_eq!(call("POST").await.unwrap().status(), StatusCode::OK);
        let conflict = call("POST").await.unwrap();
        assert_eq!(conflict.status(), StatusCode::CONFLICT, "a unique violation");
        let body: serde_json::Value =
            serde_json::from_slice(&axum::body::to_bytes(conflict.into_body(), 4096).await.unwrap()).unwrap();
        assert_eq!(body["sqlstate"], "23505", "{body}");
        assert!(body["error"].as_str().unwrap().starts_with("23505: duplicate key value"), "{body}");
        assert_eq!(call("GET").await.unwrap().status(), StatusCode::NOT_FOUND, "fetch_one found nothing");

        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        for expected in [
            // count_markers: one statement per checkout; the handlers: 3 statements for t2.
            "multitenant_client_query_duration_seconds_count{tenant=\"t1\"} 2",
            "multitenant_client_query_duration_seconds_count{tenant=\"t2\"} 4",
            "multitenant_client_checkouts_total 6",
            "multitenant_client_errors_total{tenant=\"t2\",kind=\"sqlx\",sqlstate=\"23505\"} 1",
            "multitenant_client_errors_total{tenant=\"_unregistered\",kind=\"tenant_not_found\",sqlstate=\"\"} 1",
            "multitenant_client_connections{pool=\"_shared\",state=\"total\"}",
        ] {
            assert!(text.contains(expected), "{expected} missing from\n{text}");
        }
        assert!(!text.contains("ghost"), "{text}");
    });
}
