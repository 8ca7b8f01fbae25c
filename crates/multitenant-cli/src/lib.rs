//! `mt`, the command line of the multitenant extension: a thin layer over its SQL API.
//!
//! [`run`] is the whole program (the binary only calls it), so tests can drive it too.
//! Commands, JSON shapes and exit codes are documented in docs/cli.md.

pub mod cli;
pub mod commands;
pub mod conn;
pub mod exit;
pub mod generate;
pub mod menu;
pub mod migrate;
pub mod output;
pub mod runs;

use std::ffi::OsString;

use clap::Parser;
use console::Term;

use crate::cli::{Cli, ColorWhen, Command, TenantCommand};
use crate::conn::Env;
pub use crate::exit::{CliError, ExitCode};
use crate::output::Out;

/// Runs `mt` with these arguments (the first is the program name) and environment;
/// returns the exit code.
pub fn run<I, T>(args: I, env: &Env) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { ExitCode::BadInput.code() } else { ExitCode::Ok.code() };
        }
    };
    let out = out_for(&cli, env);
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            print_error(&out, &CliError::other(format!("cannot start the runtime: {e}")));
            return ExitCode::Error.code();
        }
    };
    match runtime.block_on(dispatch(cli, out, env)) {
        Ok(code) => code.code(),
        Err(e) => {
            print_error(&out, &e);
            e.code.code()
        }
    }
}

fn out_for(cli: &Cli, env: &Env) -> Out {
    let stdout_tty = Term::stdout().is_term();
    let no_color = env.contains_key("NO_COLOR") || env.get("TERM").is_some_and(|t| t == "dumb");
    let color = match cli.global.color {
        ColorWhen::Always => true,
        ColorWhen::Never => false,
        ColorWhen::Auto => stdout_tty && !no_color && !cli.global.json,
    };
    if cli.global.color == ColorWhen::Never || no_color {
        console::set_colors_enabled(false);
        console::set_colors_enabled_stderr(false);
    }
    Out {
        json: cli.global.json,
        color,
        stderr_tty: Term::stderr().is_term(),
        interactive: stdout_tty && std::io::IsTerminal::is_terminal(&std::io::stdin()),
    }
}

/// Prints an error: to stderr for people; with `--json`, also as `{"error": …}` on stdout.
pub fn print_error(out: &Out, e: &CliError) {
    if out.json {
        out.json(&e.to_json());
    }
    let label = if out.stderr_tty && console::colors_enabled_stderr() {
        console::style("error").red().bold().to_string()
    } else {
        "error".to_string()
    };
    eprintln!("{label}: {e}");
}

async fn dispatch(cli: Cli, out: Out, env: &Env) -> Result<ExitCode, CliError> {
    let command = match cli.command {
        Some(c) => c,
        None if out.interactive && !out.json => Command::Menu(Default::default()),
        None => {
            let _ = <Cli as clap::CommandFactory>::command().print_help();
            return Err(CliError::bad_input("no command given (the menu needs a terminal)"));
        }
    };
    // Commands without a database.
    if let Command::Generate(args) = &command {
        return commands::generate(&out, args);
    }
    let spec = conn::spec(cli.global.database_url.as_deref(), env)?;
    if let Command::Migrate(args) = &command {
        return migrate::run(&out, &spec, args).await;
    }
    if let Command::Menu(args) = &command {
        return menu::run(&out, &spec, args).await;
    }
    let connection = conn::connect(&spec).await?;
    let client = &connection.client;
    match &command {
        Command::Init => commands::init(&out, client).await,
        Command::Config(c) => commands::config(&out, client, c).await,
        Command::Status(a) => commands::status(&out, client, a).await,
        Command::Sync(a) => commands::sync(&out, client, a).await,
        Command::ConvertTracking(a) => commands::convert(&out, client, a).await,
        Command::Drift(a) => commands::drift(&out, client, a).await,
        Command::Tenant(TenantCommand::Create(a)) => commands::tenant_create(&out, client, a).await,
        Command::Tenant(TenantCommand::Drop(a)) => commands::tenant_drop(&out, client, a).await,
        Command::Tenant(TenantCommand::List) => commands::tenant_list(&out, client).await,
        Command::Tenant(TenantCommand::Clone(a)) => commands::tenant_clone(&out, client, a).await,
        Command::Tenant(TenantCommand::Adopt(a)) => commands::tenant_adopt(&out, client, a).await,
        Command::Seed(a) => commands::seed(&out, client, a).await,
        Command::Health(a) => commands::health(&out, client, a).await,
        Command::Metrics(a) => commands::metrics(&out, client, a).await,
        Command::Generate(_) | Command::Migrate(_) | Command::Menu(_) => unreachable!("handled above"),
    }
}
