//! Pooled connections: a deadpool manager that connects with rustls (or in the clear, as
//! `sslmode` says) and gives each connection a bounded LRU of prepared statements.

use std::num::NonZeroUsize;

use deadpool::managed::{self, Metrics, RecycleError, RecycleResult};
use lru::LruCache;
use tokio_postgres::Statement;

use crate::tls::MakeRustlsConnect;

pub(crate) type Pool = managed::Pool<PgManager>;
pub(crate) type Object = managed::Object<PgManager>;

/// Creates and recycles [`PgConn`]s.
pub(crate) struct PgManager {
    pub config: tokio_postgres::Config,
    pub tls: MakeRustlsConnect,
    /// Named statements each connection keeps (0: none are kept).
    pub statements_per_connection: usize,
}

/// A connection and what the client keeps with it.
pub(crate) struct PgConn {
    pub client: tokio_postgres::Client,
    /// Named prepared statements, by schema and SQL; `None` when none are kept. Evicting
    /// one drops its `Statement`, which closes it on the server.
    pub statements: Option<LruCache<String, Statement>>,
}

impl managed::Manager for PgManager {
    type Type = PgConn;
    type Error = tokio_postgres::Error;

    async fn create(&self) -> Result<PgConn, tokio_postgres::Error> {
        let (client, connection) = self.config.connect(self.tls.clone()).await?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(error = crate::error::describe(&error), "multitenant: connection closed");
            }
        });
        let statements = NonZeroUsize::new(self.statements_per_connection).map(LruCache::new);
        Ok(PgConn { client, statements })
    }

    async fn recycle(&self, conn: &mut PgConn, _: &Metrics) -> RecycleResult<tokio_postgres::Error> {
        if conn.client.is_closed() {
            return Err(RecycleError::message("connection closed"));
        }
        Ok(())
    }
}
