//! A small multi-tenant HTTP service on sqlx (features `axum` and `sqlx`), against
//! `make demo`'s database (tenants `acme`, `globex-eu`, …; table `users` with a unique email).
//!
//!   DATABASE_URL=postgresql://tour_app@127.0.0.1:25350/multitenant_demo PORT=3001 \
//!     cargo run -p multitenant-client --features axum,sqlx --example sqlx_service
//!
//!   curl -i -H 'x-tenant-id: acme' localhost:3001/users                        200, JSON list
//!   curl -i -H 'x-tenant-id: acme' -H 'content-type: application/json' \
//!        -d '{"email": "c@acme.test"}' localhost:3001/users                    201, then 409 when repeated
//!   curl -i -H 'x-tenant-id: acme' -H 'content-type: application/json' \
//!        -d '{}' localhost:3001/users                                          400 (missing field `email`)
//!   curl -i -H 'x-tenant-id: nobody' localhost:3001/users                      404 (not registered)
//!   curl localhost:3001/metrics                                                Prometheus text (the app's registry)
//!
//! Environment: `DATABASE_URL`; `HOST` (127.0.0.1) and `PORT` (3001) to listen on;
//! `TRANSACTION_POOLER=1` behind PgBouncer in transaction mode (statements unnamed, sqlx's
//! statement cache off). PgBouncer needs `ignore_startup_parameters = extra_float_digits`
//! for sqlx (see docs/client.md, "Behind PgBouncer").

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use multitenant_client::sqlx::{SqlxConfig, SqlxTenantPool};
use multitenant_client::web::{resolve_tenant, SqlxTenantDb, TenantResolver, TenantSource};
use multitenant_client::Error;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgRow;
use sqlx::Row;

#[derive(Deserialize)]
struct NewUser {
    email: String,
}

#[derive(Serialize)]
struct User {
    id: i32,
    email: String,
}

impl User {
    fn of(row: &PgRow) -> Result<User, sqlx::Error> {
        Ok(User { id: row.try_get(0)?, email: row.try_get(1)? })
    }
}

/// A body that is not the JSON asked for: 400 with the reason; a missing
/// `content-type: application/json` keeps axum's 415.
fn bad_request(rejection: JsonRejection) -> Response {
    match rejection {
        JsonRejection::JsonDataError(_) | JsonRejection::JsonSyntaxError(_) => {
            let body = serde_json::json!({ "error": rejection.body_text() });
            (StatusCode::BAD_REQUEST, Json(body)).into_response()
        }
        other => other.into_response(),
    }
}

/// `?` turns a sqlx error into `multitenant_client::Error`, whose response is 409 for a
/// unique violation, 400 for bad data, 404 for `RowNotFound`, 503 when the database cannot
/// be reached, 500 otherwise (see `multitenant_client::web::status_of`).
async fn list_users(SqlxTenantDb(mut tx): SqlxTenantDb) -> Result<Json<Vec<User>>, Error> {
    let rows = sqlx::query("SELECT id, email::text FROM users ORDER BY id").fetch_all(&mut tx).await?;
    tx.commit().await?;
    Ok(Json(rows.iter().map(User::of).collect::<Result<_, _>>()?))
}

async fn add_user(
    SqlxTenantDb(mut tx): SqlxTenantDb,
    body: Result<Json<NewUser>, JsonRejection>,
) -> Result<(StatusCode, Json<User>), Response> {
    let Json(new) = body.map_err(bad_request)?;
    let inserted = sqlx::query("INSERT INTO users (email) VALUES ($1) RETURNING id, email::text")
        .bind(new.email)
        .fetch_one(&mut tx)
        .await
        .and_then(|row| User::of(&row));
    let user = inserted.map_err(|e| Error::from(e).into_response())?;
    tx.commit().await.map_err(IntoResponse::into_response)?;
    Ok((StatusCode::CREATED, Json(user)))
}

async fn metrics(State(registry): State<Arc<Registry>>) -> impl IntoResponse {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).expect("writing to a String");
    ([(axum::http::header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt::init();
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgresql://postgres@127.0.0.1:25350/multitenant_demo".into());
    let host = std::env::var("HOST").unwrap_or_else(|_| "127.0.0.1".into());
    let port: u16 = std::env::var("PORT").unwrap_or_else(|_| "3001".into()).parse()?;
    let mut config = SqlxConfig::default();
    if std::env::var("TRANSACTION_POOLER").is_ok_and(|v| v == "1") {
        config = config.behind_transaction_pooler();
    }
    let pool = SqlxTenantPool::connect(&url, 10, config).await?; // checks the naming settings
    let mut registry = Registry::default();
    pool.register_metrics(&mut registry);

    let resolver = TenantResolver::new(pool, TenantSource::Header("x-tenant-id".into()));
    let tenant_routes = Router::new()
        .route("/users", get(list_users).post(add_user))
        .layer(axum::middleware::from_fn_with_state(resolver, resolve_tenant));
    let service = Router::new().route("/metrics", get(metrics)).with_state(Arc::new(registry)).merge(tenant_routes);
    let listener = tokio::net::TcpListener::bind((host.as_str(), port)).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, service).await?;
    Ok(())
}
