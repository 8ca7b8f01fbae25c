//! sqlx support (feature `sqlx`): tenant checkouts over a [`sqlx::PgPool`].
//!
//! ```no_run
//! # async fn demo() -> Result<(), multitenant_client::Error> {
//! use multitenant_client::sqlx::{SqlxConfig, SqlxTenantPool};
//!
//! let pool = SqlxTenantPool::connect("postgresql://app@localhost/app", 10, SqlxConfig::default()).await?;
//! let mut tx = pool.begin("acme").await?;        // role tenant_acme, search_path "tenant_acme"
//! let rows = sqlx::query("SELECT id, email FROM users WHERE id = $1").bind(42_i32).fetch_all(&mut tx).await?;
//! tx.commit().await?;
//! # let _ = rows; Ok(()) }
//! ```
//!
//! A checkout is a transaction whose `BEGIN` carries the switch: one simple query,
//! `SELECT set_config('role', …, true), set_config('search_path', …, true); BEGIN`, one round
//! trip. The `SELECT` runs first, in the implicit transaction of the query, which `BEGIN` then
//! turns into the checkout's transaction: if the switch fails (the role was dropped), the
//! whole query rolls back, `begin` returns the error and the connection goes back to the pool
//! clean; it never runs unswitched. Dropping the checkout without `commit` rolls back (sqlx's
//! own transaction handling).
//!
//! Behind a transaction pooler ([`SqlxConfig::behind_transaction_pooler`]), every statement
//! run through `&mut SqlxTenantTx` is sent unnamed (sqlx's `persistent(false)`), whatever the
//! query said, and [`SqlxTenantPool::connect`] turns sqlx's statement cache off. A pool built
//! elsewhere and given to [`SqlxTenantPool::new`] needs
//! `PgConnectOptions::statement_cache_capacity(0)` then.

use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, OnceLock, Weak};
use std::task::{Context, Poll};
use std::time::Instant;

use ::sqlx::postgres::{PgArguments, PgConnectOptions, PgPoolOptions, PgQueryResult, PgRow, PgStatement, PgTypeInfo};
use ::sqlx::{Either, Execute, Executor, PgConnection, PgPool, Postgres, Row};
use futures_core::future::BoxFuture;
use futures_core::stream::BoxStream;
use futures_core::Stream;
use multitenant_core::naming::{is_plain_identifier, Naming};
use prometheus_client::metrics::histogram::Histogram;
use tokio::sync::OnceCell;

use crate::directory::{self, Lookup, TenantCache, TenantCacheConfig, TenantInfo, LOOKUP_SQL, SETTINGS_SQL};
use crate::error::{Error, Result};
use crate::metrics::{
    encode_pools, ConnectionMetrics, Instruments, MetricsConfig, Owner, METRICS_PREFIX, SHARED_LABEL,
};
use crate::session::NO_ROLE;

/// What a [`SqlxTenantPool`] needs beside the pool: the extension's naming settings (checked
/// against the server's before the first checkout), the directory cache and the pooler mode.
#[derive(Clone, Debug)]
pub struct SqlxConfig {
    pub schema_template: String,
    pub shared_schema: String,
    /// As [`crate::Config::search_path_includes_shared`].
    pub search_path_includes_shared: bool,
    pub tenant_cache: TenantCacheConfig,
    /// Statements through a checkout are sent unnamed; [`SqlxTenantPool::connect`] turns the
    /// statement cache off.
    pub transaction_pooler: bool,
    /// As [`crate::Config::metrics`].
    pub metrics: MetricsConfig,
}

impl Default for SqlxConfig {
    fn default() -> Self {
        SqlxConfig {
            schema_template: multitenant_core::naming::DEFAULT_TEMPLATE.to_string(),
            shared_schema: multitenant_core::naming::DEFAULT_SHARED_SCHEMA.to_string(),
            search_path_includes_shared: false,
            tenant_cache: TenantCacheConfig::default(),
            transaction_pooler: false,
            metrics: MetricsConfig::default(),
        }
    }
}

impl SqlxConfig {
    /// The mode for PgBouncer in transaction mode and every other transaction pooler.
    pub fn behind_transaction_pooler(mut self) -> SqlxConfig {
        self.transaction_pooler = true;
        self
    }
}

/// Tenant checkouts over a [`PgPool`]. Cheap to clone; clones share the pool and the cache.
#[derive(Clone)]
pub struct SqlxTenantPool {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    config: SqlxConfig,
    naming: Naming,
    directory: TenantCache,
    settings_checked: OnceCell<()>,
    instruments: Arc<Instruments>,
    own_registry: OnceLock<prometheus_client::registry::Registry>,
}

/// `value` as an SQL string literal (`E'…'` when it holds a backslash, so that it reads the
/// same whatever `standard_conforming_strings` says).
fn literal(value: &str) -> String {
    let quoted = value.replace('\'', "''");
    if quoted.contains('\\') {
        format!("E'{}'", quoted.replace('\\', "\\\\"))
    } else {
        format!("'{quoted}'")
    }
}

/// The simple query that switches and begins (see the module's documentation).
fn switch_and_begin(role: &str, search_path: &str) -> String {
    format!(
        "SELECT pg_catalog.set_config('role', {}, true), pg_catalog.set_config('search_path', {}, true); BEGIN",
        literal(role),
        literal(search_path)
    )
}

impl SqlxTenantPool {
    /// Wraps a pool. No connection is opened; the first checkout checks the server's naming
    /// settings. Behind a transaction pooler the pool must have been built with
    /// `statement_cache_capacity(0)`.
    pub fn new(pool: PgPool, config: SqlxConfig) -> Result<SqlxTenantPool> {
        let naming = Naming::new(&config.schema_template, &config.shared_schema)?;
        if !is_plain_identifier(&config.shared_schema) {
            return Err(Error::Config(format!("shared_schema \"{}\" must need no quoting", config.shared_schema)));
        }
        Ok(SqlxTenantPool {
            inner: Arc::new(Inner {
                directory: TenantCache::new(&config.tenant_cache),
                instruments: Arc::new(Instruments::new(&config.metrics)),
                own_registry: OnceLock::new(),
                pool,
                config,
                naming,
                settings_checked: OnceCell::new(),
            }),
        })
    }

    /// Builds a pool of at most `max_connections` for `url` (sqlx's URL syntax: `sslmode`,
    /// `sslrootcert` and the rest; TLS needs one of sqlx's TLS features), with the statement
    /// cache off behind a transaction pooler, and checks the naming settings.
    pub async fn connect(url: &str, max_connections: u32, config: SqlxConfig) -> Result<SqlxTenantPool> {
        let mut options: PgConnectOptions = url.parse()?;
        if config.transaction_pooler {
            options = options.statement_cache_capacity(0);
        }
        let pool = PgPoolOptions::new().max_connections(max_connections).connect_lazy_with(options);
        let tenants = SqlxTenantPool::new(pool, config)?;
        tenants.check_settings().await?;
        Ok(tenants)
    }

    /// The underlying pool, for work outside any tenant. Behind a transaction pooler, run it
    /// in a transaction (`pool.begin()`) with `persistent(false)`, or as `sqlx::raw_sql`: a
    /// parameterized statement in autocommit is not safe there (sqlx sends its Parse and its
    /// Bind after separate Syncs; PgBouncer may switch server connections in between, and the
    /// statement fails with 26000 `unnamed prepared statement does not exist`).
    pub fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    pub fn config(&self) -> &SqlxConfig {
        &self.inner.config
    }

    /// The schema of `tenant_id`, by the same rules as `mt.schema_name`.
    pub fn schema_name(&self, tenant_id: &str) -> Result<String> {
        Ok(self.inner.naming.schema_name(tenant_id)?)
    }

    /// Runs a catalog query as the login role in one simple query (one round trip, an
    /// implicit transaction: nothing named, nothing outlives it); returns the rows of `sql`.
    async fn catalog_query(&self, sql: &str) -> Result<Vec<PgRow>> {
        let text = format!(
            "SELECT pg_catalog.set_config('role', 'none', true), pg_catalog.set_config('search_path', 'pg_catalog', true); {sql}"
        );
        let rows = sqlx::raw_sql(&text).fetch_all(&self.inner.pool).await?;
        Ok(rows.into_iter().skip(1).collect())
    }

    async fn check_settings(&self) -> Result<()> {
        let inner = &self.inner;
        inner
            .settings_checked
            .get_or_try_init(|| async {
                let rows = self.catalog_query(SETTINGS_SQL).await?;
                let rows: Vec<(String, String)> =
                    rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).collect::<Result<_>>()?;
                directory::check_settings(&rows, &inner.config.schema_template, &inner.config.shared_schema)
            })
            .await
            .map(drop)
    }

    /// The tenant's row of `mt.tenant_directory` (cached) if it is registered and active;
    /// [`Error::TenantNotFound`], [`Error::TenantNotActive`] or [`Error::InvalidTenant`]
    /// otherwise.
    pub async fn tenant(&self, tenant_id: &str) -> Result<TenantInfo> {
        self.active_tenant(tenant_id).await.map(|info| (*info).clone())
    }

    async fn active_tenant(&self, tenant_id: &str) -> Result<Arc<TenantInfo>> {
        self.schema_name(tenant_id)?;
        self.check_settings().await?;
        let load = async {
            let sql = LOOKUP_SQL.replace("$1", &literal(tenant_id));
            let rows = self.catalog_query(&sql).await?;
            rows.first()
                .map(|row| {
                    Ok(TenantInfo {
                        tenant_id: tenant_id.to_string(),
                        schema_name: row.try_get(0)?,
                        role_name: row.try_get(1)?,
                        status: row.try_get(2)?,
                    })
                })
                .transpose()
        };
        let lookup: Lookup = self.inner.directory.get(tenant_id, load).await?;
        lookup.active(tenant_id)
    }

    /// Forgets the cached directory answer for `tenant_id`.
    pub async fn invalidate(&self, tenant_id: &str) {
        self.inner.directory.invalidate(tenant_id).await;
    }

    pub fn invalidate_all(&self) {
        self.inner.directory.invalidate_all();
    }

    /// A transaction switched to `tenant_id`'s role and schema (one round trip), after the
    /// same checks as [`crate::TenantManager::db`].
    pub async fn begin(&self, tenant_id: &str) -> Result<SqlxTenantTx> {
        let started = Instant::now();
        let info = self.active_tenant(tenant_id).await.inspect_err(|e| {
            if !matches!(e, Error::InvalidTenant(_)) {
                // A suspended tenant is registered: its refusals are its own.
                let owner = if matches!(e, Error::TenantNotActive { .. }) {
                    Owner::Tenant(tenant_id)
                } else {
                    Owner::Unregistered
                };
                self.inner.instruments.record_error(owner, e);
            }
        })?;
        let config = &self.inner.config;
        let path = directory::search_path(
            &info.schema_name,
            config.search_path_includes_shared.then_some(config.shared_schema.as_str()),
        );
        let role = info.role_name.as_deref().unwrap_or(NO_ROLE);
        self.begin_switched(tenant_id, &info.schema_name, role, &path, started).await
    }

    /// A transaction on the shared schema, as the login role.
    pub async fn begin_shared(&self) -> Result<SqlxTenantTx> {
        let started = Instant::now();
        self.check_settings().await.inspect_err(|e| self.inner.instruments.record_error(Owner::Shared, e))?;
        let shared = &self.inner.config.shared_schema;
        self.begin_switched("", shared, NO_ROLE, &directory::search_path(shared, None), started).await
    }

    async fn begin_switched(
        &self,
        tenant_id: &str,
        schema: &str,
        role: &str,
        path: &str,
        started: Instant,
    ) -> Result<SqlxTenantTx> {
        let instruments = &self.inner.instruments;
        let owner = if tenant_id.is_empty() { Owner::Shared } else { Owner::Tenant(tenant_id) };
        let tx = self
            .inner
            .pool
            .begin_with(switch_and_begin(role, path))
            .await
            .map_err(Error::from)
            .inspect_err(|e| instruments.record_error(owner, e))?;
        instruments.checked_out(started.elapsed());
        Ok(SqlxTenantTx {
            tx,
            tenant_id: tenant_id.to_string(),
            schema: schema.to_string(),
            unnamed: self.inner.config.transaction_pooler,
            durations: instruments.query_histogram(owner),
            instruments: instruments.clone(),
        })
    }

    /// Registers the pool's metrics into the application's registry, under the prefix
    /// `multitenant_client`: as [`crate::TenantManager::register_metrics`] (the same names),
    /// with the sqlx pool's connections as `pool="_shared"`.
    pub fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        registry
            .sub_registry_with_prefix(METRICS_PREFIX)
            .register_collector(Box::new(SqlxCollector(Arc::downgrade(&self.inner))));
    }

    /// The pool's metrics in the Prometheus text format, for an application without a
    /// registry of its own (see [`crate::TenantManager::prometheus`]).
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

    /// The tenant of the current task (see [`crate::with_tenant`]).
    pub async fn begin_current(&self) -> Result<SqlxTenantTx> {
        let tenant_id = crate::current_tenant().ok_or(Error::NoTenantContext)?;
        self.begin(&tenant_id).await
    }
}

/// Reads a sqlx pool's metrics at each scrape.
struct SqlxCollector(Weak<Inner>);

impl fmt::Debug for SqlxCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SqlxCollector")
    }
}

impl prometheus_client::collector::Collector for SqlxCollector {
    fn encode(&self, mut encoder: prometheus_client::encoding::DescriptorEncoder) -> fmt::Result {
        let Some(inner) = self.0.upgrade() else { return Ok(()) };
        inner.instruments.encode(&mut encoder)?;
        let connections = ConnectionMetrics {
            total: inner.pool.size() as usize,
            idle: inner.pool.num_idle(),
            waiting: 0, // sqlx does not tell
        };
        encode_pools(&mut encoder, 1, std::iter::once((SHARED_LABEL, connections)))
    }
}

impl crate::TenantDirectory for SqlxTenantPool {
    fn tenant(&self, tenant_id: &str) -> impl std::future::Future<Output = Result<TenantInfo>> + Send {
        SqlxTenantPool::tenant(self, tenant_id)
    }
}

/// A tenant's transaction. Run queries with `&mut tx` as the executor
/// (`sqlx::query(…).fetch_all(&mut tx)`); then [`commit`](Self::commit), or drop it to roll
/// back.
pub struct SqlxTenantTx {
    tx: sqlx::Transaction<'static, Postgres>,
    tenant_id: String,
    schema: String,
    unnamed: bool,
    /// The tenant's query duration histogram (looked up once, at checkout).
    durations: Histogram,
    instruments: Arc<Instruments>,
}

impl fmt::Debug for SqlxTenantTx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlxTenantTx")
            .field("tenant_id", &self.tenant_id)
            .field("schema", &self.schema)
            .field("unnamed", &self.unnamed)
            .finish()
    }
}

impl SqlxTenantTx {
    pub fn tenant_id(&self) -> &str {
        &self.tenant_id
    }

    pub fn schema_name(&self) -> &str {
        &self.schema
    }

    pub async fn commit(self) -> Result<()> {
        Ok(self.tx.commit().await?)
    }

    pub async fn rollback(self) -> Result<()> {
        Ok(self.tx.rollback().await?)
    }

    fn probe(&self) -> Probe {
        Probe {
            started: Instant::now(),
            durations: self.durations.clone(),
            instruments: self.instruments.clone(),
            tenant_id: self.tenant_id.clone(),
            done: false,
        }
    }

    /// sqlx's transaction itself, for what `&mut SqlxTenantTx` does not do. Statements run on
    /// it directly are not made unnamed: behind a transaction pooler, give them
    /// `persistent(false)`.
    pub fn transaction(&mut self) -> &mut sqlx::Transaction<'static, Postgres> {
        &mut self.tx
    }
}

/// Times one statement run through a checkout, and counts its error.
struct Probe {
    started: Instant,
    durations: Histogram,
    instruments: Arc<Instruments>,
    tenant_id: String,
    done: bool,
}

impl Probe {
    fn finish(&mut self, error: Option<&sqlx::Error>) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        self.durations.observe(self.started.elapsed().as_secs_f64());
        if let Some(error) = error {
            let owner = if self.tenant_id.is_empty() { Owner::Shared } else { Owner::Tenant(&self.tenant_id) };
            self.instruments.record(owner, "sqlx", sqlstate(error), error);
        }
    }
}

impl Drop for Probe {
    /// A stream dropped before its end (`fetch_one` after the first row) still counts.
    fn drop(&mut self) {
        self.finish(None);
    }
}

/// A statement's stream of results, timed until its end (or until it is dropped).
struct Timed<'e, T> {
    inner: BoxStream<'e, std::result::Result<T, sqlx::Error>>,
    probe: Probe,
}

impl<T> Stream for Timed<'_, T> {
    type Item = std::result::Result<T, sqlx::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let polled = self.inner.as_mut().poll_next(cx);
        match &polled {
            Poll::Ready(None) => self.probe.finish(None),
            Poll::Ready(Some(Err(error))) => self.probe.finish(Some(error)),
            _ => {}
        }
        polled
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.size_hint()
    }
}

/// A query sent unnamed (`persistent() == false`), whatever it asked for.
struct Unnamed<E>(E);

impl<'q, E: Execute<'q, Postgres>> Execute<'q, Postgres> for Unnamed<E> {
    fn sql(&self) -> &'q str {
        self.0.sql()
    }

    fn statement(&self) -> Option<&PgStatement<'q>> {
        self.0.statement()
    }

    fn take_arguments(&mut self) -> std::result::Result<Option<PgArguments>, sqlx::error::BoxDynError> {
        self.0.take_arguments()
    }

    fn persistent(&self) -> bool {
        false
    }
}

fn refused<'e, T: Send + 'e>(what: &str) -> BoxFuture<'e, std::result::Result<T, sqlx::Error>> {
    let error = sqlx::Error::Configuration(
        format!("{what} keeps a named statement on the server connection: not behind a transaction pooler").into(),
    );
    Box::pin(async move { Err(error) })
}

impl<'c> Executor<'c> for &'c mut SqlxTenantTx {
    type Database = Postgres;

    fn fetch_many<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxStream<'e, std::result::Result<Either<PgQueryResult, PgRow>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        let (unnamed, probe) = (self.unnamed, self.probe());
        let conn: &'c mut PgConnection = &mut self.tx;
        let inner = if unnamed { conn.fetch_many(Unnamed(query)) } else { conn.fetch_many(query) };
        Box::pin(Timed { inner, probe })
    }

    fn fetch_optional<'e, 'q: 'e, E>(self, query: E) -> BoxFuture<'e, std::result::Result<Option<PgRow>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        let (unnamed, mut probe) = (self.unnamed, self.probe());
        let conn: &'c mut PgConnection = &mut self.tx;
        let inner = if unnamed { conn.fetch_optional(Unnamed(query)) } else { conn.fetch_optional(query) };
        Box::pin(async move {
            let result = inner.await;
            probe.finish(result.as_ref().err());
            result
        })
    }

    fn prepare_with<'e, 'q: 'e>(
        self,
        sql: &'q str,
        parameters: &'e [PgTypeInfo],
    ) -> BoxFuture<'e, std::result::Result<PgStatement<'q>, sqlx::Error>>
    where
        'c: 'e,
    {
        if self.unnamed {
            return refused("prepare");
        }
        let conn: &'c mut PgConnection = &mut self.tx;
        conn.prepare_with(sql, parameters)
    }

    fn describe<'e, 'q: 'e>(
        self,
        sql: &'q str,
    ) -> BoxFuture<'e, std::result::Result<sqlx::Describe<Postgres>, sqlx::Error>>
    where
        'c: 'e,
    {
        if self.unnamed {
            return refused("describe");
        }
        let conn: &'c mut PgConnection = &mut self.tx;
        conn.describe(sql)
    }
}

/// The error of a sqlx call, kept whole: [`Error::sqlstate`] reads a database error's code.
impl From<::sqlx::Error> for Error {
    fn from(e: ::sqlx::Error) -> Self {
        Error::Sqlx(e)
    }
}

pub(crate) fn sqlstate(error: &::sqlx::Error) -> Option<&str> {
    error.as_database_error()?.try_downcast_ref::<::sqlx::postgres::PgDatabaseError>().map(|e| e.code())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_are_quoted_for_any_standard_conforming_strings() {
        assert_eq!(literal("tenant_acme"), "'tenant_acme'");
        assert_eq!(literal("\"tenant_acme\",\"public\""), "'\"tenant_acme\",\"public\"'");
        assert_eq!(literal("o'brien"), "'o''brien'");
        assert_eq!(literal("a\\b'"), "E'a\\\\b'''");
        assert_eq!(
            switch_and_begin("none", "\"public\""),
            "SELECT pg_catalog.set_config('role', 'none', true), pg_catalog.set_config('search_path', '\"public\"', true); BEGIN"
        );
    }
}
