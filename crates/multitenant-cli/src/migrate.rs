//! `mt migrate`: register a local folder's migrations, migrate the shared schema, then
//! every tenant with live progress; Ctrl-C (or SIGTERM) cancels the run.

use std::collections::HashSet;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use multitenant_core::migrations::{self, Folder};
use serde::Serialize;
use serde_json::json;
use tokio_postgres::Client;

use crate::cli::MigrateArgs;
use crate::conn::{self, ConnSpec, Connection};
use crate::exit::{CliError, ExitCode, Result};
use crate::output::Out;
use crate::runs::{self, RunResult, Summary};

/// A folder read from the local disk.
#[derive(Debug, Clone)]
pub struct LocalFolder {
    pub path: PathBuf,
    pub folder: Folder,
}

/// Reads and parses a local migration folder, byte for byte.
pub fn read_local(path: &Path) -> Result<LocalFolder> {
    let files =
        migrations::read_folder(path).map_err(|e| CliError::bad_input(format!("cannot read the folder: {e}")))?;
    let folder =
        migrations::parse_folder(&files).map_err(|e| CliError::bad_input(format!("{}: {e}", path.display())))?;
    Ok(LocalFolder { path: path.to_path_buf(), folder })
}

impl LocalFolder {
    fn json(&self) -> serde_json::Value {
        json!({
            "path": self.path.display().to_string(),
            "format": self.folder.format.to_string(),
            "migrations": self.folder.migrations.len(),
            "warnings": self.folder.warnings,
        })
    }
}

/// What `mt.add_migration` said about one migration.
#[derive(Debug, Clone, Serialize)]
pub struct Registered {
    pub scope: &'static str,
    pub name: String,
    pub file: String,
    pub sha256: String,
    pub action: String,
}

/// SIGINT and SIGTERM.
pub struct Interrupts {
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
}

impl Interrupts {
    pub fn new() -> Result<Interrupts> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Interrupts { int: signal(SignalKind::interrupt())?, term: signal(SignalKind::terminate())? })
        }
        #[cfg(not(unix))]
        Ok(Interrupts {})
    }

    pub async fn recv(&mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

fn cancelled() -> CliError {
    CliError::new(
        ExitCode::Cancelled,
        "cancelled: the migration in progress in each tenant was rolled back; every tenant keeps its last good migration",
    )
}

/// Runs `call` on connection `a`; an interrupt cancels its backend from `b` (or with a
/// cancel request), then waits for the call to end (a second interrupt exits at once).
/// `progress`, when given, is polled on `b` meanwhile.
async fn cancellable<T>(
    call: impl Future<Output = Result<T>>,
    a: &Connection,
    b: Option<&Connection>,
    interrupts: &mut Interrupts,
    mut progress: Option<&mut Progress>,
) -> Result<T> {
    tokio::pin!(call);
    let mut interval = tokio::time::interval(Duration::from_millis(250));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut cancelling = false;
    loop {
        tokio::select! {
            result = &mut call => {
                return match result {
                    Err(e) if e.code == ExitCode::Cancelled => Err(cancelled()),
                    other => other,
                };
            }
            _ = interrupts.recv() => {
                if cancelling {
                    eprintln!("interrupted again: exiting without waiting");
                    std::process::exit(ExitCode::Cancelled.code());
                }
                cancelling = true;
                eprintln!("cancelling the run (backend {}); interrupt again to exit at once", a.pid);
                cancel_backend(a, b).await;
            }
            _ = interval.tick() => {
                if let (Some(p), Some(b)) = (progress.as_deref_mut(), b) {
                    p.poll(&b.client).await;
                }
            }
        }
    }
}

/// `pg_cancel_backend` of `a`'s backend from `b`; without `b`, a protocol cancel request.
async fn cancel_backend(a: &Connection, b: Option<&Connection>) {
    if let Some(b) = b {
        if b.client.query_one("SELECT pg_cancel_backend($1)", &[&a.pid]).await.is_ok() {
            return;
        }
    }
    let _ = a.client.cancel_token().cancel_query(tokio_postgres::NoTls).await;
}

/// Live progress of a `mt.migrate_all` run, read on the second connection.
struct Progress {
    bar: Option<ProgressBar>,
    plain: bool,
    before: i64,
    launcher: i32,
    run_id: Option<i64>,
    total: u64,
    seen: HashSet<String>,
    last_finished: Option<String>,
}

impl Progress {
    fn new(out: &Out, show: bool, before: i64, launcher: i32, total: u64) -> Progress {
        let bar = (show && out.stderr_tty).then(|| {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr_with_hz(8));
            bar.set_style(
                ProgressStyle::with_template("{spinner} [{bar:30.cyan/blue}] {pos}/{len} tenants {elapsed} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Progress {
            bar,
            plain: show && !out.stderr_tty,
            before,
            launcher,
            run_id: None,
            total,
            seen: HashSet::new(),
            last_finished: None,
        }
    }

    async fn poll(&mut self, b: &Client) {
        if self.bar.is_none() && !self.plain {
            return;
        }
        let _ = self.try_poll(b).await;
    }

    async fn try_poll(&mut self, b: &Client) -> std::result::Result<(), tokio_postgres::Error> {
        if self.run_id.is_none() {
            let row = b
                .query_opt(
                    "SELECT run_id FROM mt.runs r WHERE run_id > $1 AND operation IN ('migrate', 'mark_applied', 'migrate_all') \
                     AND coalesce((to_jsonb(r)->>'launcher_pid')::int, $2) = $2 ORDER BY run_id LIMIT 1",
                    &[&self.before, &self.launcher],
                )
                .await?;
            self.run_id = row.map(|r| r.get(0));
            if let (Some(id), true) = (self.run_id, self.plain) {
                eprintln!("migrate: run {id} started, {} tenant(s)", self.total);
            }
        }
        let Some(run_id) = self.run_id else { return Ok(()) };
        let counts = b
            .query_one(
                "SELECT count(*) FILTER (WHERE finished_at IS NOT NULL), count(*) FILTER (WHERE status = 'failed'), \
                        (SELECT t.tenant_id || ': ' || coalesce(substring(a.activity FROM '^multitenant: \\S+ \\S+ (\\S+)'), \
                                                               'after ' || t.current_migration, 'starting') \
                           FROM mt.run_tenants t LEFT JOIN mt.activity a ON a.pid = t.pid AND a.run_id = t.run_id \
                          WHERE t.run_id = $1 AND t.finished_at IS NULL AND t.tenant_id NOT LIKE 'schema:%' \
                          ORDER BY t.started_at LIMIT 1) \
                   FROM mt.run_tenants WHERE run_id = $1 AND tenant_id NOT LIKE 'schema:%'",
                &[&run_id],
            )
            .await?;
        let (done, failed, current): (i64, i64, Option<String>) = (counts.get(0), counts.get(1), counts.get(2));
        if let Some(bar) = &self.bar {
            bar.set_position(done as u64);
            let mut msg = String::new();
            if failed > 0 {
                msg.push_str(&console::style(format!("{failed} failed")).red().to_string());
                msg.push_str("  ");
            }
            if let Some(c) = current {
                msg.push_str(&c);
            }
            bar.set_message(msg);
        }
        if self.plain {
            let rows = b
                .query(
                    "SELECT tenant_id, status, applied, sqlstate, error, to_jsonb(t)->>'migration', finished_at::text \
                       FROM mt.run_tenants t \
                      WHERE run_id = $1 AND finished_at IS NOT NULL AND tenant_id NOT LIKE 'schema:%' \
                        AND ($2::text IS NULL OR finished_at >= $2::timestamptz - interval '5 seconds') \
                      ORDER BY finished_at",
                    &[&run_id, &self.last_finished],
                )
                .await?;
            for row in rows {
                let tenant: String = row.get(0);
                self.last_finished = row.get(6);
                if !self.seen.insert(tenant.clone()) {
                    continue;
                }
                let status: String = row.get(1);
                let applied: i32 = row.get(2);
                let line = if status == "failed" {
                    let migration: Option<String> = row.get(5);
                    format!(
                        "{tenant} failed{}: {} {}",
                        migration.map(|m| format!(" at {m}")).unwrap_or_default(),
                        row.get::<_, Option<String>>(3).unwrap_or_default(),
                        crate::output::shorten(&row.get::<_, Option<String>>(4).unwrap_or_default(), 200)
                    )
                } else {
                    format!("{tenant} {status} ({applied} applied)")
                };
                eprintln!("migrate: [{}/{}] {line}", self.seen.len(), self.total);
            }
        }
        Ok(())
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

pub async fn run(out: &Out, spec: &ConnSpec, args: &MigrateArgs) -> Result<ExitCode> {
    // Local input first: a bad folder fails before any connection.
    let tenant_folder = args.folder.as_deref().map(read_local).transpose()?;
    let shared_folder = args.shared_folder.as_deref().map(read_local).transpose()?;
    for f in tenant_folder.iter().chain(shared_folder.iter()) {
        for w in &f.folder.warnings {
            out.warn(format!("{}: {w}", f.path.display()));
        }
    }
    let mut interrupts = Interrupts::new()?;
    let a = conn::connect(spec).await?;
    // The second connection watches and cancels; the run goes on without it.
    let b = conn::connect(spec).await.ok();
    let tenant_ids = args.filter.ids();

    // 1. Register, in one transaction.
    a.client.batch_execute("BEGIN").await?;
    let scopes = [("tenant", tenant_folder.as_ref()), ("shared", shared_folder.as_ref())];
    let register = async {
        let mut registered = Vec::new();
        for (scope, folder) in scopes {
            let Some(local) = folder else { continue };
            for m in &local.folder.migrations {
                let file = local.path.join(local.folder.file_of(m)).display().to_string();
                let row = a
                    .client
                    .query_one(
                        "SELECT mt.add_migration($1, $2, $3, $4, $5)",
                        &[&m.name, &m.sql, &scope, &m.position, &m.journal_when],
                    )
                    .await
                    .map_err(|e| {
                        let mut err = CliError::from(e);
                        if err.code == ExitCode::BadInput {
                            err = err.context(&file);
                            err.hint = Some(
                                "a registered migration is immutable: restore the file, or add a new migration"
                                    .to_string(),
                            );
                        }
                        err
                    })?;
                registered.push(Registered {
                    scope,
                    name: m.name.clone(),
                    file,
                    sha256: m.sha256.clone(),
                    action: row.get(0),
                });
            }
        }
        Ok::<_, CliError>(registered)
    };
    let registered = tokio::select! {
        r = register => r,
        _ = interrupts.recv() => Err(cancelled()),
    };
    let registered = match registered {
        Ok(r) => r,
        Err(e) => {
            let _ = a.client.batch_execute("ROLLBACK").await;
            return Err(e);
        }
    };

    let (shared, mut tenants) = if args.dry_run {
        // Still in the transaction: the dry runs see the new migrations; then roll back.
        let dry = async {
            let shared =
                runs::query(&a.client, "SELECT to_jsonb(r) FROM mt.migrate_shared(dry_run => true) r", &[]).await?;
            let tenants = runs::query(
                &a.client,
                "SELECT to_jsonb(r) FROM unnest(coalesce($1::text[], ARRAY(SELECT tenant_id FROM mt.tenants ORDER BY tenant_id))) \
                        AS t(id), mt.migrate_tenant(t.id, dry_run => true) r",
                &[&tenant_ids],
            )
            .await?;
            Ok((shared, tenants))
        };
        let result = cancellable(dry, &a, b.as_ref(), &mut interrupts, None).await;
        let _ = a.client.batch_execute("ROLLBACK").await;
        result?
    } else {
        a.client.batch_execute("COMMIT").await?;
        // 2. The shared schema.
        let shared = cancellable(
            runs::query(
                &a.client,
                "SELECT to_jsonb(r) FROM mt.migrate_shared(dry_run => false, mark_applied => $1) r",
                &[&args.mark_applied],
            ),
            &a,
            b.as_ref(),
            &mut interrupts,
            None,
        )
        .await?;
        if shared.iter().any(RunResult::is_failure) {
            return report(out, args, &tenant_folder, &shared_folder, &registered, &shared, &[]);
        }
        // 3. Every tenant, in the server's background workers.
        let before: i64 = a.client.query_one("SELECT coalesce(max(run_id), 0) FROM mt.runs", &[]).await?.get(0);
        let total: i64 = match &tenant_ids {
            Some(ids) => ids.len() as i64,
            None => a.client.query_one("SELECT count(*) FROM mt.tenants", &[]).await?.get(0),
        };
        let mut progress = Progress::new(out, !args.no_progress && b.is_some(), before, a.pid, total.max(0) as u64);
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 3] =
            [&args.concurrency, &args.mark_applied, &tenant_ids];
        let call = runs::query(
            &a.client,
            "SELECT to_jsonb(r) FROM mt.migrate_all(concurrency => $1, mark_applied => $2, tenant_ids => $3) r",
            &params,
        );
        let result = cancellable(call, &a, b.as_ref(), &mut interrupts, Some(&mut progress)).await;
        if let (true, Some(b)) = (progress.plain, b.as_ref()) {
            // The tenants that finished since the last look, so that the log names every one.
            progress.poll(&b.client).await;
        }
        progress.finish();
        (shared, result?)
    };
    if !args.dry_run {
        runs::fill_failed_migrations(&a.client, &mut tenants).await?;
    }
    report(out, args, &tenant_folder, &shared_folder, &registered, &shared, &tenants)
}

fn report(
    out: &Out,
    args: &MigrateArgs,
    tenant_folder: &Option<LocalFolder>,
    shared_folder: &Option<LocalFolder>,
    registered: &[Registered],
    shared: &[RunResult],
    tenants: &[RunResult],
) -> Result<ExitCode> {
    let summary = Summary::of(tenants);
    let shared_failed = shared.iter().any(RunResult::is_failure);
    let mut failures: Vec<&RunResult> = shared.iter().filter(|r| r.is_failure()).collect();
    failures.extend(runs::failures(tenants));
    let code = if failures.is_empty() { ExitCode::Ok } else { ExitCode::TenantsFailed };
    if out.json {
        out.json(&json!({
            "dry_run": args.dry_run,
            "mark_applied": args.mark_applied,
            "folder": tenant_folder.as_ref().map(LocalFolder::json),
            "shared_folder": shared_folder.as_ref().map(LocalFolder::json),
            "registered": registered,
            "shared": shared.first(),
            "tenants": tenants,
            "summary": summary,
            "failures": failures,
        }));
        return Ok(code);
    }
    let count =
        |scope: &str, action: &str| registered.iter().filter(|r| r.scope == scope && r.action == action).count();
    for (scope, folder) in [("tenant", tenant_folder), ("shared", shared_folder)] {
        if let Some(f) = folder {
            let verb = if args.dry_run { "would register" } else { "registered" };
            out.line(format!(
                "{}: {} {} folder, {} migration(s): {} {verb}, {} unchanged{}",
                f.path.display(),
                f.folder.format,
                scope,
                f.folder.migrations.len(),
                count(scope, "added"),
                count(scope, "unchanged"),
                match count(scope, "replaced") {
                    0 => String::new(),
                    n => format!(", {n} replaced"),
                }
            ));
        }
    }
    for s in shared {
        let what = match s.status.as_str() {
            "dry_run" => format!("{} pending", s.pending.unwrap_or(0)),
            _ => format!("{} applied", s.applied.unwrap_or(0)),
        };
        out.line(format!(
            "shared schema {}: {} ({what})",
            s.schema_name.as_deref().unwrap_or("?"),
            out.status(&s.status)
        ));
    }
    if shared_failed {
        out.line("tenants were not migrated: the shared schema failed");
    } else {
        let interesting: Vec<RunResult> = tenants
            .iter()
            .filter(|r| r.status != "up_to_date" && !(r.status == "dry_run" && r.pending == Some(0)))
            .cloned()
            .collect();
        if !interesting.is_empty() {
            out.table(&runs::table(&interesting));
        }
        if args.dry_run {
            let behind = tenants.iter().filter(|r| r.pending.unwrap_or(0) > 0).count();
            out.line(format!(
                "dry run: {} tenant(s), {behind} would be migrated ({} migration(s) in all), {} up to date; nothing was changed",
                tenants.len(),
                summary.pending,
                tenants.len() - behind
            ));
        } else {
            out.line(format!("migrate: {}", summary.migrate_line()));
        }
    }
    for f in failures {
        out.line(format!("  {} {}", out.status(&f.status), f.failure_line()));
    }
    Ok(code)
}
