use std::fmt;

use multitenant_core::naming::NamingError;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong between the application and a tenant schema.
#[derive(Debug)]
pub enum Error {
    /// The tenant id breaks a naming rule; no connection was used.
    InvalidTenant(NamingError),
    /// The tenant's schema does not exist (found by a ping or health check).
    UnknownTenant(String),
    /// `tenant_db()` outside `with_tenant(...)`.
    NoTenantContext,
    /// Could not get a connection from the pool (timeout, closed, or connect failure).
    Pool(deadpool_postgres::PoolError),
    /// The database answered with an error, or the connection broke.
    Db(tokio_postgres::Error),
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
            Error::Pool(deadpool_postgres::PoolError::Backend(e)) => e,
            _ => return None,
        };
        db.code().map(|c| c.code())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidTenant(e) => write!(f, "invalid tenant: {e}"),
            Error::UnknownTenant(id) => write!(f, "unknown tenant \"{id}\": its schema does not exist"),
            Error::NoTenantContext => write!(f, "no tenant in context: call inside with_tenant(...)"),
            Error::Pool(e) => write!(f, "connection pool: {e}"),
            Error::Db(e) => match e.as_db_error() {
                Some(db) => write!(f, "{}: {}", db.code().code(), db.message()),
                None => write!(f, "database: {e}"),
            },
            Error::Config(e) => write!(f, "configuration: {e}"),
            Error::Timeout(what) => write!(f, "timed out: {what}"),
            Error::Disposed => write!(f, "the tenant manager was disposed"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::InvalidTenant(e) => Some(e),
            Error::Pool(e) => Some(e),
            Error::Db(e) => Some(e),
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

impl From<deadpool_postgres::PoolError> for Error {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        Error::Pool(e)
    }
}
