//! A small multi-tenant HTTP service on the shared-pool client.
//!
//!   DATABASE_URL=postgresql://postgres@127.0.0.1:54350/multitenant_demo \
//!     cargo run -p multitenant-client --features axum --example axum_service
//!   curl -H 'x-tenant-id: acme' localhost:3000/users
//!   curl -X POST -H 'x-tenant-id: acme' 'localhost:3000/users?email=a@example.com'
//!   curl localhost:3000/health        (200 or 503, JSON-ish summary)

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::routing::get;
use axum::Router;
use multitenant_client::web::{resolve_tenant, TenantDb, TenantResolver, TenantSource};
use multitenant_client::{Config, HealthCheckOptions, TenantManager};

async fn list_users(TenantDb(mut db): TenantDb) -> Result<String, String> {
    let rows = db.query("SELECT id, email FROM users ORDER BY id", &[]).await.map_err(|e| e.to_string())?;
    db.commit().await.map_err(|e| e.to_string())?;
    Ok(rows.iter().map(|r| format!("{} {}\n", r.get::<_, i32>(0), r.get::<_, String>(1))).collect())
}

async fn add_user(TenantDb(mut db): TenantDb, Query(params): Query<HashMap<String, String>>) -> Result<String, String> {
    let email = params.get("email").ok_or("email is required")?;
    let row = db
        .query_one("INSERT INTO users (email) VALUES ($1) RETURNING id", &[email])
        .await
        .map_err(|e| e.to_string())?;
    db.commit().await.map_err(|e| e.to_string())?;
    Ok(format!("created user {}\n", row.get::<_, i32>(0)))
}

async fn health(State(manager): State<TenantManager>) -> (axum::http::StatusCode, String) {
    let health = manager.health_check(HealthCheckOptions::default()).await;
    let status = axum::http::StatusCode::from_u16(health.http_status()).expect("200 or 503");
    (
        status,
        format!(
            "healthy={} pools={} unhealthy={} duration_ms={}\n",
            health.healthy, health.total_pools, health.unhealthy_pools, health.duration_ms
        ),
    )
}

async fn metrics(State(manager): State<TenantManager>) -> String {
    manager.prometheus()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt::init();
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgresql://postgres@127.0.0.1:54350/multitenant_demo".into());
    let manager = TenantManager::connect(Config::new(url)).await?; // checks the naming settings
    let resolver = TenantResolver::new(manager.clone(), TenantSource::Header("x-tenant-id".into()));
    let tenant_routes = Router::new()
        .route("/users", get(list_users).post(add_user))
        .layer(axum::middleware::from_fn_with_state(resolver, resolve_tenant));
    let app = Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .with_state(manager)
        .merge(tenant_routes);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("listening on http://127.0.0.1:3000");
    axum::serve(listener, app).await?;
    Ok(())
}
