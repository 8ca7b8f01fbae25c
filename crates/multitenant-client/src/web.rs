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
        return (StatusCode::BAD_REQUEST, "missing tenant").into_response();
    };
    if let Err(error) = (resolver.lookup)(tenant_id.clone()).await {
        return refusal(&error).into_response();
    }
    parts.extensions.insert(ResolvedTenant(tenant_id.clone()));
    (resolver.attach)(&mut parts.extensions);
    request = Request::from_parts(parts, body);
    with_tenant(tenant_id, next.run(request)).await
}

/// The answer for a tenant the client refuses (or cannot check).
fn refusal(error: &Error) -> (StatusCode, String) {
    let status = match error {
        Error::InvalidTenant(_) => StatusCode::BAD_REQUEST,
        Error::TenantNotFound(_) => StatusCode::NOT_FOUND,
        Error::TenantNotActive { .. } => StatusCode::FORBIDDEN,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    (status, error.to_string())
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
        manager.db(&tenant.0).await.map(TenantDb).map_err(|e| refusal(&e).into_response())
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
        pool.begin(&tenant.0).await.map(SqlxTenantDb).map_err(|e| refusal(&e).into_response())
    }
}
