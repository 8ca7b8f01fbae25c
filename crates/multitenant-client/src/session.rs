//! A checked-out connection bound to one tenant schema.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use deadpool_postgres::Object;
use tokio_postgres::types::ToSql;
use tokio_postgres::types::Type;
use tokio_postgres::{Row, Statement};

use crate::config::DebugConfig;
use crate::error::{Error, Result};
use crate::metrics::Counters;

const SWITCH_ROLE_AND_PATH: &str =
    "SELECT pg_catalog.set_config('role', $1, true), pg_catalog.set_config('search_path', $2, true)";
/// The `role` value that means the login role itself (`SET ROLE NONE`): what checkouts
/// without a tenant role switch to, so that a role an earlier checkout `SET` at session level
/// never carries over.
pub(crate) const NO_ROLE: &str = "none";
/// Pool-per-tenant connections get `role` and `search_path` at connect; a checkout puts them
/// back, whatever the previous checkout `SET`.
const RESET_SESSION: &str = "RESET ROLE; RESET search_path";

/// What a checkout sends before its first statement.
#[derive(Clone, Debug)]
pub(crate) enum Switch {
    /// Shared-pool mode: `BEGIN`, then the tenant's role ([`NO_ROLE`] when it has none, and
    /// for the shared schema) and `search_path`, transaction-local, as one parameterized
    /// statement.
    Begin { role: Arc<str>, search_path: Arc<str> },
    /// Pool-per-tenant mode: back to the connection's own role and `search_path`.
    Reset,
}

impl Switch {
    /// Sends the switch. Every request goes out on the first poll (a simple query, then an
    /// unnamed statement with its parameters, no prepare round trip), so a statement polled
    /// after it reaches the server after it and runs switched, or, if the switch failed, in
    /// an aborted transaction: never as the application role.
    async fn send(&self, client: &tokio_postgres::Client) -> std::result::Result<(), tokio_postgres::Error> {
        match self {
            Switch::Begin { role, search_path } => {
                let (role, path): (&str, &str) = (role, search_path);
                let params: [(&(dyn ToSql + Sync), Type); 2] = [(&role, Type::TEXT), (&path, Type::TEXT)];
                let (began, set) =
                    tokio::join!(client.batch_execute("BEGIN"), client.query_typed(SWITCH_ROLE_AND_PATH, &params));
                began.and(set).map(drop)
            }
            Switch::Reset => client.batch_execute(RESET_SESSION).await,
        }
    }

    fn opens_transaction(&self) -> bool {
        matches!(self, Switch::Begin { .. })
    }
}

/// Sends the pending switch, then `$call`, without waiting in between: tokio-postgres writes
/// requests in the order they are first polled, so the server switches role and schema
/// before it parses the statement, and a statement already in the cache costs one round
/// trip together with the switch.
macro_rules! pipelined {
    ($switch:expr, $client:expr, $call:expr) => {
        match $switch {
            Some(switch) => {
                let (switched, value) = tokio::join!(switch.send($client), $call);
                switched.and(value)
            }
            None => $call.await,
        }
    };
}

/// A connection for one tenant. In shared-pool mode it is one transaction: the first
/// statement is pipelined after `BEGIN` and the switch of `role` and `search_path` (one round
/// trip for all), [`commit`](Self::commit) ends it, and dropping it without committing queues a
/// `ROLLBACK` ahead of whatever the connection does next. In pool-per-tenant mode statements
/// run in autocommit, as on a plain connection, after a reset to the connection's tenant
/// role and `search_path`.
///
/// Prepared statements are cached per connection *and tenant*: a plan prepared for one
/// tenant's `users` table is never reused for another tenant's, whose columns may differ.
pub struct TenantClient {
    object: Option<Object>,
    tenant_id: String,
    schema: String,
    /// The switch to send before the first statement, until sent.
    pending_switch: Option<Switch>,
    in_transaction: bool,
    debug: DebugConfig,
    counters: Arc<Counters>,
}

impl TenantClient {
    pub(crate) fn new(
        object: Object,
        tenant_id: &str,
        schema: &str,
        switch: Option<Switch>,
        debug: DebugConfig,
        counters: Arc<Counters>,
    ) -> TenantClient {
        TenantClient {
            object: Some(object),
            tenant_id: tenant_id.to_string(),
            schema: schema.to_string(),
            pending_switch: switch,
            in_transaction: false,
            debug,
            counters,
        }
    }

    pub fn tenant_id(&self) -> &str {
        &self.tenant_id
    }

    pub fn schema_name(&self) -> &str {
        &self.schema
    }

    fn object(&self) -> &Object {
        self.object.as_ref().expect("the connection is present until the client is consumed")
    }

    /// The statement cache key for `sql` (it includes the schema), and the switch that must
    /// go out first if this is the checkout's first statement.
    fn start(&mut self, sql: &str) -> (String, Option<Switch>) {
        let switch = self.pending_switch.take();
        self.in_transaction |= switch.as_ref().is_some_and(Switch::opens_transaction);
        (format!("/* {} */ {sql}", self.schema), switch)
    }

    fn finish<T>(
        &self,
        sql: &str,
        started: Instant,
        result: std::result::Result<T, tokio_postgres::Error>,
    ) -> Result<T> {
        self.log(sql, started);
        result.map_err(Error::Db).inspect_err(|e| self.note_error(e))
    }

    pub async fn query(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>> {
        let (key, switch) = self.start(sql);
        let (started, client) = (Instant::now(), self.object());
        let result =
            pipelined!(switch, client, async { client.query(&client.prepare_cached(&key).await?, params).await });
        self.finish(sql, started, result)
    }

    pub async fn query_one(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Row> {
        let (key, switch) = self.start(sql);
        let (started, client) = (Instant::now(), self.object());
        let result =
            pipelined!(switch, client, async { client.query_one(&client.prepare_cached(&key).await?, params).await });
        self.finish(sql, started, result)
    }

    pub async fn query_opt(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Option<Row>> {
        let (key, switch) = self.start(sql);
        let (started, client) = (Instant::now(), self.object());
        let result =
            pipelined!(switch, client, async { client.query_opt(&client.prepare_cached(&key).await?, params).await });
        self.finish(sql, started, result)
    }

    /// Runs one statement; returns the number of rows it changed.
    pub async fn execute(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64> {
        let (key, switch) = self.start(sql);
        let (started, client) = (Instant::now(), self.object());
        let result =
            pipelined!(switch, client, async { client.execute(&client.prepare_cached(&key).await?, params).await });
        self.finish(sql, started, result)
    }

    /// Runs statements without parameters (simple query protocol, not cached).
    pub async fn batch_execute(&mut self, sql: &str) -> Result<()> {
        let (_, switch) = self.start(sql);
        let (started, client) = (Instant::now(), self.object());
        let result = pipelined!(switch, client, client.batch_execute(sql));
        self.finish(sql, started, result)
    }

    /// Checks the connection and that the tenant's schema exists and is usable (it is the
    /// first schema on `search_path` the current role may use).
    pub async fn ping(&mut self) -> Result<()> {
        let row = self.query_one("SELECT current_schema()", &[]).await?;
        match row.get::<_, Option<String>>(0) {
            Some(schema) if schema == self.schema => Ok(()),
            _ => Err(Error::UnknownTenant(self.tenant_id.clone())),
        }
    }

    /// Runs one statement and commits it (with whatever the checkout did before): in
    /// shared-pool mode the switch, the statement and `COMMIT` go out together, so a
    /// one-statement write costs one round trip, as it would in autocommit. If the
    /// statement fails, the `COMMIT` rolls back and its error is returned. Returns the
    /// number of rows changed.
    pub async fn execute_and_commit(self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64> {
        self.run_and_commit(sql, async |client, statement| client.execute(statement, params).await).await
    }

    /// [`execute_and_commit`](Self::execute_and_commit) for a statement that returns rows.
    pub async fn query_and_commit(self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>> {
        self.run_and_commit(sql, async |client, statement| client.query(statement, params).await).await
    }

    /// Prepares `sql` (cached), then runs it with `run` and, in a transaction, sends
    /// `COMMIT` right behind it without waiting in between. Preparing first matters: `run`
    /// sends its request on its first poll, so the `COMMIT` can never overtake it.
    async fn run_and_commit<T>(
        mut self,
        sql: &str,
        run: impl AsyncFnOnce(&tokio_postgres::Client, &Statement) -> std::result::Result<T, tokio_postgres::Error>,
    ) -> Result<T> {
        let (key, switch) = self.start(sql);
        let (started, client, transaction) = (Instant::now(), self.object(), self.in_transaction);
        let result = pipelined!(switch, client, async {
            let statement = client.prepare_cached(&key).await?;
            if !transaction {
                return run(client, &statement).await; // autocommit
            }
            let (value, committed) = tokio::join!(run(client, &statement), client.batch_execute("COMMIT"));
            let value = value?;
            committed.map(|()| value)
        });
        self.in_transaction = false;
        self.finish(sql, started, result)
    }

    /// Commits what this checkout did (shared-pool mode) and returns the connection.
    pub async fn commit(mut self) -> Result<()> {
        if std::mem::take(&mut self.in_transaction) {
            self.object().batch_execute("COMMIT").await.map_err(Error::Db).inspect_err(|e| self.note_error(e))?;
        }
        Ok(())
    }

    /// Rolls back what this checkout did (shared-pool mode) and returns the connection.
    pub async fn rollback(mut self) -> Result<()> {
        if std::mem::take(&mut self.in_transaction) {
            self.object().batch_execute("ROLLBACK").await?;
        }
        Ok(())
    }

    /// The underlying connection, for what this wrapper does not cover. Call a statement
    /// method first, so the transaction, role and `search_path` are in place.
    pub fn client(&self) -> &tokio_postgres::Client {
        self.object()
    }

    fn log(&self, sql: &str, started: Instant) {
        let elapsed = started.elapsed();
        if self.debug.log_queries {
            tracing::debug!(tenant = %self.tenant_id, duration_ms = elapsed.as_secs_f64() * 1e3, sql, "multitenant: query");
        }
        if self.debug.slow_query_threshold.is_some_and(|t| elapsed > t) {
            tracing::warn!(tenant = %self.tenant_id, duration_ms = elapsed.as_secs_f64() * 1e3, sql, "multitenant: slow query");
        }
    }

    fn note_error(&self, error: &Error) {
        self.counters.record_error(&self.tenant_id, error);
    }
}

impl Drop for TenantClient {
    fn drop(&mut self) {
        let Some(object) = self.object.take() else { return };
        if !self.in_transaction {
            return; // back to the pool as it is
        }
        // Never hand a connection in an open transaction to the next checkout. Queue a
        // ROLLBACK without waiting for it: tokio-postgres sends requests in order, so the
        // next checkout's statements reach the server after it. If it cannot even be
        // queued, the connection is broken: keep it out of the pool.
        let mut rollback = Box::pin(object.batch_execute("ROLLBACK"));
        let waker = std::task::Waker::noop();
        let queued = match rollback.as_mut().poll(&mut std::task::Context::from_waker(waker)) {
            std::task::Poll::Ready(result) => result.is_ok(),
            std::task::Poll::Pending => !object.is_closed(),
        };
        drop(rollback);
        if !queued {
            let _ = Object::take(object);
        }
    }
}
