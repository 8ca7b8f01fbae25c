//! A small multi-tenant HTTP service on the tokio-postgres client (feature `axum`), against
//! `make demo`'s database (tenants `acme`, `globex-eu`, …; table `users` with a unique email).
//!
//!   DATABASE_URL=postgresql://tour_app@127.0.0.1:25350/multitenant_demo PORT=3000 \
//!     cargo run -p multitenant-client --features axum --example axum_service
//!
//!   curl -i -H 'x-tenant-id: acme' localhost:3000/users                        200, JSON list
//!   curl -i -H 'x-tenant-id: acme' -H 'content-type: application/json' \
//!        -d '{"email": "c@acme.test"}' localhost:3000/users                    201, then 409 when repeated
//!   curl -i -H 'x-tenant-id: acme' -H 'content-type: application/json' \
//!        -d '{}' localhost:3000/users                                          400 (missing field `email`)
//!   curl -i -H 'x-tenant-id: nobody' localhost:3000/users                      404 (not registered)
//!   curl -i localhost:3000/users                                               400 (no tenant)
//!   curl -i localhost:3000/health                                              200 or 503, JSON
//!   curl -i localhost:3000/metrics/json                                        the metrics snapshot, JSON
//!   curl localhost:3000/metrics                                                Prometheus text (the app's registry)
//!
//! Environment: `DATABASE_URL`; `HOST` (127.0.0.1) and `PORT` (3000) to listen on;
//! `TRANSACTION_POOLER=1` behind PgBouncer in transaction mode (or any transaction pooler):
//! statements are then sent unnamed. Behind PgBouncer, point `DATABASE_URL` at PgBouncer
//! (see docs/client.md, "Behind PgBouncer").

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use multitenant_client::web::{resolve_tenant, TenantDb, TenantResolver, TenantSource};
use multitenant_client::{Config, Error, HealthCheckOptions, HealthResult, Metrics, TenantManager};
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
struct NewUser {
    email: String,
}

#[derive(Serialize)]
struct User {
    id: i32,
    email: String,
}

/// A body that is not the JSON asked for: 400 with the reason (a missing field, a field of the
/// wrong type, bad syntax); a missing `content-type: application/json` keeps axum's 415.
fn bad_request(rejection: JsonRejection) -> Response {
    match rejection {
        JsonRejection::JsonDataError(_) | JsonRejection::JsonSyntaxError(_) => {
            let body = serde_json::json!({ "error": rejection.body_text() });
            (StatusCode::BAD_REQUEST, Json(body)).into_response()
        }
        other => other.into_response(),
    }
}

/// Errors answer through `impl IntoResponse for multitenant_client::Error`: 409 for a
/// unique violation, 400 for bad data, 404/403 for refused tenants, 503 when the database
/// cannot be reached, 500 otherwise (see `multitenant_client::web::status_of`).
async fn list_users(TenantDb(db): TenantDb) -> Result<Json<Vec<User>>, Error> {
    let rows = db.query_and_commit("SELECT id, email::text FROM users ORDER BY id", &[]).await?;
    Ok(Json(rows.iter().map(|r| User { id: r.get(0), email: r.get(1) }).collect()))
}

async fn add_user(TenantDb(db): TenantDb, body: Result<Json<NewUser>, JsonRejection>) -> Response {
    let Json(new) = match body {
        Ok(body) => body,
        Err(rejection) => return bad_request(rejection),
    };
    // The INSERT and its COMMIT go out together: one round trip.
    match db.query_and_commit("INSERT INTO users (email) VALUES ($1) RETURNING id, email::text", &[&new.email]).await {
        Ok(rows) => (StatusCode::CREATED, Json(User { id: rows[0].get(0), email: rows[0].get(1) })).into_response(),
        Err(error) => error.into_response(),
    }
}

async fn health(State(app): State<App>) -> (StatusCode, Json<HealthResult>) {
    let health = app.manager.health_check(HealthCheckOptions::default()).await;
    (StatusCode::from_u16(health.http_status()).expect("200 or 503"), Json(health))
}

async fn metrics_json(State(app): State<App>) -> Json<Metrics> {
    Json(app.manager.metrics())
}

/// The application's own registry, which the client's metrics are registered into.
async fn metrics(State(app): State<App>) -> impl IntoResponse {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &app.registry).expect("writing to a String");
    ([(axum::http::header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text)
}

#[derive(Clone)]
struct App {
    manager: TenantManager,
    registry: Arc<Registry>,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt::init();
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgresql://postgres@127.0.0.1:25350/multitenant_demo".into());
    let host = std::env::var("HOST").unwrap_or_else(|_| "127.0.0.1".into());
    let port: u16 = std::env::var("PORT").unwrap_or_else(|_| "3000".into()).parse()?;
    let mut config = Config::new(url);
    if std::env::var("TRANSACTION_POOLER").is_ok_and(|v| v == "1") {
        config = config.behind_transaction_pooler();
    }
    let manager = TenantManager::connect(config).await?; // checks the naming settings
    let mut registry = Registry::default();
    manager.register_metrics(&mut registry);
    let app = App { manager: manager.clone(), registry: Arc::new(registry) };

    let resolver = TenantResolver::new(manager, TenantSource::Header("x-tenant-id".into()));
    let tenant_routes = Router::new()
        .route("/users", get(list_users).post(add_user))
        .layer(axum::middleware::from_fn_with_state(resolver, resolve_tenant));
    let service = Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/metrics/json", get(metrics_json))
        .with_state(app)
        .merge(tenant_routes);
    let listener = tokio::net::TcpListener::bind((host.as_str(), port)).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, service).await?;
    Ok(())
}
