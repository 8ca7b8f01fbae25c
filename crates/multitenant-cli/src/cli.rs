//! The command line, as clap reads it.

use std::path::PathBuf;

use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};

const ROOT_EXAMPLES: &str = "\
Examples:
  mt migrate --folder ./drizzle                      register new migrations, migrate every tenant
  mt status --pending                                tenants with migrations to apply
  mt tenant create acme                              a new tenant, migrated
  mt drift                                           how tenant schemas differ from the migrations
  mt health --json                                   the load-balancer health document
  DATABASE_URL=postgres://deploy@db:5432/app?sslmode=verify-full mt migrate --folder ./drizzle
  mt                                                 (on a terminal) the interactive menu

Connection: --database-url or DATABASE_URL (a postgres:// URL or a libpq key=value string),
else PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE. TLS follows sslmode (disable, prefer,
require, verify-ca, verify-full) and sslrootcert in the URL, or PGSSLMODE / PGSSLROOTCERT.

Exit codes: 0 ok, 1 error, 2 bad input, 3 tenants failed, 4 drift found, 5 unhealthy,
6 connection failure, 7 migrations pending (status --check), 130 cancelled.";

#[derive(Debug, Parser)]
#[command(
    name = "mt",
    version,
    about = "Schema-per-tenant PostgreSQL from the command line: migrate, inspect and provision tenants",
    long_about = "Schema-per-tenant PostgreSQL from the command line: a thin layer over the SQL API of the \
                  multitenant extension (schema mt). Migrates every tenant from a local migration folder \
                  (drizzle-kit, numbered NNNN_name.sql files or diesel), shows status, drift and health, and \
                  creates, drops, clones and seeds tenants.",
    after_help = ROOT_EXAMPLES
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Args, Clone)]
pub struct Global {
    /// Database to connect to (postgres:// URL or key=value string); else PG* variables
    #[arg(long, env = "DATABASE_URL", global = true, hide_env_values = true, value_name = "URL")]
    pub database_url: Option<String>,
    /// Print one JSON document on stdout instead of text (shapes: docs/cli.md)
    #[arg(long, global = true)]
    pub json: bool,
    /// When to use colours
    #[arg(long, global = true, value_enum, default_value_t = ColorWhen::Auto, value_name = "WHEN")]
    pub color: ColorWhen,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorWhen {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the extension if it is missing and show the settings
    #[command(after_help = "Examples:\n  mt init\n  mt init --json")]
    Init,
    /// Read and change settings (mt.settings)
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Register the migrations of a local folder, then migrate the shared schema and every tenant
    #[command(after_help = "\
Examples:
  mt migrate --folder ./drizzle
  mt migrate --folder ./drizzle --shared-folder ./drizzle-shared --concurrency 8
  mt migrate --folder ./migrations --tenant acme --tenant globex
  mt migrate --folder ./drizzle --dry-run           what would be registered and applied
  mt migrate --folder ./drizzle --mark-applied      record pending migrations without running them
  mt migrate                                        apply what is registered already

Exit codes: 0 every tenant migrated or up to date; 3 a tenant failed (the summary names the
tenant, the migration and the SQLSTATE); 2 a folder that is not a migration folder, or a
migration registered before with different content (the file is named); 130 Ctrl-C (the run
is cancelled: each tenant keeps its last good migration).")]
    Migrate(MigrateArgs),
    /// Per tenant: migrations applied and pending (mt.status)
    #[command(after_help = "\
Examples:
  mt status
  mt status --pending                 only tenants with pending migrations
  mt status --tenant acme --json
  mt status --check                   exit 7 when any tenant (or the shared schema) has pending migrations")]
    Status(StatusArgs),
    /// Compare tracking records with the registry: show, record missing ones, delete orphans
    #[command(after_help = "\
Examples:
  mt sync --status
  mt sync --mark-missing --tenant acme      record registered migrations as applied without running them
  mt sync --clean-orphans --dry-run         records of migrations no longer registered")]
    Sync(SyncArgs),
    /// Rewrite tracking tables in another format (name, hash, drizzle-kit)
    #[command(after_help = "\
Examples:
  mt convert-tracking --to drizzle-kit --dry-run
  mt convert-tracking --to hash --tenant acme")]
    ConvertTracking(ConvertArgs),
    /// How tenant schemas differ from what their migrations produce (summary, then differences)
    #[command(
        visible_alias = "diff",
        after_help = "\
Examples:
  mt drift                                  every tenant against mt_template
  mt drift --tenant acme
  mt diff --tenant acme-staging --reference acme      one tenant against another
  mt drift --json

Exit codes: 0 no drift, 4 drift found."
    )]
    Drift(DriftArgs),
    /// Create, drop, list, clone and adopt tenants
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Register a seed from a file and run it in tenants (once per tenant)
    #[command(after_help = "\
Examples:
  mt seed demo-data --file seeds/demo.sql --all
  mt seed demo-data --tenant acme --force
  mt seed plans --file seeds/plans.sql --shared
  mt seed demo-data --file seeds/demo.sql          register (or check) only")]
    Seed(SeedArgs),
    /// Health of every tenant and of the shared schema (mt.health_check)
    #[command(after_help = "\
Examples:
  mt health
  mt health --tenant acme --json
  mt health --fail-on-degraded
  mt health --pools failing --json     only the degraded and unhealthy tenants

Exit codes: 0 healthy, 5 unhealthy (or degraded, with --fail-on-degraded).")]
    Health(HealthArgs),
    /// Prometheus metrics text (mt.metrics)
    #[command(after_help = "Examples:\n  mt metrics\n  mt metrics --prefix myapp > metrics.prom")]
    Metrics(MetricsArgs),
    /// Create a new empty migration in a folder, in the folder's own format
    #[command(after_help = "\
Examples:
  mt generate add_invoices --folder ./drizzle       a drizzle-kit journal entry and 0022_add_invoices.sql
  mt generate add_invoices --folder ./migrations    the next NNNN_add_invoices.sql (or a timestamp)
  mt generate create_posts --folder ./migrations --format diesel

An empty or new folder gets --format (default numbered). Nothing is registered: run mt migrate.")]
    Generate(GenerateArgs),
    /// The interactive menu (what `mt` alone runs on a terminal)
    #[command(after_help = "Examples:\n  mt menu\n  mt menu --folder ./drizzle")]
    Menu(MenuArgs),
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Show every setting, or one
    #[command(after_help = "Examples:\n  mt config get\n  mt config get schema_template")]
    Get {
        /// A setting name; without it, every setting
        key: Option<String>,
    },
    /// Change a setting (mt.set_config)
    #[command(
        after_help = "Examples:\n  mt config set schema_template 'org_{id}'\n  mt config set tracking_format hash"
    )]
    Set { key: String, value: String },
    /// Restore a setting's default (mt.reset_config)
    #[command(after_help = "Examples:\n  mt config reset schema_template")]
    Reset { key: String },
}

/// Tenants to work on: none given means every tenant.
#[derive(Debug, Args, Clone, Default)]
pub struct TenantFilter {
    /// A tenant id (repeat, or separate with commas); default: every tenant
    #[arg(long = "tenant", short = 't', value_name = "ID", value_delimiter = ',')]
    pub tenants: Vec<String>,
}

impl TenantFilter {
    pub fn ids(&self) -> Option<Vec<String>> {
        (!self.tenants.is_empty()).then(|| self.tenants.clone())
    }
}

#[derive(Debug, Args, Clone, Default)]
pub struct MigrateArgs {
    /// Folder of tenant migrations (drizzle-kit, numbered NNNN_name.sql or diesel); read locally
    #[arg(long, short = 'f', value_name = "DIR")]
    pub folder: Option<PathBuf>,
    /// Folder of migrations for the shared schema
    #[arg(long, value_name = "DIR")]
    pub shared_folder: Option<PathBuf>,
    #[command(flatten)]
    pub filter: TenantFilter,
    /// Background workers (default: the server's mt.max_workers)
    #[arg(long, short = 'c', value_name = "N", value_parser = clap::value_parser!(i32).range(1..))]
    pub concurrency: Option<i32>,
    /// Show what would be registered and applied; change nothing
    #[arg(long, conflicts_with = "mark_applied")]
    pub dry_run: bool,
    /// Record pending migrations as applied without running them
    #[arg(long)]
    pub mark_applied: bool,
    /// No progress bar or progress lines
    #[arg(long)]
    pub no_progress: bool,
}

#[derive(Debug, Args, Clone, Default)]
pub struct StatusArgs {
    #[command(flatten)]
    pub filter: TenantFilter,
    /// Only tenants with pending migrations
    #[arg(long)]
    pub pending: bool,
    /// Exit 7 when migrations are pending
    #[arg(long)]
    pub check: bool,
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("action").required(true).args(["status", "mark_missing", "clean_orphans"])))]
pub struct SyncArgs {
    /// Per tenant: registered migrations not recorded, records not registered (mt.sync_status)
    #[arg(long)]
    pub status: bool,
    /// Record the missing migrations as applied, without running them (mt.mark_missing)
    #[arg(long)]
    pub mark_missing: bool,
    /// Delete records of migrations that are no longer registered (mt.clean_orphans)
    #[arg(long)]
    pub clean_orphans: bool,
    #[command(flatten)]
    pub filter: TenantFilter,
    /// With --clean-orphans: show what would be deleted
    #[arg(long)]
    pub dry_run: bool,
    #[arg(long, short = 'c', value_name = "N", value_parser = clap::value_parser!(i32).range(1..))]
    pub concurrency: Option<i32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TrackingFormat {
    Name,
    Hash,
    DrizzleKit,
}

impl TrackingFormat {
    pub fn as_sql(self) -> &'static str {
        match self {
            TrackingFormat::Name => "name",
            TrackingFormat::Hash => "hash",
            TrackingFormat::DrizzleKit => "drizzle-kit",
        }
    }
}

#[derive(Debug, Args)]
pub struct ConvertArgs {
    /// The format to convert to
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub to: TrackingFormat,
    #[command(flatten)]
    pub filter: TenantFilter,
    #[arg(long)]
    pub dry_run: bool,
    #[arg(long, short = 'c', value_name = "N", value_parser = clap::value_parser!(i32).range(1..))]
    pub concurrency: Option<i32>,
}

#[derive(Debug, Args, Clone, Default)]
pub struct DriftArgs {
    #[command(flatten)]
    pub filter: TenantFilter,
    /// Compare with this tenant instead of mt_template (needs --tenant)
    #[arg(long, value_name = "ID", requires = "tenants")]
    pub reference: Option<String>,
    /// The summary only
    #[arg(long)]
    pub summary: bool,
}

#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Create tenants (schema, role, registry row), migrated unless --no-migrate
    #[command(after_help = "\
Examples:
  mt tenant create acme
  mt tenant create acme --metadata '{\"plan\": \"pro\"}' --seed demo-data
  mt tenant create a b c --concurrency 4        several at once, in parallel
  mt tenant create acme --if-not-exists")]
    Create(CreateArgs),
    /// Drop tenants: schema, registry row and role
    #[command(after_help = "\
Examples:
  mt tenant drop acme                 asks for confirmation on a terminal
  mt tenant drop acme --force --yes   drop a schema that holds objects, without asking

Without a terminal --yes is required.")]
    Drop(DropArgs),
    /// List tenants with their pending migrations
    #[command(after_help = "Examples:\n  mt tenant list\n  mt tenant list --json")]
    List,
    /// Copy a tenant's schema (and data) into a new tenant
    #[command(after_help = "\
Examples:
  mt tenant clone acme acme-staging
  mt tenant clone acme acme-staging --include-data --anonymize anonymize.json

anonymize.json: {\"users\": {\"email\": {\"template\": \"user-{hash}@example.com\"}, \"name\": null}}")]
    Clone(CloneArgs),
    /// Register existing schemas that follow schema_template as tenants
    #[command(after_help = "Examples:\n  mt tenant adopt --dry-run\n  mt tenant adopt --pattern 'tenant\\_%'")]
    Adopt(AdoptArgs),
}

#[derive(Debug, Args, Clone, Default)]
pub struct CreateArgs {
    /// Tenant ids
    #[arg(required = true, value_name = "ID")]
    pub ids: Vec<String>,
    /// A JSON object stored with the tenant (one tenant only)
    #[arg(long, value_name = "JSON")]
    pub metadata: Option<String>,
    /// Return an existing tenant instead of failing (one tenant only)
    #[arg(long)]
    pub if_not_exists: bool,
    /// Do not apply the registered migrations (one tenant only)
    #[arg(long)]
    pub no_migrate: bool,
    /// Replay migrations instead of copying mt_template (one tenant only)
    #[arg(long)]
    pub no_template: bool,
    /// A registered seed to run once the schema is ready
    #[arg(long, value_name = "NAME")]
    pub seed: Option<String>,
    #[arg(long, short = 'c', value_name = "N", value_parser = clap::value_parser!(i32).range(1..))]
    pub concurrency: Option<i32>,
}

#[derive(Debug, Args, Clone, Default)]
pub struct DropArgs {
    #[arg(required = true, value_name = "ID")]
    pub ids: Vec<String>,
    /// Drop a schema that still holds objects
    #[arg(long)]
    pub force: bool,
    /// An unknown tenant is not an error
    #[arg(long)]
    pub if_exists: bool,
    /// Do not ask for confirmation
    #[arg(long, short = 'y')]
    pub yes: bool,
}

#[derive(Debug, Args, Clone, Default)]
pub struct CloneArgs {
    pub source: String,
    pub target: String,
    /// Copy the rows too
    #[arg(long)]
    pub include_data: bool,
    /// A JSON file of anonymize rules per table and column (needs --include-data)
    #[arg(long, value_name = "FILE.json", requires = "include_data")]
    pub anonymize: Option<PathBuf>,
}

#[derive(Debug, Args, Clone)]
pub struct AdoptArgs {
    /// LIKE pattern of schema names
    #[arg(long, default_value = "%")]
    pub pattern: String,
    #[arg(long)]
    pub dry_run: bool,
    /// Leave ownership as it is: adopted tenants get no role
    #[arg(long)]
    pub no_roles: bool,
}

#[derive(Debug, Args, Clone, Default)]
#[command(group(ArgGroup::new("targets").args(["tenants", "all", "shared"]).multiple(false)))]
pub struct SeedArgs {
    /// The seed's name
    pub name: String,
    /// Register this SQL file under NAME first (checked, not changed, when already registered)
    #[arg(long, value_name = "FILE.sql")]
    pub file: Option<PathBuf>,
    /// Replace a registered seed whose SQL differs from --file
    #[arg(long, requires = "file")]
    pub replace: bool,
    /// Run it in these tenants
    #[arg(long = "tenant", short = 't', value_name = "ID", value_delimiter = ',')]
    pub tenants: Vec<String>,
    /// Run it in every tenant
    #[arg(long)]
    pub all: bool,
    /// A seed of the shared schema: register it as such and run it there
    #[arg(long)]
    pub shared: bool,
    /// Run again where it ran before
    #[arg(long)]
    pub force: bool,
    #[arg(long, short = 'c', value_name = "N", value_parser = clap::value_parser!(i32).range(1..))]
    pub concurrency: Option<i32>,
}

#[derive(Debug, Args, Clone, Default)]
pub struct HealthArgs {
    #[command(flatten)]
    pub filter: TenantFilter,
    /// Exit 5 when a tenant is degraded too, not only when unhealthy
    #[arg(long)]
    pub fail_on_degraded: bool,
    /// Which tenants to list: all, the failing ones (degraded or unhealthy), or none (counts only)
    #[arg(long, value_enum, default_value_t = HealthPools::All)]
    pub pools: HealthPools,
}

/// `mt.health_check(pools => ...)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum HealthPools {
    #[default]
    All,
    Failing,
    None,
}

impl HealthPools {
    pub fn as_sql(self) -> &'static str {
        match self {
            HealthPools::All => "all",
            HealthPools::Failing => "failing",
            HealthPools::None => "none",
        }
    }
}

#[derive(Debug, Args, Clone)]
pub struct MetricsArgs {
    /// Metric name prefix
    #[arg(long, default_value = "multitenant")]
    pub prefix: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum NewFolderFormat {
    Numbered,
    DrizzleKit,
    Diesel,
}

#[derive(Debug, Args, Clone)]
pub struct GenerateArgs {
    /// The migration's name: lowercase letters, digits and _ (others become _)
    pub name: String,
    #[arg(long, short = 'f', value_name = "DIR", default_value = "./drizzle")]
    pub folder: PathBuf,
    /// Layout for an empty or new folder (an existing one keeps its own)
    #[arg(long, value_enum, default_value_t = NewFolderFormat::Numbered)]
    pub format: NewFolderFormat,
}

#[derive(Debug, Args, Clone, Default)]
pub struct MenuArgs {
    /// Folder "migrate all" registers first (default: ./drizzle or ./migrations when present)
    #[arg(long, short = 'f', value_name = "DIR")]
    pub folder: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use std::path::Path;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("mt").chain(args.iter().copied())).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_command_has_examples() {
        let cmd = Cli::command();
        let mut missing = Vec::new();
        for sub in cmd.get_subcommands() {
            let leafs: Vec<_> = if sub.has_subcommands() { sub.get_subcommands().collect() } else { vec![sub] };
            for leaf in leafs {
                let help = leaf.get_after_help().map(|h| h.to_string()).unwrap_or_default();
                if !help.contains("Examples:") {
                    missing.push(leaf.get_name().to_string());
                }
            }
        }
        assert!(missing.is_empty(), "no examples: {missing:?}");
    }

    #[test]
    fn migrate_arguments() {
        let cli = parse(&[
            "migrate",
            "--folder",
            "d",
            "--shared-folder",
            "s",
            "-t",
            "a,b",
            "--tenant",
            "c",
            "--concurrency",
            "8",
            "--dry-run",
            "--json",
        ]);
        assert!(cli.global.json);
        let Some(Command::Migrate(m)) = cli.command else { panic!() };
        assert_eq!(m.folder, Some(PathBuf::from("d")));
        assert_eq!(m.shared_folder, Some(PathBuf::from("s")));
        assert_eq!(m.filter.ids(), Some(vec!["a".into(), "b".into(), "c".into()]));
        assert_eq!(m.concurrency, Some(8));
        assert!(m.dry_run && !m.mark_applied);

        for bad in [
            &["migrate", "--dry-run", "--mark-applied"][..],
            &["migrate", "--concurrency", "0"],
            &["migrate", "--bogus"],
            &["sync"],
            &["sync", "--status", "--mark-missing"],
            &["convert-tracking", "--to", "json"],
            &["seed", "x", "--all", "--tenant", "a"],
            &["seed", "x", "--replace"],
            &["tenant", "clone", "a", "b", "--anonymize", "f.json"],
            &["drift", "--reference", "a"],
            &["tenant", "create"],
        ] {
            let err = Cli::try_parse_from(std::iter::once("mt").chain(bad.iter().copied())).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{bad:?}");
        }
    }

    #[test]
    fn other_commands_parse() {
        assert!(parse(&[]).command.is_none());
        assert!(
            matches!(parse(&["diff", "-t", "a", "--reference", "b"]).command, Some(Command::Drift(d)) if d.reference.as_deref() == Some("b"))
        );
        assert!(
            matches!(parse(&["convert-tracking", "--to", "drizzle-kit"]).command, Some(Command::ConvertTracking(c)) if c.to == TrackingFormat::DrizzleKit)
        );
        assert!(matches!(
            parse(&["config", "set", "k", "v"]).command,
            Some(Command::Config(ConfigCommand::Set { .. }))
        ));
        assert!(
            matches!(parse(&["tenant", "drop", "a", "b", "-y", "--force"]).command, Some(Command::Tenant(TenantCommand::Drop(d))) if d.ids.len() == 2 && d.yes && d.force)
        );
        assert!(
            matches!(parse(&["seed", "demo", "--file", "x.sql", "--all"]).command, Some(Command::Seed(s)) if s.all && s.file.is_some())
        );
        assert!(
            matches!(parse(&["generate", "add_x"]).command, Some(Command::Generate(g)) if g.folder == Path::new("./drizzle"))
        );
        let url = parse(&["status", "--database-url", "postgres://x/y"]);
        assert_eq!(url.global.database_url.as_deref(), Some("postgres://x/y"));
    }
}
