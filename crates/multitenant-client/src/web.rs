//! axum integration (feature `axum`): resolve the tenant of each request, answer 400 when
//! there is none, 404 when it is not registered and 403 when it is suspended (the cached
//! lookup in `mt.tenant_directory`, by either driver), run the handler inside
//! [`crate::with_tenant`], and hand handlers a connection with the [`TenantDb`] extractor
//! (tokio-postgres) or `SqlxTenantDb` (sqlx, feature `sqlx`).
//!
//! ```ignore
//! let resolver = TenantResolver::new(manager, TenantSource::Header("x-tenant-id".into()));
//! let app = Router::new()
//!     .route("/users", get(list_users))
//!     .layer(axum::middleware::from_fn_with_state(resolver, resolve_tenant));
//!
//! async fn list_users(TenantDb(mut db): TenantDb) -> String { /* db is bound to the tenant */ }
//! ```

use std::sync::Arc;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::Extensions;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::context::with_tenant;
use crate::directory::{TenantDirectory, TenantInfo};
use crate::error::Error;
use crate::manager::TenantManager;
use crate::session::TenantClient;

type CustomSource = Arc<dyn Fn(&Parts) -> Option<String> + Send + Sync>;

/// Where a request names its tenant.
#[derive(Clone)]
pub enum TenantSource {
    /// A header, such as `x-tenant-id`.
    Header(String),
    /// The first label of the `Host` header: `acme.example.com` → `acme`.
    Subdomain,
    /// Anything else: a path segment, a JWT claim, a cookie.
    Custom(CustomSource),
}

impl TenantSource {
    fn tenant_of(&self, parts: &Parts) -> Option<String> {
        let value = match self {
            TenantSource::Header(name) => parts.headers.get(name.as_str())?.to_str().ok()?.to_string(),
            TenantSource::Subdomain => {
                let host = parts.headers.get(axum::http::header::HOST)?.to_str().ok()?;
                let host = host.split(':').next()?;
                let (label, rest) = host.split_once('.')?;
                if rest.is_empty() {
                    return None;
                }
                label.to_string()
            }
            TenantSource::Custom(resolve) => resolve(parts)?,
        };
        (!value.is_empty()).then_some(value)
    }
}

type Lookup = Arc<dyn Fn(String) -> BoxFuture<Result<TenantInfo, Error>> + Send + Sync>;
type Attach = Arc<dyn Fn(&mut Extensions) + Send + Sync>;
type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;

/// The middleware's state: where tenants are looked up (any [`TenantDirectory`]: the
/// tokio-postgres [`TenantManager`], or `SqlxTenantPool` with the `sqlx` feature) and where
/// requests name them. Resolving a tenant does not depend on the driver; the directory is
/// also left in the request for the driver's extractor ([`TenantDb`], `SqlxTenantDb`).
#[derive(Clone)]
pub struct TenantResolver {
    lookup: Lookup,
    attach: Attach,
    source: TenantSource,
}

impl TenantResolver {
    /// Tenants are checked with the directory's `tenant()`: registered and active, cached as
    /// its configuration says.
    pub fn new<D: TenantDirectory>(directory: D, source: TenantSource) -> TenantResolver {
        let for_lookup = directory.clone();
        TenantResolver {
            lookup: Arc::new(move |tenant_id: String| {
                let directory = for_lookup.clone();
                Box::pin(async move { directory.tenant(&tenant_id).await })
            }),
            attach: Arc::new(move |extensions: &mut Extensions| {
                extensions.insert(directory.clone());
            }),
            source,
        }
    }
}

/// What the middleware leaves in the request for [`TenantDb`] and handlers; also an
/// extractor, for handlers that only need the id.
#[derive(Clone, Debug)]
pub struct ResolvedTenant(pub String);

fn missing(what: &str) -> Response {
    (StatusCode::INTERNAL_SERVER_ERROR, format!("{what} needs the resolve_tenant middleware")).into_response()
}

impl<S: Send + Sync> FromRequestParts<S> for ResolvedTenant {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<ResolvedTenant>().cloned().ok_or_else(|| missing("ResolvedTenant"))
    }
}

/// Middleware: 400 without a tenant (or with a malformed id), 404 for an unregistered one,
/// 403 for a suspended one, 503 when the directory cannot be read; otherwise the handler
/// runs with the tenant in context.
pub async fn resolve_tenant(State(resolver): State<TenantResolver>, mut request: Request, next: Next) -> Response {
    let (mut parts, body) = request.into_parts();
    let Some(tenant_id) = resolver.source.tenant_of(&parts) else {
        return json_error(StatusCode::BAD_REQUEST, "missing tenant", "no_tenant", None);
    };
    if let Err(error) = (resolver.lookup)(tenant_id.clone()).await {
        return refusal(&error);
    }
    parts.extensions.insert(ResolvedTenant(tenant_id.clone()));
    (resolver.attach)(&mut parts.extensions);
    request = Request::from_parts(parts, body);
    with_tenant(tenant_id, next.run(request)).await
}

/// The answer for a tenant the client refuses (or cannot check): 400, 404, 403, and 503 for
/// anything else (the directory could not be read).
fn refusal(error: &Error) -> Response {
    let status = match error {
        Error::InvalidTenant(_) | Error::TenantNotFound(_) | Error::TenantNotActive { .. } => status_of(error),
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    respond(status, error)
}

/// The HTTP status an error deserves, for handlers that return [`Error`] (which implements
/// [`IntoResponse`] with this status):
///
/// | error | status |
/// | --- | --- |
/// | `InvalidTenant` | 400 |
/// | `TenantNotFound`, `UnknownTenant` | 404 |
/// | `TenantNotActive` | 403 |
/// | SQLSTATE 23505 (unique), 23P01 (exclusion), 23503 (foreign key) | 409 |
/// | SQLSTATE 23502 (not null), 23514 (check), class 22 (bad data: too long, invalid text, out of range) | 400 |
/// | sqlx's `RowNotFound` (`fetch_one` found nothing) | 404 |
/// | SQLSTATE 40001, 40P01 (serialization failure, deadlock), 55P03 (lock not available), 57014 (statement timeout), class 08, 53, 57P | 503 |
/// | no connection (`Pool`, `Timeout`, `Disposed`, a broken connection, sqlx pool errors) | 503 |
/// | anything else (42P01 a missing table, 42501, `Parameters`, `Config`, `NoTenantContext`, …) | 500 |
pub fn status_of(error: &Error) -> StatusCode {
    match error {
        Error::InvalidTenant(_) => StatusCode::BAD_REQUEST,
        Error::TenantNotFound(_) | Error::UnknownTenant(_) => StatusCode::NOT_FOUND,
        Error::TenantNotActive { .. } => StatusCode::FORBIDDEN,
        Error::Pool(_) | Error::Timeout(_) | Error::Disposed => StatusCode::SERVICE_UNAVAILABLE,
        Error::Db(e) => match error.sqlstate() {
            Some(code) => status_of_sqlstate(code),
            None if e.is_closed() => StatusCode::SERVICE_UNAVAILABLE,
            None => StatusCode::INTERNAL_SERVER_ERROR,
        },
        #[cfg(feature = "sqlx")]
        Error::Sqlx(e) => match (error.sqlstate(), e) {
            (Some(code), _) => status_of_sqlstate(code),
            (None, ::sqlx::Error::RowNotFound) => StatusCode::NOT_FOUND,
            (None, ::sqlx::Error::PoolTimedOut | ::sqlx::Error::PoolClosed | ::sqlx::Error::Io(_)) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            (None, _) => StatusCode::INTERNAL_SERVER_ERROR,
        },
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn status_of_sqlstate(code: &str) -> StatusCode {
    match code {
        "23505" | "23P01" | "23503" => StatusCode::CONFLICT,
        "23502" | "23514" => StatusCode::BAD_REQUEST,
        c if c.starts_with("22") => StatusCode::BAD_REQUEST,
        "40001" | "40P01" | "55P03" | "57014" => StatusCode::SERVICE_UNAVAILABLE,
        c if c.starts_with("08") || c.starts_with("53") || c.starts_with("57P") => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// A JSON answer: `{"error": "...", "kind": "...", "sqlstate": "..."}`. Client errors (4xx)
/// carry the error's text (the server's SQLSTATE and message); server errors (5xx) carry
/// only their kind and SQLSTATE, and are logged whole (at ERROR through `tracing`), so that
/// no internal detail reaches the caller.
fn respond(status: StatusCode, error: &Error) -> Response {
    let message = if status.is_server_error() {
        tracing::error!(kind = error.kind(), %error, "multitenant: request failed");
        status.canonical_reason().unwrap_or("error").to_lowercase()
    } else {
        error.to_string()
    };
    json_error(status, &message, error.kind(), error.sqlstate())
}

/// `{"error": message, "kind": kind, "sqlstate": sqlstate}` with `status`.
fn json_error(status: StatusCode, message: &str, kind: &str, sqlstate: Option<&str>) -> Response {
    let body = serde_json::json!({ "error": message, "kind": kind, "sqlstate": sqlstate });
    (status, [(axum::http::header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

/// Answers with [`status_of`] and a JSON body (see [`status_of`]): handlers can return
/// `Result<_, multitenant_client::Error>` and use `?` on checkouts and queries, of either
/// driver.
impl IntoResponse for Error {
    fn into_response(self) -> Response {
        respond(status_of(&self), &self)
    }
}

/// Extractor: a tokio-postgres connection bound to the request's tenant (the resolver was
/// made with a [`TenantManager`]).
pub struct TenantDb(pub TenantClient);

impl<S: Send + Sync> FromRequestParts<S> for TenantDb {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let tenant = parts.extensions.get::<ResolvedTenant>().cloned().ok_or_else(|| missing("TenantDb"))?;
        let manager = parts
            .extensions
            .get::<TenantManager>()
            .cloned()
            .ok_or_else(|| missing("TenantDb (with a resolver made from a TenantManager)"))?;
        manager.db(&tenant.0).await.map(TenantDb).map_err(|e| refusal(&e))
    }
}

/// Extractor: a sqlx transaction bound to the request's tenant (the resolver was made with
/// a [`crate::sqlx::SqlxTenantPool`]). Commit it; dropped, it rolls back.
#[cfg(feature = "sqlx")]
pub struct SqlxTenantDb(pub crate::sqlx::SqlxTenantTx);

#[cfg(feature = "sqlx")]
impl<S: Send + Sync> FromRequestParts<S> for SqlxTenantDb {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let tenant = parts.extensions.get::<ResolvedTenant>().cloned().ok_or_else(|| missing("SqlxTenantDb"))?;
        let pool = parts
            .extensions
            .get::<crate::sqlx::SqlxTenantPool>()
            .cloned()
            .ok_or_else(|| missing("SqlxTenantDb (with a resolver made from a SqlxTenantPool)"))?;
        pool.begin(&tenant.0).await.map(SqlxTenantDb).map_err(|e| refusal(&e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn errors_answer_with_their_status_and_a_json_body() {
        let not_found = Error::TenantNotFound("ghost".into()).into_response();
        assert_eq!(not_found.status(), StatusCode::NOT_FOUND);
        assert_eq!(not_found.headers()[axum::http::header::CONTENT_TYPE], "application/json");
        let body = axum::body::to_bytes(not_found.into_body(), 4096).await.unwrap();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["kind"], "tenant_not_found");
        assert!(json["error"].as_str().unwrap().contains("ghost"), "{json}");
        assert_eq!(json["sqlstate"], serde_json::Value::Null);

        // A server error says what kind it was, not what happened inside.
        let internal = Error::Config("secret=hunter2".into()).into_response();
        assert_eq!(internal.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = axum::body::to_bytes(internal.into_body(), 4096).await.unwrap();
        let text = String::from_utf8(body.to_vec()).unwrap();
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("\"kind\":\"config\""), "{text}");

        assert_eq!(status_of(&Error::TenantNotActive { tenant_id: "a".into(), status: "suspended".into() }), 403);
        assert_eq!(status_of(&Error::Timeout("checkout")), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(status_of(&Error::Disposed), StatusCode::SERVICE_UNAVAILABLE);
        // The middleware answers 503 when the directory cannot be read, whatever the cause.
        assert_eq!(refusal(&Error::Config("x".into())).status(), StatusCode::SERVICE_UNAVAILABLE);
    }

    #[test]
    fn sqlstates_map_to_statuses() {
        for (code, status) in [
            ("23505", 409),
            ("23503", 409),
            ("23P01", 409),
            ("23502", 400),
            ("23514", 400),
            ("22001", 400),
            ("22P02", 400),
            ("40001", 503),
            ("40P01", 503),
            ("57014", 503),
            ("08006", 503),
            ("53300", 503),
            ("57P01", 503),
            ("42P01", 500),
            ("42501", 500),
            ("XX000", 500),
        ] {
            assert_eq!(status_of_sqlstate(code).as_u16(), status, "{code}");
        }
    }

    #[cfg(feature = "sqlx")]
    #[test]
    fn sqlx_errors_without_a_sqlstate() {
        assert_eq!(status_of(&Error::Sqlx(::sqlx::Error::RowNotFound)), StatusCode::NOT_FOUND);
        assert_eq!(status_of(&Error::Sqlx(::sqlx::Error::PoolTimedOut)), StatusCode::SERVICE_UNAVAILABLE);
    }
}
