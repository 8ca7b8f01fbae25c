//! Which tenants exist: the extension's `mt.tenant_directory`, behind a bounded cache, and the
//! check that the client names schemas the way the server does.
//!
//! A checkout for a tenant first asks the directory (through the cache) whether the tenant is
//! registered and active, and which schema and role it has. Only then does anything reach the
//! database with that tenant's `search_path` or role: an unregistered id never does.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::future::Cache;
use moka::Expiry;

use crate::error::{Error, Result};

/// The directory query: one row for a registered tenant, none otherwise. Casts keep it
/// independent of the view's column types (text or name); types and operators are
/// schema-qualified, so a `search_path` left on the connection cannot redirect them.
pub(crate) const LOOKUP_SQL: &str = "SELECT schema_name::pg_catalog.text, role_name::pg_catalog.text, \
     status::pg_catalog.text FROM mt.tenant_directory WHERE tenant_id OPERATOR(pg_catalog.=) $1";

/// The naming settings the client must agree with.
pub(crate) const SETTINGS_SQL: &str = "SELECT key::pg_catalog.text, value::pg_catalog.text FROM mt.settings \
     WHERE key OPERATOR(pg_catalog.=) ANY ('{schema_template,shared_schema}'::pg_catalog.text[])";

/// How long directory answers are remembered, and how many.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TenantCacheConfig {
    /// A registered tenant (active or not) is looked up again after this long: a suspension
    /// or a drop takes effect within it (or at once with
    /// [`TenantManager::invalidate`](crate::TenantManager::invalidate)).
    pub ttl: Duration,
    /// An unregistered tenant is looked up again after this long: a newly created tenant is
    /// served within it.
    pub negative_ttl: Duration,
    /// Tenants remembered at most (positive and negative answers together); the least
    /// useful are evicted first.
    pub max_capacity: u64,
}

impl Default for TenantCacheConfig {
    fn default() -> Self {
        TenantCacheConfig { ttl: Duration::from_secs(5), negative_ttl: Duration::from_secs(2), max_capacity: 10_000 }
    }
}

/// Where tenants are looked up: `mt.tenant_directory` through a bounded cache, whichever
/// driver reads it ([`crate::TenantManager`], or `SqlxTenantPool` with the `sqlx` feature).
/// The axum layer takes any of them.
pub trait TenantDirectory: Clone + Send + Sync + 'static {
    /// The tenant if it is registered and active; [`Error::InvalidTenant`],
    /// [`Error::TenantNotFound`] or [`Error::TenantNotActive`] otherwise.
    fn tenant(&self, tenant_id: &str) -> impl Future<Output = Result<TenantInfo>> + Send;
}

/// A registered tenant, as `mt.tenant_directory` lists it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TenantInfo {
    pub tenant_id: String,
    pub schema_name: String,
    /// The tenant's own role; `None` when it has none (adopted without roles, or created
    /// before 0.2.0): then checkouts keep the application role.
    pub role_name: Option<String>,
    /// `active` or `suspended`.
    pub status: String,
}

impl TenantInfo {
    pub fn is_active(&self) -> bool {
        self.status == "active"
    }

    /// Ok for an active tenant, [`Error::TenantNotActive`] otherwise.
    pub(crate) fn require_active(&self) -> Result<()> {
        if self.is_active() {
            Ok(())
        } else {
            Err(Error::TenantNotActive { tenant_id: self.tenant_id.clone(), status: self.status.clone() })
        }
    }
}

/// A cached directory answer.
#[derive(Clone, Debug)]
pub(crate) enum Lookup {
    Registered(Arc<TenantInfo>),
    Unregistered,
}

impl Lookup {
    /// The tenant if it is registered and active; the matching error otherwise.
    pub(crate) fn active(&self, tenant_id: &str) -> Result<Arc<TenantInfo>> {
        match self {
            Lookup::Registered(info) => info.require_active().map(|()| info.clone()),
            Lookup::Unregistered => Err(Error::TenantNotFound(tenant_id.to_string())),
        }
    }
}

/// Positive and negative answers expire on their own clocks; a new answer for a key restarts
/// its clock.
struct LookupExpiry {
    ttl: Duration,
    negative_ttl: Duration,
}

impl LookupExpiry {
    fn ttl_of(&self, value: &Lookup) -> Duration {
        match value {
            Lookup::Registered(_) => self.ttl,
            Lookup::Unregistered => self.negative_ttl,
        }
    }
}

impl Expiry<String, Lookup> for LookupExpiry {
    fn expire_after_create(&self, _key: &String, value: &Lookup, _created_at: Instant) -> Option<Duration> {
        Some(self.ttl_of(value))
    }

    fn expire_after_update(
        &self,
        _key: &String,
        value: &Lookup,
        _updated_at: Instant,
        _duration_until_expiry: Option<Duration>,
    ) -> Option<Duration> {
        Some(self.ttl_of(value))
    }
}

/// The bounded, expiring cache of directory answers. Errors (the database unreachable) are
/// never cached.
pub(crate) struct TenantCache {
    cache: Cache<String, Lookup>,
    /// Bumped by every invalidation: a lookup that started before one does not store its
    /// (possibly stale) answer.
    generation: AtomicU64,
}

impl TenantCache {
    pub(crate) fn new(config: &TenantCacheConfig) -> TenantCache {
        let cache = Cache::builder()
            .max_capacity(config.max_capacity)
            .expire_after(LookupExpiry { ttl: config.ttl, negative_ttl: config.negative_ttl })
            .build();
        TenantCache { cache, generation: AtomicU64::new(0) }
    }

    /// The cached answer for `tenant_id`, or `load`'s (then cached). `load` returns the
    /// tenant's row, or `None` when it is not registered.
    pub(crate) async fn get<F>(&self, tenant_id: &str, load: F) -> Result<Lookup>
    where
        F: Future<Output = Result<Option<TenantInfo>>>,
    {
        if let Some(found) = self.cache.get(tenant_id).await {
            return Ok(found);
        }
        let generation = self.generation.load(Ordering::SeqCst);
        let lookup = match load.await? {
            Some(info) => Lookup::Registered(Arc::new(info)),
            None => Lookup::Unregistered,
        };
        if self.generation.load(Ordering::SeqCst) == generation {
            self.cache.insert(tenant_id.to_string(), lookup.clone()).await;
        }
        Ok(lookup)
    }

    pub(crate) async fn invalidate(&self, tenant_id: &str) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.cache.invalidate(tenant_id).await;
    }

    pub(crate) fn invalidate_all(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.cache.invalidate_all();
    }

    #[cfg(test)]
    async fn entry_count(&self) -> u64 {
        self.cache.run_pending_tasks().await;
        self.cache.entry_count()
    }
}

/// Compares the server's naming settings (`key`, `value` rows of `mt.settings`) with the
/// client's; a difference (or a missing key) is [`Error::SettingsMismatch`].
pub(crate) fn check_settings(rows: &[(String, String)], schema_template: &str, shared_schema: &str) -> Result<()> {
    for (key, client) in [("schema_template", schema_template), ("shared_schema", shared_schema)] {
        let server = rows.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
        if server.as_deref() != Some(client) {
            return Err(Error::SettingsMismatch { key, server, client: client.to_string() });
        }
    }
    Ok(())
}

/// `name` as an SQL identifier, double-quoted.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A `search_path` value (quoted identifiers): the tenant's schema, then the shared schema
/// when asked for.
pub(crate) fn search_path(schema: &str, shared_schema: Option<&str>) -> String {
    match shared_schema {
        Some(shared) if shared != schema => format!("{},{}", quote_ident(schema), quote_ident(shared)),
        _ => quote_ident(schema),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn info(id: &str, status: &str) -> TenantInfo {
        TenantInfo {
            tenant_id: id.into(),
            schema_name: format!("tenant_{id}"),
            role_name: Some(format!("tenant_{id}")),
            status: status.into(),
        }
    }

    fn cache(ttl_ms: u64, negative_ms: u64, capacity: u64) -> TenantCache {
        TenantCache::new(&TenantCacheConfig {
            ttl: Duration::from_millis(ttl_ms),
            negative_ttl: Duration::from_millis(negative_ms),
            max_capacity: capacity,
        })
    }

    /// A loader that counts its calls and answers with `answer`.
    async fn load(calls: &AtomicUsize, answer: Option<TenantInfo>) -> Result<Option<TenantInfo>> {
        calls.fetch_add(1, Ordering::SeqCst);
        Ok(answer)
    }

    #[tokio::test]
    async fn positive_answers_are_cached_until_their_ttl() {
        let (cache, calls) = (cache(1_000, 50, 100), AtomicUsize::new(0));
        for _ in 0..3 {
            let found = cache.get("acme", load(&calls, Some(info("acme", "active")))).await.unwrap();
            assert_eq!(found.active("acme").unwrap().schema_name, "tenant_acme");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1, "one lookup, then the cache");
        tokio::time::sleep(Duration::from_millis(100)).await;
        cache.get("acme", load(&calls, Some(info("acme", "active")))).await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 1, "still cached: the positive TTL is longer than the negative one");
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        // Suspended meanwhile: the next lookup sees it.
        let found = cache.get("acme", load(&calls, Some(info("acme", "suspended")))).await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert!(
            matches!(found.active("acme"), Err(Error::TenantNotActive { ref status, .. }) if status == "suspended")
        );
    }

    #[tokio::test]
    async fn negative_answers_are_cached_for_their_own_ttl() {
        let (cache, calls) = (cache(10_000, 80, 100), AtomicUsize::new(0));
        for _ in 0..3 {
            let found = cache.get("ghost", load(&calls, None)).await.unwrap();
            assert!(matches!(found.active("ghost"), Err(Error::TenantNotFound(ref id)) if id == "ghost"));
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        tokio::time::sleep(Duration::from_millis(150)).await;
        // Created meanwhile: served once the negative answer expired.
        let found = cache.get("ghost", load(&calls, Some(info("ghost", "active")))).await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert!(found.active("ghost").is_ok());
        // And the new, positive answer has the long TTL, not the negative one it replaced.
        tokio::time::sleep(Duration::from_millis(150)).await;
        cache.get("ghost", load(&calls, None)).await.unwrap().active("ghost").unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn invalidate_forces_a_new_lookup() {
        let (cache, calls) = (cache(60_000, 60_000, 100), AtomicUsize::new(0));
        cache.get("acme", load(&calls, Some(info("acme", "active")))).await.unwrap();
        cache.get("other", load(&calls, Some(info("other", "active")))).await.unwrap();
        cache.invalidate("acme").await;
        let gone = cache.get("acme", load(&calls, None)).await.unwrap();
        assert!(matches!(gone.active("acme"), Err(Error::TenantNotFound(_))));
        cache.get("other", load(&calls, None)).await.unwrap().active("other").unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 3, "only the invalidated tenant was looked up again");
        cache.invalidate_all();
        cache.get("other", load(&calls, None)).await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn a_lookup_overtaken_by_an_invalidation_is_not_stored() {
        let (cache, calls) = (Arc::new(cache(60_000, 60_000, 100)), AtomicUsize::new(0));
        let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
        let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
        let slow = {
            let cache = cache.clone();
            tokio::spawn(async move {
                cache
                    .get("acme", async {
                        started_tx.send(()).unwrap();
                        go_rx.await.unwrap();
                        Ok(Some(info("acme", "active"))) // read before the drop below
                    })
                    .await
                    .unwrap()
            })
        };
        started_rx.await.unwrap();
        cache.invalidate("acme").await; // the tenant was dropped meanwhile
        go_tx.send(()).unwrap();
        assert!(slow.await.unwrap().active("acme").is_ok(), "the caller gets what it read");
        let now = cache.get("acme", load(&calls, None)).await.unwrap();
        assert!(matches!(now.active("acme"), Err(Error::TenantNotFound(_))), "but it was not cached");
    }

    #[tokio::test]
    async fn errors_are_not_cached() {
        let (cache, calls) = (cache(60_000, 60_000, 100), AtomicUsize::new(0));
        let failed = cache.get("acme", async { Err(Error::Timeout("lookup")) }).await;
        assert!(matches!(failed, Err(Error::Timeout(_))));
        cache.get("acme", load(&calls, Some(info("acme", "active")))).await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn the_cache_is_bounded() {
        let (cache, calls) = (cache(60_000, 60_000, 50), AtomicUsize::new(0));
        for n in 0..500 {
            cache.get(&format!("ghost{n}"), load(&calls, None)).await.unwrap();
        }
        let count = cache.entry_count().await;
        assert!(count <= 50, "{count} entries");
    }

    #[test]
    fn settings_must_match_the_clients_naming() {
        let rows = |template: &str, shared: &str| {
            vec![
                ("schema_template".to_string(), template.to_string()),
                ("shared_schema".to_string(), shared.to_string()),
            ]
        };
        assert!(check_settings(&rows("tenant_{id}", "public"), "tenant_{id}", "public").is_ok());
        let err = check_settings(&rows("t_{id}", "public"), "tenant_{id}", "public").unwrap_err();
        assert!(
            matches!(&err, Error::SettingsMismatch { key: "schema_template", server: Some(s), client: c }
                if s == "t_{id}" && c == "tenant_{id}"),
            "{err:?}"
        );
        assert!(err.to_string().contains("schema_template"), "{err}");
        let err = check_settings(&rows("tenant_{id}", "shared"), "tenant_{id}", "public").unwrap_err();
        assert!(matches!(err, Error::SettingsMismatch { key: "shared_schema", .. }), "{err:?}");
        let err = check_settings(&rows("tenant_{id}", "public")[..1], "tenant_{id}", "public").unwrap_err();
        assert!(matches!(err, Error::SettingsMismatch { key: "shared_schema", server: None, .. }), "{err:?}");
    }

    #[test]
    fn search_paths_are_quoted_and_hold_the_shared_schema_only_when_asked() {
        assert_eq!(search_path("tenant_acme", None), "\"tenant_acme\"");
        assert_eq!(search_path("tenant_acme", Some("public")), "\"tenant_acme\",\"public\"");
        assert_eq!(search_path("public", Some("public")), "\"public\"");
        assert_eq!(quote_ident("we\"ird"), "\"we\"\"ird\"");
    }

    #[test]
    fn only_active_tenants_pass() {
        assert!(info("a", "active").require_active().is_ok());
        let err = info("a", "suspended").require_active().unwrap_err();
        assert!(err.to_string().contains("suspended"), "{err}");
    }
}
