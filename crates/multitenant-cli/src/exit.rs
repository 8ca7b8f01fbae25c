//! Exit codes and the error type every command returns.
//!
//! | code | meaning |
//! | --- | --- |
//! | 0 | all good |
//! | 1 | any other error (an I/O error, an unexpected SQL error) |
//! | 2 | bad input: arguments, a folder that is not a migration folder, a changed migration, a request the database refused as invalid (SQLSTATE classes 22, 23, 2B, 42: unknown or existing tenant, invalid setting, …) |
//! | 3 | at least one tenant failed (migrate, seed, sync, convert-tracking, tenant create) |
//! | 4 | drift found |
//! | 5 | unhealthy |
//! | 6 | connection failure: cannot connect, authentication, TLS, database missing, connection lost |
//! | 7 | migrations pending (`mt status --check`) |
//! | 130 | cancelled (Ctrl-C) |

use std::fmt;

/// What `mt` exits with. The numbers are part of the interface (docs/cli.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    Ok = 0,
    Error = 1,
    BadInput = 2,
    TenantsFailed = 3,
    DriftFound = 4,
    Unhealthy = 5,
    Connection = 6,
    Pending = 7,
    Cancelled = 130,
}

impl ExitCode {
    pub fn code(self) -> i32 {
        self as i32
    }

    pub fn all() -> [ExitCode; 9] {
        use ExitCode::*;
        [Ok, Error, BadInput, TenantsFailed, DriftFound, Unhealthy, Connection, Pending, Cancelled]
    }

    /// A short name, used in `--json` error documents.
    pub fn name(self) -> &'static str {
        match self {
            ExitCode::Ok => "ok",
            ExitCode::Error => "error",
            ExitCode::BadInput => "bad_input",
            ExitCode::TenantsFailed => "tenants_failed",
            ExitCode::DriftFound => "drift_found",
            ExitCode::Unhealthy => "unhealthy",
            ExitCode::Connection => "connection_failure",
            ExitCode::Pending => "pending",
            ExitCode::Cancelled => "cancelled",
        }
    }

    /// The exit code of an error the database raised, by SQLSTATE.
    pub fn for_sqlstate(sqlstate: &str) -> ExitCode {
        match sqlstate {
            "57014" => ExitCode::Cancelled,
            // database does not exist, server shutting down or starting, too many connections
            "3D000" | "57P01" | "57P02" | "57P03" | "53300" => ExitCode::Connection,
            _ => match &sqlstate[..sqlstate.len().min(2)] {
                "08" | "28" => ExitCode::Connection,
                "22" | "23" | "2B" | "42" => ExitCode::BadInput,
                _ => ExitCode::Error,
            },
        }
    }
}

/// An error with the exit code it leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliError {
    pub code: ExitCode,
    pub message: String,
    pub sqlstate: Option<String>,
    pub detail: Option<String>,
    pub hint: Option<String>,
}

impl CliError {
    pub fn new(code: ExitCode, message: impl Into<String>) -> Self {
        CliError { code, message: message.into(), sqlstate: None, detail: None, hint: None }
    }

    pub fn bad_input(message: impl Into<String>) -> Self {
        CliError::new(ExitCode::BadInput, message)
    }

    pub fn connection(message: impl Into<String>) -> Self {
        CliError::new(ExitCode::Connection, message)
    }

    pub fn other(message: impl Into<String>) -> Self {
        CliError::new(ExitCode::Error, message)
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Prefixes the message with context ("registering 0003_x.sql: …").
    pub fn context(mut self, context: impl fmt::Display) -> Self {
        self.message = format!("{context}: {}", self.message);
        self
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "error": {
                "message": self.message,
                "sqlstate": self.sqlstate,
                "detail": self.detail,
                "hint": self.hint,
                "exit_code": self.code.code(),
                "kind": self.code.name(),
            }
        })
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.message)?;
        if let Some(state) = &self.sqlstate {
            write!(f, " (SQLSTATE {state})")?;
        }
        if let Some(detail) = &self.detail {
            write!(f, "\nDETAIL: {detail}")?;
        }
        if let Some(hint) = &self.hint {
            write!(f, "\nHINT: {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for CliError {}

impl From<tokio_postgres::Error> for CliError {
    fn from(e: tokio_postgres::Error) -> Self {
        if let Some(db) = e.as_db_error() {
            let sqlstate = db.code().code().to_string();
            return CliError {
                code: ExitCode::for_sqlstate(&sqlstate),
                message: db.message().to_string(),
                sqlstate: Some(sqlstate),
                detail: db.detail().map(str::to_string),
                hint: db.hint().map(str::to_string),
            };
        }
        // No server error: the connection failed or was lost (I/O, TLS, protocol, closed).
        let mut message = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            let text = s.to_string();
            if !message.contains(&text) {
                message = format!("{message}: {text}");
            }
            source = s.source();
        }
        CliError::connection(message)
    }
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> Self {
        CliError::other(e.to_string())
    }
}

pub type Result<T> = std::result::Result<T, CliError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_and_stable() {
        let codes: Vec<i32> = ExitCode::all().iter().map(|c| c.code()).collect();
        assert_eq!(codes, vec![0, 1, 2, 3, 4, 5, 6, 7, 130]);
        let mut names: Vec<_> = ExitCode::all().iter().map(|c| c.name()).collect();
        names.dedup();
        assert_eq!(names.len(), 9);
    }

    #[test]
    fn sqlstates_map_to_exit_codes() {
        assert_eq!(ExitCode::for_sqlstate("57014"), ExitCode::Cancelled);
        assert_eq!(ExitCode::for_sqlstate("08006"), ExitCode::Connection);
        assert_eq!(ExitCode::for_sqlstate("28P01"), ExitCode::Connection);
        assert_eq!(ExitCode::for_sqlstate("3D000"), ExitCode::Connection);
        assert_eq!(ExitCode::for_sqlstate("53300"), ExitCode::Connection);
        assert_eq!(ExitCode::for_sqlstate("22023"), ExitCode::BadInput);
        assert_eq!(ExitCode::for_sqlstate("23505"), ExitCode::BadInput);
        assert_eq!(ExitCode::for_sqlstate("42704"), ExitCode::BadInput);
        assert_eq!(ExitCode::for_sqlstate("2BP01"), ExitCode::BadInput);
        assert_eq!(ExitCode::for_sqlstate("42501"), ExitCode::BadInput);
        assert_eq!(ExitCode::for_sqlstate("XX000"), ExitCode::Error);
        assert_eq!(ExitCode::for_sqlstate("25001"), ExitCode::Error);
        assert_eq!(ExitCode::for_sqlstate(""), ExitCode::Error);
    }

    #[test]
    fn errors_render_with_their_sqlstate_and_as_json() {
        let mut e = CliError::bad_input("tenant \"x\" does not exist").with_hint("see mt tenant list");
        e.sqlstate = Some("42704".into());
        assert_eq!(e.to_string(), "tenant \"x\" does not exist (SQLSTATE 42704)\nHINT: see mt tenant list");
        let json = e.to_json();
        assert_eq!(json["error"]["exit_code"], 2);
        assert_eq!(json["error"]["kind"], "bad_input");
        assert_eq!(json["error"]["sqlstate"], "42704");
        assert_eq!(e.context("status").message, "status: tenant \"x\" does not exist");
    }
}
