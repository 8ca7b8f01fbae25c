//! SQL wrappers over `multitenant_core::schema`; the catalog side of drift is `sql/drift.sql`.

use multitenant_core::schema::{strip_qualifier, SchemaModel};
use pgrx::prelude::*;
use pgrx::JsonB;

fn model(json: JsonB) -> SchemaModel {
    serde_json::from_value(json.0).unwrap_or_else(|e| {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("not a schema model ({{object_type: {{object_name: definition}}}}): {e}")
        );
    })
}

/// `mt_internal.release_catalog_caches()`: empties this backend's catalog and relation caches,
/// as PostgreSQL does when its invalidation queue overflows. A full drift refresh deparses
/// every index, constraint and type of the fleet, and a backend keeps every catalog entry it
/// looked up: over 50,000 tenants, 4 GB and the OOM killer. Called between batches, it
/// bounds that to one batch.
#[pg_extern(volatile, schema = "mt_internal")]
#[search_path(pg_catalog, pg_temp)]
fn release_catalog_caches() {
    unsafe { pg_sys::InvalidateSystemCaches() };
}

/// `mt_internal.ddl_noted_schema()`: `mt.ddl_noted_schema`, read here, by the library that
/// defines it: a value set before the library was loaded in the session (a placeholder,
/// which anyone may set) is discarded when it loads, unless a superuser set it.
#[pg_extern(stable, schema = "mt_internal")]
#[search_path(pg_catalog, pg_temp)]
fn ddl_noted_schema() -> Option<String> {
    crate::guc::DDL_NOTED_SCHEMA.get().map(|s| s.to_string_lossy().into_owned())
}

/// `mt_internal.strip_schema(definition, schema_name)`: `definition` with the schema's own
/// qualifier removed, so that an object reads the same in every tenant
/// (`multitenant_core::schema::strip_qualifier`). Called for most definitions of every schema
/// the drift views read; pure, so it needs no pinned `search_path` (whose save and restore
/// would cost more than the work).
#[pg_extern(immutable, parallel_safe, strict, schema = "mt_internal")]
fn strip_schema(definition: &str, schema_name: &str) -> String {
    strip_qualifier(definition, schema_name).into_owned()
}

/// `mt.fingerprint(model)`: the fingerprint of a model from `mt.introspect`, equal to the one
/// `mt.drift_summary` shows for the same schema.
#[pg_extern(immutable, parallel_safe)]
#[search_path(pg_catalog, pg_temp)]
fn fingerprint(model_json: JsonB) -> String {
    model(model_json).fingerprint()
}

/// `mt.diff_models(expected, actual)`: the differences between two models from
/// `mt.introspect`, for instance taken from two databases.
// pgrx reads the column names from the `name!`s of the return type, so it stays spelled out.
#[allow(clippy::type_complexity)]
#[pg_extern(immutable, parallel_safe)]
#[search_path(pg_catalog, pg_temp)]
fn diff_models(
    expected: JsonB,
    actual: JsonB,
) -> TableIterator<
    'static,
    (
        name!(object_type, String),
        name!(object_name, String),
        name!(change, String),
        name!(expected, Option<JsonB>),
        name!(actual, Option<JsonB>),
    ),
> {
    let differences = model(expected).diff(&model(actual));
    TableIterator::new(differences.into_iter().map(|d| {
        let change =
            serde_json::to_value(d.change).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
        (d.object_type, d.object_name, change, d.expected.map(JsonB), d.actual.map(JsonB))
    }))
}
