//! The normalized model of a schema, as the extension's `mt.introspect` returns it, and the
//! pure functions on it: the difference between two models and a fingerprint.
//!
//! The extension fills the model from `pg_catalog` (`sql/drift.sql`, where the normalization
//! rules are: the schema's own name removed from definitions, constraints and indexes keyed by
//! definition rather than name, columns by table and name). Its drift views diff set-based in
//! SQL over thousands of schemas at once; this module is the same comparison for one pair of
//! models anywhere else (a client comparing two databases, tests), and
//! [`SchemaModel::fingerprint`] is byte-for-byte the fingerprint the views compute, which a
//! regression test checks.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Write;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// `{object_type: {object_name: definition}}`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SchemaModel(pub BTreeMap<String, BTreeMap<String, Value>>);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    /// In the expected model only.
    Missing,
    /// In the actual model only.
    Extra,
    /// In both, with different definitions.
    Changed,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Difference {
    pub object_type: String,
    pub object_name: String,
    pub change: Change,
    pub expected: Option<Value>,
    pub actual: Option<Value>,
}

impl SchemaModel {
    pub fn from_json(json: &str) -> serde_json::Result<SchemaModel> {
        serde_json::from_str(json)
    }

    /// Every object as (type, name, definition), in byte order of type then name.
    pub fn objects(&self) -> impl Iterator<Item = (&str, &str, &Value)> {
        self.0
            .iter()
            .flat_map(|(kind, objects)| objects.iter().map(move |(name, def)| (kind.as_str(), name.as_str(), def)))
    }

    /// What `actual` lacks, adds or changes compared with `self`, ordered by type and name.
    pub fn diff(&self, actual: &SchemaModel) -> Vec<Difference> {
        let expected: BTreeMap<(&str, &str), &Value> = self.objects().map(|(t, n, d)| ((t, n), d)).collect();
        let found: BTreeMap<(&str, &str), &Value> = actual.objects().map(|(t, n, d)| ((t, n), d)).collect();
        let mut keys: Vec<&(&str, &str)> = expected.keys().chain(found.keys()).collect();
        keys.sort();
        keys.dedup();
        keys.into_iter()
            .filter_map(|key| {
                let (e, a) = (expected.get(key).copied(), found.get(key).copied());
                let change = match (e, a) {
                    (Some(_), None) => Change::Missing,
                    (None, Some(_)) => Change::Extra,
                    (Some(e), Some(a)) if e != a => Change::Changed,
                    _ => return None,
                };
                Some(Difference {
                    object_type: key.0.to_string(),
                    object_name: key.1.to_string(),
                    change,
                    expected: e.cloned(),
                    actual: a.cloned(),
                })
            })
            .collect()
    }

    /// SHA-256 hex over `type \n name \n definition` per object, objects joined by a blank
    /// line, in byte order; definitions written as PostgreSQL prints `jsonb`. Equal models
    /// have equal fingerprints, so equal schemas can skip the full comparison.
    pub fn fingerprint(&self) -> String {
        let mut text = String::new();
        for (index, (kind, name, definition)) in self.objects().enumerate() {
            if index > 0 {
                text.push_str("\n\n");
            }
            let _ = write!(text, "{kind}\n{name}\n");
            write_jsonb(&mut text, definition);
        }
        Sha256::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// Writes `value` the way PostgreSQL's `jsonb` output does: object keys shorter first, then
/// in byte order; `", "` and `": "` as separators; strings escaped like `escape_json`.
pub fn write_jsonb(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            let _ = write!(out, "{n}");
        }
        Value::String(s) => write_jsonb_string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_jsonb(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_by(|a, b| a.len().cmp(&b.len()).then_with(|| a.as_bytes().cmp(b.as_bytes())));
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_jsonb_string(out, key);
                out.push_str(": ");
                write_jsonb(out, &map[key]);
            }
            out.push('}');
        }
    }
}

fn write_jsonb_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `definition` with the schema's own qualifier removed, so that the same object reads the
/// same in every tenant: `schema.` where it starts a name (at the start, or after a character
/// that cannot end an identifier) and `"schema".` anywhere. What `mt_internal.strip_schema`
/// runs for each of the hundreds of definitions of each schema the drift views read; a
/// regular expression built per schema would be compiled again for nearly every row.
pub fn strip_qualifier<'a>(definition: &'a str, schema: &str) -> Cow<'a, str> {
    if schema.is_empty() || !definition.contains(schema) {
        return Cow::Borrowed(definition);
    }
    let quoted = format!("\"{schema}\".");
    let plain = format!("{schema}.");
    let bytes = definition.as_bytes();
    let ends_identifier = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'$' || b == b'"';
    let mut out = String::with_capacity(definition.len());
    let (mut i, mut copied) = (0, 0);
    while i < bytes.len() {
        // Byte-wise: a match starts with an ASCII byte, so every cut is on a char boundary.
        let rest = &bytes[i..];
        let skip = if rest.starts_with(quoted.as_bytes()) {
            quoted.len()
        } else if rest.starts_with(plain.as_bytes()) && (i == 0 || !ends_identifier(bytes[i - 1])) {
            plain.len()
        } else {
            0
        };
        if skip > 0 {
            out.push_str(&definition[copied..i]);
            i += skip;
            copied = i;
        } else {
            i += 1;
        }
    }
    out.push_str(&definition[copied..]);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn strip_qualifier_removes_only_the_schemas_own_qualifier() {
        let strip = |d: &str| strip_qualifier(d, "tenant_a").into_owned();
        assert_eq!(strip("tenant_a.status"), "status");
        assert_eq!(strip("nextval('tenant_a.users_id_seq'::regclass)"), "nextval('users_id_seq'::regclass)");
        assert_eq!(strip("\"tenant_a\".users"), "users");
        assert_eq!(strip("x::tenant_a.kind, (tenant_a.f(1))"), "x::kind, (f(1))");
        // Another schema whose name ends the same way, and names that merely contain it.
        assert_eq!(strip("old_tenant_a.users"), "old_tenant_a.users");
        assert_eq!(strip("tenant_ab.users"), "tenant_ab.users");
        assert_eq!(strip("tenant_a"), "tenant_a");
        assert_eq!(strip("public.users, shared.t"), "public.users, shared.t");
        // Not a character boundary problem: multibyte text before and after.
        assert_eq!(strip("'é' || tenant_a.f('ü')"), "'é' || f('ü')");
        assert!(matches!(strip_qualifier("integer", "tenant_a"), Cow::Borrowed(_)));
    }

    use super::*;
    use serde_json::json;

    fn model(value: Value) -> SchemaModel {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn identical_models_have_no_differences_and_one_fingerprint() {
        let a = model(json!({"table": {"users": {"kind": "table"}}, "column": {"users.id": {"type": "integer"}}}));
        let b = a.clone();
        assert!(a.diff(&b).is_empty());
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_eq!(a.fingerprint().len(), 64);
    }

    #[test]
    fn each_kind_of_difference_is_reported_once() {
        let expected = model(json!({
            "column": {"users.name": {"type": "character varying(255)"}, "users.id": {"type": "integer"}},
            "index": {"users: CREATE INDEX ON users USING btree (name)": {"unique": false}}
        }));
        let actual = model(json!({
            "column": {"users.name": {"type": "character varying(100)"}, "users.id": {"type": "integer"}},
            "table": {"hotfix": {"kind": "table"}}
        }));
        let diff = expected.diff(&actual);
        let summary: Vec<(&str, &str, Change)> =
            diff.iter().map(|d| (d.object_type.as_str(), d.object_name.as_str(), d.change)).collect();
        assert_eq!(
            summary,
            vec![
                ("column", "users.name", Change::Changed),
                ("index", "users: CREATE INDEX ON users USING btree (name)", Change::Missing),
                ("table", "hotfix", Change::Extra),
            ]
        );
        assert_eq!(diff[0].expected, Some(json!({"type": "character varying(255)"})));
        assert_eq!(diff[0].actual, Some(json!({"type": "character varying(100)"})));
        assert_ne!(expected.fingerprint(), actual.fingerprint());
    }

    #[test]
    fn jsonb_text_matches_postgres() {
        // SELECT '{"type": "x", "a": [1, null, true], "not_null": false, "q": "a\"b\n"}'::jsonb::text
        let value = json!({"type": "x", "a": [1, null, true], "not_null": false, "q": "a\"b\n"});
        let mut text = String::new();
        write_jsonb(&mut text, &value);
        assert_eq!(text, r#"{"a": [1, null, true], "q": "a\"b\n", "type": "x", "not_null": false}"#);
    }
}
