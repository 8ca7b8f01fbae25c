//! The thin client of `multitenant`: connections to the right tenant, safely and fast.
//!
//! ```no_run
//! # async fn demo() -> Result<(), multitenant_client::Error> {
//! use multitenant_client::{Config, TenantManager};
//!
//! // Checks that the server's naming settings are the client's.
//! let manager = TenantManager::connect(Config::new("postgresql://app@localhost/app")).await?;
//! let mut db = manager.db("acme").await?;            // role tenant_acme, search_path "tenant_acme"
//! let rows = db.query("SELECT id, email FROM users WHERE id = $1", &[&42_i32]).await?;
//! db.commit().await?;
//! # let _ = rows; Ok(()) }
//! ```
//!
//! A checkout first looks the tenant up in the extension's `mt.tenant_directory` (through a
//! bounded cache whose answers expire within seconds): an unregistered or suspended tenant
//! is an error before any connection is switched to it. Then it switches to the tenant's
//! role and schema: every checkout is a transaction that switches with
//! `set_config('role', …, true)` and `set_config('search_path', …, true)`, from one shared
//! pool (the default: bounded connections) or from one pool per tenant in an LRU (see
//! [`Mode`]). Behind PgBouncer in transaction mode or any other transaction pooler, use
//! [`Config::behind_transaction_pooler`]: statements are then sent unnamed, so none relies on
//! a server connection outliving its transaction (see [`Statements`]). TLS is rustls, with
//! `sslmode` and `sslrootcert` read from the URL (see [`tls`]). The `sqlx` feature gives the
//! same checkouts over a `sqlx::PgPool`. Schema names come from `multitenant-core`, the same
//! rules as the extension's `mt.schema_name`.
//!
//! Observability: [`TenantManager::register_metrics`] puts the client's metrics (checkouts,
//! pools, a per-tenant query duration histogram, errors by tenant, kind and SQLSTATE) into
//! the application's own `prometheus-client` registry (see [`metrics`]); health checks and
//! metric snapshots serialize to JSON with serde; an error's text is the server's SQLSTATE
//! and message. With the `axum` feature, [`Error`] is a response with a fitting status (409
//! for a unique violation; see `web::status_of`).

mod config;
mod conn;
mod context;
mod directory;
mod error;
mod health;
mod manager;
pub mod metrics;
mod retry;
mod session;
pub mod tls;

#[cfg(feature = "sqlx")]
pub mod sqlx;
#[cfg(feature = "axum")]
pub mod web;

pub use config::{Config, DebugConfig, Hooks, Mode, RootCertificates, Statements, TlsConfig};
pub use context::{current_tenant, in_current_tenant, spawn, with_tenant};
pub use directory::{TenantCacheConfig, TenantDirectory, TenantInfo};
pub use error::{Error, PoolError, Result};
pub use health::{HealthCheckOptions, HealthResult, HealthStatus, PoolHealth, SharedHealth};
pub use manager::{TenantManager, TenantWarmup, WarmupOptions, WarmupResult};
pub use metrics::{ConnectionMetrics, Metrics, MetricsConfig, PoolMetrics, TenantPoolMetrics};
/// The `prometheus-client` this crate registers its metrics with (the same version is needed
/// for [`TenantManager::register_metrics`]).
pub use prometheus_client;
pub use retry::{is_retryable, with_retry, RetryConfig, RetryEvent};
pub use session::TenantClient;
pub use tokio_postgres::{types::ToSql, Row};
