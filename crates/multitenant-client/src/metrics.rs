//! Counters the manager keeps, a snapshot struct, and Prometheus text.

use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::error::Error;

/// Connections of one pool.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConnectionMetrics {
    pub total: usize,
    pub idle: usize,
    /// Checkouts waiting for a connection.
    pub waiting: usize,
}

#[derive(Clone, Debug)]
pub struct TenantPoolMetrics {
    pub tenant_id: String,
    pub schema_name: String,
    /// The tenant's own pool (pool-per-tenant mode); `None` in shared-pool mode.
    pub connections: Option<ConnectionMetrics>,
    pub checkouts: u64,
}

#[derive(Clone, Debug)]
pub struct PoolMetrics {
    /// Pools open: tenant pools, plus the shared pool.
    pub total: usize,
    /// The bound on tenant pools (pool-per-tenant mode) or on tracked tenants (shared-pool mode).
    pub max_pools: usize,
    pub tenants: Vec<TenantPoolMetrics>,
}

/// What [`crate::TenantManager::metrics`] returns.
#[derive(Clone, Debug)]
pub struct Metrics {
    pub pools: PoolMetrics,
    pub shared: ConnectionMetrics,
    pub checkouts: u64,
    pub errors: u64,
    pub retries: u64,
    pub pools_created: u64,
    pub pools_evicted: u64,
    /// RFC 3339, UTC.
    pub timestamp: String,
}

/// Counters shared by the manager and its checkouts.
#[derive(Default, Debug)]
pub struct Counters {
    pub checkouts: AtomicU64,
    pub errors: AtomicU64,
    pub retries: AtomicU64,
    pub pools_created: AtomicU64,
    pub pools_evicted: AtomicU64,
}

impl Counters {
    pub fn record_error(&self, tenant_id: &str, error: &Error) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(tenant = tenant_id, %error, "multitenant: error");
    }
}

impl Metrics {
    /// Prometheus exposition text (HELP/TYPE lines, escaped labels) via `prometheus-client`.
    pub fn to_prometheus(&self) -> String {
        let mut registry = Registry::with_prefix("multitenant_client");
        let counter = |value: u64| {
            let c = Counter::<u64>::default();
            c.inc_by(value);
            c
        };
        registry.register("checkouts", "Connections checked out for a tenant", counter(self.checkouts));
        registry.register("errors", "Errors seen on tenant connections", counter(self.errors));
        registry.register("retries", "Retries of transient failures", counter(self.retries));
        registry.register("pools_created", "Tenant pools created", counter(self.pools_created));
        registry.register("pools_evicted", "Tenant pools closed by LRU or idle TTL", counter(self.pools_evicted));
        let pools = Gauge::<i64>::default();
        pools.set(self.pools.total as i64);
        registry.register("pools", "Connection pools open", pools);

        let connections = Family::<Vec<(String, String)>, Gauge<i64>>::default();
        let set = |pool: &str, c: &ConnectionMetrics| {
            // prometheus-client writes label values as they are; the text format needs
            // backslash, double quote and newline escaped.
            let pool = escape_label(pool);
            for (state, value) in [("total", c.total), ("idle", c.idle), ("waiting", c.waiting)] {
                connections
                    .get_or_create(&vec![("pool".into(), pool.clone()), ("state".into(), state.into())])
                    .set(value as i64);
            }
        };
        set("shared", &self.shared);
        for tenant in &self.pools.tenants {
            if let Some(c) = &tenant.connections {
                set(&tenant.tenant_id, c);
            }
        }
        registry.register("connections", "Connections per pool by state", connections);

        let mut text = String::new();
        encode(&mut text, &registry).expect("writing to a String cannot fail");
        text
    }
}

fn escape_label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Now as RFC 3339 in UTC, without a date library.
pub fn rfc3339_now() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_text_has_help_type_and_escaped_labels() {
        let metrics = Metrics {
            pools: PoolMetrics {
                total: 2,
                max_pools: 50,
                tenants: vec![TenantPoolMetrics {
                    tenant_id: "we\"ird".into(),
                    schema_name: "tenant_x".into(),
                    connections: Some(ConnectionMetrics { total: 3, idle: 1, waiting: 0 }),
                    checkouts: 4,
                }],
            },
            shared: ConnectionMetrics { total: 5, idle: 5, waiting: 0 },
            checkouts: 7,
            errors: 1,
            retries: 0,
            pools_created: 1,
            pools_evicted: 0,
            timestamp: rfc3339_now(),
        };
        let text = metrics.to_prometheus();
        assert!(text.contains("# HELP multitenant_client_checkouts Connections checked out for a tenant."), "{text}");
        assert!(text.contains("# TYPE multitenant_client_checkouts counter"), "{text}");
        assert!(text.contains("multitenant_client_checkouts_total 7"), "{text}");
        assert!(text.contains("multitenant_client_connections{pool=\"we\\\"ird\",state=\"total\"} 3"), "{text}");
        assert!(text.contains("multitenant_client_connections{pool=\"shared\",state=\"idle\"} 5"), "{text}");
        assert!(text.trim_end().ends_with("# EOF"), "{text}");
    }

    #[test]
    fn timestamps_are_rfc3339() {
        let now = rfc3339_now();
        assert_eq!(now.len(), 20, "{now}");
        assert!(now.starts_with("20") && now.ends_with('Z') && now.as_bytes()[10] == b'T', "{now}");
    }
}
