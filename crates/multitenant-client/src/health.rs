//! Health checks shaped like the predecessor's, so a web handler can return them as they are:
//! [`HealthResult`] serializes to JSON with serde, and [`HealthResult::http_status`] is the status.

use std::time::Duration;

use serde::Serialize;

/// ok: answers in time and nobody waits; degraded: answers, but checkouts are queueing or
/// slow; unhealthy: no answer, an error, or the schema is gone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    Ok,
    Degraded,
    Unhealthy,
}

impl HealthStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Ok => "ok",
            HealthStatus::Degraded => "degraded",
            HealthStatus::Unhealthy => "unhealthy",
        }
    }
}

#[derive(Clone, Debug)]
pub struct HealthCheckOptions {
    /// Only these tenants; by default every tenant the manager has seen recently.
    pub tenant_ids: Option<Vec<String>>,
    /// Actually query each tenant (otherwise only pool state is looked at).
    pub ping: bool,
    pub ping_timeout: Duration,
    pub include_shared: bool,
    /// A ping slower than this makes the pool degraded.
    pub degraded_after: Duration,
}

impl Default for HealthCheckOptions {
    fn default() -> Self {
        HealthCheckOptions {
            tenant_ids: None,
            ping: true,
            ping_timeout: Duration::from_secs(3),
            include_shared: true,
            degraded_after: Duration::from_millis(1000),
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct PoolHealth {
    pub tenant_id: String,
    pub schema_name: String,
    pub status: HealthStatus,
    pub total_connections: usize,
    pub idle_connections: usize,
    pub waiting_requests: usize,
    pub response_time_ms: Option<u64>,
    pub error: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct SharedHealth {
    pub status: HealthStatus,
    pub response_time_ms: Option<u64>,
    pub error: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct HealthResult {
    /// No pool unhealthy and the shared database (when checked) not unhealthy.
    pub healthy: bool,
    pub pools: Vec<PoolHealth>,
    pub shared_db: Option<SharedHealth>,
    pub total_pools: usize,
    pub degraded_pools: usize,
    pub unhealthy_pools: usize,
    pub timestamp: String,
    pub duration_ms: u64,
}

impl HealthResult {
    /// The HTTP status a load balancer probe should answer with.
    pub fn http_status(&self) -> u16 {
        if self.healthy {
            200
        } else {
            503
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_serializes_to_json_with_lowercase_statuses() {
        let health = HealthResult {
            healthy: false,
            pools: vec![PoolHealth {
                tenant_id: "acme".into(),
                schema_name: "tenant_acme".into(),
                status: HealthStatus::Unhealthy,
                total_connections: 2,
                idle_connections: 1,
                waiting_requests: 0,
                response_time_ms: None,
                error: Some("42P01: relation \"users\" does not exist".into()),
            }],
            shared_db: Some(SharedHealth { status: HealthStatus::Ok, response_time_ms: Some(1), error: None }),
            total_pools: 1,
            degraded_pools: 0,
            unhealthy_pools: 1,
            timestamp: "2026-01-01T00:00:00Z".into(),
            duration_ms: 3,
        };
        let json = serde_json::to_value(&health).unwrap();
        assert_eq!(json["healthy"], false);
        assert_eq!(json["pools"][0]["status"], "unhealthy");
        assert_eq!(json["pools"][0]["response_time_ms"], serde_json::Value::Null);
        assert_eq!(json["pools"][0]["error"], "42P01: relation \"users\" does not exist");
        assert_eq!(json["shared_db"]["status"], "ok");
        assert_eq!(health.http_status(), 503);
        assert_eq!(serde_json::to_string(&HealthStatus::Degraded).unwrap(), "\"degraded\"");
    }
}
