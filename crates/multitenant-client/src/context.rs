//! The tenant of the current task, for code that should not pass it around.

use std::future::Future;

tokio::task_local! {
    static CURRENT_TENANT: String;
}

/// Runs `future` with `tenant_id` as the current tenant (see [`current_tenant`] and
/// [`crate::TenantManager::tenant_db`]). Nested calls shadow the outer tenant.
pub async fn with_tenant<F: Future>(tenant_id: impl Into<String>, future: F) -> F::Output {
    CURRENT_TENANT.scope(tenant_id.into(), future).await
}

/// The tenant set by the innermost [`with_tenant`], if any.
pub fn current_tenant() -> Option<String> {
    CURRENT_TENANT.try_with(Clone::clone).ok()
}

/// `future` wrapped so that it runs with the current task's tenant (if any) as its
/// tenant, wherever it is polled: `tokio::spawn(in_current_tenant(work))`. The tenant is
/// read now, when the wrapper is made, not when it first runs.
pub fn in_current_tenant<F: Future>(future: F) -> impl Future<Output = F::Output> {
    let tenant = current_tenant();
    async move {
        match tenant {
            Some(tenant) => CURRENT_TENANT.scope(tenant, future).await,
            None => future.await,
        }
    }
}

/// `tokio::spawn` that carries the current tenant into the new task. A plain `tokio::spawn`
/// starts the task without one: `tokio::task_local!` values do not follow spawned tasks, so
/// `tenant_db()` there fails with [`crate::Error::NoTenantContext`] (never picks another
/// tenant or the shared schema).
pub fn spawn<F>(future: F) -> tokio::task::JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    tokio::spawn(in_current_tenant(future))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tenant_follows_the_task_and_nests() {
        assert_eq!(current_tenant(), None);
        with_tenant("acme", async {
            assert_eq!(current_tenant().as_deref(), Some("acme"));
            with_tenant("globex", async { assert_eq!(current_tenant().as_deref(), Some("globex")) }).await;
            assert_eq!(current_tenant().as_deref(), Some("acme"));
        })
        .await;
        assert_eq!(current_tenant(), None);
    }

    #[tokio::test]
    async fn spawn_carries_the_tenant_and_plain_spawn_does_not() {
        let (carried, lost) = with_tenant("acme", async {
            let carried = spawn(async { current_tenant() }).await.unwrap();
            let lost = tokio::spawn(async { current_tenant() }).await.unwrap();
            (carried, lost)
        })
        .await;
        assert_eq!((carried.as_deref(), lost), (Some("acme"), None));
        // Taken when the wrapper is made.
        let (wrapped,) = with_tenant("globex", async { (in_current_tenant(async { current_tenant() }),) }).await;
        assert_eq!(wrapped.await.as_deref(), Some("globex"));
        assert_eq!(spawn(async { current_tenant() }).await.unwrap(), None);
    }
}
