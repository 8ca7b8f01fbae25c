use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use multitenant_core::naming::{DEFAULT_SHARED_SCHEMA, DEFAULT_TEMPLATE};

use crate::directory::TenantCacheConfig;
use crate::error::Error;
use crate::metrics::MetricsConfig;
use crate::retry::RetryConfig;

/// How connections reach tenant schemas. In both modes a checkout is one transaction that
/// switches `role` and `search_path` with `set_config(..., true)`: nothing outlives the
/// checkout, a checkout dropped without `commit()` rolls back, and both work behind a
/// transaction pooler (with [`Statements::Unnamed`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// One pool for everyone. Connections are bounded by `pool_size`.
    SharedPool,
    /// One pool per tenant, at most `max_pools` of them; the least recently used pool is
    /// dropped to make room, and pools idle for `idle_ttl` are dropped (a dropped pool's idle
    /// connections close at once, busy ones when their checkout ends: a task checking out
    /// from it is never failed). Up to `max_pools * pool_size` connections: mind
    /// `max_connections`. Connections log in as the login role, like the shared pool's.
    PoolPerTenant { max_pools: usize, idle_ttl: Duration },
}

/// How statements reach the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Statements {
    /// Named prepared statements, cached per connection (and tenant schema) in an LRU of at
    /// most `per_connection` statements; the least recently used one is closed on the server
    /// to make room. For direct connections and session-mode poolers. **Not** behind a
    /// transaction pooler: a named statement lives on one server connection, which the
    /// pooler hands to another client after each transaction.
    Prepared { per_connection: usize },
    /// No server-side statement outlives its transaction: every statement is sent unnamed
    /// (parse, bind and execute in one round trip, like `query_typed`). The parameter types
    /// of each (schema, SQL) pair are learned once, by a statement prepared and closed
    /// inside the checkout's transaction, and kept in a process-wide LRU of at most
    /// `type_cache` entries. Use this behind PgBouncer in transaction mode, or any other
    /// transaction pooler (RDS Proxy, pgcat, Supavisor, Odyssey).
    Unnamed { type_cache: u64 },
}

impl Statements {
    /// Named statements, at most 100 per connection.
    pub const PREPARED: Statements = Statements::Prepared { per_connection: 100 };
    /// Unnamed statements, parameter types of at most 10,000 (schema, SQL) pairs remembered.
    pub const UNNAMED: Statements = Statements::Unnamed { type_cache: 10_000 };
}

impl Default for Statements {
    fn default() -> Self {
        Statements::PREPARED
    }
}

/// TLS settings beside the URL's `sslmode` and `sslrootcert` (see [`crate::tls`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsConfig {
    /// PEM certificates of the certificate authorities to trust (`verify-ca`,
    /// `verify-full`, and `require` when given). Overrides the URL's `sslrootcert`.
    pub root_certificates: Option<RootCertificates>,
}

/// Where trusted root certificates come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RootCertificates {
    /// A PEM file with one or more certificates.
    File(std::path::PathBuf),
    /// PEM text with one or more certificates.
    Pem(String),
    /// The operating system's trust store (libpq's `sslrootcert=system`).
    System,
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
    /// Named and cached, or unnamed statements (behind a transaction pooler).
    pub statements: Statements,
    /// Root certificates for TLS; `sslmode` itself comes from the URL.
    pub tls: TlsConfig,
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
    /// Buckets of the duration histograms and the bound on per-tenant series.
    pub metrics: MetricsConfig,
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
            statements: Statements::default(),
            tls: TlsConfig::default(),
            schema_template: DEFAULT_TEMPLATE.to_string(),
            shared_schema: DEFAULT_SHARED_SCHEMA.to_string(),
            search_path_includes_shared: false,
            tenant_cache: TenantCacheConfig::default(),
            retry: RetryConfig::default(),
            debug: DebugConfig::default(),
            metrics: MetricsConfig::default(),
            hooks: Hooks::default(),
        }
    }

    /// Pool-per-tenant mode with the predecessor's defaults (50 pools, 10 minutes idle).
    pub fn pool_per_tenant(mut self, max_pools: usize, idle_ttl: Duration) -> Config {
        self.mode = Mode::PoolPerTenant { max_pools, idle_ttl };
        self
    }

    /// The mode for PgBouncer in transaction mode and every other transaction pooler:
    /// [`Statements::UNNAMED`], so that no statement relies on a server connection outliving
    /// its transaction.
    pub fn behind_transaction_pooler(mut self) -> Config {
        self.statements = Statements::UNNAMED;
        self
    }

    /// Trust these PEM root certificates for TLS (see [`TlsConfig`]).
    pub fn root_certificates(mut self, roots: RootCertificates) -> Config {
        self.tls.root_certificates = Some(roots);
        self
    }
}
