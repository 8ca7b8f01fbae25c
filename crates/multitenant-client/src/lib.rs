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
//! role and schema. Two modes (see [`Mode`]): one shared pool whose checkouts switch inside
//! a transaction with `set_config('role', …, true)` and `set_config('search_path', …, true)`
//! (the default: bounded connections, safe behind PgBouncer's transaction mode), or one pool
//! per tenant in an LRU, each connecting as the tenant's role. Schema names come from
//! `multitenant-core`, the same rules as the extension's `mt.schema_name`.

mod config;
mod context;
mod directory;
mod error;
mod health;
mod manager;
mod metrics;
mod retry;
mod session;

#[cfg(feature = "axum")]
pub mod web;

pub use config::{Config, DebugConfig, Hooks, Mode};
pub use context::{current_tenant, with_tenant};
pub use directory::{TenantCacheConfig, TenantInfo};
pub use error::{Error, Result};
pub use health::{HealthCheckOptions, HealthResult, HealthStatus, PoolHealth, SharedHealth};
pub use manager::{TenantManager, TenantWarmup, WarmupOptions, WarmupResult};
pub use metrics::{ConnectionMetrics, Metrics, PoolMetrics, TenantPoolMetrics};
pub use retry::{is_retryable, with_retry, RetryConfig, RetryEvent};
pub use session::TenantClient;
pub use tokio_postgres::{types::ToSql, Row};
