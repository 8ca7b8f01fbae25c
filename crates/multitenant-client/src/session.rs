//! A checked-out connection bound to one tenant schema.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Row, Statement};

use crate::config::DebugConfig;
use crate::conn::{Object, PgConn};
use crate::error::{Error, Result};
use crate::metrics::{Instruments, Owner};
use prometheus_client::metrics::histogram::Histogram;

const SWITCH_ROLE_AND_PATH: &str =
    "SELECT pg_catalog.set_config('role', $1, true), pg_catalog.set_config('search_path', $2, true)";
/// The `role` value that means the login role itself (`SET ROLE NONE`): what checkouts
/// without a tenant role switch to, so that a role an earlier checkout `SET` at session level
/// never carries over.
pub(crate) const NO_ROLE: &str = "none";

/// SQLSTATEs after which a remembered statement or parameter types may be out of date (the
/// tables changed under them): they are forgotten, and the next call prepares again.
const STALE_STATEMENT: &[&str] = &["0A000", "26000", "42804", "42883", "42P18", "22P03"];

/// What a checkout sends before its first statement: `BEGIN`, then the tenant's role
/// ([`NO_ROLE`] when it has none, and for the shared schema) and `search_path`,
/// transaction-local, as one unnamed statement with its parameters.
#[derive(Clone, Debug)]
pub(crate) struct Switch {
    pub role: Arc<str>,
    pub search_path: Arc<str>,
}

impl Switch {
    /// Sends the switch. Every request goes out on the first poll (a simple query, then an
    /// unnamed statement with its parameters, no prepare round trip), so a statement polled
    /// after it reaches the server after it and runs switched, or, if the switch failed, in
    /// an aborted transaction: never as the application role.
    pub(crate) async fn send(&self, client: &tokio_postgres::Client) -> std::result::Result<(), tokio_postgres::Error> {
        let (role, path): (&str, &str) = (&self.role, &self.search_path);
        let params: [(&(dyn ToSql + Sync), Type); 2] = [(&role, Type::TEXT), (&path, Type::TEXT)];
        let (began, set) =
            tokio::join!(client.batch_execute("BEGIN"), client.query_typed(SWITCH_ROLE_AND_PATH, &params));
        began.and(set).map(drop)
    }
}

/// Parameter types of unnamed statements, by search path and SQL, shared by a manager's
/// checkouts ([`crate::Statements::Unnamed`]).
pub(crate) type TypeCache = moka::sync::Cache<String, Arc<Learned>>;

/// What a statement prepared once (inside a transaction, and closed there) told about a SQL
/// text under one search path.
#[derive(Debug)]
pub(crate) struct Learned {
    params: Vec<Type>,
    /// A parameter or column of a type that is not built in (an enum, a composite, an
    /// extension's type). tokio-postgres looks such types up with named statements that it
    /// keeps for the connection's lifetime: behind a transaction pooler the connection is
    /// then cleaned (`DEALLOCATE ALL`) before its transaction ends and not reused.
    custom_types: bool,
}

/// How a checkout's statements reach the server.
#[derive(Clone)]
pub(crate) enum StatementMode {
    Prepared,
    Unnamed(TypeCache),
}

/// A statement ready to run.
enum Ready {
    Named(Statement),
    Unnamed(Arc<Learned>),
}

#[derive(Clone, Copy)]
enum Op {
    Query,
    One,
    Opt,
    Execute,
}

enum Out {
    Rows(Vec<Row>),
    One(Row),
    Opt(Option<Row>),
    Count(u64),
}

impl Out {
    fn rows(self) -> Vec<Row> {
        match self {
            Out::Rows(rows) => rows,
            _ => unreachable!("asked for rows"),
        }
    }
    fn one(self) -> Row {
        match self {
            Out::One(row) => row,
            _ => unreachable!("asked for one row"),
        }
    }
    fn opt(self) -> Option<Row> {
        match self {
            Out::Opt(row) => row,
            _ => unreachable!("asked for an optional row"),
        }
    }
    fn count(self) -> u64 {
        match self {
            Out::Count(n) => n,
            _ => unreachable!("asked for a count"),
        }
    }
}

/// The statement for `sql` under the checkout's search path (`key`): from the connection's
/// LRU of named statements, or the manager's cache of parameter types, or prepared now
/// (inside the checkout's transaction; for unnamed statements it is closed there at once).
async fn ready(
    client: &tokio_postgres::Client,
    statements: &mut Option<lru::LruCache<String, Statement>>,
    mode: &StatementMode,
    key: &str,
    sql: &str,
) -> std::result::Result<Ready, tokio_postgres::Error> {
    match mode {
        StatementMode::Prepared => {
            if let Some(statement) = statements.as_mut().and_then(|cache| cache.get(key)) {
                return Ok(Ready::Named(statement.clone()));
            }
            let statement = client.prepare(sql).await?;
            if let Some(cache) = statements.as_mut() {
                // The least recently used statement is dropped, which closes it on the server.
                cache.put(key.to_string(), statement.clone());
            }
            Ok(Ready::Named(statement))
        }
        StatementMode::Unnamed(types) => {
            if let Some(learned) = types.get(key) {
                return Ok(Ready::Unnamed(learned));
            }
            let statement = client.prepare(sql).await?;
            let custom_types = statement
                .params()
                .iter()
                .chain(statement.columns().iter().map(|c| c.type_()))
                .any(|t| Type::from_oid(t.oid()).is_none());
            let learned = Arc::new(Learned { params: statement.params().to_vec(), custom_types });
            drop(statement); // closed now, inside the transaction
            types.insert(key.to_string(), learned.clone());
            Ok(Ready::Unnamed(learned))
        }
    }
}

/// Runs a ready statement. The request goes out on the first poll.
async fn exec(
    client: &tokio_postgres::Client,
    sql: &str,
    ready: &Ready,
    params: &[&(dyn ToSql + Sync)],
    op: Op,
) -> Result<Out> {
    Ok(match ready {
        Ready::Named(statement) => match op {
            Op::Query => Out::Rows(client.query(statement, params).await?),
            Op::One => Out::One(client.query_one(statement, params).await?),
            Op::Opt => Out::Opt(client.query_opt(statement, params).await?),
            Op::Execute => Out::Count(client.execute(statement, params).await?),
        },
        Ready::Unnamed(learned) => {
            if learned.params.len() != params.len() {
                return Err(Error::Parameters { expected: learned.params.len(), given: params.len() });
            }
            let typed: Vec<(&(dyn ToSql + Sync), Type)> =
                params.iter().copied().zip(learned.params.iter().cloned()).collect();
            match op {
                Op::Query => Out::Rows(client.query_typed(sql, &typed).await?),
                Op::One => Out::One(client.query_typed_one(sql, &typed).await?),
                Op::Opt => Out::Opt(client.query_typed_opt(sql, &typed).await?),
                Op::Execute => Out::Count(client.execute_typed(sql, &typed).await?),
            }
        }
    })
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
                switched.map_err(Error::from).and(value)
            }
            None => $call.await,
        }
    };
}

/// A connection for one tenant: one transaction. The first statement is pipelined after
/// `BEGIN` and the switch of `role` and `search_path` (one round trip for all),
/// [`commit`](Self::commit) ends it, and dropping it without committing queues a `ROLLBACK`
/// ahead of whatever the connection does next. The same in both modes.
///
/// With [`crate::Statements::Prepared`], statements are prepared once per connection *and
/// search path* and kept in a bounded LRU: a plan prepared for one tenant's `users` table is
/// never reused for another tenant's, whose columns may differ. With
/// [`crate::Statements::Unnamed`], no named statement outlives the transaction.
pub struct TenantClient {
    object: Option<Object>,
    tenant_id: String,
    schema: String,
    search_path: Arc<str>,
    /// The switch to send before the first statement, until sent.
    pending_switch: Option<Switch>,
    in_transaction: bool,
    /// Types that are not built in were looked up on this connection (unnamed mode): it is
    /// cleaned before its transaction ends and then closed.
    tainted: bool,
    mode: StatementMode,
    debug: DebugConfig,
    instruments: Arc<Instruments>,
    /// The tenant's query duration histogram (looked up once, at checkout).
    durations: Histogram,
}

impl TenantClient {
    pub(crate) fn new(
        object: Object,
        tenant_id: &str,
        schema: &str,
        switch: Switch,
        mode: StatementMode,
        debug: DebugConfig,
        instruments: Arc<Instruments>,
    ) -> TenantClient {
        let owner = if tenant_id.is_empty() { Owner::Shared } else { Owner::Tenant(tenant_id) };
        TenantClient {
            durations: instruments.query_histogram(owner),
            object: Some(object),
            tenant_id: tenant_id.to_string(),
            schema: schema.to_string(),
            search_path: switch.search_path.clone(),
            pending_switch: Some(switch),
            in_transaction: false,
            tainted: false,
            mode,
            debug,
            instruments,
        }
    }

    pub fn tenant_id(&self) -> &str {
        &self.tenant_id
    }

    pub fn schema_name(&self) -> &str {
        &self.schema
    }

    fn conn(&self) -> &PgConn {
        self.object.as_ref().expect("the connection is present until the client is consumed")
    }

    /// The switch that must go out first if nothing was sent yet.
    fn start(&mut self) -> Option<Switch> {
        let switch = self.pending_switch.take();
        self.in_transaction |= switch.is_some();
        switch
    }

    fn key(&self, sql: &str) -> String {
        format!("{}\0{sql}", self.search_path)
    }

    async fn run(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)], op: Op) -> Result<Out> {
        let switch = self.start();
        let (key, started) = (self.key(sql), Instant::now());
        let mut custom_types = false;
        let conn: &mut PgConn = self.object.as_mut().expect("the connection is present");
        let (client, statements, mode) = (&conn.client, &mut conn.statements, &self.mode);
        let result = pipelined!(switch, client, async {
            let ready = ready(client, statements, mode, &key, sql).await?;
            custom_types = matches!(&ready, Ready::Unnamed(l) if l.custom_types);
            exec(client, sql, &ready, params, op).await
        });
        self.tainted |= custom_types;
        self.finish(sql, &key, started, result)
    }

    /// Records the duration, logs, forgets a statement that may be out of date, counts the
    /// error.
    fn finish<T>(&mut self, sql: &str, key: &str, started: Instant, result: Result<T>) -> Result<T> {
        self.log(sql, started);
        if let Err(error) = &result {
            if error.sqlstate().is_some_and(|code| STALE_STATEMENT.contains(&code)) {
                match &self.mode {
                    StatementMode::Prepared => {
                        if let Some(cache) = self.object.as_mut().and_then(|c| c.statements.as_mut()) {
                            cache.pop(key);
                        }
                    }
                    StatementMode::Unnamed(types) => types.invalidate(key),
                }
            }
            self.note_error(error);
        }
        result
    }

    pub async fn query(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>> {
        self.run(sql, params, Op::Query).await.map(Out::rows)
    }

    pub async fn query_one(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Row> {
        self.run(sql, params, Op::One).await.map(Out::one)
    }

    pub async fn query_opt(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Option<Row>> {
        self.run(sql, params, Op::Opt).await.map(Out::opt)
    }

    /// Runs one statement; returns the number of rows it changed.
    pub async fn execute(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64> {
        self.run(sql, params, Op::Execute).await.map(Out::count)
    }

    /// Runs statements without parameters (simple query protocol, nothing prepared).
    pub async fn batch_execute(&mut self, sql: &str) -> Result<()> {
        let switch = self.start();
        let started = Instant::now();
        let client = &self.conn().client;
        let result = pipelined!(switch, client, async { Ok(client.batch_execute(sql).await?) });
        self.finish(sql, "", started, result)
    }

    /// Checks the connection and that the tenant's schema exists and is usable (it is the
    /// first schema on `search_path` the current role may use).
    pub async fn ping(&mut self) -> Result<()> {
        let row = self.query_one("SELECT pg_catalog.current_schema()", &[]).await?;
        match row.get::<_, Option<String>>(0) {
            Some(schema) if schema == self.schema => Ok(()),
            _ => Err(Error::UnknownTenant(self.tenant_id.clone())),
        }
    }

    /// Runs one statement and commits it (with whatever the checkout did before): the
    /// switch, the statement and `COMMIT` go out together, so a one-statement write costs one
    /// round trip, as it would in autocommit. If the statement fails, the `COMMIT` rolls back
    /// and its error is returned. Returns the number of rows changed.
    pub async fn execute_and_commit(self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64> {
        self.run_and_commit(sql, params, Op::Execute).await.map(Out::count)
    }

    /// [`execute_and_commit`](Self::execute_and_commit) for a statement that returns rows.
    pub async fn query_and_commit(self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>> {
        self.run_and_commit(sql, params, Op::Query).await.map(Out::rows)
    }

    /// Readies `sql` (which may take a round trip), then runs it and sends `COMMIT` right
    /// behind it without waiting in between. Readying first matters: the statement's request
    /// goes out on its first poll, so the `COMMIT` can never overtake it.
    async fn run_and_commit(mut self, sql: &str, params: &[&(dyn ToSql + Sync)], op: Op) -> Result<Out> {
        let switch = self.start();
        let (key, started, transaction, tainted) = (self.key(sql), Instant::now(), self.in_transaction, self.tainted);
        let mut custom_types = false;
        let conn: &mut PgConn = self.object.as_mut().expect("the connection is present");
        let (client, statements, mode) = (&conn.client, &mut conn.statements, &self.mode);
        let result = pipelined!(switch, client, async {
            let ready = ready(client, statements, mode, &key, sql).await?;
            custom_types = matches!(&ready, Ready::Unnamed(l) if l.custom_types);
            if !transaction {
                return exec(client, sql, &ready, params, op).await;
            }
            let end = if tainted || custom_types { "DEALLOCATE ALL; COMMIT" } else { "COMMIT" };
            let (value, committed) = tokio::join!(exec(client, sql, &ready, params, op), client.batch_execute(end));
            let value = value?;
            committed.map(|()| value).map_err(Error::from)
        });
        self.tainted |= custom_types;
        self.in_transaction = false;
        self.discard_if_tainted();
        self.finish(sql, &key, started, result)
    }

    /// Commits what this checkout did and returns the connection.
    pub async fn commit(self) -> Result<()> {
        self.end("COMMIT").await
    }

    /// Rolls back what this checkout did and returns the connection.
    pub async fn rollback(self) -> Result<()> {
        self.end("ROLLBACK").await
    }

    async fn end(mut self, how: &'static str) -> Result<()> {
        if !std::mem::take(&mut self.in_transaction) {
            return Ok(());
        }
        let sql = if self.tainted { format!("DEALLOCATE ALL; {how}") } else { how.to_string() };
        let result = self.conn().client.batch_execute(&sql).await.map_err(Error::Db);
        self.discard_if_tainted();
        result.inspect_err(|e| self.note_error(e))
    }

    /// A connection on which tokio-postgres looked types up with statements it keeps is
    /// closed rather than reused (unnamed mode): those statements were left on a server
    /// connection that a transaction pooler has handed on.
    fn discard_if_tainted(&mut self) {
        if self.tainted {
            if let Some(object) = self.object.take() {
                drop(deadpool::managed::Object::take(object));
            }
        }
    }

    /// The underlying connection, for what this wrapper does not cover, switched: if no
    /// statement ran yet, the transaction, role and `search_path` are sent (and awaited)
    /// first, so what runs on it runs as the tenant. Behind a transaction pooler, use
    /// unnamed statements on it (`query_typed`, `execute_typed`) and drop any statement you
    /// `prepare` before the checkout ends.
    pub async fn client(&mut self) -> Result<&tokio_postgres::Client> {
        if let Some(switch) = self.start() {
            let started = Instant::now();
            let result = switch.send(&self.conn().client).await.map_err(Error::Db);
            self.finish("BEGIN (switch)", "", started, result)?;
        }
        Ok(&self.conn().client)
    }

    fn log(&self, sql: &str, started: Instant) {
        let elapsed = started.elapsed();
        self.durations.observe(elapsed.as_secs_f64());
        if self.debug.log_queries {
            tracing::debug!(tenant = %self.tenant_id, duration_ms = elapsed.as_secs_f64() * 1e3, sql, "multitenant: query");
        }
        if self.debug.slow_query_threshold.is_some_and(|t| elapsed > t) {
            tracing::warn!(tenant = %self.tenant_id, duration_ms = elapsed.as_secs_f64() * 1e3, sql, "multitenant: slow query");
        }
    }

    fn note_error(&self, error: &Error) {
        let owner = if self.tenant_id.is_empty() { Owner::Shared } else { Owner::Tenant(&self.tenant_id) };
        self.instruments.record_error(owner, error);
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
        let end = if self.tainted { "DEALLOCATE ALL; ROLLBACK" } else { "ROLLBACK" };
        let mut rollback = Box::pin(object.client.batch_execute(end));
        let waker = std::task::Waker::noop();
        let queued = match rollback.as_mut().poll(&mut std::task::Context::from_waker(waker)) {
            std::task::Poll::Ready(result) => result.is_ok(),
            std::task::Poll::Pending => !object.client.is_closed(),
        };
        drop(rollback);
        if !queued || self.tainted {
            drop(deadpool::managed::Object::take(object));
        }
    }
}
