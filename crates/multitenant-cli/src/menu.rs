//! `mt` alone on a terminal: a menu over the commands, with tenant pickers that show how
//! many migrations each tenant has pending.

use std::path::PathBuf;

use dialoguer::theme::ColorfulTheme;
use dialoguer::{Confirm, Input, MultiSelect, Select};

use crate::cli::{CloneArgs, CreateArgs, DropArgs, HealthArgs, MenuArgs, MigrateArgs, SeedArgs, StatusArgs};
use crate::commands;
use crate::conn::{self, ConnSpec};
use crate::exit::{CliError, ExitCode, Result};
use crate::output::Out;

pub const ITEMS: [&str; 8] = [
    "Migrate all tenants",
    "Status",
    "Create a tenant",
    "Drop a tenant",
    "Clone a tenant",
    "Seed tenants",
    "Health",
    "Quit",
];

fn prompt_error(e: dialoguer::Error) -> CliError {
    CliError::new(ExitCode::Cancelled, format!("menu: {e}"))
}

/// `acme (3 pending)`
pub fn tenant_label(id: &str, pending: i32) -> String {
    match pending {
        0 => format!("{id} (up to date)"),
        n => format!("{id} ({n} pending)"),
    }
}

/// The folder "migrate all" offers: the one given, else ./drizzle or ./migrations.
pub fn default_folder(given: Option<&PathBuf>) -> String {
    if let Some(f) = given {
        return f.display().to_string();
    }
    ["./drizzle", "./migrations"]
        .iter()
        .find(|f| std::path::Path::new(f).is_dir())
        .map(|f| f.to_string())
        .unwrap_or_default()
}

pub async fn run(out: &Out, spec: &ConnSpec, args: &MenuArgs) -> Result<ExitCode> {
    if !out.interactive {
        return Err(CliError::bad_input("the menu needs a terminal: run mt --help for the commands"));
    }
    let connection = conn::connect(spec).await?;
    let client = &connection.client;
    let theme = ColorfulTheme::default();
    loop {
        let choice = Select::with_theme(&theme)
            .with_prompt("mt: what now? (Esc to quit)")
            .items(ITEMS)
            .default(0)
            .interact_opt()
            .map_err(prompt_error)?;
        let result = match choice {
            None | Some(7) => return Ok(ExitCode::Ok),
            Some(0) => {
                let folder: String = Input::with_theme(&theme)
                    .with_prompt("Migration folder to register first (empty: only what is registered)")
                    .default(default_folder(args.folder.as_ref()))
                    .allow_empty(true)
                    .interact_text()
                    .map_err(prompt_error)?;
                let tenants = commands::tenants_with_pending(client).await?;
                let behind = tenants.iter().filter(|(_, p)| *p > 0).count();
                let go = Confirm::with_theme(&theme)
                    .with_prompt(format!(
                        "Migrate {} tenant(s) ({behind} with registered migrations pending)?",
                        tenants.len()
                    ))
                    .default(true)
                    .interact()
                    .map_err(prompt_error)?;
                if !go {
                    continue;
                }
                let margs = MigrateArgs {
                    folder: (!folder.trim().is_empty()).then(|| PathBuf::from(folder.trim())),
                    ..MigrateArgs::default()
                };
                crate::migrate::run(out, spec, &margs).await
            }
            Some(1) => commands::status(out, client, &StatusArgs::default()).await,
            Some(2) => {
                let id: String =
                    Input::with_theme(&theme).with_prompt("New tenant id").interact_text().map_err(prompt_error)?;
                commands::tenant_create(out, client, &CreateArgs { ids: vec![id], ..CreateArgs::default() }).await
            }
            Some(3) => {
                let Some(id) = pick_tenant(client, &theme, "Tenant to drop").await? else { continue };
                let force = Confirm::with_theme(&theme)
                    .with_prompt(format!("Drop {id} even if its schema holds tables (its data is lost)?"))
                    .default(false)
                    .interact()
                    .map_err(prompt_error)?;
                commands::tenant_drop(out, client, &DropArgs { ids: vec![id], force, if_exists: false, yes: false })
                    .await
            }
            Some(4) => {
                let Some(source) = pick_tenant(client, &theme, "Tenant to clone").await? else { continue };
                let target: String = Input::with_theme(&theme)
                    .with_prompt("New tenant id")
                    .default(format!("{source}-copy"))
                    .interact_text()
                    .map_err(prompt_error)?;
                let include_data = Confirm::with_theme(&theme)
                    .with_prompt("Copy the data too?")
                    .default(false)
                    .interact()
                    .map_err(prompt_error)?;
                commands::tenant_clone(out, client, &CloneArgs { source, target, include_data, anonymize: None }).await
            }
            Some(5) => {
                let seeds: Vec<String> = client
                    .query("SELECT name FROM mt.seeds WHERE scope = 'tenant' ORDER BY name", &[])
                    .await?
                    .iter()
                    .map(|r| r.get(0))
                    .collect();
                if seeds.is_empty() {
                    out.line("no tenant seeds are registered: mt seed NAME --file FILE.sql registers one");
                    continue;
                }
                let Some(i) = Select::with_theme(&theme)
                    .with_prompt("Seed")
                    .items(&seeds)
                    .default(0)
                    .interact_opt()
                    .map_err(prompt_error)?
                else {
                    continue;
                };
                let tenants = commands::tenants_with_pending(client).await?;
                let labels: Vec<String> = tenants.iter().map(|(id, p)| tenant_label(id, *p)).collect();
                let chosen = MultiSelect::with_theme(&theme)
                    .with_prompt("Tenants (space to choose, enter to go; none chosen: every tenant)")
                    .items(&labels)
                    .interact_opt()
                    .map_err(prompt_error)?;
                let Some(chosen) = chosen else { continue };
                let ids: Vec<String> = chosen.iter().map(|&i| tenants[i].0.clone()).collect();
                let all = ids.is_empty();
                commands::seed(
                    out,
                    client,
                    &SeedArgs { name: seeds[i].clone(), tenants: ids, all, ..SeedArgs::default() },
                )
                .await
            }
            Some(6) => commands::health(out, client, &HealthArgs::default()).await,
            Some(_) => continue,
        };
        match result {
            Ok(ExitCode::Ok) => {}
            Ok(code) => out.note(format!("(exit code {} : {})", code.code(), code.name())),
            Err(e) => crate::print_error(out, &e),
        }
        out.line("");
    }
}

async fn pick_tenant(client: &tokio_postgres::Client, theme: &ColorfulTheme, prompt: &str) -> Result<Option<String>> {
    let tenants = commands::tenants_with_pending(client).await?;
    if tenants.is_empty() {
        eprintln!("no tenants yet");
        return Ok(None);
    }
    let labels: Vec<String> = tenants.iter().map(|(id, p)| tenant_label(id, *p)).collect();
    let choice =
        Select::with_theme(theme).with_prompt(prompt).items(&labels).default(0).interact_opt().map_err(prompt_error)?;
    Ok(choice.map(|i| tenants[i].0.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_show_pending_counts() {
        assert_eq!(tenant_label("acme", 0), "acme (up to date)");
        assert_eq!(tenant_label("acme", 3), "acme (3 pending)");
        assert_eq!(ITEMS.len(), 8);
        assert_eq!(default_folder(Some(&PathBuf::from("x/y"))), "x/y");
    }
}
