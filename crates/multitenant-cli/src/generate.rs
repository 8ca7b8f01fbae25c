//! `mt generate`: a new empty migration in a folder's own layout.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use multitenant_core::migrations::{self, FolderFormat, DIESEL_UP, JOURNAL_PATH};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::cli::NewFolderFormat;
use crate::exit::{CliError, Result};

/// The files to write (relative path → content) for a new migration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMigration {
    pub format: FolderFormat,
    /// The migration's name as it will be registered.
    pub name: String,
    /// Files to create, relative to the folder; they must not exist.
    pub create: Vec<(String, String)>,
    /// `meta/_journal.json` rewritten (drizzle-kit only).
    pub journal: Option<String>,
}

/// drizzle-kit writes this into `--custom` migrations.
pub const DRIZZLE_CUSTOM: &str = "-- Custom SQL migration file, put your code below! --\n";

/// Lowercase letters, digits and `_`; anything else becomes `_`.
pub fn sanitize(name: &str) -> Result<String> {
    let cleaned: String = name
        .trim()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' })
        .collect::<String>()
        .split('_')
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("_");
    if cleaned.is_empty() {
        return Err(CliError::bad_input(format!(
            "migration name \"{name}\" is invalid: use letters, digits and _ (add_invoices)"
        )));
    }
    Ok(cleaned)
}

#[derive(Serialize, Deserialize)]
struct Journal {
    #[serde(default = "default_version")]
    version: String,
    #[serde(default = "default_dialect")]
    dialect: String,
    #[serde(default)]
    entries: Vec<Entry>,
    #[serde(flatten)]
    rest: BTreeMap<String, Value>,
}

#[derive(Serialize, Deserialize)]
struct Entry {
    idx: i64,
    #[serde(default = "default_version")]
    version: String,
    when: i64,
    tag: String,
    #[serde(default)]
    breakpoints: bool,
    #[serde(flatten)]
    rest: BTreeMap<String, Value>,
}

fn default_version() -> String {
    "7".to_string()
}

fn default_dialect() -> String {
    "postgresql".to_string()
}

/// Plans the new migration for a folder read with [`migrations::read_folder`] (empty when
/// it does not exist). `requested` applies only to an empty folder.
pub fn plan(
    files: &BTreeMap<String, String>,
    requested: NewFolderFormat,
    name: &str,
    now: SystemTime,
) -> Result<NewMigration> {
    let name = sanitize(name)?;
    let format = if files.is_empty() {
        match requested {
            NewFolderFormat::Numbered => FolderFormat::Numbered,
            NewFolderFormat::DrizzleKit => FolderFormat::DrizzleKit,
            NewFolderFormat::Diesel => FolderFormat::Diesel,
        }
    } else {
        migrations::parse_folder(files).map_err(|e| CliError::bad_input(e.to_string()))?.format
    };
    let now_ms = now.duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or_default();
    let existing: Vec<&str> = files.keys().map(String::as_str).collect();
    match format {
        FolderFormat::DrizzleKit => {
            let mut journal: Journal = match files.get(JOURNAL_PATH) {
                Some(text) => serde_json::from_str(text)
                    .map_err(|e| CliError::bad_input(format!("{JOURNAL_PATH} is malformed: {e}")))?,
                None => Journal {
                    version: default_version(),
                    dialect: default_dialect(),
                    entries: Vec::new(),
                    rest: BTreeMap::new(),
                },
            };
            let idx = journal.entries.iter().map(|e| e.idx + 1).max().unwrap_or(0);
            let when = journal.entries.iter().map(|e| e.when + 1).max().unwrap_or(0).max(now_ms);
            let version = journal.entries.last().map(|e| e.version.clone()).unwrap_or_else(|| journal.version.clone());
            let tag = format!("{idx:04}_{name}");
            journal.entries.push(Entry {
                idx,
                version,
                when,
                tag: tag.clone(),
                breakpoints: true,
                rest: BTreeMap::new(),
            });
            let mut text = serde_json::to_string_pretty(&journal).map_err(|e| CliError::other(e.to_string()))?;
            if files.get(JOURNAL_PATH).is_none_or(|t| t.ends_with('\n')) {
                text.push('\n');
            }
            Ok(NewMigration {
                format,
                name: tag.clone(),
                create: vec![(format!("{tag}.sql"), DRIZZLE_CUSTOM.to_string())],
                journal: Some(text),
            })
        }
        FolderFormat::Numbered => {
            let numbers: Vec<&str> = existing
                .iter()
                .filter(|p| p.ends_with(".sql") && !p.contains('/'))
                .map(|p| &p[..p.find(|c: char| !c.is_ascii_digit()).unwrap_or(0)])
                .collect();
            let width = numbers.iter().map(|n| n.len()).max().unwrap_or(4);
            let number = if width >= 14 {
                // Timestamps: now, or one past the largest when the clock is behind.
                let stamp = timestamp(now, false);
                let largest = numbers.iter().map(|n| n.to_string()).max_by(|a, b| cmp_numbers(a, b));
                match largest {
                    Some(l) if cmp_numbers(&stamp, &l).is_le() => increment(&l),
                    _ => stamp,
                }
            } else {
                let next = numbers.iter().filter_map(|n| n.parse::<u64>().ok()).max().map(|n| n + 1).unwrap_or(1);
                format!("{next:0width$}")
            };
            let migration = format!("{number}_{name}");
            Ok(NewMigration {
                format,
                name: migration.clone(),
                create: vec![(format!("{migration}.sql"), format!("-- {migration}\n"))],
                journal: None,
            })
        }
        FolderFormat::Diesel => {
            let dir = format!("{}_{name}", timestamp(now, true));
            Ok(NewMigration {
                format,
                name: dir.clone(),
                create: vec![
                    (format!("{dir}/{DIESEL_UP}"), "-- Your SQL goes here\n".to_string()),
                    (format!("{dir}/down.sql"), "-- This file should undo anything in `up.sql`\n".to_string()),
                ],
                journal: None,
            })
        }
    }
}

/// Writes the plan into `folder`, refusing to overwrite anything; returns the paths written.
pub fn write(folder: &Path, plan: &NewMigration) -> Result<Vec<String>> {
    let mut written = Vec::new();
    for (path, _) in &plan.create {
        if folder.join(path).exists() {
            return Err(CliError::bad_input(format!("{} exists already", folder.join(path).display())));
        }
    }
    for (path, content) in &plan.create {
        let full = folder.join(path);
        if let Some(parent) = full.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&full, content).map_err(|e| CliError::other(format!("{}: {e}", full.display())))?;
        written.push(full.display().to_string());
    }
    if let Some(journal) = &plan.journal {
        let full = folder.join(JOURNAL_PATH);
        std::fs::create_dir_all(folder.join("meta"))?;
        std::fs::write(&full, journal).map_err(|e| CliError::other(format!("{}: {e}", full.display())))?;
        written.push(full.display().to_string());
    }
    Ok(written)
}

fn cmp_numbers(a: &str, b: &str) -> std::cmp::Ordering {
    let (a, b) = (a.trim_start_matches('0'), b.trim_start_matches('0'));
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// A decimal string plus one.
fn increment(number: &str) -> String {
    let mut digits: Vec<u8> = number.bytes().collect();
    for d in digits.iter_mut().rev() {
        if *d == b'9' {
            *d = b'0';
        } else {
            *d += 1;
            return String::from_utf8(digits).unwrap_or_default();
        }
    }
    format!("1{}", String::from_utf8(digits).unwrap_or_default())
}

/// UTC `YYYYMMDDHHMMSS`, or diesel's `YYYY-MM-DD-HHMMSS`.
pub fn timestamp(now: SystemTime, diesel: bool) -> String {
    let secs = now.duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or_default();
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    let (hh, mm, ss) = (rem / 3600, rem % 3600 / 60, rem % 60);
    if diesel {
        format!("{y:04}-{m:02}-{d:02}-{hh:02}{mm:02}{ss:02}")
    } else {
        format!("{y:04}{m:02}{d:02}{hh:02}{mm:02}{ss:02}")
    }
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn folder(entries: &[(&str, &str)]) -> BTreeMap<String, String> {
        entries.iter().map(|(p, c)| (p.to_string(), c.to_string())).collect()
    }

    #[test]
    fn timestamps() {
        // 2019-02-26 00:29:46 UTC
        assert_eq!(timestamp(at(1_551_140_986), false), "20190226002946");
        assert_eq!(timestamp(at(1_551_140_986), true), "2019-02-26-002946");
        assert_eq!(timestamp(at(0), false), "19700101000000");
        assert_eq!(timestamp(at(951_782_400), false), "20000229000000");
    }

    #[test]
    fn names_are_sanitized() {
        assert_eq!(sanitize("Add Invoices!").unwrap(), "add_invoices");
        assert_eq!(sanitize("users-last_seen").unwrap(), "users_last_seen");
        assert!(sanitize(" -- ").is_err());
    }

    #[test]
    fn numbered_folders_get_the_next_number() {
        let f = folder(&[("0001_a.sql", ""), ("0009_b.sql", "")]);
        let p = plan(&f, NewFolderFormat::Diesel, "c", at(0)).unwrap();
        assert_eq!(p.format, FolderFormat::Numbered);
        assert_eq!(p.create, vec![("0010_c.sql".to_string(), "-- 0010_c\n".to_string())]);
        assert_eq!(p.journal, None);
        let empty = plan(&BTreeMap::new(), NewFolderFormat::Numbered, "init", at(0)).unwrap();
        assert_eq!(empty.create[0].0, "0001_init.sql");
        // Timestamps: now, or past the largest.
        let ts = folder(&[("20190226002946_create_user.sql", "")]);
        let p = plan(&ts, NewFolderFormat::Numbered, "posts", at(1_600_000_000)).unwrap();
        assert_eq!(p.name, "20200913122640_posts");
        let p = plan(&ts, NewFolderFormat::Numbered, "posts", at(0)).unwrap();
        assert_eq!(p.name, "20190226002947_posts");
        assert_eq!(increment("0999"), "1000");
        assert_eq!(increment("99"), "100");
    }

    #[test]
    fn drizzle_folders_get_a_journal_entry() {
        let journal = "{\n  \"version\": \"7\",\n  \"dialect\": \"postgresql\",\n  \"entries\": [\n    {\n      \"idx\": 0,\n      \"version\": \"7\",\n      \"when\": 1700000000000,\n      \"tag\": \"0000_users\",\n      \"breakpoints\": true\n    }\n  ]\n}";
        let f = folder(&[(JOURNAL_PATH, journal), ("0000_users.sql", "x")]);
        let p = plan(&f, NewFolderFormat::Numbered, "Add teams", at(1_000)).unwrap();
        assert_eq!(p.format, FolderFormat::DrizzleKit);
        assert_eq!(p.name, "0001_add_teams");
        assert_eq!(p.create, vec![("0001_add_teams.sql".to_string(), DRIZZLE_CUSTOM.to_string())]);
        let text = p.journal.unwrap();
        // The existing part is unchanged, byte for byte (drizzle-kit's 2-space layout).
        let prefix = &journal[..journal.len() - "\n  ]\n}".len()];
        assert!(text.starts_with(prefix), "{text}");
        assert!(!text.ends_with('\n'));
        let mut files = f.clone();
        files.insert(JOURNAL_PATH.into(), text);
        files.insert("0001_add_teams.sql".into(), DRIZZLE_CUSTOM.into());
        let parsed = migrations::parse_folder(&files).unwrap();
        assert_eq!(parsed.migrations[1].name, "0001_add_teams");
        assert_eq!(parsed.migrations[1].journal_when, Some(1700000000001));

        let fresh = plan(&BTreeMap::new(), NewFolderFormat::DrizzleKit, "init", at(5)).unwrap();
        assert_eq!(fresh.name, "0000_init");
        let journal: Value = serde_json::from_str(fresh.journal.as_deref().unwrap()).unwrap();
        assert_eq!(journal["entries"][0]["when"], 5000);
        assert_eq!(journal["dialect"], "postgresql");
    }

    #[test]
    fn diesel_folders_get_a_directory() {
        let f = folder(&[("2019-02-26-002946_create_user/up.sql", "")]);
        let p = plan(&f, NewFolderFormat::Numbered, "posts", at(1_551_140_986)).unwrap();
        assert_eq!(p.format, FolderFormat::Diesel);
        assert_eq!(p.name, "2019-02-26-002946_posts");
        assert_eq!(p.create[0].0, "2019-02-26-002946_posts/up.sql");
        assert_eq!(p.create[1].0, "2019-02-26-002946_posts/down.sql");
    }

    #[test]
    fn broken_folders_are_refused() {
        let err = plan(&folder(&[("init.sql", "")]), NewFolderFormat::Numbered, "x", at(0)).unwrap_err();
        assert_eq!(err.code, crate::exit::ExitCode::BadInput);
    }

    #[test]
    fn writing_refuses_to_overwrite() {
        let dir = std::env::temp_dir().join(format!("mt-generate-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let p = plan(&BTreeMap::new(), NewFolderFormat::DrizzleKit, "init", at(0)).unwrap();
        let written = write(&dir, &p).unwrap();
        assert_eq!(written.len(), 2);
        let files = migrations::read_folder(&dir).unwrap();
        assert_eq!(migrations::parse_folder(&files).unwrap().migrations.len(), 1);
        assert!(write(&dir, &p).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
