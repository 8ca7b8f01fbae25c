//! The thin client of `multitenant`: connections to the right tenant schema, safely and fast.
//!
//! ```no_run
//! # async fn demo() -> Result<(), multitenant_client::Error> {
//! use multitenant_client::{Config, TenantManager};
//!
//! let manager = TenantManager::new(Config::new("postgresql://app@localhost/app"))?;
//! let mut db = manager.db("acme").await?;            // search_path = "tenant_acme", "public"
//! let rows = db.query("SELECT id, email FROM users WHERE id = $1", &[&42_i32]).await?;
//! db.commit().await?;
//! # let _ = rows; Ok(()) }
//! ```
//!
//! Two modes (see [`Mode`]): one shared pool whose checkouts switch schema inside a
//! transaction with `set_config('search_path', …, true)` (the default: bounded connections,
//! safe behind PgBouncer's transaction mode), or one pool per tenant in an LRU. Schema names
//! come from `multitenant-core`, the same rules as the extension's `mt.schema_name`.

mod config;
mod context;
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
pub use error::{Error, Result};
pub use health::{HealthCheckOptions, HealthResult, HealthStatus, PoolHealth, SharedHealth};
pub use manager::{TenantManager, TenantWarmup, WarmupOptions, WarmupResult};
pub use metrics::{ConnectionMetrics, Metrics, PoolMetrics, TenantPoolMetrics};
pub use retry::{is_retryable, with_retry, RetryConfig, RetryEvent};
pub use session::TenantClient;
pub use tokio_postgres::{types::ToSql, Row};
