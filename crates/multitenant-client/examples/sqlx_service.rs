//! A small multi-tenant HTTP service on sqlx (features `axum` and `sqlx`).
//!
//!   DATABASE_URL=postgresql://postgres@127.0.0.1:54350/multitenant_demo PORT=3001 \
//!     cargo run -p multitenant-client --features axum,sqlx --example sqlx_service
//!   curl -H 'x-tenant-id: acme' localhost:3001/users
//!   curl -X POST -H 'x-tenant-id: acme' 'localhost:3001/users?email=a@example.com'
//!
//! Behind PgBouncer in transaction mode, set TRANSACTION_POOLER=1 (statements unnamed, sqlx's
//! statement cache off).

use std::collections::HashMap;

use axum::extract::Query;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use multitenant_client::sqlx::{SqlxConfig, SqlxTenantPool};
use multitenant_client::web::{resolve_tenant, SqlxTenantDb, TenantResolver, TenantSource};
use sqlx::Row;

type Answer = (StatusCode, String);

/// The status a database error deserves: 409 for a unique violation, 400 for bad input,
/// 500 otherwise.
fn failure(error: sqlx::Error) -> Answer {
    let code = error.as_database_error().and_then(|e| e.code()).map(|c| c.to_string());
    let status = match code.as_deref() {
        Some("23505") => StatusCode::CONFLICT,
        Some(c) if c.starts_with("22") || c.starts_with("23") => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    (status, format!("{error}\n"))
}

async fn list_users(SqlxTenantDb(mut tx): SqlxTenantDb) -> Result<String, Answer> {
    let rows = sqlx::query("SELECT id, email FROM users ORDER BY id").fetch_all(&mut tx).await.map_err(failure)?;
    tx.commit().await.map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(rows.iter().map(|r| format!("{} {}\n", r.get::<i32, _>(0), r.get::<String, _>(1))).collect())
}

async fn add_user(
    SqlxTenantDb(mut tx): SqlxTenantDb,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Answer, Answer> {
    let email = params.get("email").ok_or((StatusCode::BAD_REQUEST, "email is required\n".to_string()))?;
    let row = sqlx::query("INSERT INTO users (email) VALUES ($1) RETURNING id")
        .bind(email)
        .fetch_one(&mut tx)
        .await
        .map_err(failure)?;
    tx.commit().await.map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok((StatusCode::CREATED, format!("created user {}\n", row.get::<i32, _>(0))))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt::init();
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgresql://postgres@127.0.0.1:54350/multitenant_demo".into());
    let port = std::env::var("PORT").unwrap_or_else(|_| "3001".into());
    let mut config = SqlxConfig::default();
    if std::env::var("TRANSACTION_POOLER").is_ok_and(|v| v == "1") {
        config = config.behind_transaction_pooler();
    }
    let pool = SqlxTenantPool::connect(&url, 10, config).await?; // checks the naming settings
    let resolver = TenantResolver::new(pool, TenantSource::Header("x-tenant-id".into()));
    let app = Router::new()
        .route("/users", get(list_users).post(add_user))
        .layer(axum::middleware::from_fn_with_state(resolver, resolve_tenant));
    let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}")).await?;
    println!("listening on http://127.0.0.1:{port}");
    axum::serve(listener, app).await?;
    Ok(())
}
