//! Every command but `migrate` and the menu: each one or two SQL calls and their output.

use serde_json::{json, Value};
use tokio_postgres::Client;

use crate::cli::{
    AdoptArgs, CloneArgs, ConfigCommand, ConvertArgs, CreateArgs, DriftArgs, DropArgs, GenerateArgs, HealthArgs,
    MetricsArgs, SeedArgs, StatusArgs, SyncArgs,
};
use crate::exit::{CliError, ExitCode, Result};
use crate::output::{shorten, Out, Table};
use crate::runs;

// ---------------------------------------------------------------- init and config

pub async fn init(out: &Out, client: &Client) -> Result<ExitCode> {
    let existed: bool =
        client.query_one("SELECT EXISTS (SELECT FROM pg_extension WHERE extname = 'multitenant')", &[]).await?.get(0);
    client.batch_execute("CREATE EXTENSION IF NOT EXISTS multitenant").await?;
    let version: String =
        client.query_one("SELECT extversion FROM pg_extension WHERE extname = 'multitenant'", &[]).await?.get(0);
    let settings = settings(client, None).await?;
    if out.json {
        out.json(&json!({"extension": {"version": version, "created": !existed}, "settings": settings}));
    } else {
        let verb = if existed { "is installed" } else { "created" };
        out.line(format!("extension multitenant {version} {verb}"));
        print_settings(out, &settings);
    }
    Ok(ExitCode::Ok)
}

async fn settings(client: &Client, key: Option<&str>) -> Result<Vec<Value>> {
    let rows = client
        .query(
            "SELECT key, value, default_value, is_default, description FROM mt.settings \
              WHERE $1::text IS NULL OR key = $1 ORDER BY key",
            &[&key],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            json!({
                "key": r.get::<_, String>(0),
                "value": r.get::<_, Option<String>>(1),
                "default_value": r.get::<_, Option<String>>(2),
                "is_default": r.get::<_, Option<bool>>(3),
                "description": r.get::<_, Option<String>>(4),
            })
        })
        .collect())
}

fn print_settings(out: &Out, settings: &[Value]) {
    let mut t = Table::new(&["KEY", "VALUE", "DEFAULT", "DESCRIPTION"]);
    for s in settings {
        let is_default = s["is_default"].as_bool().unwrap_or(false);
        t.row(vec![
            s["key"].as_str().unwrap_or_default().to_string(),
            shorten(s["value"].as_str().unwrap_or_default(), 60),
            if is_default { "yes".into() } else { "no".into() },
            shorten(s["description"].as_str().unwrap_or_default(), 70),
        ]);
    }
    out.table(&t);
}

pub async fn config(out: &Out, client: &Client, cmd: &ConfigCommand) -> Result<ExitCode> {
    match cmd {
        ConfigCommand::Get { key: None } => {
            let settings = settings(client, None).await?;
            if out.json {
                out.json(&json!({ "settings": settings }));
            } else {
                print_settings(out, &settings);
            }
        }
        ConfigCommand::Get { key: Some(key) } => {
            let value: Option<String> = client.query_one("SELECT mt.get_config($1)", &[key]).await?.get(0);
            print_key_value(out, key, value.as_deref(), None);
        }
        ConfigCommand::Set { key, value } => {
            let new: Option<String> = client.query_one("SELECT mt.set_config($1, $2)", &[key, value]).await?.get(0);
            print_key_value(out, key, new.as_deref(), Some("set"));
        }
        ConfigCommand::Reset { key } => {
            let new: Option<String> = client.query_one("SELECT mt.reset_config($1)", &[key]).await?.get(0);
            print_key_value(out, key, new.as_deref(), Some("reset"));
        }
    }
    Ok(ExitCode::Ok)
}

fn print_key_value(out: &Out, key: &str, value: Option<&str>, action: Option<&str>) {
    if out.json {
        out.json(&json!({"key": key, "value": value}));
    } else if let Some(action) = action {
        out.line(format!("{key} {action}: {}", value.unwrap_or("")));
    } else {
        out.line(value.unwrap_or(""));
    }
}

// ---------------------------------------------------------------- status and sync

/// Tenant ids that are not registered, as a bad-input error.
async fn check_tenants(client: &Client, ids: &Option<Vec<String>>) -> Result<()> {
    let Some(ids) = ids else { return Ok(()) };
    let rows = client
        .query("SELECT id FROM unnest($1::text[]) id WHERE id NOT IN (SELECT tenant_id FROM mt.tenants)", &[ids])
        .await?;
    if rows.is_empty() {
        return Ok(());
    }
    let unknown: Vec<String> = rows.iter().map(|r| format!("\"{}\"", r.get::<_, String>(0))).collect();
    Err(CliError::bad_input(format!("unknown tenant(s): {}", unknown.join(", ")))
        .with_hint("mt tenant list shows the tenants"))
}

pub async fn status(out: &Out, client: &Client, args: &StatusArgs) -> Result<ExitCode> {
    let ids = args.filter.ids();
    check_tenants(client, &ids).await?;
    let rows = client
        .query(
            "SELECT tenant_id, schema_name, format, applied, pending, last_applied_at::text, pending_names \
               FROM mt.status WHERE ($1::text[] IS NULL OR tenant_id = ANY($1)) AND (NOT $2 OR pending > 0) \
              ORDER BY tenant_id",
            &[&ids, &args.pending],
        )
        .await?;
    let shared_pending: Option<i32> = client.query_one("SELECT mt.shared_pending()", &[]).await?.get(0);
    let registered: i64 =
        client.query_one("SELECT count(*) FROM mt.migrations WHERE scope = 'tenant'", &[]).await?.get(0);
    let tenants: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({
                "tenant_id": r.get::<_, String>(0),
                "schema_name": r.get::<_, String>(1),
                "format": r.get::<_, Option<String>>(2),
                "applied": r.get::<_, Option<i32>>(3),
                "pending": r.get::<_, Option<i32>>(4),
                "last_applied_at": r.get::<_, Option<String>>(5),
                "pending_names": r.get::<_, Option<Vec<String>>>(6).unwrap_or_default(),
            })
        })
        .collect();
    let behind = tenants.iter().filter(|t| t["pending"].as_i64().unwrap_or(0) > 0).count();
    let pending_total: i64 = tenants.iter().map(|t| t["pending"].as_i64().unwrap_or(0)).sum();
    let summary = json!({
        "tenants": tenants.len(),
        "behind": behind,
        "up_to_date": tenants.len() - behind,
        "pending_migrations": pending_total,
        "registered_migrations": registered,
    });
    if out.json {
        out.json(&json!({"shared_pending": shared_pending, "tenants": tenants, "summary": summary}));
    } else {
        let mut t = Table::new(&["TENANT", "SCHEMA", "FORMAT", "APPLIED", "PENDING", "LAST APPLIED", "NEXT"])
            .numeric(&["APPLIED", "PENDING"]);
        for x in &tenants {
            let names = x["pending_names"].as_array().cloned().unwrap_or_default();
            let next = match names.len() {
                0 => String::new(),
                1 => names[0].as_str().unwrap_or_default().to_string(),
                n => format!("{} (+{})", names[0].as_str().unwrap_or_default(), n - 1),
            };
            t.row(vec![
                x["tenant_id"].as_str().unwrap_or_default().into(),
                x["schema_name"].as_str().unwrap_or_default().into(),
                x["format"].as_str().unwrap_or_default().into(),
                x["applied"].to_string(),
                if x["pending"].as_i64().unwrap_or(0) > 0 {
                    out.status("pending").replace("pending", &x["pending"].to_string())
                } else {
                    "0".into()
                },
                x["last_applied_at"].as_str().map(|s| s.chars().take(19).collect()).unwrap_or_default(),
                next,
            ]);
        }
        if !t.is_empty() {
            out.table(&t);
        }
        out.line(format!(
            "{} tenant(s), {behind} with pending migrations ({pending_total} in all), {registered} tenant migration(s) registered; shared schema: {}",
            tenants.len(),
            match shared_pending {
                None => "no tracking table yet".to_string(),
                Some(0) => "up to date".to_string(),
                Some(n) => format!("{n} pending"),
            }
        ));
    }
    if args.check && (behind > 0 || shared_pending.unwrap_or(0) > 0) {
        return Ok(ExitCode::Pending);
    }
    Ok(ExitCode::Ok)
}

pub async fn sync(out: &Out, client: &Client, args: &SyncArgs) -> Result<ExitCode> {
    let ids = args.filter.ids();
    check_tenants(client, &ids).await?;
    if args.status {
        let rows = client
            .query(
                "SELECT tenant_id, schema_name, format, missing, orphans FROM mt.sync_status \
                  WHERE $1::text[] IS NULL OR tenant_id = ANY($1) ORDER BY tenant_id",
                &[&ids],
            )
            .await?;
        let tenants: Vec<Value> = rows
            .iter()
            .map(|r| {
                json!({
                    "tenant_id": r.get::<_, String>(0),
                    "schema_name": r.get::<_, String>(1),
                    "format": r.get::<_, Option<String>>(2),
                    "missing": r.get::<_, Option<Vec<String>>>(3).unwrap_or_default(),
                    "orphans": r.get::<_, Option<Vec<String>>>(4).unwrap_or_default(),
                })
            })
            .collect();
        let in_sync = tenants
            .iter()
            .filter(|t| {
                t["missing"].as_array().is_some_and(Vec::is_empty) && t["orphans"].as_array().is_some_and(Vec::is_empty)
            })
            .count();
        if out.json {
            out.json(&json!({"tenants": tenants, "summary": {"tenants": tenants.len(), "in_sync": in_sync}}));
        } else {
            let mut t =
                Table::new(&["TENANT", "SCHEMA", "FORMAT", "MISSING", "ORPHANS"]).numeric(&["MISSING", "ORPHANS"]);
            for x in &tenants {
                t.row(vec![
                    x["tenant_id"].as_str().unwrap_or_default().into(),
                    x["schema_name"].as_str().unwrap_or_default().into(),
                    x["format"].as_str().unwrap_or_default().into(),
                    x["missing"].as_array().map_or(0, Vec::len).to_string(),
                    x["orphans"].as_array().map_or(0, Vec::len).to_string(),
                ]);
            }
            if !t.is_empty() {
                out.table(&t);
            }
            out.line(format!("{} tenant(s), {in_sync} in sync", tenants.len()));
        }
        return Ok(ExitCode::Ok);
    }
    let results = if args.mark_missing {
        runs::query(client, "SELECT to_jsonb(r) FROM mt.mark_missing($1, $2) r", &[&ids, &args.concurrency]).await?
    } else {
        runs::query(
            client,
            "SELECT to_jsonb(r) FROM mt.clean_orphans($1, $2, $3) r",
            &[&ids, &args.dry_run, &args.concurrency],
        )
        .await?
    };
    let what = if args.mark_missing { "mark-missing" } else { "clean-orphans" };
    Ok(runs::print(out, what, &results))
}

pub async fn convert(out: &Out, client: &Client, args: &ConvertArgs) -> Result<ExitCode> {
    let ids = args.filter.ids();
    check_tenants(client, &ids).await?;
    let results = runs::query(
        client,
        "SELECT to_jsonb(r) FROM mt.convert_tracking($1, $2, $3, $4) r",
        &[&args.to.as_sql(), &ids, &args.dry_run, &args.concurrency],
    )
    .await?;
    Ok(runs::print(out, "convert-tracking", &results))
}

// ---------------------------------------------------------------- drift

pub async fn drift(out: &Out, client: &Client, args: &DriftArgs) -> Result<ExitCode> {
    let ids = args.filter.ids();
    check_tenants(client, &ids).await?;
    let (summary, differences): (Vec<Value>, Vec<Value>) = match &args.reference {
        None => {
            let summary = client
                .query(
                    "SELECT tenant_id, schema_name, has_drift, differences FROM mt.drift_summary \
                      WHERE $1::text[] IS NULL OR tenant_id = ANY($1) ORDER BY tenant_id",
                    &[&ids],
                )
                .await?;
            let summary: Vec<Value> = summary
                .iter()
                .map(|r| {
                    json!({"tenant_id": r.get::<_, String>(0), "schema_name": r.get::<_, String>(1),
                           "has_drift": r.get::<_, bool>(2), "differences": r.get::<_, i64>(3)})
                })
                .collect();
            let any = summary.iter().any(|s| s["has_drift"] == true);
            let differences = if args.summary || !any {
                Vec::new()
            } else {
                client
                    .query(
                        "SELECT tenant_id, object_type, object_name, change, expected, actual FROM mt.drift_report \
                          WHERE $1::text[] IS NULL OR tenant_id = ANY($1) ORDER BY tenant_id, object_type, object_name",
                        &[&ids],
                    )
                    .await?
                    .iter()
                    .map(difference)
                    .collect()
            };
            (summary, differences)
        }
        Some(reference) => {
            let mut summary = Vec::new();
            let mut differences = Vec::new();
            for tenant in ids.iter().flatten() {
                let rows = client
                    .query(
                        "SELECT $1::text, object_type, object_name, change, expected, actual \
                           FROM mt.tenant_drift($1, $2) ORDER BY object_type, object_name",
                        &[tenant, reference],
                    )
                    .await?;
                let schema: String = client.query_one("SELECT mt.tenant_schema($1)", &[tenant]).await?.get(0);
                summary.push(json!({"tenant_id": tenant, "schema_name": schema, "has_drift": !rows.is_empty(),
                                    "differences": rows.len()}));
                if !args.summary {
                    differences.extend(rows.iter().map(difference));
                }
            }
            (summary, differences)
        }
    };
    let drifted = summary.iter().filter(|s| s["has_drift"] == true).count();
    let reference = args.reference.clone().unwrap_or_else(|| "mt_template".to_string());
    if out.json {
        out.json(&json!({
            "reference": reference,
            "summary": summary,
            "differences": differences,
            "tenants_with_drift": drifted,
        }));
    } else {
        let mut t = Table::new(&["TENANT", "SCHEMA", "DRIFT", "DIFFERENCES"]).numeric(&["DIFFERENCES"]).status("DRIFT");
        for s in &summary {
            t.row(vec![
                s["tenant_id"].as_str().unwrap_or_default().into(),
                s["schema_name"].as_str().unwrap_or_default().into(),
                if s["has_drift"] == true { "changed".into() } else { "ok".into() },
                s["differences"].to_string(),
            ]);
        }
        if !t.is_empty() {
            out.table(&t);
        }
        out.line(format!("{} tenant(s) compared with {reference}, {drifted} drifted", summary.len()));
        if !differences.is_empty() {
            out.line("");
            let mut d = Table::new(&["TENANT", "TYPE", "OBJECT", "CHANGE", "DETAIL"]).status("CHANGE");
            for x in &differences {
                d.row(vec![
                    x["tenant_id"].as_str().unwrap_or_default().into(),
                    x["object_type"].as_str().unwrap_or_default().into(),
                    x["object_name"].as_str().unwrap_or_default().into(),
                    x["change"].as_str().unwrap_or_default().into(),
                    shorten(&change_detail(&x["expected"], &x["actual"]), 100),
                ]);
            }
            out.table(&d);
        }
    }
    Ok(if drifted > 0 { ExitCode::DriftFound } else { ExitCode::Ok })
}

/// What differs between two definitions: `type: character varying(255) → character varying(100)`.
pub fn change_detail(expected: &Value, actual: &Value) -> String {
    let show = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            let mut keys: Vec<&String> = e.keys().chain(a.keys()).collect();
            keys.sort();
            keys.dedup();
            keys.into_iter()
                .filter(|k| e.get(*k) != a.get(*k))
                .map(|k| {
                    format!(
                        "{k}: {} → {}",
                        show(e.get(k).unwrap_or(&Value::Null)),
                        show(a.get(k).unwrap_or(&Value::Null))
                    )
                })
                .collect::<Vec<_>>()
                .join("; ")
        }
        (Value::Null, Value::Null) => String::new(),
        (Value::Null, a) => format!("only in the tenant: {}", show(a)),
        (e, Value::Null) => format!("only in the reference: {}", show(e)),
        (e, a) => format!("{} → {}", show(e), show(a)),
    }
}

fn difference(r: &tokio_postgres::Row) -> Value {
    json!({
        "tenant_id": r.get::<_, String>(0),
        "object_type": r.get::<_, Option<String>>(1),
        "object_name": r.get::<_, Option<String>>(2),
        "change": r.get::<_, Option<String>>(3),
        "expected": r.get::<_, Option<Value>>(4),
        "actual": r.get::<_, Option<Value>>(5),
    })
}

// ---------------------------------------------------------------- tenants

fn tenant_row(r: &tokio_postgres::Row) -> Value {
    json!({
        "tenant_id": r.get::<_, String>("tenant_id"),
        "schema_name": r.get::<_, String>("schema_name"),
        "role_name": r.get::<_, Option<String>>("role_name"),
        "status": r.get::<_, String>("status"),
        "created_at": r.get::<_, Option<String>>("created_at"),
        "metadata": r.get::<_, Option<Value>>("metadata"),
    })
}

const TENANT_COLUMNS: &str = "tenant_id, schema_name, role_name, status, created_at::text AS created_at, metadata";

pub async fn tenant_create(out: &Out, client: &Client, args: &CreateArgs) -> Result<ExitCode> {
    if args.ids.len() > 1 {
        if args.metadata.is_some() || args.if_not_exists || args.no_migrate || args.no_template {
            return Err(CliError::bad_input(
                "--metadata, --if-not-exists, --no-migrate and --no-template take one tenant id",
            ));
        }
        let results = runs::query(
            client,
            "SELECT to_jsonb(r) FROM mt.create_tenants($1, $2, $3) r",
            &[&args.ids, &args.concurrency, &args.seed],
        )
        .await?;
        return Ok(runs::print(out, "create", &results));
    }
    let metadata: Value = match &args.metadata {
        Some(text) => {
            serde_json::from_str(text).map_err(|e| CliError::bad_input(format!("--metadata is not JSON: {e}")))?
        }
        None => json!({}),
    };
    let row = client
        .query_one(
            &format!("SELECT {TENANT_COLUMNS} FROM mt.create_tenant($1, $2, $3, $4, $5, $6)"),
            &[&args.ids[0], &metadata, &args.if_not_exists, &!args.no_migrate, &args.seed, &!args.no_template],
        )
        .await?;
    let tenant = tenant_row(&row);
    if out.json {
        out.json(&json!({ "tenants": [tenant] }));
    } else {
        out.line(format!(
            "tenant {} {}: schema {}, role {}",
            tenant["tenant_id"].as_str().unwrap_or_default(),
            out.status("created"),
            tenant["schema_name"].as_str().unwrap_or_default(),
            tenant["role_name"].as_str().unwrap_or("(none)")
        ));
    }
    Ok(ExitCode::Ok)
}

pub async fn tenant_drop(out: &Out, client: &Client, args: &DropArgs) -> Result<ExitCode> {
    if !args.yes {
        if !out.interactive {
            return Err(CliError::bad_input("dropping tenants needs --yes when not run on a terminal"));
        }
        let prompt = format!(
            "Drop tenant(s) {} with their schema and role{}?",
            args.ids.join(", "),
            if args.force { " and every object in them" } else { "" }
        );
        let ok = dialoguer::Confirm::new()
            .with_prompt(prompt)
            .default(false)
            .interact()
            .map_err(|e| CliError::other(e.to_string()))?;
        if !ok {
            return Err(CliError::bad_input("not confirmed: nothing was dropped"));
        }
    }
    let mut dropped = Vec::new();
    for id in &args.ids {
        let objects: Option<i64> =
            client.query_one("SELECT mt.drop_tenant($1, $2, $3)", &[id, &args.force, &args.if_exists]).await?.get(0);
        dropped.push(json!({"tenant_id": id, "objects": objects}));
        if !out.json {
            out.line(format!("tenant {id} dropped ({} object(s))", objects.unwrap_or(0)));
        }
    }
    if out.json {
        out.json(&json!({ "dropped": dropped }));
    }
    Ok(ExitCode::Ok)
}

pub async fn tenant_list(out: &Out, client: &Client) -> Result<ExitCode> {
    let rows = client
        .query(
            "SELECT t.tenant_id, t.schema_name, t.role_name, t.status, t.created_at::text AS created_at, t.metadata, \
                    s.pending \
               FROM mt.tenants t LEFT JOIN mt.status s USING (tenant_id) ORDER BY t.tenant_id",
            &[],
        )
        .await?;
    let tenants: Vec<Value> = rows
        .iter()
        .map(|r| {
            let mut t = tenant_row(r);
            t["pending"] = json!(r.get::<_, Option<i32>>("pending"));
            t
        })
        .collect();
    if out.json {
        out.json(&json!({ "tenants": tenants }));
    } else {
        let mut t = Table::new(&["TENANT", "SCHEMA", "ROLE", "STATUS", "PENDING", "CREATED"])
            .numeric(&["PENDING"])
            .status("STATUS");
        for x in &tenants {
            t.row(vec![
                x["tenant_id"].as_str().unwrap_or_default().into(),
                x["schema_name"].as_str().unwrap_or_default().into(),
                x["role_name"].as_str().unwrap_or_default().into(),
                x["status"].as_str().unwrap_or_default().into(),
                x["pending"].as_i64().map(|p| p.to_string()).unwrap_or_default(),
                x["created_at"].as_str().map(|s| s.chars().take(19).collect()).unwrap_or_default(),
            ]);
        }
        if !t.is_empty() {
            out.table(&t);
        }
        out.line(format!("{} tenant(s)", tenants.len()));
    }
    Ok(ExitCode::Ok)
}

pub async fn tenant_clone(out: &Out, client: &Client, args: &CloneArgs) -> Result<ExitCode> {
    let anonymize: Option<Value> = match &args.anonymize {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| CliError::bad_input(format!("cannot read {}: {e}", path.display())))?;
            Some(
                serde_json::from_str(&text)
                    .map_err(|e| CliError::bad_input(format!("{} is not JSON: {e}", path.display())))?,
            )
        }
        None => None,
    };
    let row = client
        .query_one(
            &format!("SELECT {TENANT_COLUMNS} FROM mt.clone_tenant($1, $2, $3, $4)"),
            &[&args.source, &args.target, &args.include_data, &anonymize],
        )
        .await?;
    let tenant = tenant_row(&row);
    if out.json {
        out.json(&json!({"source": args.source, "tenant": tenant, "include_data": args.include_data}));
    } else {
        out.line(format!(
            "tenant {} cloned from {}{}: schema {}",
            args.target,
            args.source,
            if args.include_data { " with its data" } else { "" },
            tenant["schema_name"].as_str().unwrap_or_default()
        ));
    }
    Ok(ExitCode::Ok)
}

pub async fn tenant_adopt(out: &Out, client: &Client, args: &AdoptArgs) -> Result<ExitCode> {
    let rows = client
        .query(
            "SELECT tenant_id, schema_name, role_name, objects_reassigned FROM mt.adopt_tenants($1, $2, $3)",
            &[&args.pattern, &args.dry_run, &!args.no_roles],
        )
        .await?;
    let adopted: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({"tenant_id": r.get::<_, String>(0), "schema_name": r.get::<_, String>(1),
                   "role_name": r.get::<_, Option<String>>(2), "objects_reassigned": r.get::<_, Option<i64>>(3)})
        })
        .collect();
    if out.json {
        out.json(&json!({"dry_run": args.dry_run, "adopted": adopted}));
    } else {
        let mut t = Table::new(&["TENANT", "SCHEMA", "ROLE", "OBJECTS"]).numeric(&["OBJECTS"]);
        for a in &adopted {
            t.row(vec![
                a["tenant_id"].as_str().unwrap_or_default().into(),
                a["schema_name"].as_str().unwrap_or_default().into(),
                a["role_name"].as_str().unwrap_or_default().into(),
                a["objects_reassigned"].as_i64().map(|n| n.to_string()).unwrap_or_default(),
            ]);
        }
        if !t.is_empty() {
            out.table(&t);
        }
        let verb = if args.dry_run { "would be adopted" } else { "adopted" };
        out.line(format!("{} schema(s) {verb}", adopted.len()));
    }
    Ok(ExitCode::Ok)
}

// ---------------------------------------------------------------- seeds

pub async fn seed(out: &Out, client: &Client, args: &SeedArgs) -> Result<ExitCode> {
    let scope = if args.shared { "shared" } else { "tenant" };
    let mut registered: Option<&str> = None;
    if let Some(path) = &args.file {
        let bytes =
            std::fs::read(path).map_err(|e| CliError::bad_input(format!("cannot read {}: {e}", path.display())))?;
        let sql = String::from_utf8(bytes)
            .map_err(|_| CliError::bad_input(format!("{} is not UTF-8 text", path.display())))?;
        let existing = client.query_opt("SELECT scope, sql FROM mt.seeds WHERE name = $1", &[&args.name]).await?;
        registered = Some(match existing {
            Some(row)
                if row.get::<_, String>(0) == scope
                    && row.get::<_, Option<String>>(1).as_deref() == Some(sql.as_str()) =>
            {
                "unchanged"
            }
            Some(_) if !args.replace => {
                return Err(CliError::bad_input(format!(
                    "{}: seed \"{}\" is registered with other SQL (or scope)",
                    path.display(),
                    args.name
                ))
                .with_hint("pass --replace to register the file's SQL instead"))
            }
            existing => {
                client
                    .query_one(
                        "SELECT mt.register_seed($1, $2, $3, $4)::text",
                        &[&args.name, &sql, &scope, &args.replace],
                    )
                    .await?;
                if existing.is_some() {
                    "replaced"
                } else {
                    "added"
                }
            }
        });
    }
    let ids = (!args.tenants.is_empty()).then(|| args.tenants.clone());
    let results = if args.shared {
        let status: String =
            client.query_one("SELECT mt.seed_shared($1, $2)", &[&args.name, &args.force]).await?.get(0);
        let schema: Option<String> = client.query_one("SELECT mt.get_config('shared_schema')", &[]).await?.get(0);
        vec![runs::RunResult { schema_name: schema, status, ..runs::RunResult::default() }]
    } else if args.all || ids.is_some() {
        check_tenants(client, &ids).await?;
        runs::query(
            client,
            "SELECT to_jsonb(r) FROM mt.seed_all($1, $2, $3, $4) r",
            &[&args.name, &args.concurrency, &ids, &args.force],
        )
        .await?
    } else if registered.is_some() {
        Vec::new()
    } else {
        return Err(CliError::bad_input("nothing to do: pass --tenant, --all or --shared (or --file to register)"));
    };
    let summary = runs::Summary::of(&results);
    let code = if summary.failed + summary.cancelled > 0 { ExitCode::TenantsFailed } else { ExitCode::Ok };
    if out.json {
        let mut doc = runs::document(&results);
        doc["seed"] = json!(args.name);
        doc["scope"] = json!(scope);
        doc["registered"] = json!(registered);
        out.json(&doc);
    } else {
        if let Some(r) = registered {
            out.line(format!("seed {} ({scope}): {}", args.name, out.status(r)));
        }
        if !results.is_empty() {
            out.table(&runs::table(&results));
            out.line(format!("seed {}: {}", args.name, summary.line()));
            for f in runs::failures(&results) {
                out.line(format!("  {} {}", out.status(&f.status), f.failure_line()));
            }
        }
    }
    Ok(code)
}

// ---------------------------------------------------------------- health and metrics

pub async fn health(out: &Out, client: &Client, args: &HealthArgs) -> Result<ExitCode> {
    let ids = args.filter.ids();
    // An operator asks for the health as it is now, not the probes' recent snapshot.
    client.batch_execute("SET mt.health_max_age = 0").await?;
    let doc: Value = client
        .query_one("SELECT mt.health_check(tenant_ids => $1, pools => $2)", &[&ids, &args.pools.as_sql()])
        .await?
        .get(0);
    let healthy = doc["healthy"].as_bool().unwrap_or(false);
    let degraded = doc["degradedPools"].as_i64().unwrap_or(0) > 0 || doc["sharedDb"] == "degraded";
    if out.json {
        out.json(&doc);
    } else {
        let pools = doc["pools"].as_array().cloned().unwrap_or_default();
        let mut t = Table::new(&["TENANT", "SCHEMA", "STATUS", "PENDING", "DRIFT", "REASONS"])
            .numeric(&["PENDING"])
            .status("STATUS");
        for p in pools.iter().filter(|p| p["status"] != "ok" || pools.len() <= 50) {
            let reasons = match &p["reasons"] {
                Value::Array(a) => a.iter().filter_map(|r| r.as_str()).collect::<Vec<_>>().join(", "),
                Value::Null => String::new(),
                other => other.to_string(),
            };
            t.row(vec![
                p["tenantId"].as_str().unwrap_or_default().into(),
                p["schemaName"].as_str().unwrap_or_default().into(),
                p["status"].as_str().unwrap_or_default().into(),
                p["pendingMigrations"].as_i64().map(|n| n.to_string()).unwrap_or_default(),
                match p["hasDrift"].as_bool() {
                    Some(true) => "yes".into(),
                    Some(false) => "no".into(),
                    None => String::new(),
                },
                shorten(&reasons, 80),
            ]);
        }
        if !t.is_empty() {
            out.table(&t);
        }
        out.line(format!(
            "{}: {} tenant(s), {} degraded, {} unhealthy; shared schema {}{}",
            if healthy { out.status("healthy") } else { out.status("unhealthy") },
            doc["totalPools"],
            doc["degradedPools"],
            doc["unhealthyPools"],
            out.status(doc["sharedDb"].as_str().unwrap_or("?")),
            doc["sharedDbError"].as_str().map(|e| format!(" ({e})")).unwrap_or_default()
        ));
    }
    Ok(if !healthy || (args.fail_on_degraded && degraded) { ExitCode::Unhealthy } else { ExitCode::Ok })
}

pub async fn metrics(out: &Out, client: &Client, args: &MetricsArgs) -> Result<ExitCode> {
    let text: String = client.query_one("SELECT mt.metrics($1)", &[&args.prefix]).await?.get(0);
    if out.json {
        out.json(&json!({"prefix": args.prefix, "text": text}));
    } else {
        print!("{text}");
        if !text.ends_with('\n') {
            println!();
        }
    }
    Ok(ExitCode::Ok)
}

// ---------------------------------------------------------------- generate

pub fn generate(out: &Out, args: &GenerateArgs) -> Result<ExitCode> {
    let files = if args.folder.exists() {
        multitenant_core::migrations::read_folder(&args.folder).map_err(|e| CliError::bad_input(e.to_string()))?
    } else {
        Default::default()
    };
    let plan = crate::generate::plan(&files, args.format, &args.name, std::time::SystemTime::now())?;
    let written = crate::generate::write(&args.folder, &plan)?;
    if out.json {
        out.json(&json!({"format": plan.format.to_string(), "name": plan.name, "files": written}));
    } else {
        out.line(format!("{} migration {} in {}:", plan.format, plan.name, args.folder.display()));
        for w in &written {
            out.line(format!("  {w}"));
        }
    }
    Ok(ExitCode::Ok)
}

/// Ids of the registered tenants with their pending counts, for pickers.
pub async fn tenants_with_pending(client: &Client) -> Result<Vec<(String, i32)>> {
    let rows = client
        .query(
            "SELECT t.tenant_id, coalesce(s.pending, 0) FROM mt.tenants t LEFT JOIN mt.status s USING (tenant_id) \
              ORDER BY t.tenant_id",
            &[],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn change_details_name_what_differs() {
        let e = json!({"type": "character varying(255)", "not_null": true, "default": null});
        let a = json!({"type": "character varying(100)", "not_null": true, "default": null});
        assert_eq!(change_detail(&e, &a), "type: character varying(255) → character varying(100)");
        assert_eq!(change_detail(&Value::Null, &json!("x")), "only in the tenant: x");
        assert_eq!(change_detail(&json!({"a": 1}), &json!({"b": 2})), "a: 1 → null; b: null → 2");
    }
}
