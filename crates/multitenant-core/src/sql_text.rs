//! Just enough SQL lexing to make drizzle-kit migrations tenant-aware.
//!
//! drizzle-kit writes `"public"."users"` wherever a statement names a table of the default
//! schema, and `CREATE TYPE "public"."mood"` for enums. In a tenant migration those objects
//! are the tenant's own, so the qualifier has to go: the migration then runs with
//! `search_path = <tenant schema>, <shared schema>` and the unqualified name resolves to the
//! tenant's object, while genuinely shared objects (an extension's functions in `public`, a
//! shared lookup table) keep their qualifier and stay reachable.
//!
//! The lexer knows string literals (including `E''` escapes), quoted identifiers, comments
//! and dollar quoting; the bodies of `DO $$ … $$` blocks and functions are lexed as SQL too,
//! because drizzle-kit wraps `CREATE TYPE` in `DO $$ BEGIN … EXCEPTION … END $$`.

use std::collections::BTreeSet;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    /// A bare word, already lowercased.
    Word(String),
    /// A double-quoted identifier, unescaped.
    Quoted(String),
    Dot,
    /// Any other single character outside literals and comments.
    Punct(char),
}

#[derive(Debug, Clone)]
struct Token {
    kind: Kind,
    start: usize,
    end: usize,
}

impl Token {
    /// The identifier this token spells, if it is one.
    fn ident(&self) -> Option<&str> {
        match &self.kind {
            Kind::Word(w) | Kind::Quoted(w) => Some(w),
            _ => None,
        }
    }

    fn is_word(&self, word: &str) -> bool {
        matches!(&self.kind, Kind::Word(w) if w == word)
    }
}

/// Lexes `sql[from..to]`, appending tokens with absolute byte offsets. Literals and comments
/// produce no tokens; dollar-quoted bodies are lexed recursively.
fn lex_into(sql: &str, from: usize, to: usize, out: &mut Vec<Token>) {
    let bytes = sql.as_bytes();
    let mut i = from;
    while i < to {
        let c = bytes[i];
        match c {
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                i = memchr(bytes, b'\n', i, to).map_or(to, |p| p + 1);
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                // Block comments nest in PostgreSQL.
                let mut depth = 1;
                i += 2;
                while i < to && depth > 0 {
                    if bytes[i] == b'/' && bytes.get(i + 1) == Some(&b'*') {
                        depth += 1;
                        i += 2;
                    } else if bytes[i] == b'*' && bytes.get(i + 1) == Some(&b'/') {
                        depth -= 1;
                        i += 2;
                    } else {
                        i += 1;
                    }
                }
            }
            b'\'' => {
                let escapes = out.last().is_some_and(|t| t.end == i && t.is_word("e"));
                if escapes {
                    out.pop();
                }
                i = skip_string(bytes, i + 1, to, escapes);
            }
            b'"' => {
                let mut value = String::new();
                let mut j = i + 1;
                while j < to {
                    if bytes[j] == b'"' {
                        if bytes.get(j + 1) == Some(&b'"') {
                            value.push('"');
                            j += 2;
                            continue;
                        }
                        break;
                    }
                    let ch = sql[j..].chars().next().expect("in bounds");
                    value.push(ch);
                    j += ch.len_utf8();
                }
                let end = (j + 1).min(to);
                out.push(Token { kind: Kind::Quoted(value), start: i, end });
                i = end;
            }
            b'$' => {
                if let Some(tag_end) = dollar_tag_end(bytes, i, to) {
                    let tag = &sql[i..=tag_end];
                    let body_start = tag_end + 1;
                    let body_end = sql[body_start..to].find(tag).map_or(to, |p| body_start + p);
                    lex_into(sql, body_start, body_end, out);
                    i = (body_end + tag.len()).min(to);
                } else {
                    out.push(Token { kind: Kind::Punct('$'), start: i, end: i + 1 });
                    i += 1;
                }
            }
            b'.' => {
                out.push(Token { kind: Kind::Dot, start: i, end: i + 1 });
                i += 1;
            }
            c if c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 => {
                let mut j = i;
                while j < to
                    && (bytes[j].is_ascii_alphanumeric() || bytes[j] == b'_' || bytes[j] == b'$' || bytes[j] >= 0x80)
                {
                    j += 1;
                }
                out.push(Token { kind: Kind::Word(sql[i..j].to_lowercase()), start: i, end: j });
                i = j;
            }
            c if c.is_ascii_whitespace() => i += 1,
            c if c.is_ascii_digit() => {
                let mut j = i;
                while j < to && (bytes[j].is_ascii_alphanumeric() || bytes[j] == b'_') {
                    j += 1;
                }
                out.push(Token { kind: Kind::Punct('0'), start: i, end: j });
                i = j;
            }
            _ => {
                let ch = sql[i..].chars().next().expect("in bounds");
                out.push(Token { kind: Kind::Punct(ch), start: i, end: i + ch.len_utf8() });
                i += ch.len_utf8();
            }
        }
    }
}

fn memchr(bytes: &[u8], needle: u8, from: usize, to: usize) -> Option<usize> {
    bytes[from..to].iter().position(|&b| b == needle).map(|p| from + p)
}

/// Skips a single-quoted literal whose body starts at `i`; returns the index after it.
fn skip_string(bytes: &[u8], mut i: usize, to: usize, backslash_escapes: bool) -> usize {
    while i < to {
        match bytes[i] {
            b'\\' if backslash_escapes => i += 2,
            b'\'' if bytes.get(i + 1) == Some(&b'\'') => i += 2,
            b'\'' => return i + 1,
            _ => i += 1,
        }
    }
    to
}

/// If a dollar-quote opening tag (`$$` or `$tag$`) starts at `i`, the index of its closing `$`.
fn dollar_tag_end(bytes: &[u8], i: usize, to: usize) -> Option<usize> {
    let mut j = i + 1;
    if j < to && bytes[j].is_ascii_digit() {
        return None; // a positional parameter such as $1
    }
    while j < to && (bytes[j].is_ascii_alphanumeric() || bytes[j] == b'_') {
        j += 1;
    }
    (j < to && bytes[j] == b'$').then_some(j)
}

fn lex(sql: &str) -> Vec<Token> {
    let mut tokens = Vec::new();
    lex_into(sql, 0, sql.len(), &mut tokens);
    tokens
}

/// Object kinds whose names live in a schema and may be referenced with a qualifier.
const CREATABLE: &[&str] = &["table", "type", "sequence", "function", "procedure", "view", "domain"];

/// Words that may stand between CREATE and the object kind.
const CREATE_MODIFIERS: &[&str] =
    &["or", "replace", "unlogged", "temp", "temporary", "materialized", "recursive", "global", "local"];

/// Names of the objects `sql` creates in the default schema: unqualified, or qualified with
/// `schema` (normally `public`), as drizzle-kit writes them.
pub fn created_names(sql: &str, schema: &str) -> BTreeSet<String> {
    let tokens = lex(sql);
    let mut names = BTreeSet::new();
    for (i, token) in tokens.iter().enumerate() {
        // `ALTER TABLE "public"."a" RENAME TO "b"`: b is the tenant's too.
        if token.is_word("rename") && tokens.get(i + 1).is_some_and(|t| t.is_word("to")) {
            // (RENAME COLUMN, CONSTRAINT or a bare column name has another word before TO.)
            let renames_an_object =
                tokens[..i].iter().rev().take_while(|t| t.kind != Kind::Punct(';')).any(|t| t.is_word("alter"));
            if let (true, Some(name)) = (renames_an_object, tokens.get(i + 2).and_then(Token::ident)) {
                names.insert(name.to_string());
            }
            continue;
        }
        if !token.is_word("create") {
            continue;
        }
        let mut j = i + 1;
        while tokens.get(j).is_some_and(|t| CREATE_MODIFIERS.iter().any(|m| t.is_word(m))) {
            j += 1;
        }
        if !tokens.get(j).is_some_and(|t| CREATABLE.iter().any(|k| t.is_word(k))) {
            continue;
        }
        j += 1;
        if tokens.get(j).is_some_and(|t| t.is_word("if")) {
            j += 3; // IF NOT EXISTS
        }
        let Some(first) = tokens.get(j).and_then(Token::ident) else { continue };
        let qualified = tokens.get(j + 1).is_some_and(|t| t.kind == Kind::Dot);
        match (qualified, tokens.get(j + 2).and_then(Token::ident)) {
            (true, Some(name)) if first == schema => {
                names.insert(name.to_string());
            }
            (true, _) => {}
            (false, _) => {
                names.insert(first.to_string());
            }
        }
    }
    names
}

/// Drops the `schema.` qualifier (written `"public".`, `public.` or any quoting) in front of
/// every name in `names`, inside code and dollar-quoted bodies but never inside string
/// literals or comments. Other qualified names are left as they are.
pub fn unqualify(sql: &str, schema: &str, names: &BTreeSet<String>) -> String {
    let tokens = lex(sql);
    let mut out = String::with_capacity(sql.len());
    let mut copied = 0;
    for i in 0..tokens.len().saturating_sub(2) {
        let (qualifier, dot, name) = (&tokens[i], &tokens[i + 1], &tokens[i + 2]);
        let is_target = qualifier.ident() == Some(schema)
            && dot.kind == Kind::Dot
            && dot.start == qualifier.end
            && name.start == dot.end
            && name.ident().is_some_and(|n| names.contains(n));
        // `x.public.users` (a column of a table named public) is not a schema qualifier.
        let preceded_by_dot = i > 0 && tokens[i - 1].kind == Kind::Dot && tokens[i - 1].end == qualifier.start;
        if is_target && !preceded_by_dot {
            out.push_str(&sql[copied..qualifier.start]);
            copied = dot.end;
        }
    }
    out.push_str(&sql[copied..]);
    out
}

/// Rewrites every `from.` schema qualifier (any quoting) to `to.`, inside code and
/// dollar-quoted bodies but never inside string literals or comments: what a cloned function
/// header or body needs so that it names the clone's objects, not the source's.
pub fn requalify(sql: &str, from: &str, to: &str) -> String {
    let tokens = lex(sql);
    let mut out = String::with_capacity(sql.len());
    let mut copied = 0;
    for i in 0..tokens.len().saturating_sub(1) {
        let (qualifier, dot) = (&tokens[i], &tokens[i + 1]);
        // Whitespace may stand around the dot (`acme . users` is valid SQL).
        let is_qualifier = qualifier.ident() == Some(from) && dot.kind == Kind::Dot;
        let preceded_by_dot = i > 0 && tokens[i - 1].kind == Kind::Dot;
        if is_qualifier && !preceded_by_dot {
            out.push_str(&sql[copied..qualifier.start]);
            out.push_str(&crate::tracking::quote_identifier(to));
            copied = qualifier.end;
        }
    }
    out.push_str(&sql[copied..]);
    out
}

/// A `CREATE EXTENSION` statement of a migration: the extension's name and where the
/// statement stands in the text (from CREATE to its semicolon, inclusive).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtensionStatement {
    pub name: String,
    pub start: usize,
    pub end: usize,
}

/// The `CREATE EXTENSION` statements of `sql`. Extensions are database-wide: a tenant
/// migration must not create one in its own schema (the next tenant would find it taken,
/// and dropping the tenant would drop it for everyone), so the engine takes these out and
/// creates the extensions once, in the shared schema.
pub fn extension_statements(sql: &str) -> Vec<ExtensionStatement> {
    let tokens = lex(sql);
    let mut found = Vec::new();
    for (i, token) in tokens.iter().enumerate() {
        if !(token.is_word("create") && tokens.get(i + 1).is_some_and(|t| t.is_word("extension"))) {
            continue;
        }
        let mut j = i + 2;
        if tokens.get(j).is_some_and(|t| t.is_word("if")) {
            j += 3; // IF NOT EXISTS
        }
        let Some(name) = tokens.get(j).and_then(Token::ident) else { continue };
        let end = tokens[j..].iter().find(|t| t.kind == Kind::Punct(';')).map_or(sql.len(), |t| t.end);
        found.push(ExtensionStatement { name: name.to_string(), start: token.start, end });
    }
    found
}

/// `sql` without the statements in `remove` (as found by [`extension_statements`]).
pub fn without(sql: &str, remove: &[ExtensionStatement]) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut copied = 0;
    for statement in remove {
        out.push_str(&sql[copied..statement.start]);
        copied = statement.end;
    }
    out.push_str(&sql[copied..]);
    out
}

/// The text drizzle-kit puts between statements.
pub const STATEMENT_BREAKPOINT: &str = "--> statement-breakpoint";

/// Splits a drizzle-kit migration into its statements (trimmed, empty ones dropped).
pub fn split_statements(sql: &str) -> Vec<&str> {
    sql.split(STATEMENT_BREAKPOINT).map(str::trim).filter(|s| !s.is_empty()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn renamed_objects_are_the_tenants_too() {
        let sql = r#"ALTER TABLE "public"."teams" RENAME TO "workspaces";
            ALTER TABLE "public"."workspaces" RENAME COLUMN "name" TO "title";
            ALTER TYPE "public"."mood" RENAME TO "feeling";
            ALTER TABLE "tasks" ADD CONSTRAINT "fk" FOREIGN KEY ("w") REFERENCES "public"."workspaces"("id");"#;
        let names = created_names(sql, "public");
        assert_eq!(names, set(&["feeling", "workspaces"]));
        assert!(unqualify(sql, "public", &names).contains(r#"REFERENCES "workspaces"("id")"#));
    }

    #[test]
    fn finds_extension_statements_outside_literals_and_comments() {
        let sql = "CREATE EXTENSION IF NOT EXISTS \"uuid-ossp\";\n--> statement-breakpoint\n\
                   -- CREATE EXTENSION commented;\n\
                   SELECT 'CREATE EXTENSION quoted';\n\
                   create extension pg_trgm with schema public;\n\
                   CREATE TABLE t (id uuid DEFAULT uuid_generate_v4())";
        let found = extension_statements(sql);
        let names: Vec<&str> = found.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["uuid-ossp", "pg_trgm"]);
        let rest = without(sql, &found);
        assert!(!rest.to_lowercase().contains("create extension if"), "{rest}");
        assert!(!rest.contains("with schema public"), "{rest}");
        assert!(rest.contains("-- CREATE EXTENSION commented;"));
        assert!(rest.contains("'CREATE EXTENSION quoted'"));
        assert!(rest.contains("CREATE TABLE t (id uuid DEFAULT uuid_generate_v4())"));
        // A statement without its semicolon runs to the end of the text.
        assert_eq!(extension_statements("CREATE EXTENSION citext")[0].end, "CREATE EXTENSION citext".len());
    }

    #[test]
    fn finds_objects_created_in_public_or_unqualified() {
        let sql = r#"
            CREATE TYPE "public"."mood" AS ENUM('sad', 'ok');
            CREATE TABLE IF NOT EXISTS "users" ("id" serial PRIMARY KEY, "mood" "public"."mood");
            create table public.posts (id int);
            CREATE OR REPLACE FUNCTION "public"."touch"() RETURNS trigger AS $$ BEGIN RETURN NEW; END $$ LANGUAGE plpgsql;
            CREATE MATERIALIZED VIEW stats AS SELECT 1;
            CREATE TABLE "audit"."log" (id int);
            CREATE UNIQUE INDEX "users_idx" ON "users" ("id");
            -- CREATE TABLE commented (id int);
            SELECT 'CREATE TABLE quoted (id int)';
        "#;
        assert_eq!(created_names(sql, "public"), set(&["mood", "posts", "stats", "touch", "users"]));
    }

    #[test]
    fn finds_types_created_inside_do_blocks() {
        let sql = r#"DO $$ BEGIN
             CREATE TYPE "public"."status" AS ENUM('active', 'archived');
            EXCEPTION WHEN duplicate_object THEN null;
            END $$;"#;
        assert_eq!(created_names(sql, "public"), set(&["status"]));
    }

    #[test]
    fn unqualifies_only_the_named_objects() {
        let sql = r#"ALTER TABLE "posts" ADD CONSTRAINT "posts_user_fk" FOREIGN KEY ("user_id") REFERENCES "public"."users"("id") ON DELETE cascade;
SELECT public.uuid_generate_v4(), "public"."countries".code FROM "public"."countries";"#;
        let out = unqualify(sql, "public", &set(&["users"]));
        assert_eq!(
            out,
            r#"ALTER TABLE "posts" ADD CONSTRAINT "posts_user_fk" FOREIGN KEY ("user_id") REFERENCES "users"("id") ON DELETE cascade;
SELECT public.uuid_generate_v4(), "public"."countries".code FROM "public"."countries";"#
        );
    }

    #[test]
    fn leaves_literals_and_comments_alone_but_rewrites_dollar_bodies() {
        let sql = "-- \"public\".\"users\"\nSELECT '\"public\".\"users\"', E'it\\'s \"public\".\"users\"', $$SELECT * FROM \"public\".\"users\"$$, $fn$ public.users $fn$ /* public.users */;";
        let out = unqualify(sql, "public", &set(&["users"]));
        assert_eq!(
            out,
            "-- \"public\".\"users\"\nSELECT '\"public\".\"users\"', E'it\\'s \"public\".\"users\"', $$SELECT * FROM \"users\"$$, $fn$ users $fn$ /* public.users */;"
        );
    }

    #[test]
    fn quoting_and_case_follow_postgres_rules() {
        // Unquoted names fold to lower case; quoted ones keep theirs.
        let names = created_names(r#"CREATE TABLE "Users" (id int); CREATE TABLE Orders (id int);"#, "public");
        assert_eq!(names, set(&["Users", "orders"]));
        let out = unqualify(r#"SELECT * FROM PUBLIC.orders, public."Users", public.users"#, "public", &names);
        assert_eq!(out, r#"SELECT * FROM orders, "Users", public.users"#);
    }

    #[test]
    fn column_named_public_is_not_a_qualifier() {
        let out = unqualify("SELECT t.public.users FROM t", "public", &set(&["users"]));
        assert_eq!(out, "SELECT t.public.users FROM t");
    }

    #[test]
    fn positional_parameters_are_not_dollar_quotes() {
        let out = unqualify("PREPARE p AS SELECT $1 FROM public.users", "public", &set(&["users"]));
        assert_eq!(out, "PREPARE p AS SELECT $1 FROM users");
    }

    #[test]
    fn splits_on_breakpoints() {
        let sql =
            "CREATE TABLE a (id int);\n--> statement-breakpoint\nCREATE TABLE b (id int);\n--> statement-breakpoint\n";
        assert_eq!(split_statements(sql), vec!["CREATE TABLE a (id int);", "CREATE TABLE b (id int);"]);
    }

    #[test]
    fn requalify_rewrites_qualifiers_in_code_and_bodies_only() {
        let sql = "CREATE FUNCTION acme.f() RETURNS int LANGUAGE sql AS $$ SELECT count(*) FROM \"acme\".users \
                   WHERE note <> 'acme.users' -- acme.x\n $$; SELECT t.acme.c FROM acme_eu.t, acme . u";
        assert_eq!(
            requalify(sql, "acme", "beta"),
            "CREATE FUNCTION \"beta\".f() RETURNS int LANGUAGE sql AS $$ SELECT count(*) FROM \"beta\".users \
                   WHERE note <> 'acme.users' -- acme.x\n $$; SELECT t.acme.c FROM acme_eu.t, \"beta\" . u"
        );
        assert_eq!(requalify("select 1", "acme", "beta"), "select 1");
        assert_eq!(requalify("SELECT \"Acme\".x, ACME.y", "acme", "beta"), "SELECT \"Acme\".x, \"beta\".y");
    }
}
