//! How a tenant id becomes a schema name.
//!
//! The rules, in the order they are checked:
//!
//! 1. A tenant id is 1 to 63 bytes of lowercase ASCII letters, digits, `_` and `-`, and starts
//!    with a letter or a digit. UUIDs and slugs are valid ids; uppercase, spaces, quotes,
//!    backslashes, `;`, `.` and any non-ASCII character are not.
//! 2. The id is put into the template (`tenant_{id}` by default) with every `-` mapped to `_`,
//!    because `-` would force the name to be quoted. Two ids that differ only by `-`/`_`
//!    (`acme-eu`, `acme_eu`) therefore map to the same schema; the tenant registry refuses
//!    the second one instead of letting them share a schema.
//! 3. The schema name must be exactly what `quote_ident` leaves unquoted: it starts with a
//!    letter or `_`, holds only lowercase letters, digits and `_`, and is not a keyword that
//!    PostgreSQL quotes. So a tool that splices it into SQL unquoted still means that schema.
//! 4. It is at most 63 bytes (`NAMEDATALEN - 1`); a longer name is an error, never truncated.
//! 5. It is not reserved: `public`, `information_schema`, anything starting with `pg_`, the
//!    extension's own `mt` and `mt_*` schemas, and the configured shared schema.

use std::fmt;

use crate::keywords::is_quoted_keyword;

/// PostgreSQL's identifier limit: `NAMEDATALEN - 1` bytes.
pub const MAX_IDENTIFIER_BYTES: usize = 63;

/// The placeholder a schema template must contain exactly once.
pub const ID_PLACEHOLDER: &str = "{id}";

/// The template used when `mt.config` has none.
pub const DEFAULT_TEMPLATE: &str = "tenant_{id}";

/// The schema that holds shared (non-tenant) tables unless configured otherwise.
pub const DEFAULT_SHARED_SCHEMA: &str = "public";

/// A broken naming rule. `Display` names the offending input and the rule, so the
/// extension can hand the text to `ereport` unchanged (SQLSTATE 22023).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamingError {
    NullTenantId,
    EmptyTenantId,
    TenantIdTooLong { id: String, bytes: usize },
    TenantIdBadStart { id: String },
    TenantIdBadChar { id: String, ch: char, position: usize },
    SchemaNameTooLong { id: String, schema: String, bytes: usize },
    SchemaNameNeedsQuoting { id: String, schema: String, reason: &'static str },
    ReservedSchema { id: String, schema: String, reason: String },
    BadTemplate { template: String, reason: String },
}

impl fmt::Display for NamingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NamingError::NullTenantId => write!(f, "tenant id must not be NULL"),
            NamingError::EmptyTenantId => write!(f, "tenant id must not be empty"),
            NamingError::TenantIdTooLong { id, bytes } => write!(
                f,
                "tenant id \"{}\" is {bytes} bytes long; the limit is {MAX_IDENTIFIER_BYTES} bytes",
                shown(id)
            ),
            NamingError::TenantIdBadStart { id } => write!(
                f,
                "tenant id \"{}\" must start with a lowercase ASCII letter or a digit",
                shown(id)
            ),
            NamingError::TenantIdBadChar { id, ch, position } => write!(
                f,
                "tenant id \"{}\" contains {} at byte {position}; only lowercase ASCII letters, digits, \"_\" and \"-\" are allowed",
                shown(id),
                describe_char(*ch)
            ),
            NamingError::SchemaNameTooLong { id, schema, bytes } => write!(
                f,
                "schema name \"{schema}\" for tenant id \"{id}\" is {bytes} bytes long; the limit is {MAX_IDENTIFIER_BYTES} bytes and names are never truncated"
            ),
            NamingError::SchemaNameNeedsQuoting { id, schema, reason } => write!(
                f,
                "schema name \"{schema}\" for tenant id \"{id}\" would need quoting: {reason}"
            ),
            NamingError::ReservedSchema { id, schema, reason } => write!(
                f,
                "schema name \"{schema}\" for tenant id \"{id}\" is reserved: {reason}"
            ),
            NamingError::BadTemplate { template, reason } => {
                write!(f, "schema template \"{}\" is invalid: {reason}", shown(template))
            }
        }
    }
}

impl std::error::Error for NamingError {}

/// Shows hostile input without control characters or unbounded length in messages.
fn shown(input: &str) -> String {
    const MAX_CHARS: usize = 80;
    let mut out: String = input
        .chars()
        .take(MAX_CHARS)
        .flat_map(|c| if c.is_control() { c.escape_default().collect::<Vec<_>>() } else { vec![c] })
        .collect();
    if input.chars().count() > MAX_CHARS {
        out.push_str("...");
    }
    out
}

fn describe_char(ch: char) -> String {
    match ch {
        ' ' => "a space".to_string(),
        c if c.is_ascii_uppercase() => format!("the uppercase letter \"{c}\""),
        c if c.is_control() => format!("the control character U+{:04X}", c as u32),
        c if !c.is_ascii() => format!("the non-ASCII character \"{c}\" (U+{:04X})", c as u32),
        c => format!("the character \"{c}\""),
    }
}

/// Checks rule 1 for a tenant id.
pub fn validate_tenant_id(id: &str) -> Result<(), NamingError> {
    let Some(first) = id.chars().next() else {
        return Err(NamingError::EmptyTenantId);
    };
    if let Some((position, ch)) = id.char_indices().find(|&(_, c)| !is_id_char(c)) {
        return Err(NamingError::TenantIdBadChar { id: id.to_string(), ch, position });
    }
    if !(first.is_ascii_lowercase() || first.is_ascii_digit()) {
        return Err(NamingError::TenantIdBadStart { id: id.to_string() });
    }
    if id.len() > MAX_IDENTIFIER_BYTES {
        return Err(NamingError::TenantIdTooLong { id: id.to_string(), bytes: id.len() });
    }
    Ok(())
}

fn is_id_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-'
}

fn is_schema_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'
}

/// True when `quote_ident(name)` returns `name` unchanged.
pub fn is_plain_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && chars.all(is_schema_char)
        && !is_quoted_keyword(name)
}

/// Why a schema name is reserved for something other than a tenant, if it is.
pub fn reserved_reason(schema: &str, shared_schema: &str) -> Option<String> {
    if schema == "public" {
        Some("\"public\" is PostgreSQL's default schema".into())
    } else if schema == "information_schema" {
        Some("\"information_schema\" belongs to PostgreSQL".into())
    } else if schema.starts_with("pg_") {
        Some("names starting with \"pg_\" belong to PostgreSQL".into())
    } else if schema == "mt" || schema.starts_with("mt_") {
        Some("\"mt\" and names starting with \"mt_\" belong to the multitenant extension".into())
    } else if schema == shared_schema {
        Some(format!("\"{shared_schema}\" is the configured shared schema"))
    } else {
        None
    }
}

/// A parsed schema template: the text before and after `{id}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaTemplate {
    prefix: String,
    suffix: String,
}

impl SchemaTemplate {
    /// Parses and checks a template: exactly one `{id}`, and around it only characters that
    /// may appear in an unquoted schema name.
    pub fn parse(template: &str) -> Result<Self, NamingError> {
        let bad = |reason: String| NamingError::BadTemplate { template: template.to_string(), reason };
        let mut parts = template.split(ID_PLACEHOLDER);
        let (Some(prefix), Some(suffix), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad(format!("it must contain {ID_PLACEHOLDER} exactly once")));
        };
        if let Some(ch) = prefix.chars().chain(suffix.chars()).find(|&c| !is_schema_char(c)) {
            return Err(bad(format!(
                "{} is not allowed; outside {ID_PLACEHOLDER} only lowercase ASCII letters, digits and \"_\" are",
                describe_char(ch)
            )));
        }
        if prefix.len() + suffix.len() >= MAX_IDENTIFIER_BYTES {
            return Err(bad(format!("it leaves no room for the id within {MAX_IDENTIFIER_BYTES} bytes")));
        }
        Ok(SchemaTemplate { prefix: prefix.to_string(), suffix: suffix.to_string() })
    }

    /// The schema name for an already validated id: `-` becomes `_`.
    fn render(&self, id: &str) -> String {
        format!("{}{}{}", self.prefix, id.replace('-', "_"), self.suffix)
    }

    /// The id whose schema `schema` would be, read back through the template, if the name
    /// has the template's shape. `-` cannot be recovered, so ids come back with `_`.
    pub fn tenant_id_of(&self, schema: &str) -> Option<String> {
        let inner = schema.strip_prefix(&self.prefix)?.strip_suffix(&self.suffix)?;
        (!inner.is_empty()).then(|| inner.to_string())
    }

    /// The bytes left for a tenant id.
    pub fn max_id_bytes(&self) -> usize {
        MAX_IDENTIFIER_BYTES - self.prefix.len() - self.suffix.len()
    }
}

impl fmt::Display for SchemaTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{ID_PLACEHOLDER}{}", self.prefix, self.suffix)
    }
}

/// The complete naming rules: a template plus the shared schema it must never produce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Naming {
    template: SchemaTemplate,
    shared_schema: String,
}

impl Default for Naming {
    fn default() -> Self {
        Naming::new(DEFAULT_TEMPLATE, DEFAULT_SHARED_SCHEMA).expect("the default template is valid")
    }
}

impl Naming {
    /// Builds the rules, refusing a template that cannot produce any valid name (such as
    /// `pg_{id}`): it is tried with the sample id `a`.
    pub fn new(template: &str, shared_schema: &str) -> Result<Self, NamingError> {
        let naming = Naming { template: SchemaTemplate::parse(template)?, shared_schema: shared_schema.to_string() };
        if let Err(err) = naming.schema_name("a") {
            return Err(NamingError::BadTemplate {
                template: template.to_string(),
                reason: format!("it cannot produce a valid schema name ({err})"),
            });
        }
        Ok(naming)
    }

    pub fn template(&self) -> &SchemaTemplate {
        &self.template
    }

    /// Applies every rule to `tenant_id` and returns its schema name.
    pub fn schema_name(&self, tenant_id: &str) -> Result<String, NamingError> {
        validate_tenant_id(tenant_id)?;
        let schema = self.template.render(tenant_id);
        let err_id = tenant_id.to_string();
        if schema.len() > MAX_IDENTIFIER_BYTES {
            return Err(NamingError::SchemaNameTooLong { id: err_id, bytes: schema.len(), schema });
        }
        if schema.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(NamingError::SchemaNameNeedsQuoting {
                id: err_id,
                schema,
                reason: "it starts with a digit (use a template with a prefix, such as tenant_{id})",
            });
        }
        if is_quoted_keyword(&schema) {
            return Err(NamingError::SchemaNameNeedsQuoting { id: err_id, schema, reason: "it is an SQL keyword" });
        }
        if let Some(reason) = reserved_reason(&schema, &self.shared_schema) {
            return Err(NamingError::ReservedSchema { id: err_id, schema, reason });
        }
        debug_assert!(is_plain_identifier(&schema));
        Ok(schema)
    }

    /// The tenant id that owns `schema` under these rules, if any: the inverse of
    /// `schema_name` up to the `-`/`_` mapping. Used to adopt existing schemas.
    pub fn tenant_id_of(&self, schema: &str) -> Option<String> {
        let id = self.template.tenant_id_of(schema)?;
        (self.schema_name(&id).ok()? == schema).then_some(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn default_name(id: &str) -> Result<String, NamingError> {
        Naming::default().schema_name(id)
    }

    #[test]
    fn plain_ids_and_uuids_are_valid() {
        assert_eq!(default_name("acme").unwrap(), "tenant_acme");
        assert_eq!(default_name("42").unwrap(), "tenant_42");
        assert_eq!(
            default_name("0b0e4a3c-9d4f-4d1a-8f5e-6a1b2c3d4e5f").unwrap(),
            "tenant_0b0e4a3c_9d4f_4d1a_8f5e_6a1b2c3d4e5f"
        );
    }

    #[test]
    fn dash_and_underscore_map_to_the_same_schema() {
        assert_eq!(default_name("acme-eu").unwrap(), default_name("acme_eu").unwrap());
    }

    #[test]
    fn hostile_ids_are_refused_with_a_message_naming_them() {
        let cases = [
            ("x; drop table t", "byte 1"),
            ("a'b", "\"'\""),
            ("a\"b", "\"\"\""),
            ("a\\b", "\"\\\""),
            ("Acme", "uppercase"),
            ("acmé", "non-ASCII"),
            ("a.b", "\".\""),
            ("a\nb", "control character"),
            ("_x", "must start"),
            ("-x", "must start"),
        ];
        for (id, expected) in cases {
            let err = default_name(id).unwrap_err().to_string();
            assert!(err.contains(expected), "{id:?}: {err}");
            assert!(err.contains("tenant id"), "{id:?}: {err}");
        }
        assert_eq!(default_name(""), Err(NamingError::EmptyTenantId));
    }

    #[test]
    fn long_ids_are_refused_never_truncated() {
        let id = "a".repeat(64);
        assert!(matches!(default_name(&id), Err(NamingError::TenantIdTooLong { bytes: 64, .. })));
        // 56 bytes fit the id rule but not the schema once "tenant_" is added.
        let id = "a".repeat(57);
        let err = default_name(&id).unwrap_err();
        assert!(matches!(err, NamingError::SchemaNameTooLong { bytes: 64, .. }), "{err}");
        assert_eq!(default_name(&"a".repeat(56)).unwrap().len(), 63);
    }

    #[test]
    fn reserved_and_keyword_names_are_refused() {
        let bare = Naming::new("{id}", "shared").unwrap();
        for id in ["public", "information_schema", "pg_catalog", "pg_x", "mt", "mt_template", "shared"] {
            assert!(matches!(bare.schema_name(id), Err(NamingError::ReservedSchema { .. })), "{id}");
        }
        for id in ["select", "table", "user"] {
            let err = bare.schema_name(id).unwrap_err();
            assert!(err.to_string().contains("SQL keyword"), "{id}: {err}");
        }
        let err = bare.schema_name("123").unwrap_err();
        assert!(err.to_string().contains("starts with a digit"), "{err}");
        assert_eq!(bare.schema_name("acme").unwrap(), "acme");
    }

    #[test]
    fn templates_are_validated() {
        for bad in ["tenant_", "{id}_{id}", "Tenant_{id}", "t-{id}", "pg_{id}", "mt_{id}", "t\"{id}"] {
            assert!(Naming::new(bad, "public").is_err(), "{bad}");
        }
        assert!(Naming::new(&format!("{}{{id}}", "a".repeat(63)), "public").is_err());
        let naming = Naming::new("org_{id}_v1", "public").unwrap();
        assert_eq!(naming.schema_name("acme").unwrap(), "org_acme_v1");
        assert_eq!(naming.template().to_string(), "org_{id}_v1");
        assert_eq!(naming.template().max_id_bytes(), 63 - 7);
    }

    #[test]
    fn schema_names_read_back_to_ids() {
        let naming = Naming::default();
        assert_eq!(naming.tenant_id_of("tenant_acme").as_deref(), Some("acme"));
        assert_eq!(naming.tenant_id_of("tenant_acme_eu").as_deref(), Some("acme_eu"));
        assert_eq!(naming.tenant_id_of("tenant_"), None);
        assert_eq!(naming.tenant_id_of("other_acme"), None);
        assert_eq!(naming.tenant_id_of("tenant_Acme"), None);
    }

    proptest! {
        #[test]
        fn every_valid_id_gives_a_safe_name(id in "[a-z0-9][a-z0-9_-]{0,55}") {
            let schema = default_name(&id).unwrap();
            prop_assert!(is_plain_identifier(&schema));
            prop_assert!(schema.len() <= MAX_IDENTIFIER_BYTES);
            prop_assert_eq!(Naming::default().tenant_id_of(&schema), Some(id.replace('-', "_")));
        }

        #[test]
        fn any_string_is_either_refused_or_safe(id in "\\PC{0,80}") {
            if let Ok(schema) = default_name(&id) {
                prop_assert!(is_plain_identifier(&schema));
                prop_assert!(schema.len() <= MAX_IDENTIFIER_BYTES);
                prop_assert!(id.chars().all(is_id_char));
            }
        }

        #[test]
        fn distinct_ids_without_dashes_never_share_a_schema(
            a in "[a-z0-9][a-z0-9_]{0,20}", b in "[a-z0-9][a-z0-9_]{0,20}"
        ) {
            prop_assume!(a != b);
            prop_assert_ne!(default_name(&a).unwrap(), default_name(&b).unwrap());
        }

        #[test]
        fn bare_template_output_never_needs_quoting(id in "[a-z0-9_-]{1,63}") {
            let bare = Naming::new("{id}", "public").unwrap();
            if let Ok(schema) = bare.schema_name(&id) {
                prop_assert!(is_plain_identifier(&schema));
                prop_assert!(reserved_reason(&schema, "public").is_none());
            }
        }
    }
}
