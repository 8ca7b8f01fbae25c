//! Migration folders: drizzle-kit's and plain numbered SQL files.
//!
//! Parsing takes the folder as a map of relative path → content, so the extension (reading
//! the server's filesystem) and a client CLI (reading a local folder and pushing each file
//! through `mt.add_migration`) get identical migrations, positions and hashes.
//!
//! - drizzle-kit: `meta/_journal.json` lists `entries[]` (`idx`, `when` in ms, `tag`,
//!   `breakpoints`); each entry's SQL is `<tag>.sql`. Entries without a file, malformed JSON
//!   and duplicate `idx`/`tag` are errors; `.sql` files the journal does not list are
//!   warnings (drizzle-kit ignores them too).
//! - numbered: every `.sql` file is `NNNN_name.sql`; the number orders them. A `.sql` file
//!   without a number and two files with one number are errors.
//!
//! A migration's hash is the SHA-256 hex of the raw file, as drizzle-orm computes it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Deserialize;
use sha2::{Digest, Sha256};

pub const JOURNAL_PATH: &str = "meta/_journal.json";

/// One migration as registered: what `mt.add_migration` takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migration {
    /// Order within its scope: the journal's `idx`, or the file's number.
    pub position: i32,
    /// The journal's `tag` or the file name without `.sql`.
    pub name: String,
    /// The raw file.
    pub sql: String,
    /// SHA-256 hex of `sql`.
    pub sha256: String,
    /// The journal's `when` (ms since the epoch), for drizzle-kit folders.
    pub journal_when: Option<i64>,
}

impl Migration {
    pub fn new(position: i32, name: &str, sql: &str, journal_when: Option<i64>) -> Self {
        Migration { position, name: name.to_string(), sql: sql.to_string(), sha256: sha256_hex(sql), journal_when }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FolderFormat {
    DrizzleKit,
    Numbered,
}

impl fmt::Display for FolderFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FolderFormat::DrizzleKit => "drizzle-kit",
            FolderFormat::Numbered => "numbered",
        })
    }
}

/// A parsed folder: migrations in order, plus what was suspicious but not fatal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Folder {
    pub format: FolderFormat,
    pub migrations: Vec<Migration>,
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FolderError {
    Empty,
    MalformedJournal(String),
    MissingFile { tag: String, file: String },
    DuplicateEntry { what: &'static str, value: String },
    UnnumberedFile(String),
    DuplicateNumber { number: i32, first: String, second: String },
    NumberTooLarge(String),
}

impl fmt::Display for FolderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FolderError::Empty => write!(f, "the folder holds no .sql files and no {JOURNAL_PATH}"),
            FolderError::MalformedJournal(reason) => write!(f, "{JOURNAL_PATH} is malformed: {reason}"),
            FolderError::MissingFile { tag, file } => {
                write!(f, "{JOURNAL_PATH} lists \"{tag}\" but {file} does not exist")
            }
            FolderError::DuplicateEntry { what, value } => {
                write!(f, "{JOURNAL_PATH} lists {what} {value} more than once")
            }
            FolderError::UnnumberedFile(file) => {
                write!(f, "{file} does not follow NNNN_name.sql (a number, an underscore, a name)")
            }
            FolderError::DuplicateNumber { number, first, second } => {
                write!(f, "{first} and {second} share the number {number}")
            }
            FolderError::NumberTooLarge(file) => write!(f, "the number of {file} is too large"),
        }
    }
}

impl std::error::Error for FolderError {}

pub fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Deserialize)]
struct Journal {
    entries: Vec<JournalEntry>,
}

#[derive(Deserialize)]
struct JournalEntry {
    idx: i32,
    when: i64,
    tag: String,
    #[allow(dead_code)]
    #[serde(default)]
    breakpoints: bool,
}

/// Parses a folder given as relative path → content. Only top-level `.sql` files and the
/// journal matter; anything else (a README, snapshots under `meta/`) is ignored.
pub fn parse_folder(files: &BTreeMap<String, String>) -> Result<Folder, FolderError> {
    let sql_files: BTreeMap<&str, &str> = files
        .iter()
        .filter(|(path, _)| path.ends_with(".sql") && !path.contains('/'))
        .map(|(path, content)| (path.as_str(), content.as_str()))
        .collect();
    match files.get(JOURNAL_PATH) {
        Some(journal) => parse_drizzle_kit(journal, &sql_files),
        None if sql_files.is_empty() => Err(FolderError::Empty),
        None => parse_numbered(&sql_files),
    }
}

fn parse_drizzle_kit(journal: &str, sql_files: &BTreeMap<&str, &str>) -> Result<Folder, FolderError> {
    let journal: Journal = serde_json::from_str(journal).map_err(|e| FolderError::MalformedJournal(e.to_string()))?;
    let mut seen_idx = BTreeSet::new();
    let mut seen_tag = BTreeSet::new();
    let mut migrations = Vec::with_capacity(journal.entries.len());
    for entry in &journal.entries {
        if !seen_idx.insert(entry.idx) {
            return Err(FolderError::DuplicateEntry { what: "idx", value: entry.idx.to_string() });
        }
        if !seen_tag.insert(entry.tag.as_str()) {
            return Err(FolderError::DuplicateEntry { what: "tag", value: format!("\"{}\"", entry.tag) });
        }
        let file = format!("{}.sql", entry.tag);
        let sql = sql_files
            .get(file.as_str())
            .ok_or_else(|| FolderError::MissingFile { tag: entry.tag.clone(), file: file.clone() })?;
        migrations.push(Migration::new(entry.idx, &entry.tag, sql, Some(entry.when)));
    }
    migrations.sort_by_key(|m| m.position);
    let warnings = sql_files
        .keys()
        .filter(|file| !seen_tag.contains(file.trim_end_matches(".sql")))
        .map(|file| format!("{file} is not listed in {JOURNAL_PATH} and was not loaded"))
        .collect();
    Ok(Folder { format: FolderFormat::DrizzleKit, migrations, warnings })
}

fn parse_numbered(sql_files: &BTreeMap<&str, &str>) -> Result<Folder, FolderError> {
    let mut by_number: BTreeMap<i32, (&str, &str)> = BTreeMap::new();
    for (&file, &sql) in sql_files {
        let number = file_number(file)?;
        if let Some((first, _)) = by_number.insert(number, (file, sql)) {
            return Err(FolderError::DuplicateNumber { number, first: first.to_string(), second: file.to_string() });
        }
    }
    let migrations = by_number
        .into_iter()
        .map(|(number, (file, sql))| Migration::new(number, file.trim_end_matches(".sql"), sql, None))
        .collect();
    Ok(Folder { format: FolderFormat::Numbered, migrations, warnings: Vec::new() })
}

/// The leading number of `NNNN_name.sql`.
fn file_number(file: &str) -> Result<i32, FolderError> {
    let stem = file.trim_end_matches(".sql");
    let digits: &str = &stem[..stem.find(|c: char| !c.is_ascii_digit()).unwrap_or(stem.len())];
    let rest = &stem[digits.len()..];
    if digits.is_empty() || !rest.starts_with('_') || rest.len() < 2 {
        return Err(FolderError::UnnumberedFile(file.to_string()));
    }
    digits.parse().map_err(|_| FolderError::NumberTooLarge(file.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(entries: &[(&str, &str)]) -> BTreeMap<String, String> {
        entries.iter().map(|(p, c)| (p.to_string(), c.to_string())).collect()
    }

    const JOURNAL: &str = r#"{"version":"7","dialect":"postgresql","entries":[
        {"idx":1,"version":"7","when":1700000001000,"tag":"0001_posts","breakpoints":true},
        {"idx":0,"version":"7","when":1700000000000,"tag":"0000_users","breakpoints":true}]}"#;

    #[test]
    fn hashes_like_drizzle_orm() {
        // sha256("") and sha256("abc"), as `crypto.createHash('sha256')` prints them.
        assert_eq!(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert_eq!(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn reads_a_drizzle_kit_folder_in_journal_order() {
        let parsed = parse_folder(&folder(&[
            (JOURNAL_PATH, JOURNAL),
            ("0000_users.sql", "CREATE TABLE users (id int);"),
            ("0001_posts.sql", "CREATE TABLE posts (id int);"),
            ("meta/0000_snapshot.json", "{}"),
        ]))
        .unwrap();
        assert_eq!(parsed.format, FolderFormat::DrizzleKit);
        let names: Vec<_> = parsed.migrations.iter().map(|m| (m.position, m.name.as_str(), m.journal_when)).collect();
        assert_eq!(names, vec![(0, "0000_users", Some(1700000000000)), (1, "0001_posts", Some(1700000001000))]);
        assert_eq!(parsed.migrations[0].sha256, sha256_hex("CREATE TABLE users (id int);"));
        assert!(parsed.warnings.is_empty());
    }

    #[test]
    fn drizzle_kit_problems_are_reported() {
        let stray = parse_folder(&folder(&[
            (JOURNAL_PATH, JOURNAL),
            ("0000_users.sql", ""),
            ("0001_posts.sql", ""),
            ("0002_stray.sql", ""),
        ]))
        .unwrap();
        assert_eq!(stray.warnings, vec!["0002_stray.sql is not listed in meta/_journal.json and was not loaded"]);

        let missing = parse_folder(&folder(&[(JOURNAL_PATH, JOURNAL), ("0000_users.sql", "")])).unwrap_err();
        assert_eq!(missing.to_string(), "meta/_journal.json lists \"0001_posts\" but 0001_posts.sql does not exist");

        let malformed = parse_folder(&folder(&[(JOURNAL_PATH, "{\"entries\": [")])).unwrap_err();
        assert!(matches!(malformed, FolderError::MalformedJournal(_)), "{malformed}");
        let wrong_shape = parse_folder(&folder(&[(JOURNAL_PATH, "{\"entries\": [{\"idx\": \"x\"}]}")])).unwrap_err();
        assert!(matches!(wrong_shape, FolderError::MalformedJournal(_)), "{wrong_shape}");

        let dup = r#"{"entries":[{"idx":0,"when":1,"tag":"a"},{"idx":0,"when":2,"tag":"b"}]}"#;
        let err = parse_folder(&folder(&[(JOURNAL_PATH, dup), ("a.sql", ""), ("b.sql", "")])).unwrap_err();
        assert_eq!(err.to_string(), "meta/_journal.json lists idx 0 more than once");
    }

    #[test]
    fn reads_a_numbered_folder_in_number_order() {
        let parsed =
            parse_folder(&folder(&[("0010_later.sql", "b"), ("0002_first.sql", "a"), ("README.md", "ignored")]))
                .unwrap();
        assert_eq!(parsed.format, FolderFormat::Numbered);
        let names: Vec<_> = parsed.migrations.iter().map(|m| (m.position, m.name.as_str())).collect();
        assert_eq!(names, vec![(2, "0002_first"), (10, "0010_later")]);
    }

    #[test]
    fn numbered_problems_are_errors() {
        let dup = parse_folder(&folder(&[("0001_a.sql", ""), ("001_b.sql", "")])).unwrap_err();
        assert_eq!(dup.to_string(), "0001_a.sql and 001_b.sql share the number 1");
        for bad in ["init.sql", "0001.sql", "0001-init.sql", "0001_.sql"] {
            let err = parse_folder(&folder(&[(bad, "")])).unwrap_err();
            assert_eq!(err, FolderError::UnnumberedFile(bad.to_string()));
        }
        assert_eq!(parse_folder(&folder(&[("README.md", "")])).unwrap_err(), FolderError::Empty);
    }
}
