use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use multitenant_core::naming::{DEFAULT_SHARED_SCHEMA, DEFAULT_TEMPLATE};

use crate::directory::TenantCacheConfig;
use crate::error::Error;
use crate::retry::RetryConfig;

/// How connections reach tenant schemas.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// One pool for everyone. Each checkout opens a transaction and switches `role` and
    /// `search_path` with `set_config(..., true)`, so nothing outlives the checkout and it
    /// works behind PgBouncer in transaction mode. Connections are bounded by `pool_size`.
    SharedPool,
    /// One pool per tenant (`role` and `search_path` set at connect, and reset to them at
    /// the start of every checkout), at most `max_pools` of them; the least recently used
    /// pool is closed to make room, and pools idle for `idle_ttl` are closed. Up to
    /// `max_pools * pool_size` connections: mind `max_connections`.
    PoolPerTenant { max_pools: usize, idle_ttl: Duration },
}

/// Query logging through `tracing`.
#[derive(Clone, Debug, Default)]
pub struct DebugConfig {
    /// Log every query with its tenant and duration at DEBUG level.
    pub log_queries: bool,
    /// Log queries slower than this at WARN level.
    pub slow_query_threshold: Option<Duration>,
}

type TenantHook = Arc<dyn Fn(&str) + Send + Sync>;
type ErrorHook = Arc<dyn Fn(&str, &Error) + Send + Sync>;

/// Lifecycle callbacks.
#[derive(Clone, Default)]
pub struct Hooks {
    pub on_pool_created: Option<TenantHook>,
    pub on_pool_evicted: Option<TenantHook>,
    pub on_error: Option<ErrorHook>,
}

impl fmt::Debug for Hooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hooks")
            .field("on_pool_created", &self.on_pool_created.is_some())
            .field("on_pool_evicted", &self.on_pool_evicted.is_some())
            .field("on_error", &self.on_error.is_some())
            .finish()
    }
}

/// Everything a [`crate::TenantManager`] needs. Start from [`Config::new`] and change fields.
#[derive(Clone, Debug)]
pub struct Config {
    /// A libpq-style URL or key=value string.
    pub url: String,
    /// Connections per pool.
    pub pool_size: usize,
    /// How long a checkout waits for a free connection.
    pub checkout_timeout: Duration,
    pub mode: Mode,
    /// The same template as the extension's `schema_template` setting (checked against the
    /// server before the first checkout).
    pub schema_template: String,
    /// The extension's `shared_schema` setting: `shared_db()` uses it, and tenant checkouts
    /// put it after the tenant's schema when `search_path_includes_shared` is on.
    pub shared_schema: String,
    /// Off (the default): a tenant checkout's `search_path` is the tenant's schema alone, so
    /// an unqualified name that the tenant lacks is an error, never the shared table of the
    /// same name. On: the shared schema follows the tenant's, so shared tables can be named
    /// without a schema, at the price that a table missing from a tenant (a migration not
    /// yet applied, a typo) silently resolves to the shared one. Either way the switched
    /// role decides what can be read.
    pub search_path_includes_shared: bool,
    /// How long answers of `mt.tenant_directory` are cached, and how many.
    pub tenant_cache: TenantCacheConfig,
    pub retry: RetryConfig,
    pub debug: DebugConfig,
    pub hooks: Hooks,
}

impl Config {
    /// Shared-pool mode, 10 connections, the extension's default naming.
    pub fn new(url: impl Into<String>) -> Config {
        Config {
            url: url.into(),
            pool_size: 10,
            checkout_timeout: Duration::from_secs(5),
            mode: Mode::SharedPool,
            schema_template: DEFAULT_TEMPLATE.to_string(),
            shared_schema: DEFAULT_SHARED_SCHEMA.to_string(),
            search_path_includes_shared: false,
            tenant_cache: TenantCacheConfig::default(),
            retry: RetryConfig::default(),
            debug: DebugConfig::default(),
            hooks: Hooks::default(),
        }
    }

    /// Pool-per-tenant mode with the predecessor's defaults (50 pools, 10 minutes idle).
    pub fn pool_per_tenant(mut self, max_pools: usize, idle_ttl: Duration) -> Config {
        self.mode = Mode::PoolPerTenant { max_pools, idle_ttl };
        self
    }
}
