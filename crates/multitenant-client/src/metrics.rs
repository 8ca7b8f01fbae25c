//! Metrics: counters, a per-tenant query duration histogram and error counters, kept by the
//! manager (or the sqlx pool) and registered into the application's own
//! [`prometheus_client`] registry; and a snapshot struct for JSON.
//!
//! ```no_run
//! # fn demo(manager: multitenant_client::TenantManager) {
//! use prometheus_client::registry::Registry;
//!
//! let mut registry = Registry::default();               // the application's registry
//! manager.register_metrics(&mut registry);              // multitenant_client_* metrics, read at each scrape
//! let mut text = String::new();
//! prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
//! # }
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;
use serde::Serialize;

use crate::error::Error;

/// The prefix of every metric name: `multitenant_client_checkouts_total`, …
pub const METRICS_PREFIX: &str = "multitenant_client";

/// The `tenant` label of checkouts of the shared schema (`shared_db()`, `begin_shared()`).
/// Tenant ids start with a letter or digit, so no tenant can have it.
pub const SHARED_LABEL: &str = "_shared";
/// The `tenant` label of tenants past [`MetricsConfig::max_tenant_series`].
pub const OTHER_LABEL: &str = "_other";
/// The `tenant` label of errors of an id not (yet) found in the directory: an invalid or
/// unregistered id, or a failure before the lookup answered. Such ids come from requests,
/// so they never become label values of their own.
pub const UNREGISTERED_LABEL: &str = "_unregistered";

/// What the metrics record.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricsConfig {
    /// Upper bounds, in seconds, of the buckets of `query_duration_seconds` (and of
    /// `checkout_duration_seconds`).
    pub duration_buckets: Vec<f64>,
    /// Tenants with series of their own in the per-tenant metrics (the query duration
    /// histogram and the error counters); tenants seen after that many are counted under
    /// `tenant="_other"`. Each tenant costs one series per bucket (16 by default): 1,000
    /// tenants are about 16,000 series.
    pub max_tenant_series: usize,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            duration_buckets: vec![
                0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ],
            max_tenant_series: 1_000,
        }
    }
}

/// Connections of one pool.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ConnectionMetrics {
    pub total: usize,
    pub idle: usize,
    /// Checkouts waiting for a connection.
    pub waiting: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct TenantPoolMetrics {
    pub tenant_id: String,
    pub schema_name: String,
    /// The tenant's own pool (pool-per-tenant mode); `None` in shared-pool mode.
    pub connections: Option<ConnectionMetrics>,
    pub checkouts: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct PoolMetrics {
    /// Pools open: tenant pools, plus the shared pool.
    pub total: usize,
    /// The bound on tenant pools (pool-per-tenant mode) or on tracked tenants (shared-pool mode).
    pub max_pools: usize,
    pub tenants: Vec<TenantPoolMetrics>,
}

/// What [`crate::TenantManager::metrics`] returns (serializes to JSON with serde).
#[derive(Clone, Debug, Serialize)]
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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TenantLabel {
    tenant: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    tenant: String,
    kind: &'static str,
    /// The SQLSTATE of a database error; empty otherwise.
    sqlstate: String,
}

/// Builds the histograms of a family with the configured buckets.
#[derive(Clone, Debug)]
struct Buckets(Vec<f64>);

impl MetricConstructor<Histogram> for Buckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(self.0.iter().copied())
    }
}

/// Who an error or a query belongs to, for the `tenant` label.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Owner<'a> {
    /// A tenant found in the directory.
    Tenant(&'a str),
    /// The shared schema.
    Shared,
    /// An id not found (or not yet looked up) in the directory.
    Unregistered,
}

/// The instruments a manager (or a sqlx pool) and its checkouts share.
#[derive(Debug)]
pub(crate) struct Instruments {
    max_tenant_series: usize,
    /// Tenants with series of their own.
    tenant_series: std::sync::Mutex<usize>,
    pub checkouts: AtomicU64,
    pub errors: AtomicU64,
    pub retries: AtomicU64,
    pub pools_created: AtomicU64,
    pub pools_evicted: AtomicU64,
    query_duration: Family<TenantLabel, Histogram, Buckets>,
    checkout_duration: Histogram,
    errors_by: Family<ErrorLabels, Counter>,
}

impl Instruments {
    pub(crate) fn new(config: &MetricsConfig) -> Instruments {
        Instruments {
            max_tenant_series: config.max_tenant_series,
            tenant_series: std::sync::Mutex::new(0),
            checkouts: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            pools_created: AtomicU64::new(0),
            pools_evicted: AtomicU64::new(0),
            query_duration: Family::new_with_constructor(Buckets(config.duration_buckets.clone())),
            checkout_duration: Histogram::new(config.duration_buckets.iter().copied()),
            errors_by: Family::default(),
        }
    }

    /// The `tenant` label value: the tenant's id while fewer than `max_tenant_series`
    /// tenants have series (or it has one already), `_other` past that.
    fn label(&self, owner: Owner<'_>) -> String {
        match owner {
            Owner::Shared => SHARED_LABEL.to_string(),
            Owner::Unregistered => UNREGISTERED_LABEL.to_string(),
            Owner::Tenant(tenant) => {
                let label = TenantLabel { tenant: tenant.to_string() };
                if self.query_duration.get(&label).is_some() {
                    return label.tenant;
                }
                // A tenant new to the metrics: admitted while there is room.
                let mut admitted = self.tenant_series.lock().expect("tenant series lock");
                if self.query_duration.get(&label).is_some() {
                    label.tenant
                } else if *admitted < self.max_tenant_series {
                    *admitted += 1;
                    drop(self.query_duration.get_or_create(&label));
                    label.tenant
                } else {
                    OTHER_LABEL.to_string()
                }
            }
        }
    }

    /// The query duration histogram of a tenant (looked up once per checkout).
    pub(crate) fn query_histogram(&self, owner: Owner<'_>) -> Histogram {
        self.query_duration.get_or_create_owned(&TenantLabel { tenant: self.label(owner) })
    }

    /// A checkout was handed out after `waited` (directory lookup and pool wait).
    pub(crate) fn checked_out(&self, waited: Duration) {
        self.checkouts.fetch_add(1, Ordering::Relaxed);
        self.checkout_duration.observe(waited.as_secs_f64());
    }

    pub(crate) fn record_error(&self, owner: Owner<'_>, error: &Error) {
        self.record(owner, error.kind(), error.sqlstate(), error);
    }

    /// Counts an error of `kind` (see [`Error::kind`]) with its SQLSTATE, if any.
    pub(crate) fn record(
        &self,
        owner: Owner<'_>,
        kind: &'static str,
        sqlstate: Option<&str>,
        error: &dyn std::fmt::Display,
    ) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let labels =
            ErrorLabels { tenant: self.label(owner), kind, sqlstate: sqlstate.unwrap_or_default().to_string() };
        self.errors_by.get_or_create(&labels).inc();
        tracing::debug!(tenant = %labels.tenant, kind, %error, "multitenant: error");
    }

    /// Encodes the counters and histograms (not the pool gauges, which belong to the
    /// driver's collector).
    pub(crate) fn encode(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let counter = |encoder: &mut DescriptorEncoder, name: &str, help: &str, value: &AtomicU64| {
            let c = ConstCounter::new(value.load(Ordering::Relaxed));
            c.encode(encoder.encode_descriptor(name, help, None, MetricType::Counter)?)
        };
        counter(encoder, "checkouts", "Checkouts handed out (tenant and shared).", &self.checkouts)?;
        counter(encoder, "retries", "Retries of transient failures.", &self.retries)?;
        counter(encoder, "pools_created", "Tenant pools created (pool-per-tenant mode).", &self.pools_created)?;
        counter(
            encoder,
            "pools_evicted",
            "Tenant pools dropped by LRU, idle TTL, evict() or refusal.",
            &self.pools_evicted,
        )?;
        let errors = encoder.encode_descriptor(
            "errors",
            "Errors by tenant, kind (Error::kind) and SQLSTATE (empty when not a database error).",
            None,
            MetricType::Counter,
        )?;
        self.errors_by.encode(errors)?;
        let queries = encoder.encode_descriptor(
            "query_duration",
            "Duration of statements run through tenant checkouts, by tenant.",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        self.query_duration.encode(queries)?;
        let checkouts = encoder.encode_descriptor(
            "checkout_duration",
            "Time to hand out a checkout: directory lookup (cached) and wait for a connection.",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        self.checkout_duration.encode(checkouts)?;
        Ok(())
    }
}

/// Encodes `multitenant_client_pools` and `multitenant_client_connections{pool,state}`.
pub(crate) fn encode_pools<'a>(
    encoder: &mut DescriptorEncoder,
    pools_open: usize,
    pools: impl Iterator<Item = (&'a str, ConnectionMetrics)>,
) -> Result<(), std::fmt::Error> {
    ConstGauge::new(pools_open as i64).encode(encoder.encode_descriptor(
        "pools",
        "Connection pools open.",
        None,
        MetricType::Gauge,
    )?)?;
    let mut family =
        encoder.encode_descriptor("connections", "Connections per pool by state.", None, MetricType::Gauge)?;
    for (pool, c) in pools {
        for (state, value) in [("total", c.total), ("idle", c.idle), ("waiting", c.waiting)] {
            let labels = [("pool", pool), ("state", state)];
            ConstGauge::new(value as i64).encode(family.encode_family(&labels)?)?;
        }
    }
    Ok(())
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
    use prometheus_client::collector::Collector;
    use prometheus_client::registry::Registry;

    #[derive(Debug)]
    struct Test(std::sync::Arc<Instruments>);

    impl Collector for Test {
        fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
            self.0.encode(&mut encoder)?;
            let pools = [("_shared", ConnectionMetrics { total: 5, idle: 5, waiting: 0 })];
            let weird = [("we\"ird", ConnectionMetrics { total: 3, idle: 1, waiting: 0 })];
            encode_pools(&mut encoder, 2, pools.iter().chain(weird.iter()).map(|(p, c)| (*p, c.clone())))
        }
    }

    fn render(registry: &Registry) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
        text
    }

    fn instruments(max_tenant_series: usize) -> std::sync::Arc<Instruments> {
        std::sync::Arc::new(Instruments::new(&MetricsConfig { max_tenant_series, ..MetricsConfig::default() }))
    }

    #[test]
    fn metrics_register_into_the_applications_registry() {
        let instruments = instruments(100);
        let mut registry = Registry::default();
        // The application's own metrics stay next to ours.
        let requests = Counter::<u64>::default();
        registry.register("http_requests", "HTTP requests", requests.clone());
        registry.sub_registry_with_prefix(METRICS_PREFIX).register_collector(Box::new(Test(instruments.clone())));
        requests.inc();
        instruments.checked_out(Duration::from_millis(2));
        instruments.query_histogram(Owner::Tenant("acme")).observe(0.003);
        instruments.query_histogram(Owner::Shared).observe(0.000_1);
        instruments.record_error(Owner::Tenant("acme"), &Error::Timeout("test"));
        instruments.record_error(Owner::Unregistered, &Error::TenantNotFound("made-up".into()));
        let text = render(&registry);
        for expected in [
            "http_requests_total 1",
            "# HELP multitenant_client_checkouts Checkouts handed out (tenant and shared).",
            "# TYPE multitenant_client_checkouts counter",
            "multitenant_client_checkouts_total 1",
            "# TYPE multitenant_client_query_duration_seconds histogram",
            "multitenant_client_query_duration_seconds_bucket{le=\"0.005\",tenant=\"acme\"} 1",
            "multitenant_client_query_duration_seconds_bucket{le=\"0.0025\",tenant=\"acme\"} 0",
            "multitenant_client_query_duration_seconds_count{tenant=\"acme\"} 1",
            "multitenant_client_query_duration_seconds_count{tenant=\"_shared\"} 1",
            "multitenant_client_checkout_duration_seconds_count 1",
            "multitenant_client_errors_total{tenant=\"acme\",kind=\"timeout\",sqlstate=\"\"} 1",
            "multitenant_client_errors_total{tenant=\"_unregistered\",kind=\"tenant_not_found\",sqlstate=\"\"} 1",
            "multitenant_client_connections{pool=\"we\\\"ird\",state=\"total\"} 3",
            "multitenant_client_connections{pool=\"_shared\",state=\"idle\"} 5",
            "multitenant_client_pools 2",
        ] {
            assert!(text.contains(expected), "{expected} missing from\n{text}");
        }
        assert!(!text.contains("made-up"), "an unregistered id never becomes a label: {text}");
        assert!(text.trim_end().ends_with("# EOF"), "{text}");
        // Read at each scrape: later observations show in the next encoding.
        instruments.query_histogram(Owner::Tenant("acme")).observe(0.003);
        assert!(render(&registry).contains("multitenant_client_query_duration_seconds_count{tenant=\"acme\"} 2"));
    }

    #[test]
    fn tenant_series_are_bounded() {
        let instruments = instruments(2);
        for tenant in ["a", "b", "c", "d", "a"] {
            instruments.query_histogram(Owner::Tenant(tenant)).observe(0.001);
        }
        let mut registry = Registry::with_prefix(METRICS_PREFIX);
        registry.register_collector(Box::new(Test(instruments.clone())));
        let text = render(&registry);
        assert!(text.contains("query_duration_seconds_count{tenant=\"a\"} 2"), "{text}");
        assert!(text.contains("query_duration_seconds_count{tenant=\"b\"} 1"), "{text}");
        assert!(text.contains("query_duration_seconds_count{tenant=\"_other\"} 2"), "{text}");
        assert!(!text.contains("tenant=\"c\""), "{text}");
        // Errors of a known tenant keep its label; new tenants past the bound do not get one.
        instruments.record_error(Owner::Tenant("a"), &Error::Disposed);
        instruments.record_error(Owner::Tenant("e"), &Error::Disposed);
        let text = render(&registry);
        assert!(text.contains("errors_total{tenant=\"a\",kind=\"disposed\",sqlstate=\"\"} 1"), "{text}");
        assert!(text.contains("errors_total{tenant=\"_other\",kind=\"disposed\",sqlstate=\"\"} 1"), "{text}");
    }

    #[test]
    fn snapshots_serialize_to_json() {
        let metrics = Metrics {
            pools: PoolMetrics {
                total: 2,
                max_pools: 50,
                tenants: vec![TenantPoolMetrics {
                    tenant_id: "acme".into(),
                    schema_name: "tenant_acme".into(),
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
            timestamp: "2026-01-01T00:00:00Z".into(),
        };
        let json = serde_json::to_value(&metrics).unwrap();
        assert_eq!(json["pools"]["tenants"][0]["connections"]["total"], 3);
        assert_eq!(json["pools"]["tenants"][0]["tenant_id"], "acme");
        assert_eq!(json["checkouts"], 7);
        assert_eq!(json["timestamp"], "2026-01-01T00:00:00Z");
    }

    #[test]
    fn timestamps_are_rfc3339() {
        let now = rfc3339_now();
        assert_eq!(now.len(), 20, "{now}");
        assert!(now.starts_with("20") && now.ends_with('Z') && now.as_bytes()[10] == b'T', "{now}");
    }
}
