//! Tracking tables: how a schema records which migrations it has applied.
//!
//! Three formats, all compatible with what teams already have in their databases:
//!
//! | format | columns | a migration is applied when |
//! | --- | --- | --- |
//! | `name` | `id serial, name varchar(255) unique not null, applied_at timestamptz` | its name is recorded |
//! | `hash` | `id serial, hash text not null, created_at timestamptz` | its SHA-256 is recorded |
//! | `drizzle-kit` | `id serial, hash text not null, created_at bigint` | its SHA-256 or its journal `when` is recorded |
//!
//! The last is drizzle-orm's own `__drizzle_migrations` layout, with `created_at` holding the
//! journal's `when` (ms), so drizzle-orm's migrator agrees with ours about what is applied.

use std::fmt;
use std::str::FromStr;

use crate::migrations::Migration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TrackingFormat {
    Name,
    Hash,
    DrizzleKit,
}

impl TrackingFormat {
    pub const ALL: [TrackingFormat; 3] = [TrackingFormat::Name, TrackingFormat::Hash, TrackingFormat::DrizzleKit];

    pub fn as_str(self) -> &'static str {
        match self {
            TrackingFormat::Name => "name",
            TrackingFormat::Hash => "hash",
            TrackingFormat::DrizzleKit => "drizzle-kit",
        }
    }

    /// Recognises an existing table from its columns (name, type as `format_type` prints it).
    pub fn detect<'a>(columns: impl IntoIterator<Item = (&'a str, &'a str)>) -> Option<Self> {
        let mut has_name = false;
        let mut has_hash = false;
        let mut created_at = None;
        for (column, ty) in columns {
            match column {
                "name" => has_name = true,
                "hash" => has_hash = true,
                "created_at" => created_at = Some(ty),
                _ => {}
            }
        }
        match (has_name, has_hash, created_at) {
            (true, false, _) => Some(TrackingFormat::Name),
            (false, true, Some("bigint")) => Some(TrackingFormat::DrizzleKit),
            (false, true, Some(ty)) if ty.starts_with("timestamp") => Some(TrackingFormat::Hash),
            _ => None,
        }
    }

    /// `CREATE TABLE IF NOT EXISTS` for this format. Both names must already be quoted.
    ///
    /// This and the statements below run as the extension owner, so every function and
    /// operator in them is schema-qualified: nothing in a tenant schema or `public` can
    /// stand in for `pg_catalog`'s.
    pub fn create_table_sql(self, qualified_table: &str) -> String {
        let columns = match self {
            TrackingFormat::Name => {
                "id serial PRIMARY KEY, name varchar(255) NOT NULL UNIQUE, applied_at timestamptz NOT NULL DEFAULT pg_catalog.now()"
            }
            TrackingFormat::Hash => "id serial PRIMARY KEY, hash text NOT NULL, created_at timestamptz NOT NULL DEFAULT pg_catalog.now()",
            TrackingFormat::DrizzleKit => "id serial PRIMARY KEY, hash text NOT NULL, created_at bigint",
        };
        format!("CREATE TABLE IF NOT EXISTS {qualified_table} ({columns})")
    }

    /// A query returning `(id int, name text, hash text, journal_when bigint, applied_at_ms
    /// bigint)` for every row, whatever the format.
    pub fn select_records_sql(self, qualified_table: &str) -> String {
        let columns = match self {
            TrackingFormat::Name => "id, name::text, NULL::text, NULL::bigint, applied_at",
            TrackingFormat::Hash => "id, NULL::text, hash, NULL::bigint, created_at",
            TrackingFormat::DrizzleKit => "id, NULL::text, hash, created_at, NULL::timestamptz",
        };
        // applied_at comes back as ms since the epoch, like Record::applied_at_ms.
        format!(
            "SELECT id, name, hash, journal_when, \
                    (pg_catalog.date_part('epoch', applied_at) OPERATOR(pg_catalog.*) 1000)::bigint \
             FROM (SELECT {columns} FROM {qualified_table}) AS r(id, name, hash, journal_when, applied_at) ORDER BY id"
        )
    }

    /// An `INSERT` of one record taking `$1` name (text), `$2` hash (text), `$3` journal when
    /// (bigint, ms) and `$4` applied at (bigint, ms); each format uses the parameters it has
    /// columns for. With `keep_id`, `$5` is the row's id (conversion keeps ids). Returns the
    /// row's id.
    pub fn insert_record_sql(self, qualified_table: &str, keep_id: bool) -> String {
        let (columns, values) = match self {
            TrackingFormat::Name => {
                ("name, applied_at", "$1, pg_catalog.to_timestamp($4::float8 OPERATOR(pg_catalog./) 1000)")
            }
            TrackingFormat::Hash => {
                ("hash, created_at", "$2, pg_catalog.to_timestamp($4::float8 OPERATOR(pg_catalog./) 1000)")
            }
            TrackingFormat::DrizzleKit => ("hash, created_at", "$2, $3"),
        };
        let (id_column, id_value) = if keep_id { ("id, ", "$5, ") } else { ("", "") };
        format!("INSERT INTO {qualified_table} ({id_column}{columns}) VALUES ({id_value}{values}) RETURNING id")
    }

    /// The record this format writes for `migration` applied at `applied_at_ms`.
    pub fn record_for(self, migration: &Migration, applied_at_ms: i64) -> Record {
        let when = migration.journal_when.unwrap_or(applied_at_ms);
        match self {
            TrackingFormat::Name => Record::new(Some(&migration.name), None, None, Some(applied_at_ms)),
            TrackingFormat::Hash => Record::new(None, Some(&migration.sha256), None, Some(applied_at_ms)),
            TrackingFormat::DrizzleKit => Record::new(None, Some(&migration.sha256), Some(when), None),
        }
    }
}

impl fmt::Display for TrackingFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TrackingFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TrackingFormat::ALL
            .into_iter()
            .find(|f| f.as_str() == s)
            .ok_or_else(|| format!("tracking format \"{s}\" is invalid: it must be name, hash or drizzle-kit"))
    }
}

/// One row of a tracking table, in any format.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Record {
    pub id: i32,
    pub name: Option<String>,
    pub hash: Option<String>,
    /// drizzle-kit's `created_at`: the journal `when` in ms.
    pub journal_when: Option<i64>,
    /// When it was applied, in ms since the epoch (name and hash formats).
    pub applied_at_ms: Option<i64>,
}

impl Record {
    pub fn new(name: Option<&str>, hash: Option<&str>, journal_when: Option<i64>, applied_at_ms: Option<i64>) -> Self {
        Record { id: 0, name: name.map(str::to_string), hash: hash.map(str::to_string), journal_when, applied_at_ms }
    }

    /// Whether this record says `migration` is applied (same rule as the view `mt.applied_migrations`).
    pub fn matches(&self, migration: &Migration) -> bool {
        self.name.as_deref() == Some(migration.name.as_str())
            || self.hash.as_deref() == Some(migration.sha256.as_str())
            || (self.journal_when.is_some() && self.journal_when == migration.journal_when)
    }

    /// This record rewritten for another format, using the registered migrations to find
    /// the name or hash the target format needs. A record of a migration that is no longer
    /// registered keeps what it has: its hash becomes its name and vice versa, so nothing is
    /// lost and converting back restores it.
    pub fn convert(&self, to: TrackingFormat, migrations: &[Migration]) -> Record {
        let migration = migrations.iter().find(|m| self.matches(m));
        let name = migration.map(|m| m.name.clone()).or_else(|| self.name.clone()).or_else(|| self.hash.clone());
        let hash = migration.map(|m| m.sha256.clone()).or_else(|| self.hash.clone()).or_else(|| self.name.clone());
        let applied_at_ms = self.applied_at_ms.or(self.journal_when);
        let journal_when = migration.and_then(|m| m.journal_when).or(self.journal_when).or(self.applied_at_ms);
        match to {
            TrackingFormat::Name => Record { id: self.id, name, hash: None, journal_when: None, applied_at_ms },
            TrackingFormat::Hash => Record { id: self.id, name: None, hash, journal_when: None, applied_at_ms },
            TrackingFormat::DrizzleKit => Record { id: self.id, name: None, hash, journal_when, applied_at_ms: None },
        }
    }
}

/// The registered migrations no record covers, in order.
pub fn pending<'a>(migrations: &'a [Migration], records: &[Record]) -> Vec<&'a Migration> {
    migrations.iter().filter(|m| !records.iter().any(|r| r.matches(m))).collect()
}

/// Records that match no registered migration.
pub fn orphans<'a>(records: &'a [Record], migrations: &[Migration]) -> Vec<&'a Record> {
    records.iter().filter(|r| !migrations.iter().any(|m| r.matches(m))).collect()
}

/// Records of the ledger (what the engine saw applied) missing from a tracking table: a
/// record is the same when its id, name, hash and journal time are. A tracking table that
/// lost records would have the engine apply their migrations again, so it must be repaired,
/// never trusted as it is. Records only the table has (another tool applied migrations)
/// are not lost.
pub fn lost<'a>(ledger: &'a [Record], table: &[Record]) -> Vec<&'a Record> {
    let same = |a: &Record, b: &Record| {
        a.id == b.id && a.name == b.name && a.hash == b.hash && a.journal_when == b.journal_when
    };
    ledger.iter().filter(|l| !table.iter().any(|t| same(l, t))).collect()
}

/// Whether two lists hold the same records, in the sense of [`lost`] (applied_at aside).
pub fn same_records(a: &[Record], b: &[Record]) -> bool {
    a.len() == b.len() && lost(a, b).is_empty() && lost(b, a).is_empty()
}

/// Quotes an identifier the way `quote_ident` does when quoting is needed; always quoting
/// is always correct.
pub fn quote_identifier(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// `"schema"."table"`.
pub fn qualified(schema: &str, table: &str) -> String {
    format!("{}.{}", quote_identifier(schema), quote_identifier(table))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn migrations() -> Vec<Migration> {
        vec![
            Migration::new(0, "0000_users", "CREATE TABLE users ();", Some(1_700_000_000_000)),
            Migration::new(1, "0001_posts", "CREATE TABLE posts ();", Some(1_700_000_001_000)),
            Migration::new(2, "0002_plain", "CREATE TABLE plain ();", None),
        ]
    }

    #[test]
    fn lost_records_are_the_ledgers_the_table_no_longer_has() {
        let record = |id: i32, name: &str| Record {
            id,
            ..Record::new(Some(name), None, None, Some(1_700_000_000_000 + id as i64))
        };
        let ledger = vec![record(1, "0000_users"), record(2, "0001_posts")];
        assert!(lost(&ledger, &ledger).is_empty());
        // Another tool added a record: nothing is lost.
        let more = vec![record(1, "0000_users"), record(2, "0001_posts"), record(3, "0002_tags")];
        assert!(lost(&ledger, &more).is_empty());
        assert!(!same_records(&ledger, &more) && same_records(&more[..2], &ledger));
        // Emptied, a row deleted by hand, or a row rewritten under the same id: lost.
        assert_eq!(lost(&ledger, &[]).len(), 2);
        assert_eq!(lost(&ledger, &ledger[..1]).iter().map(|r| r.id).collect::<Vec<_>>(), [2]);
        assert_eq!(lost(&ledger, &[record(1, "0000_users"), record(2, "0009_other")]).len(), 1);
        // applied_at is not compared: formats without it and the ledger may differ there.
        assert!(lost(&ledger, &[ledger[0].clone(), Record { applied_at_ms: None, ..ledger[1].clone() }]).is_empty());
    }

    #[test]
    fn detects_each_format_from_its_columns() {
        let name = [("id", "integer"), ("name", "character varying(255)"), ("applied_at", "timestamp with time zone")];
        let hash = [("id", "integer"), ("hash", "text"), ("created_at", "timestamp with time zone")];
        let kit = [("id", "integer"), ("hash", "text"), ("created_at", "bigint")];
        assert_eq!(TrackingFormat::detect(name), Some(TrackingFormat::Name));
        assert_eq!(TrackingFormat::detect(hash), Some(TrackingFormat::Hash));
        assert_eq!(TrackingFormat::detect(kit), Some(TrackingFormat::DrizzleKit));
        assert_eq!(TrackingFormat::detect([("id", "integer"), ("version", "text")]), None);
    }

    #[test]
    fn formats_parse_and_print() {
        for f in TrackingFormat::ALL {
            assert_eq!(f.as_str().parse::<TrackingFormat>(), Ok(f));
        }
        assert!("auto".parse::<TrackingFormat>().unwrap_err().contains("\"auto\""));
    }

    #[test]
    fn pending_follows_each_formats_rule() {
        let ms = migrations();
        let by_name = [Record::new(Some("0000_users"), None, None, Some(1))];
        assert_eq!(pending(&ms, &by_name).len(), 2);
        let by_hash = [Record::new(None, Some(&ms[1].sha256), None, Some(1))];
        assert_eq!(pending(&ms, &by_hash).iter().map(|m| m.position).collect::<Vec<_>>(), vec![0, 2]);
        // drizzle-orm records created_at = journal when; a matching when counts even if the
        // file was edited after it was applied.
        let by_when = [Record::new(None, Some("edited"), Some(1_700_000_000_000), None)];
        assert_eq!(pending(&ms, &by_when).len(), 2);
        assert_eq!(orphans(&by_hash, &ms).len(), 0);
        let stray = [Record::new(Some("9999_gone"), None, None, Some(1))];
        assert_eq!(orphans(&stray, &ms).len(), 1);
    }

    #[test]
    fn conversion_round_trips_without_losing_records() {
        let ms = migrations();
        let start: Vec<Record> = vec![
            Record { id: 1, ..TrackingFormat::Name.record_for(&ms[0], 5_000) },
            Record { id: 2, ..TrackingFormat::Name.record_for(&ms[2], 6_000) },
            Record { id: 3, ..Record::new(Some("0099_unregistered"), None, None, Some(7_000)) },
        ];
        let hash: Vec<Record> = start.iter().map(|r| r.convert(TrackingFormat::Hash, &ms)).collect();
        assert_eq!(hash[0].hash.as_deref(), Some(ms[0].sha256.as_str()));
        assert_eq!(hash[2].hash.as_deref(), Some("0099_unregistered"));
        let kit: Vec<Record> = hash.iter().map(|r| r.convert(TrackingFormat::DrizzleKit, &ms)).collect();
        assert_eq!(kit[0].journal_when, Some(1_700_000_000_000));
        assert_eq!(kit[1].journal_when, Some(6_000), "no journal: the apply time stands in");
        let back: Vec<Record> = kit.iter().map(|r| r.convert(TrackingFormat::Name, &ms)).collect();
        let names: Vec<_> = back.iter().map(|r| r.name.as_deref().unwrap()).collect();
        assert_eq!(names, vec!["0000_users", "0002_plain", "0099_unregistered"]);
        assert_eq!(back.iter().map(|r| r.id).collect::<Vec<_>>(), vec![1, 2, 3]);
        assert!(pending(&ms, &back).iter().map(|m| m.position).eq([1]));
    }

    #[test]
    fn generated_sql_quotes_identifiers() {
        let table = qualified("tenant_a", "__drizzle_migrations");
        assert_eq!(table, "\"tenant_a\".\"__drizzle_migrations\"");
        assert_eq!(quote_identifier("we\"ird"), "\"we\"\"ird\"");
        assert!(TrackingFormat::Name.create_table_sql(&table).contains("name varchar(255) NOT NULL UNIQUE"));
        assert!(TrackingFormat::DrizzleKit
            .insert_record_sql(&table, false)
            .contains("(hash, created_at) VALUES ($2, $3)"));
        assert!(TrackingFormat::Name
            .insert_record_sql(&table, true)
            .contains("(id, name, applied_at) VALUES ($5, $1,"));
    }
}
