-- Comments for the naming functions implemented in Rust (src/naming.rs).

COMMENT ON FUNCTION mt.schema_name(text) IS
    'multitenant: the schema name for a tenant id under schema_template; raises 22023 naming the rule an id breaks';
COMMENT ON FUNCTION mt.tenant_id_of(text) IS
    'multitenant: the tenant id a schema name belongs to under schema_template ("-" reads back as "_"), or NULL';
COMMENT ON FUNCTION mt.validate_naming(text, text) IS
    'multitenant: raises 22023 unless a schema template and shared schema give valid tenant schema names';
