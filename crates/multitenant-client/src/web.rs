//! axum integration (feature `axum`): resolve the tenant of each request, answer 400 when
//! there is none, 404 when it is not registered and 403 when it is suspended (the manager's
//! cached lookup in `mt.tenant_directory`), run the handler inside [`crate::with_tenant`],
//! and hand handlers a connection with the [`TenantDb`] extractor.
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
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::context::with_tenant;
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

/// The middleware's state: the manager (whose directory cache says which tenants exist) and
/// where tenants come from.
#[derive(Clone)]
pub struct TenantResolver {
    manager: TenantManager,
    source: TenantSource,
}

impl TenantResolver {
    /// Tenants are checked with [`TenantManager::tenant`]: registered and active, cached as
    /// [`crate::Config::tenant_cache`] says.
    pub fn new(manager: TenantManager, source: TenantSource) -> TenantResolver {
        TenantResolver { manager, source }
    }

    pub fn manager(&self) -> &TenantManager {
        &self.manager
    }
}

/// What the middleware leaves in the request for [`TenantDb`] and handlers.
#[derive(Clone, Debug)]
pub struct ResolvedTenant(pub String);

/// Middleware: 400 without a tenant (or with a malformed id), 404 for an unregistered one,
/// 403 for a suspended one, 503 when the directory cannot be read; otherwise the handler
/// runs with the tenant in context.
pub async fn resolve_tenant(State(resolver): State<TenantResolver>, mut request: Request, next: Next) -> Response {
    let (mut parts, body) = request.into_parts();
    let Some(tenant_id) = resolver.source.tenant_of(&parts) else {
        return (StatusCode::BAD_REQUEST, "missing tenant").into_response();
    };
    if let Err(error) = resolver.manager.tenant(&tenant_id).await {
        return refusal(&error).into_response();
    }
    parts.extensions.insert(ResolvedTenant(tenant_id.clone()));
    parts.extensions.insert(resolver.manager.clone());
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

/// Extractor: a connection bound to the request's tenant.
pub struct TenantDb(pub TenantClient);

impl<S: Send + Sync> FromRequestParts<S> for TenantDb {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let missing =
            || (StatusCode::INTERNAL_SERVER_ERROR, "TenantDb needs the resolve_tenant middleware").into_response();
        let tenant = parts.extensions.get::<ResolvedTenant>().cloned().ok_or_else(missing)?;
        let manager = parts.extensions.get::<TenantManager>().cloned().ok_or_else(missing)?;
        manager.db(&tenant.0).await.map(TenantDb).map_err(|e| refusal(&e).into_response())
    }
}
