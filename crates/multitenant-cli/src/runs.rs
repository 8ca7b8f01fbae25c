//! `mt.run_result` rows (what every run function returns) and their summaries.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio_postgres::types::ToSql;
use tokio_postgres::Client;

use crate::exit::Result;
use crate::output::{opt, shorten, Out, Table};

/// One row of `mt.run_result`. Read as `to_jsonb(r)`, so columns added later (`migration`)
/// are picked up when the server has them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunResult {
    pub tenant_id: Option<String>,
    pub schema_name: Option<String>,
    pub applied: Option<i64>,
    pub pending: Option<i64>,
    pub status: String,
    pub sqlstate: Option<String>,
    pub error: Option<String>,
    pub duration_ms: Option<i64>,
    /// The migration that failed, when the server says (and, as a fallback, the first
    /// pending migration of a failed tenant).
    #[serde(default)]
    pub migration: Option<String>,
}

impl RunResult {
    pub fn is_failure(&self) -> bool {
        self.status == "failed" || self.status == "cancelled"
    }

    pub fn label(&self) -> String {
        match (&self.tenant_id, &self.schema_name) {
            (Some(t), _) => t.clone(),
            (None, Some(s)) => format!("schema {s}"),
            (None, None) => "?".into(),
        }
    }

    /// `acme at 0004_tasks: 42P01 relation "x" does not exist`
    pub fn failure_line(&self) -> String {
        let mut line = self.label();
        if let Some(m) = &self.migration {
            line.push_str(&format!(" at {m}"));
        }
        line.push_str(": ");
        if let Some(s) = &self.sqlstate {
            line.push_str(&format!("{s} "));
        }
        line.push_str(&shorten(self.error.as_deref().unwrap_or(&self.status), 300));
        line
    }
}

/// Runs `sql`, which must select one `to_jsonb(r)` column of run results.
pub async fn query(client: &Client, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<RunResult>> {
    let rows = client.query(sql, params).await?;
    rows.iter().map(|row| parse(row.get::<_, Value>(0))).collect()
}

pub fn parse(value: Value) -> Result<RunResult> {
    serde_json::from_value(value).map_err(|e| crate::exit::CliError::other(format!("unexpected run result: {e}")))
}

/// Fills `migration` of failed tenants from `mt.status` (their first pending migration is
/// the one that failed: a tenant stops at its last good migration) when the server's
/// `mt.run_result` has no `migration` column.
pub async fn fill_failed_migrations(client: &Client, results: &mut [RunResult]) -> Result<()> {
    let ids: Vec<String> = results
        .iter()
        .filter(|r| r.status == "failed" && r.migration.is_none())
        .filter_map(|r| r.tenant_id.clone())
        .collect();
    if ids.is_empty() {
        return Ok(());
    }
    let rows =
        client.query("SELECT tenant_id, pending_names[1] FROM mt.status WHERE tenant_id = ANY($1)", &[&ids]).await?;
    let first: BTreeMap<String, Option<String>> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    for r in results.iter_mut().filter(|r| r.status == "failed" && r.migration.is_none()) {
        if let Some(Some(m)) = r.tenant_id.as_ref().and_then(|t| first.get(t)) {
            r.migration = Some(m.clone());
        }
    }
    Ok(())
}

/// Counts by status, plus the totals a pipeline wants.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub tenants: usize,
    pub migrated: usize,
    pub up_to_date: usize,
    pub failed: usize,
    pub cancelled: usize,
    pub applied: i64,
    pub pending: i64,
    pub by_status: BTreeMap<String, usize>,
}

impl Summary {
    pub fn of(results: &[RunResult]) -> Summary {
        let mut s = Summary { tenants: results.len(), ..Summary::default() };
        for r in results {
            *s.by_status.entry(r.status.clone()).or_default() += 1;
            match r.status.as_str() {
                "migrated" => s.migrated += 1,
                "up_to_date" => s.up_to_date += 1,
                "failed" => s.failed += 1,
                "cancelled" => s.cancelled += 1,
                _ => {}
            }
            s.applied += r.applied.unwrap_or(0);
            s.pending += r.pending.unwrap_or(0);
        }
        s
    }

    /// `10 tenants: 8 migrated, 1 up to date, 1 failed` (other statuses listed too).
    pub fn line(&self) -> String {
        let noun = if self.tenants == 1 { "tenant" } else { "tenants" };
        let mut parts: Vec<String> = Vec::new();
        for (status, n) in &self.by_status {
            parts.push(format!("{n} {}", status.replace('_', " ")));
        }
        if parts.is_empty() {
            parts.push("nothing to do".into());
        }
        format!("{} {noun}: {}", self.tenants, parts.join(", "))
    }

    /// The migrate summary: always says migrated, up to date and failed.
    pub fn migrate_line(&self) -> String {
        let noun = if self.tenants == 1 { "tenant" } else { "tenants" };
        let mut parts = vec![
            format!("{} migrated", self.migrated),
            format!("{} up to date", self.up_to_date),
            format!("{} failed", self.failed),
        ];
        for (status, n) in &self.by_status {
            if !["migrated", "up_to_date", "failed"].contains(&status.as_str()) {
                parts.push(format!("{n} {}", status.replace('_', " ")));
            }
        }
        format!("{} {noun}: {}", self.tenants, parts.join(", "))
    }
}

pub fn failures(results: &[RunResult]) -> Vec<&RunResult> {
    results.iter().filter(|r| r.is_failure()).collect()
}

/// The JSON document of a run command: `{"results": [...], "summary": {...}}`.
pub fn document(results: &[RunResult]) -> Value {
    json!({
        "results": results,
        "summary": Summary::of(results),
        "failures": failures(results),
    })
}

/// A table of run results.
pub fn table(results: &[RunResult]) -> Table {
    let mut t = Table::new(&["TENANT", "SCHEMA", "STATUS", "APPLIED", "PENDING", "MIGRATION", "ERROR"])
        .numeric(&["APPLIED", "PENDING"])
        .status("STATUS");
    for r in results {
        t.row(vec![
            r.tenant_id.clone().unwrap_or_default(),
            opt(&r.schema_name),
            r.status.clone(),
            opt(&r.applied),
            opt(&r.pending),
            opt(&r.migration),
            r.error
                .as_deref()
                .map(|e| shorten(&format!("{} {e}", r.sqlstate.as_deref().unwrap_or("")), 80))
                .unwrap_or_default(),
        ]);
    }
    t
}

/// Prints a run command's outcome and returns its exit code.
pub fn print(out: &Out, what: &str, results: &[RunResult]) -> crate::exit::ExitCode {
    let summary = Summary::of(results);
    if out.json {
        out.json(&document(results));
    } else {
        if !results.is_empty() {
            out.table(&table(results));
        }
        out.line(format!("{what}: {}", summary.line()));
        for f in failures(results) {
            out.line(format!("  {} {}", out.status(&f.status), f.failure_line()));
        }
    }
    if summary.failed + summary.cancelled > 0 {
        crate::exit::ExitCode::TenantsFailed
    } else {
        crate::exit::ExitCode::Ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(tenant: &str, status: &str) -> RunResult {
        RunResult {
            tenant_id: Some(tenant.into()),
            schema_name: Some(format!("tenant_{tenant}")),
            applied: Some(1),
            pending: Some(0),
            status: status.into(),
            ..RunResult::default()
        }
    }

    #[test]
    fn parses_run_results_with_and_without_migration() {
        let old = parse(json!({"tenant_id": "a", "schema_name": "tenant_a", "applied": 2, "pending": 0,
            "status": "migrated", "sqlstate": null, "error": null, "duration_ms": 12}))
        .unwrap();
        assert_eq!(old.migration, None);
        assert_eq!(old.applied, Some(2));
        let new = parse(json!({"tenant_id": "b", "schema_name": "tenant_b", "applied": 1, "pending": 3,
            "status": "failed", "sqlstate": "42P01", "error": "relation \"x\" does not exist", "duration_ms": 5,
            "migration": "0004_tasks"}))
        .unwrap();
        assert_eq!(new.failure_line(), "b at 0004_tasks: 42P01 relation \"x\" does not exist");
        let shared = parse(json!({"tenant_id": null, "schema_name": "public", "applied": 0, "pending": 0,
            "status": "up_to_date", "sqlstate": null, "error": null, "duration_ms": 1}))
        .unwrap();
        assert_eq!(shared.label(), "schema public");
    }

    #[test]
    fn summaries_count_and_say_what_a_pipeline_needs() {
        let mut failed = result("c", "failed");
        failed.migration = Some("0002_x".into());
        failed.sqlstate = Some("23505".into());
        failed.error = Some("duplicate key".into());
        let results = vec![result("a", "migrated"), result("b", "up_to_date"), failed];
        let s = Summary::of(&results);
        assert_eq!((s.tenants, s.migrated, s.up_to_date, s.failed, s.applied), (3, 1, 1, 1, 3));
        assert_eq!(s.migrate_line(), "3 tenants: 1 migrated, 1 up to date, 1 failed");
        assert_eq!(s.line(), "3 tenants: 1 failed, 1 migrated, 1 up to date");
        let doc = document(&results);
        assert_eq!(doc["summary"]["failed"], 1);
        assert_eq!(doc["failures"][0]["migration"], "0002_x");
        assert_eq!(doc["results"].as_array().unwrap().len(), 3);
        assert_eq!(Summary::of(&[]).migrate_line(), "0 tenants: 0 migrated, 0 up to date, 0 failed");
        let marked = Summary::of(&[result("a", "marked")]);
        assert_eq!(marked.migrate_line(), "1 tenant: 0 migrated, 0 up to date, 0 failed, 1 marked");
    }

    #[test]
    fn run_commands_exit_with_failed_tenants() {
        let out = Out { json: true, ..Out::plain() };
        assert_eq!(print(&out, "x", &[result("a", "seeded")]), crate::exit::ExitCode::Ok);
        assert_eq!(print(&out, "x", &[result("a", "failed")]), crate::exit::ExitCode::TenantsFailed);
        assert_eq!(print(&out, "x", &[result("a", "cancelled")]), crate::exit::ExitCode::TenantsFailed);
    }
}
