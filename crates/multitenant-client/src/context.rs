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
}
