//! The tenant manager: where checkouts come from.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use deadpool::Runtime;
use multitenant_core::naming::{is_plain_identifier, Naming};
use tokio::sync::OnceCell;
use tokio::task::JoinSet;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::Row;

use crate::config::{Config, Mode, Statements};
use crate::conn::{PgManager, Pool};
use crate::context::current_tenant;
use crate::directory::{self, Lookup, TenantCache, TenantInfo, LOOKUP_SQL, SETTINGS_SQL};
use crate::error::{Error, Result};
use crate::health::{HealthCheckOptions, HealthResult, HealthStatus, PoolHealth, SharedHealth};
use crate::metrics::{
    encode_pools, rfc3339_now, ConnectionMetrics, Instruments, Metrics, Owner, PoolMetrics, TenantPoolMetrics,
    METRICS_PREFIX,
};
use crate::retry::{with_retry, RetryConfig};
use crate::session::{StatementMode, Switch, TenantClient, TypeCache, NO_ROLE};
use crate::tls::{self, MakeRustlsConnect};

/// Tenants remembered for `active_tenant_ids` and metrics in shared-pool mode.
const SHARED_MODE_TRACKED_TENANTS: usize = 10_000;

/// Hands out connections bound to tenant schemas. Cheap to clone; clones share pools.
#[derive(Clone)]
pub struct TenantManager {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    naming: Naming,
    pg_config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    /// How checkouts send statements (with the parameter-type cache of unnamed ones).
    statements: StatementMode,
    /// Every checkout in shared-pool mode; `shared_db()` in pool-per-tenant mode.
    shared: Pool,
    tenants: Mutex<HashMap<String, Entry>>,
    /// Answers of `mt.tenant_directory`.
    directory: TenantCache,
    /// Set once the server's naming settings were found equal to the client's.
    settings_checked: OnceCell<()>,
    instruments: Arc<Instruments>,
    /// The registry [`TenantManager::prometheus`] encodes, made at its first call.
    own_registry: OnceLock<prometheus_client::registry::Registry>,
    disposed: AtomicBool,
}

struct Entry {
    schema: String,
    /// The tenant's own pool, in pool-per-tenant mode.
    pool: Option<Pool>,
    last_used: Instant,
    checkouts: u64,
}

/// Called with a tenant id and `"completed"` or `"failed"`.
pub type ProgressHook = Arc<dyn Fn(&str, &str) + Send + Sync>;

/// What [`TenantManager::warmup`] does.
#[derive(Clone)]
pub struct WarmupOptions {
    /// Tenants warmed at the same time.
    pub concurrency: usize,
    /// Run a query on each tenant (and check its schema exists), not only open a pool.
    pub ping: bool,
    /// Called with each tenant id and `"completed"` or `"failed"`.
    pub on_progress: Option<ProgressHook>,
}

impl Default for WarmupOptions {
    fn default() -> Self {
        WarmupOptions { concurrency: 10, ping: true, on_progress: None }
    }
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct TenantWarmup {
    pub tenant_id: String,
    pub success: bool,
    pub already_warm: bool,
    pub duration_ms: u64,
    pub error: Option<String>,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct WarmupResult {
    pub total: usize,
    pub succeeded: usize,
    pub failed: usize,
    pub already_warm: usize,
    pub duration_ms: u64,
    pub details: Vec<TenantWarmup>,
}

/// A pool of plain connections (as the login role; each checkout switches role and
/// `search_path` inside its transaction, so nothing is set at connect: a transaction pooler
/// could not keep it).
fn build_pool(config: &Config, pg_config: &tokio_postgres::Config, tls: &MakeRustlsConnect) -> Result<Pool> {
    let statements_per_connection = match config.statements {
        Statements::Prepared { per_connection } => per_connection,
        Statements::Unnamed { .. } => 0,
    };
    let manager = PgManager { config: pg_config.clone(), tls: tls.clone(), statements_per_connection };
    Pool::builder(manager)
        .max_size(config.pool_size.max(1))
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(config.checkout_timeout))
        .create_timeout(Some(config.checkout_timeout))
        .build()
        .map_err(|e| Error::Config(e.to_string()))
}

impl TenantManager {
    /// Builds the manager; no connection is opened until the first checkout, which first
    /// checks the server's naming settings (see [`connect`](Self::connect)).
    pub fn new(config: Config) -> Result<TenantManager> {
        let naming = Naming::new(&config.schema_template, &config.shared_schema)?;
        if !is_plain_identifier(&config.shared_schema) {
            return Err(Error::Config(format!("shared_schema \"{}\" must need no quoting", config.shared_schema)));
        }
        let parsed = tls::parse(&config.url)?;
        let tls = tls::connector(parsed.ssl_mode, parsed.root_cert.as_deref(), &config.tls)?;
        let pg_config = parsed.pg_config;
        let shared = build_pool(&config, &pg_config, &tls)?;
        let statements = match config.statements {
            Statements::Prepared { .. } => StatementMode::Prepared,
            Statements::Unnamed { type_cache } => {
                StatementMode::Unnamed(TypeCache::builder().max_capacity(type_cache.max(1)).build())
            }
        };
        Ok(TenantManager {
            inner: Arc::new(Inner {
                directory: TenantCache::new(&config.tenant_cache),
                settings_checked: OnceCell::new(),
                instruments: Arc::new(Instruments::new(&config.metrics)),
                own_registry: OnceLock::new(),
                config,
                naming,
                pg_config,
                tls,
                statements,
                shared,
                tenants: Mutex::new(HashMap::new()),
                disposed: AtomicBool::new(false),
            }),
        })
    }

    /// Builds the manager and checks at once that the server's `schema_template` and
    /// `shared_schema` (in `mt.settings`) are the client's: [`Error::SettingsMismatch`] when
    /// they are not. Fails, too, when the server cannot be reached.
    pub async fn connect(config: Config) -> Result<TenantManager> {
        let manager = TenantManager::new(config)?;
        manager.check_settings().await?;
        Ok(manager)
    }

    /// Reads the naming settings from the server once (until they are found equal, every
    /// checkout tries again, so a server that is down at startup is no lasting error).
    async fn check_settings(&self) -> Result<()> {
        let inner = &self.inner;
        inner
            .settings_checked
            .get_or_try_init(|| async {
                let rows = self.catalog_query(SETTINGS_SQL, &[]).await?;
                let rows: Vec<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
                directory::check_settings(&rows, &inner.config.schema_template, &inner.config.shared_schema)
            })
            .await
            .map(drop)
    }

    /// Runs a query on `mt` as the login role, on a connection of the shared pool, in a
    /// transaction of its own that switches `role` to the login role (a role an earlier
    /// checkout `SET` at session level, or another client of a transaction pooler, does not
    /// apply) and `search_path` to `pg_catalog`: `BEGIN`, the switch, the unnamed query and
    /// `COMMIT` go out together, one round trip.
    async fn catalog_query(&self, sql: &str, params: &[(&(dyn ToSql + Sync), Type)]) -> Result<Vec<Row>> {
        let object = self.inner.shared.get().await?;
        let client = &object.client;
        let switch = Switch { role: NO_ROLE.into(), search_path: "pg_catalog".into() };
        let (switched, rows, committed) =
            tokio::join!(switch.send(client), client.query_typed(sql, params), client.batch_execute("COMMIT"));
        switched?;
        let rows = rows?;
        committed?;
        Ok(rows)
    }

    /// The tenant's row of `mt.tenant_directory` (through the cache) if it is registered and
    /// active; [`Error::TenantNotFound`] or [`Error::TenantNotActive`] otherwise, and
    /// [`Error::InvalidTenant`] for an id that breaks the naming rules (no query then).
    pub async fn tenant(&self, tenant_id: &str) -> Result<TenantInfo> {
        self.ensure_alive()?;
        self.schema_name(tenant_id)?;
        self.check_settings().await?;
        self.active_tenant(tenant_id).await.map(|info| (*info).clone())
    }

    /// Looks the tenant up (cached) and, when it is refused, forgets what the manager held
    /// for it (its pool, in pool-per-tenant mode).
    async fn active_tenant(&self, tenant_id: &str) -> Result<Arc<TenantInfo>> {
        let inner = &self.inner;
        let load = async {
            let rows = self.catalog_query(LOOKUP_SQL, &[(&tenant_id, Type::TEXT)]).await?;
            Ok(rows.first().map(|row| TenantInfo {
                tenant_id: tenant_id.to_string(),
                schema_name: row.get(0),
                role_name: row.get(1),
                status: row.get(2),
            }))
        };
        let lookup: Lookup = inner.directory.get(tenant_id, load).await?;
        lookup.active(tenant_id).inspect_err(|_| {
            let mut tenants = inner.tenants.lock().expect("tenant map lock");
            self.close_entry(&mut tenants, tenant_id, "refused");
        })
    }

    /// Forgets the cached directory answer for `tenant_id`: its next checkout looks it up
    /// again. Call it after suspending, resuming, creating or dropping a tenant when the
    /// cache's TTL is too long to wait.
    pub async fn invalidate(&self, tenant_id: &str) {
        self.inner.directory.invalidate(tenant_id).await;
    }

    /// [`invalidate`](Self::invalidate) for every tenant.
    pub fn invalidate_all(&self) {
        self.inner.directory.invalidate_all();
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    pub fn retry_config(&self) -> &RetryConfig {
        &self.inner.config.retry
    }

    /// The schema of `tenant_id`, by the same rules as `mt.schema_name`.
    pub fn schema_name(&self, tenant_id: &str) -> Result<String> {
        Ok(self.inner.naming.schema_name(tenant_id)?)
    }

    fn ensure_alive(&self) -> Result<()> {
        if self.inner.disposed.load(Ordering::SeqCst) {
            Err(Error::Disposed)
        } else {
            Ok(())
        }
    }

    /// The `search_path` of a tenant's checkouts.
    fn tenant_search_path(&self, schema: &str) -> String {
        let config = &self.inner.config;
        directory::search_path(schema, config.search_path_includes_shared.then_some(config.shared_schema.as_str()))
    }

    /// The pool to check out from (the shared one, or the tenant's own in pool-per-tenant
    /// mode) and the switch each checkout sends first: the tenant's role and `search_path`,
    /// transaction-local, in both modes.
    fn pool_for(&self, info: &TenantInfo) -> Result<(Pool, Switch)> {
        let inner = &self.inner;
        let tenant_id = info.tenant_id.as_str();
        let schema = info.schema_name.as_str();
        let mut tenants = inner.tenants.lock().expect("tenant map lock");
        let now = Instant::now();
        let (limit, idle_ttl) = match inner.config.mode {
            Mode::SharedPool => (SHARED_MODE_TRACKED_TENANTS, None),
            Mode::PoolPerTenant { max_pools, idle_ttl } => (max_pools.max(1), Some(idle_ttl)),
        };
        if let Some(ttl) = idle_ttl {
            let idle: Vec<String> = tenants
                .iter()
                .filter(|(id, e)| id.as_str() != tenant_id && now - e.last_used > ttl)
                .map(|(id, _)| id.clone())
                .collect();
            for id in idle {
                self.close_entry(&mut tenants, &id, "idle");
            }
        }
        if let Some(entry) = tenants.get_mut(tenant_id) {
            entry.schema = schema.to_string(); // the directory may have changed it
        }
        let search_path = self.tenant_search_path(schema);
        if !tenants.contains_key(tenant_id) {
            if tenants.len() >= limit {
                if let Some(oldest) = tenants.iter().min_by_key(|(_, e)| e.last_used).map(|(id, _)| id.clone()) {
                    self.close_entry(&mut tenants, &oldest, "lru");
                }
            }
            let pool = match inner.config.mode {
                Mode::SharedPool => None,
                Mode::PoolPerTenant { .. } => {
                    let pool = build_pool(&inner.config, &inner.pg_config, &inner.tls)?;
                    inner.instruments.pools_created.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(tenant = tenant_id, schema, "multitenant: pool created");
                    if let Some(hook) = &inner.config.hooks.on_pool_created {
                        hook(tenant_id);
                    }
                    Some(pool)
                }
            };
            tenants.insert(
                tenant_id.to_string(),
                Entry { schema: schema.to_string(), pool, last_used: now, checkouts: 0 },
            );
        }
        let entry = tenants.get_mut(tenant_id).expect("inserted above");
        entry.last_used = now;
        entry.checkouts += 1;
        let pool = entry.pool.clone().unwrap_or_else(|| inner.shared.clone());
        let switch =
            Switch { role: info.role_name.as_deref().unwrap_or(NO_ROLE).into(), search_path: search_path.into() };
        Ok((pool, switch))
    }

    /// Forgets a tenant's pool. The pool is not closed: a task that already took it still
    /// gets its connection (closing would fail it with `Pool has been closed`). Its idle
    /// connections are closed now; the others when their checkouts end and the last task
    /// holding the pool lets go of it.
    fn close_entry(&self, tenants: &mut HashMap<String, Entry>, tenant_id: &str, why: &str) {
        let Some(entry) = tenants.remove(tenant_id) else { return };
        if let Some(pool) = entry.pool {
            pool.retain(|_, _| false);
            self.inner.instruments.pools_evicted.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(tenant = tenant_id, reason = why, "multitenant: pool evicted");
            if let Some(hook) = &self.inner.config.hooks.on_pool_evicted {
                hook(tenant_id);
            }
        }
    }

    /// Counts the error (under the tenant's label only once the directory knows the tenant:
    /// ids from requests never become label values) and calls the `on_error` hook.
    fn report(&self, tenant_id: &str, owner: Owner<'_>, error: Error) -> Error {
        self.inner.instruments.record_error(owner, &error);
        if let Some(hook) = &self.inner.config.hooks.on_error {
            hook(tenant_id, &error);
        }
        error
    }

    /// A connection bound to `tenant_id`: switched to the tenant's role and schema. An
    /// invalid id fails before any connection is used; an unregistered or suspended tenant
    /// ([`Error::TenantNotFound`], [`Error::TenantNotActive`], from `mt.tenant_directory`
    /// through the cache) before any connection is switched to it.
    pub async fn db(&self, tenant_id: &str) -> Result<TenantClient> {
        self.ensure_alive()?;
        let started = Instant::now();
        self.schema_name(tenant_id)?;
        self.check_settings().await.map_err(|e| self.report(tenant_id, Owner::Unregistered, e))?;
        let info = self.active_tenant(tenant_id).await.map_err(|e| {
            // A suspended tenant is registered: its refusals are its own.
            let owner =
                if matches!(e, Error::TenantNotActive { .. }) { Owner::Tenant(tenant_id) } else { Owner::Unregistered };
            self.report(tenant_id, owner, e)
        })?;
        let (pool, switch) = self.pool_for(&info)?;
        let object = pool.get().await.map_err(|e| self.report(tenant_id, Owner::Tenant(tenant_id), e.into()))?;
        drop(pool);
        self.inner.instruments.checked_out(started.elapsed());
        Ok(TenantClient::new(
            object,
            tenant_id,
            &info.schema_name,
            switch,
            self.inner.statements.clone(),
            self.inner.config.debug.clone(),
            self.inner.instruments.clone(),
        ))
    }

    /// Like [`db`](Self::db), but checks the connection and schema with a query and retries
    /// transient failures (see [`RetryConfig`]).
    pub async fn db_with_retry(&self, tenant_id: &str) -> Result<TenantClient> {
        self.with_retry(|| async {
            let mut client = self.db(tenant_id).await?;
            client.ping().await?;
            Ok(client)
        })
        .await
    }

    /// The tenant of the current task (see [`crate::with_tenant`]).
    pub async fn tenant_db(&self) -> Result<TenantClient> {
        let tenant_id = current_tenant().ok_or(Error::NoTenantContext)?;
        self.db(&tenant_id).await
    }

    /// A connection to the shared schema, as the login role (no tenant's role).
    pub async fn shared_db(&self) -> Result<TenantClient> {
        self.ensure_alive()?;
        let started = Instant::now();
        self.check_settings().await.map_err(|e| self.report("", Owner::Shared, e))?;
        let shared = &self.inner.config.shared_schema;
        let switch = Switch { role: NO_ROLE.into(), search_path: directory::search_path(shared, None).into() };
        let object = self.inner.shared.get().await.map_err(|e| self.report("", Owner::Shared, e.into()))?;
        self.inner.instruments.checked_out(started.elapsed());
        Ok(TenantClient::new(
            object,
            "",
            shared,
            switch,
            self.inner.statements.clone(),
            self.inner.config.debug.clone(),
            self.inner.instruments.clone(),
        ))
    }

    pub async fn shared_db_with_retry(&self) -> Result<TenantClient> {
        self.with_retry(|| async {
            let mut client = self.shared_db().await?;
            client.ping().await?;
            Ok(client)
        })
        .await
    }

    async fn with_retry<T, F, Fut>(&self, mut operation: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let instruments = self.inner.instruments.clone();
        with_retry(&self.inner.config.retry, |attempt| {
            if attempt > 1 {
                instruments.retries.fetch_add(1, Ordering::Relaxed);
            }
            operation()
        })
        .await
    }

    /// Whether the manager holds a pool for the tenant (pool-per-tenant mode), or has served
    /// it recently (shared-pool mode).
    pub fn has_pool(&self, tenant_id: &str) -> bool {
        self.inner.tenants.lock().expect("tenant map lock").contains_key(tenant_id)
    }

    /// Connection pools open: the shared pool plus any tenant pools.
    pub fn pool_count(&self) -> usize {
        let tenants = self.inner.tenants.lock().expect("tenant map lock");
        1 + tenants.values().filter(|e| e.pool.is_some()).count()
    }

    /// Tenants with a pool (pool-per-tenant mode) or served recently (shared-pool mode),
    /// most recently used first.
    pub fn active_tenant_ids(&self) -> Vec<String> {
        let tenants = self.inner.tenants.lock().expect("tenant map lock");
        let mut ids: Vec<(&String, &Entry)> = tenants.iter().collect();
        ids.sort_by_key(|(_, e)| std::cmp::Reverse(e.last_used));
        ids.into_iter().map(|(id, _)| id.clone()).collect()
    }

    /// Closes the tenant's pool (pool-per-tenant mode) and forgets it; true if it had one.
    pub fn evict(&self, tenant_id: &str) -> bool {
        let mut tenants = self.inner.tenants.lock().expect("tenant map lock");
        let known = tenants.contains_key(tenant_id);
        self.close_entry(&mut tenants, tenant_id, "evict");
        known
    }

    /// Opens pools (and, with `ping`, checks each tenant) ahead of traffic.
    pub async fn warmup(&self, tenant_ids: &[String], options: WarmupOptions) -> WarmupResult {
        let started = Instant::now();
        let semaphore = Arc::new(tokio::sync::Semaphore::new(options.concurrency.max(1)));
        let mut tasks = JoinSet::new();
        for (index, tenant_id) in tenant_ids.iter().cloned().enumerate() {
            let (manager, semaphore, options) = (self.clone(), semaphore.clone(), options.clone());
            tasks.spawn(async move {
                let _permit = semaphore.acquire_owned().await.expect("semaphore is never closed");
                let began = Instant::now();
                let already_warm = manager.has_pool(&tenant_id);
                let outcome = async {
                    let mut client = manager.db(&tenant_id).await?;
                    if options.ping {
                        client.ping().await?;
                    }
                    client.rollback().await
                }
                .await;
                if let Some(progress) = &options.on_progress {
                    progress(&tenant_id, if outcome.is_ok() { "completed" } else { "failed" });
                }
                let detail = TenantWarmup {
                    tenant_id,
                    success: outcome.is_ok(),
                    already_warm,
                    duration_ms: began.elapsed().as_millis() as u64,
                    error: outcome.err().map(|e| e.to_string()),
                };
                (index, detail)
            });
        }
        let mut details: Vec<(usize, TenantWarmup)> = tasks.join_all().await;
        details.sort_by_key(|(index, _)| *index);
        let details: Vec<TenantWarmup> = details.into_iter().map(|(_, d)| d).collect();
        WarmupResult {
            total: details.len(),
            succeeded: details.iter().filter(|d| d.success).count(),
            failed: details.iter().filter(|d| !d.success).count(),
            already_warm: details.iter().filter(|d| d.already_warm).count(),
            duration_ms: started.elapsed().as_millis() as u64,
            details,
        }
    }

    fn connections(pool: &Pool) -> ConnectionMetrics {
        let status = pool.status();
        ConnectionMetrics { total: status.size, idle: status.available, waiting: status.waiting }
    }

    /// Checks every active tenant (or the listed ones) and the shared database.
    pub async fn health_check(&self, options: HealthCheckOptions) -> HealthResult {
        let started = Instant::now();
        let tenant_ids = options.tenant_ids.clone().unwrap_or_else(|| self.active_tenant_ids());
        // Pool state before our own pings, which would otherwise queue behind each other.
        let before: Vec<ConnectionMetrics> = tenant_ids.iter().map(|id| Self::connections(&self.pool_of(id))).collect();
        let mut tasks = JoinSet::new();
        for (index, (tenant_id, connections)) in tenant_ids.into_iter().zip(before).enumerate() {
            let (manager, options) = (self.clone(), options.clone());
            tasks.spawn(async move { (index, manager.pool_health(tenant_id, connections, &options).await) });
        }
        let shared_db = if options.include_shared {
            let ping = self.timed_ping(None, options.ping_timeout).await;
            Some(SharedHealth {
                status: Self::status_of(&ping, 0, options.degraded_after),
                response_time_ms: ping.as_ref().ok().map(|d| d.as_millis() as u64),
                error: ping.err().map(|e| e.to_string()),
            })
        } else {
            None
        };
        let mut pools: Vec<(usize, PoolHealth)> = tasks.join_all().await;
        pools.sort_by_key(|(index, _)| *index);
        let pools: Vec<PoolHealth> = pools.into_iter().map(|(_, p)| p).collect();
        let count = |status| pools.iter().filter(|p| p.status == status).count();
        let unhealthy_pools = count(HealthStatus::Unhealthy);
        HealthResult {
            healthy: unhealthy_pools == 0 && shared_db.as_ref().is_none_or(|s| s.status != HealthStatus::Unhealthy),
            total_pools: pools.len(),
            degraded_pools: count(HealthStatus::Degraded),
            unhealthy_pools,
            pools,
            shared_db,
            timestamp: rfc3339_now(),
            duration_ms: started.elapsed().as_millis() as u64,
        }
    }

    /// The pool a tenant's checkouts come from.
    fn pool_of(&self, tenant_id: &str) -> Pool {
        let tenants = self.inner.tenants.lock().expect("tenant map lock");
        tenants.get(tenant_id).and_then(|e| e.pool.clone()).unwrap_or_else(|| self.inner.shared.clone())
    }

    async fn pool_health(
        &self,
        tenant_id: String,
        connections: ConnectionMetrics,
        options: &HealthCheckOptions,
    ) -> PoolHealth {
        let schema = self.schema_name(&tenant_id).unwrap_or_default();
        let ping =
            if options.ping { Some(self.timed_ping(Some(&tenant_id), options.ping_timeout).await) } else { None };
        let status = match &ping {
            Some(result) => Self::status_of(result, connections.waiting, options.degraded_after),
            None if connections.waiting > 0 => HealthStatus::Degraded,
            None => HealthStatus::Ok,
        };
        PoolHealth {
            tenant_id,
            schema_name: schema,
            status,
            total_connections: connections.total,
            idle_connections: connections.idle,
            waiting_requests: connections.waiting,
            response_time_ms: ping.as_ref().and_then(|p| p.as_ref().ok()).map(|d| d.as_millis() as u64),
            error: ping.and_then(|p| p.err()).map(|e| e.to_string()),
        }
    }

    fn status_of(ping: &Result<Duration>, waiting: usize, degraded_after: Duration) -> HealthStatus {
        match ping {
            Err(_) => HealthStatus::Unhealthy,
            Ok(elapsed) if *elapsed > degraded_after || waiting > 0 => HealthStatus::Degraded,
            Ok(_) => HealthStatus::Ok,
        }
    }

    /// Pings a tenant (or the shared schema) within `timeout`; returns how long it took.
    async fn timed_ping(&self, tenant_id: Option<&str>, timeout: Duration) -> Result<Duration> {
        let started = Instant::now();
        let ping = async {
            let mut client = match tenant_id {
                Some(id) => self.db(id).await?,
                None => self.shared_db().await?,
            };
            client.ping().await?;
            client.rollback().await
        };
        match tokio::time::timeout(timeout, ping).await {
            Ok(result) => result.map(|()| started.elapsed()),
            Err(_) => Err(Error::Timeout("health check ping")),
        }
    }

    /// A snapshot of pools and counters (serializes to JSON with serde).
    pub fn metrics(&self) -> Metrics {
        let counters = &self.inner.instruments;
        let tenants = self.inner.tenants.lock().expect("tenant map lock");
        let mut tenant_metrics: Vec<TenantPoolMetrics> = tenants
            .iter()
            .map(|(id, e)| TenantPoolMetrics {
                tenant_id: id.clone(),
                schema_name: e.schema.clone(),
                connections: e.pool.as_ref().map(Self::connections),
                checkouts: e.checkouts,
            })
            .collect();
        tenant_metrics.sort_by(|a, b| a.tenant_id.cmp(&b.tenant_id));
        let max_pools = match self.inner.config.mode {
            Mode::SharedPool => SHARED_MODE_TRACKED_TENANTS,
            Mode::PoolPerTenant { max_pools, .. } => max_pools,
        };
        Metrics {
            pools: PoolMetrics {
                total: 1 + tenants.values().filter(|e| e.pool.is_some()).count(),
                max_pools,
                tenants: tenant_metrics,
            },
            shared: Self::connections(&self.inner.shared),
            checkouts: counters.checkouts.load(Ordering::Relaxed),
            errors: counters.errors.load(Ordering::Relaxed),
            retries: counters.retries.load(Ordering::Relaxed),
            pools_created: counters.pools_created.load(Ordering::Relaxed),
            pools_evicted: counters.pools_evicted.load(Ordering::Relaxed),
            timestamp: rfc3339_now(),
        }
    }

    /// Registers the manager's metrics into the application's registry, under the prefix
    /// `multitenant_client` (a sub-registry): counters, pool gauges, the per-tenant query
    /// duration histogram and error counters (see [`crate::metrics`]). They are read at each
    /// scrape; nothing is copied. Register each manager once per registry; a second manager
    /// in the same registry needs a label of its own
    /// (`registry.sub_registry_with_label(("manager".into(), "replica".into()))`). A
    /// dropped manager's metrics disappear from the output.
    pub fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        registry
            .sub_registry_with_prefix(METRICS_PREFIX)
            .register_collector(Box::new(ManagerCollector(Arc::downgrade(&self.inner))));
    }

    /// The manager's metrics in the Prometheus text format, for an application without a
    /// registry of its own: a registry the manager makes once and encodes at each call.
    /// With a registry, use [`register_metrics`](Self::register_metrics) instead.
    pub fn prometheus(&self) -> String {
        let registry = self.inner.own_registry.get_or_init(|| {
            let mut registry = prometheus_client::registry::Registry::default();
            self.register_metrics(&mut registry);
            registry
        });
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, registry).expect("writing to a String cannot fail");
        text
    }

    /// Closes every pool; later checkouts fail with [`Error::Disposed`].
    pub fn dispose(&self) {
        self.inner.disposed.store(true, Ordering::SeqCst);
        let mut tenants = self.inner.tenants.lock().expect("tenant map lock");
        for (_, entry) in tenants.drain() {
            if let Some(pool) = entry.pool {
                pool.close();
            }
        }
        self.inner.shared.close();
    }
}

/// Reads a manager's metrics at each scrape. Holds it weakly: the manager's own registry
/// (for [`TenantManager::prometheus`]) holds one too.
struct ManagerCollector(Weak<Inner>);

impl std::fmt::Debug for ManagerCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ManagerCollector")
    }
}

impl prometheus_client::collector::Collector for ManagerCollector {
    fn encode(&self, mut encoder: prometheus_client::encoding::DescriptorEncoder) -> std::fmt::Result {
        let Some(inner) = self.0.upgrade() else { return Ok(()) };
        inner.instruments.encode(&mut encoder)?;
        let shared = TenantManager::connections(&inner.shared);
        let tenant_pools: Vec<(String, ConnectionMetrics)> = {
            let tenants = inner.tenants.lock().expect("tenant map lock");
            tenants
                .iter()
                .filter_map(|(id, e)| e.pool.as_ref().map(|p| (id.clone(), TenantManager::connections(p))))
                .collect()
        };
        let pools = std::iter::once((crate::metrics::SHARED_LABEL, shared))
            .chain(tenant_pools.iter().map(|(id, c)| (id.as_str(), c.clone())));
        encode_pools(&mut encoder, 1 + tenant_pools.len(), pools)
    }
}

impl crate::directory::TenantDirectory for TenantManager {
    fn tenant(&self, tenant_id: &str) -> impl std::future::Future<Output = Result<TenantInfo>> + Send {
        TenantManager::tenant(self, tenant_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn refused_before_any_connection_for_a_bad_id() {
        // Nothing listens on port 1.
        let manager = TenantManager::new(Config::new("postgresql://app@127.0.0.1:1/none")).unwrap();
        assert!(matches!(manager.tenant("Bad Id").await, Err(Error::InvalidTenant(_))));
        assert!(matches!(manager.db("x;y").await, Err(Error::InvalidTenant(_))));
        assert!(!manager.has_pool("x;y"));
    }
}
