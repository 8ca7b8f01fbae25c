//! Logic of `multitenant` that needs no PostgreSQL backend.
//!
//! The extension, the client library and any CLI link this crate, so they agree by
//! construction on how a tenant id becomes a schema name (and, later, on how a migration
//! folder is parsed and hashed). Everything here is unit-tested with plain `cargo test`.

pub mod keywords;
pub mod migrations;
pub mod naming;
pub mod schema;
pub mod sql_text;
pub mod tracking;

pub use naming::{Naming, NamingError, SchemaTemplate};
