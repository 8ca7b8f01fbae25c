use std::fmt;

use multitenant_core::naming::NamingError;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why no connection could be had from a pool (deadpool's error over tokio-postgres's).
pub type PoolError = deadpool::managed::PoolError<tokio_postgres::Error>;

/// Everything that can go wrong between the application and a tenant schema.
#[derive(Debug)]
pub enum Error {
    /// The tenant id breaks a naming rule; no connection was used.
    InvalidTenant(NamingError),
    /// The tenant is not registered: `mt.tenant_directory` has no row for it. No connection
    /// was switched to it.
    TenantNotFound(String),
    /// The tenant is registered but not active (suspended). No connection was switched to it.
    TenantNotActive { tenant_id: String, status: String },
    /// The tenant is registered but its schema is not reachable (found by a ping or health
    /// check: the schema is gone, or the switched role cannot use it).
    UnknownTenant(String),
    /// The server's naming setting `key` (in `mt.settings`) differs from the client's
    /// [`Config`](crate::Config); `server` is `None` when the server has no such setting.
    SettingsMismatch { key: &'static str, server: Option<String>, client: String },
    /// `tenant_db()` outside `with_tenant(...)`.
    NoTenantContext,
    /// Could not get a connection from the pool (timeout, closed, or connect failure).
    Pool(PoolError),
    /// The database answered with an error, or the connection broke.
    Db(tokio_postgres::Error),
    /// A statement was given another number of parameters than it has (checked before it
    /// is sent, in [`Statements::Unnamed`](crate::Statements::Unnamed) mode).
    Parameters { expected: usize, given: usize },
    /// A sqlx call failed (feature `sqlx`).
    #[cfg(feature = "sqlx")]
    Sqlx(::sqlx::Error),
    /// A configuration that cannot work (bad URL, bad template).
    Config(String),
    /// An operation did not finish in time.
    Timeout(&'static str),
    /// The manager was disposed.
    Disposed,
}

impl Error {
    /// The SQLSTATE of a database error, if this is one.
    pub fn sqlstate(&self) -> Option<&str> {
        let db = match self {
            Error::Db(e) => e,
            Error::Pool(PoolError::Backend(e)) => e,
            #[cfg(feature = "sqlx")]
            Error::Sqlx(e) => return crate::sqlx::sqlstate(e),
            _ => return None,
        };
        db.code().map(|c| c.code())
    }

    /// A short, stable name of the variant, for metrics and logs: `invalid_tenant`,
    /// `tenant_not_found`, `tenant_not_active`, `unknown_tenant`, `settings_mismatch`,
    /// `no_tenant_context`, `pool` (no connection: timeout, connect failure), `database` (the
    /// server answered with an error, or the connection broke), `parameters`, `sqlx`,
    /// `config`, `timeout`, `disposed`.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::InvalidTenant(_) => "invalid_tenant",
            Error::TenantNotFound(_) => "tenant_not_found",
            Error::TenantNotActive { .. } => "tenant_not_active",
            Error::UnknownTenant(_) => "unknown_tenant",
            Error::SettingsMismatch { .. } => "settings_mismatch",
            Error::NoTenantContext => "no_tenant_context",
            Error::Pool(_) => "pool",
            Error::Db(_) => "database",
            Error::Parameters { .. } => "parameters",
            #[cfg(feature = "sqlx")]
            Error::Sqlx(_) => "sqlx",
            Error::Config(_) => "config",
            Error::Timeout(_) => "timeout",
            Error::Disposed => "disposed",
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidTenant(e) => write!(f, "invalid tenant: {e}"),
            Error::TenantNotFound(id) => write!(f, "tenant \"{id}\" not found: it is not registered in mt.tenant_directory"),
            Error::TenantNotActive { tenant_id, status } => {
                write!(f, "tenant \"{tenant_id}\" is not active (status {status})")
            }
            Error::UnknownTenant(id) => write!(f, "unknown tenant \"{id}\": its schema does not exist or is not usable"),
            Error::SettingsMismatch { key, server, client } => match server {
                Some(server) => write!(
                    f,
                    "the server's {key} is \"{server}\" but the client's is \"{client}\": set Config::{key} to the server's value"
                ),
                None => write!(f, "the server has no {key} setting in mt.settings (is the multitenant extension installed?)"),
            },
            Error::NoTenantContext => write!(f, "no tenant in context: call inside with_tenant(...)"),
            Error::Pool(PoolError::Backend(e)) => write!(f, "connection pool: cannot connect: {}", describe(e)),
            Error::Pool(e) => write!(f, "connection pool: {e}"),
            Error::Db(e) => match e.as_db_error() {
                Some(_) => f.write_str(&describe(e)),
                None => write!(f, "database: {}", describe(e)),
            },
            Error::Parameters { expected, given } => {
                write!(f, "the statement has {expected} parameter(s), {given} given")
            }
            #[cfg(feature = "sqlx")]
            Error::Sqlx(e) => match crate::sqlx::sqlstate(e) {
                Some(code) => write!(f, "{code}: {}", e.as_database_error().map(|d| d.message()).unwrap_or_default()),
                None => write!(f, "sqlx: {e}"),
            },
            Error::Config(e) => write!(f, "configuration: {e}"),
            Error::Timeout(what) => write!(f, "timed out: {what}"),
            Error::Disposed => write!(f, "the tenant manager was disposed"),
        }
    }
}

/// A tokio-postgres error with its causes ("error performing TLS handshake: invalid peer
/// certificate: …"), or the server's SQLSTATE and message (tokio-postgres itself says only
/// `db error`).
pub(crate) fn describe(error: &tokio_postgres::Error) -> String {
    if let Some(db) = error.as_db_error() {
        return format!("{}: {}", db.code().code(), db.message());
    }
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::InvalidTenant(e) => Some(e),
            Error::Pool(e) => Some(e),
            Error::Db(e) => Some(e),
            #[cfg(feature = "sqlx")]
            Error::Sqlx(e) => Some(e),
            _ => None,
        }
    }
}

impl From<NamingError> for Error {
    fn from(e: NamingError) -> Self {
        Error::InvalidTenant(e)
    }
}

impl From<tokio_postgres::Error> for Error {
    fn from(e: tokio_postgres::Error) -> Self {
        Error::Db(e)
    }
}

impl From<PoolError> for Error {
    fn from(e: PoolError) -> Self {
        Error::Pool(e)
    }
}
