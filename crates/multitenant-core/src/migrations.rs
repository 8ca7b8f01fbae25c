//! Migration folders: drizzle-kit's, plain numbered SQL files and diesel's.
//!
//! Parsing takes the folder as a map of relative path → content, so the extension (reading
//! the server's filesystem) and a client CLI (reading a local folder and pushing each file
//! through `mt.add_migration`) get identical migrations, positions and hashes.
//! [`read_folder`] builds that map from a directory the same way for both.
//!
//! - drizzle-kit: `meta/_journal.json` lists `entries[]` (`idx`, `when` in ms, `tag`,
//!   `breakpoints`); each entry's SQL is `<tag>.sql`. Entries without a file, malformed JSON
//!   and duplicate `idx`/`tag` are errors; `.sql` files the journal does not list are
//!   warnings (drizzle-kit ignores them too).
//! - numbered: every top-level `.sql` file is `NNNN_name.sql`; the number orders them. The
//!   number may be a timestamp (`20190226002946_create_user.sql`). A `.sql` file without a
//!   number and two files with one number are errors.
//! - diesel: a directory per migration, `<version>_<name>/up.sql` (`down.sql` and anything
//!   else in it are ignored); the version is digits, optionally with `-`
//!   (`2019-02-26-002946_create_user`), and orders them. The name is the directory's name.
//!
//! Positions (what `mt.migrations.idx` holds) of numbered and diesel migrations are their
//! numbers when every number of the folder fits a 32-bit integer, otherwise (timestamps)
//! their rank in number order, starting at 0. Either way they follow the numbers, and a
//! migration added with a larger number than the others keeps the positions of the others.
//!
//! A migration's hash is the SHA-256 hex of the raw file, as drizzle-orm computes it.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;

use serde::Deserialize;
use sha2::{Digest, Sha256};

pub const JOURNAL_PATH: &str = "meta/_journal.json";

/// The file name of a diesel migration inside its directory.
pub const DIESEL_UP: &str = "up.sql";

/// What every "not a migration folder" error tells the user.
pub const ACCEPTED_LAYOUTS: &str = "accepted layouts: drizzle-kit (meta/_journal.json and <tag>.sql files), \
numbered files (NNNN_name.sql, such as 0001_init.sql or 20190226002946_create_user.sql) and \
diesel (<version>_<name>/up.sql)";

/// One migration as registered: what `mt.add_migration` takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migration {
    /// Order within its scope: the journal's `idx`, or from the file's number.
    pub position: i32,
    /// The journal's `tag`, the file name without `.sql`, or diesel's directory name.
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
    Diesel,
}

impl FolderFormat {
    /// The path, relative to the folder, of the file a migration of this name comes from.
    pub fn file_of(self, name: &str) -> String {
        match self {
            FolderFormat::DrizzleKit | FolderFormat::Numbered => format!("{name}.sql"),
            FolderFormat::Diesel => format!("{name}/{DIESEL_UP}"),
        }
    }
}

impl fmt::Display for FolderFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FolderFormat::DrizzleKit => "drizzle-kit",
            FolderFormat::Numbered => "numbered",
            FolderFormat::Diesel => "diesel",
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

impl Folder {
    /// The path, relative to the folder, of the file `migration` was read from.
    pub fn file_of(&self, migration: &Migration) -> String {
        self.format.file_of(&migration.name)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FolderError {
    /// No journal, no `.sql` file, no `*/up.sql`.
    Empty,
    MalformedJournal(String),
    MissingFile {
        tag: String,
        file: String,
    },
    DuplicateEntry {
        what: &'static str,
        value: String,
    },
    /// A top-level `.sql` file that does not start with a number and `_`.
    UnnumberedFile(String),
    /// A directory with an `up.sql` whose name is not `<version>_<name>`.
    UnversionedDirectory(String),
    /// Two files (or directories) with the same number; `number` without leading zeros.
    DuplicateNumber {
        number: String,
        first: String,
        second: String,
    },
    /// Numbered `.sql` files beside diesel directories.
    MixedLayouts {
        file: String,
        directory: String,
    },
}

impl fmt::Display for FolderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FolderError::Empty => write!(f, "the folder holds no migrations ({ACCEPTED_LAYOUTS})"),
            FolderError::MalformedJournal(reason) => write!(f, "{JOURNAL_PATH} is malformed: {reason}"),
            FolderError::MissingFile { tag, file } => {
                write!(f, "{JOURNAL_PATH} lists \"{tag}\" but {file} does not exist")
            }
            FolderError::DuplicateEntry { what, value } => {
                write!(f, "{JOURNAL_PATH} lists {what} {value} more than once")
            }
            FolderError::UnnumberedFile(file) => {
                write!(f, "{file} does not follow NNNN_name.sql (a number, an underscore, a name); {ACCEPTED_LAYOUTS}")
            }
            FolderError::UnversionedDirectory(dir) => {
                write!(f, "{dir}/{DIESEL_UP}: the directory does not follow <version>_<name> (digits, an underscore, a name); {ACCEPTED_LAYOUTS}")
            }
            FolderError::DuplicateNumber { number, first, second } => {
                write!(f, "{first} and {second} share the number {number}")
            }
            FolderError::MixedLayouts { file, directory } => write!(
                f,
                "the folder mixes numbered files ({file}) and diesel directories ({directory}/{DIESEL_UP}); use one layout ({ACCEPTED_LAYOUTS})"
            ),
        }
    }
}

impl std::error::Error for FolderError {}

pub fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads what [`parse_folder`] looks at from a directory, by relative path with `/`
/// separators: the top-level `*.sql` files, `meta/_journal.json`, and `<dir>/up.sql` of
/// every subdirectory that has one (diesel). Contents are the files' bytes, unchanged; a
/// file that is not UTF-8 is an error of kind `InvalidData` naming it. Symbolic links are
/// followed.
pub fn read_folder(folder: &Path) -> std::io::Result<BTreeMap<String, String>> {
    let read = |path: &Path| {
        let bytes =
            std::fs::read(path).map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        String::from_utf8(bytes).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{} is not UTF-8 text", path.display()))
        })
    };
    let mut files = BTreeMap::new();
    let entries =
        std::fs::read_dir(folder).map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", folder.display())))?;
    for entry in entries {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_string) else { continue };
        if path.is_file() && name.ends_with(".sql") {
            files.insert(name, read(&path)?);
        } else if path.is_dir() && name != "meta" {
            let up = path.join(DIESEL_UP);
            if up.is_file() {
                files.insert(format!("{name}/{DIESEL_UP}"), read(&up)?);
            }
        }
    }
    let journal = folder.join(JOURNAL_PATH);
    if journal.is_file() {
        files.insert(JOURNAL_PATH.to_string(), read(&journal)?);
    }
    Ok(files)
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

/// Parses a folder given as relative path → content. Only top-level `.sql` files, the
/// journal and `<dir>/up.sql` matter; anything else (a README, snapshots under `meta/`,
/// diesel's `down.sql`) is ignored. With a journal the folder is drizzle-kit's; otherwise
/// top-level `.sql` files make it numbered and `<dir>/up.sql` files diesel's (both at once
/// is an error).
pub fn parse_folder(files: &BTreeMap<String, String>) -> Result<Folder, FolderError> {
    let sql_files: BTreeMap<&str, &str> = files
        .iter()
        .filter(|(path, _)| path.ends_with(".sql") && !path.contains('/'))
        .map(|(path, content)| (path.as_str(), content.as_str()))
        .collect();
    let diesel_dirs: BTreeMap<&str, &str> = files
        .iter()
        .filter_map(|(path, content)| {
            let dir = path.strip_suffix(DIESEL_UP)?.strip_suffix('/')?;
            (!dir.is_empty() && !dir.contains('/') && dir != "meta").then_some((dir, content.as_str()))
        })
        .collect();
    match files.get(JOURNAL_PATH) {
        Some(journal) => parse_drizzle_kit(journal, &sql_files),
        None => match (sql_files.keys().next(), diesel_dirs.keys().next()) {
            (None, None) => Err(FolderError::Empty),
            (Some(file), Some(dir)) => {
                Err(FolderError::MixedLayouts { file: file.to_string(), directory: dir.to_string() })
            }
            (Some(_), None) => parse_numbered(&sql_files),
            (None, Some(_)) => parse_diesel(&diesel_dirs),
        },
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

/// A migration number as written, compared by value: digits without leading zeros,
/// shorter first, then lexicographically. Any length works (timestamps, diesel versions).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Number(String);

impl Number {
    fn parse(digits: &str) -> Number {
        let trimmed = digits.trim_start_matches('0');
        Number(if trimmed.is_empty() { "0".to_string() } else { trimmed.to_string() })
    }
}

impl Ord for Number {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.len().cmp(&other.0.len()).then_with(|| self.0.cmp(&other.0))
    }
}

impl PartialOrd for Number {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// `(number, name, sql)` triples in number order → migrations with their positions.
fn numbered_migrations(by_number: BTreeMap<Number, (&str, &str)>) -> Vec<Migration> {
    let all_fit = by_number.keys().all(|n| n.0.parse::<i32>().is_ok());
    by_number
        .into_iter()
        .enumerate()
        .map(|(rank, (number, (name, sql)))| {
            let position = if all_fit { number.0.parse().unwrap_or_default() } else { rank as i32 };
            Migration::new(position, name, sql, None)
        })
        .collect()
}

fn parse_numbered(sql_files: &BTreeMap<&str, &str>) -> Result<Folder, FolderError> {
    let mut by_number: BTreeMap<Number, (&str, &str)> = BTreeMap::new();
    let mut file_of: BTreeMap<Number, &str> = BTreeMap::new();
    for (&file, &sql) in sql_files {
        let stem = file.trim_end_matches(".sql");
        let number = leading_number(stem, false).ok_or_else(|| FolderError::UnnumberedFile(file.to_string()))?;
        if let Some(first) = file_of.insert(number.clone(), file) {
            return Err(FolderError::DuplicateNumber {
                number: number.0,
                first: first.to_string(),
                second: file.to_string(),
            });
        }
        by_number.insert(number, (stem, sql));
    }
    Ok(Folder { format: FolderFormat::Numbered, migrations: numbered_migrations(by_number), warnings: Vec::new() })
}

fn parse_diesel(dirs: &BTreeMap<&str, &str>) -> Result<Folder, FolderError> {
    let mut by_number: BTreeMap<Number, (&str, &str)> = BTreeMap::new();
    for (&dir, &sql) in dirs {
        let number = leading_number(dir, true).ok_or_else(|| FolderError::UnversionedDirectory(dir.to_string()))?;
        if let Some((first, _)) = by_number.insert(number.clone(), (dir, sql)) {
            return Err(FolderError::DuplicateNumber {
                number: number.0,
                first: FolderFormat::Diesel.file_of(first),
                second: FolderFormat::Diesel.file_of(dir),
            });
        }
    }
    Ok(Folder { format: FolderFormat::Diesel, migrations: numbered_migrations(by_number), warnings: Vec::new() })
}

/// The leading number of `NNNN_name` (with `dashes`, of `2019-02-26-002946_name` too: the
/// dashes are dropped). None unless a number, an underscore and a non-empty name follow.
fn leading_number(stem: &str, dashes: bool) -> Option<Number> {
    let end = stem.find(|c: char| !(c.is_ascii_digit() || (dashes && c == '-'))).unwrap_or(stem.len());
    let (version, rest) = stem.split_at(end);
    let digits: String = version.chars().filter(char::is_ascii_digit).collect();
    if digits.is_empty()
        || version.starts_with('-')
        || version.ends_with('-')
        || !rest.starts_with('_')
        || rest.len() < 2
    {
        return None;
    }
    Some(Number::parse(&digits))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(entries: &[(&str, &str)]) -> BTreeMap<String, String> {
        entries.iter().map(|(p, c)| (p.to_string(), c.to_string())).collect()
    }

    fn positions(parsed: &Folder) -> Vec<(i32, &str)> {
        parsed.migrations.iter().map(|m| (m.position, m.name.as_str())).collect()
    }

    const JOURNAL: &str = r#"{"version":"7","dialect":"postgresql","entries":[
        {"idx":1,"version":"7","when":1700000001000,"tag":"0001_posts","breakpoints":true},
        {"idx":0,"version":"7","when":1700000000000,"tag":"0000_users","breakpoints":true}]}"#;

    #[test]
    fn hashes_like_drizzle_orm() {
        // sha256("") and sha256("abc"), as `crypto.createHash('sha256')` prints them.
        assert_eq!(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert_eq!(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        // The trailing newline is part of the file, and of the hash.
        assert_ne!(sha256_hex("abc\n"), sha256_hex("abc"));
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
        assert_eq!(parsed.file_of(&parsed.migrations[1]), "0001_posts.sql");
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
        let dup_tag = r#"{"entries":[{"idx":0,"when":1,"tag":"a"},{"idx":1,"when":2,"tag":"a"}]}"#;
        let err = parse_folder(&folder(&[(JOURNAL_PATH, dup_tag), ("a.sql", "")])).unwrap_err();
        assert_eq!(err.to_string(), "meta/_journal.json lists tag \"a\" more than once");
    }

    #[test]
    fn a_journal_makes_the_folder_drizzle_kit_whatever_else_is_there() {
        let parsed = parse_folder(&folder(&[
            (JOURNAL_PATH, JOURNAL),
            ("0000_users.sql", ""),
            ("0001_posts.sql", ""),
            ("x/up.sql", ""),
        ]))
        .unwrap();
        assert_eq!(parsed.format, FolderFormat::DrizzleKit);
        assert_eq!(parsed.migrations.len(), 2);
    }

    #[test]
    fn reads_a_numbered_folder_in_number_order() {
        let parsed =
            parse_folder(&folder(&[("0010_later.sql", "b"), ("0002_first.sql", "a"), ("README.md", "ignored")]))
                .unwrap();
        assert_eq!(parsed.format, FolderFormat::Numbered);
        assert_eq!(positions(&parsed), vec![(2, "0002_first"), (10, "0010_later")]);
        assert_eq!(parsed.file_of(&parsed.migrations[0]), "0002_first.sql");
        assert!(parsed.warnings.is_empty());
    }

    #[test]
    fn timestamp_numbers_are_ranked() {
        let parsed = parse_folder(&folder(&[
            ("20190226002946_create_user.sql", "a"),
            ("20190301120000_add_posts.sql", "b"),
            ("20180101000000_setup.sql", "c"),
        ]))
        .unwrap();
        assert_eq!(parsed.format, FolderFormat::Numbered);
        assert_eq!(
            positions(&parsed),
            vec![(0, "20180101000000_setup"), (1, "20190226002946_create_user"), (2, "20190301120000_add_posts")]
        );
        // A later file keeps the earlier positions.
        let more = parse_folder(&folder(&[
            ("20190226002946_create_user.sql", "a"),
            ("20190301120000_add_posts.sql", "b"),
            ("20180101000000_setup.sql", "c"),
            ("20200101000000_more.sql", "d"),
        ]))
        .unwrap();
        assert_eq!(&positions(&more)[..3], &positions(&parsed)[..]);
        assert_eq!(positions(&more)[3], (3, "20200101000000_more"));
        // Numbers of any length compare by value, not as text.
        let mixed =
            parse_folder(&folder(&[("9_nine.sql", ""), ("10_ten.sql", ""), ("99999999999999999999999_huge.sql", "")]))
                .unwrap();
        assert_eq!(positions(&mixed), vec![(0, "9_nine"), (1, "10_ten"), (2, "99999999999999999999999_huge")]);
        // The largest number that fits a 32-bit integer is still a position.
        let fits = parse_folder(&folder(&[("2147483647_max.sql", "")])).unwrap();
        assert_eq!(positions(&fits), vec![(i32::MAX, "2147483647_max")]);
    }

    #[test]
    fn numbered_problems_are_errors() {
        let dup = parse_folder(&folder(&[("0001_a.sql", ""), ("001_b.sql", "")])).unwrap_err();
        assert_eq!(dup.to_string(), "0001_a.sql and 001_b.sql share the number 1");
        let dup_zero = parse_folder(&folder(&[("0000_a.sql", ""), ("0_b.sql", "")])).unwrap_err();
        assert_eq!(dup_zero.to_string(), "0000_a.sql and 0_b.sql share the number 0");
        for bad in ["init.sql", "0001.sql", "0001-init.sql", "0001_.sql", "_0001_x.sql"] {
            let err = parse_folder(&folder(&[(bad, "")])).unwrap_err();
            assert_eq!(err, FolderError::UnnumberedFile(bad.to_string()));
            assert!(err.to_string().contains(ACCEPTED_LAYOUTS), "{err}");
        }
    }

    #[test]
    fn reads_a_diesel_folder() {
        let parsed = parse_folder(&folder(&[
            ("00000000000000_diesel_initial_setup/up.sql", "-- setup\n"),
            ("00000000000000_diesel_initial_setup/down.sql", "-- undo\n"),
            ("2019-02-26-002946_create_user/up.sql", "CREATE TABLE users (id int);\n"),
            ("2019-02-26-002946_create_user/down.sql", "DROP TABLE users;\n"),
            ("2019-03-01-000000_add_posts/up.sql", "CREATE TABLE posts (id int);\n"),
            ("2019-03-01-000000_add_posts/metadata.toml", "run_in_transaction = true\n"),
            (".keep", ""),
        ]))
        .unwrap();
        assert_eq!(parsed.format, FolderFormat::Diesel);
        assert_eq!(
            positions(&parsed),
            vec![
                (0, "00000000000000_diesel_initial_setup"),
                (1, "2019-02-26-002946_create_user"),
                (2, "2019-03-01-000000_add_posts")
            ]
        );
        let user = &parsed.migrations[1];
        assert_eq!(user.sql, "CREATE TABLE users (id int);\n");
        assert_eq!(user.sha256, sha256_hex("CREATE TABLE users (id int);\n"));
        assert_eq!(user.journal_when, None);
        assert_eq!(parsed.file_of(user), "2019-02-26-002946_create_user/up.sql");

        // Small versions are positions, like numbered files.
        let small = parse_folder(&folder(&[("2_b/up.sql", ""), ("1_a/up.sql", "")])).unwrap();
        assert_eq!(positions(&small), vec![(1, "1_a"), (2, "2_b")]);
    }

    #[test]
    fn diesel_problems_are_errors() {
        let err = parse_folder(&folder(&[("create_users/up.sql", "")])).unwrap_err();
        assert_eq!(err, FolderError::UnversionedDirectory("create_users".into()));
        assert!(err.to_string().starts_with("create_users/up.sql: the directory does not follow"), "{err}");
        for bad in ["2019-_x", "-2019_x", "2019_", "2019"] {
            let err = parse_folder(&folder(&[(&format!("{bad}/up.sql"), "")])).unwrap_err();
            assert_eq!(err, FolderError::UnversionedDirectory(bad.into()), "{bad}");
        }
        let dup = parse_folder(&folder(&[("2019-01-01_a/up.sql", ""), ("20190101_b/up.sql", "")])).unwrap_err();
        assert_eq!(dup.to_string(), "2019-01-01_a/up.sql and 20190101_b/up.sql share the number 20190101");
        let mixed = parse_folder(&folder(&[("0001_a.sql", ""), ("0002_b/up.sql", "")])).unwrap_err();
        assert_eq!(mixed, FolderError::MixedLayouts { file: "0001_a.sql".into(), directory: "0002_b".into() });
        // Only down.sql, or deeper files, are not migrations.
        let nothing = parse_folder(&folder(&[("0001_a/down.sql", ""), ("a/b/up.sql", "")])).unwrap_err();
        assert_eq!(nothing, FolderError::Empty);
    }

    #[test]
    fn a_folder_of_nothing_names_the_accepted_layouts() {
        let err = parse_folder(&folder(&[("README.md", "")])).unwrap_err();
        assert_eq!(err, FolderError::Empty);
        assert_eq!(
            err.to_string(),
            "the folder holds no migrations (accepted layouts: drizzle-kit (meta/_journal.json and <tag>.sql files), \
             numbered files (NNNN_name.sql, such as 0001_init.sql or 20190226002946_create_user.sql) and diesel \
             (<version>_<name>/up.sql))"
        );
    }

    #[test]
    fn read_folder_takes_bytes_as_they_are() {
        let dir = std::env::temp_dir().join(format!("mt-core-read-folder-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("meta")).unwrap();
        std::fs::create_dir_all(dir.join("0002_b")).unwrap();
        std::fs::create_dir_all(dir.join("nested/deeper")).unwrap();
        std::fs::write(dir.join("0001_a.sql"), "SELECT 1;\r\n\n").unwrap();
        std::fs::write(dir.join("notes.txt"), "x").unwrap();
        std::fs::write(dir.join("meta/_journal.json"), "{}").unwrap();
        std::fs::write(dir.join("meta/0000_snapshot.json"), "{}").unwrap();
        std::fs::write(dir.join("0002_b/up.sql"), "up").unwrap();
        std::fs::write(dir.join("0002_b/down.sql"), "down").unwrap();
        std::fs::write(dir.join("nested/deeper/up.sql"), "no").unwrap();
        let files = read_folder(&dir).unwrap();
        let keys: Vec<_> = files.keys().map(String::as_str).collect();
        assert_eq!(keys, vec!["0001_a.sql", "0002_b/up.sql", "meta/_journal.json"]);
        assert_eq!(files["0001_a.sql"], "SELECT 1;\r\n\n");

        std::fs::write(dir.join("0003_bad.sql"), [0xff, 0xfe]).unwrap();
        let err = read_folder(&dir).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("0003_bad.sql is not UTF-8"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();

        let err = read_folder(&dir).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
        assert!(err.to_string().contains("mt-core-read-folder"), "{err}");
    }
}
