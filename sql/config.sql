-- Writing settings. Validation lives in a trigger so that a direct INSERT/UPDATE on
-- mt.config (or a pg_dump restore) is held to the same rules as mt.set_config().

CREATE FUNCTION mt.validate_config()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    template      text;
    shared_schema text;
BEGIN
    IF NOT EXISTS (SELECT FROM mt.config_options WHERE key = NEW.key) THEN
        RAISE EXCEPTION 'unknown multitenant setting "%"', NEW.key
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'SELECT key FROM mt.settings lists the settings.';
    END IF;

    CASE NEW.key
    WHEN 'schema_template', 'shared_schema' THEN
        template := CASE WHEN NEW.key = 'schema_template' THEN NEW.value
                         ELSE mt.get_config('schema_template') END;
        shared_schema := CASE WHEN NEW.key = 'shared_schema' THEN NEW.value
                              ELSE mt.get_config('shared_schema') END;
        IF NEW.key = 'shared_schema' AND quote_ident(NEW.value) <> NEW.value THEN
            RAISE EXCEPTION 'shared_schema "%" is invalid: it must be a lowercase name that needs no quoting', NEW.value
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        PERFORM mt.validate_naming(template, shared_schema);
        IF NEW.key = 'shared_schema' AND EXISTS (SELECT FROM mt.tenants t WHERE t.schema_name = NEW.value) THEN
            RAISE EXCEPTION 'shared_schema "%" is invalid: it is the schema of a tenant', NEW.value
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF NEW.key = 'schema_template' AND EXISTS (SELECT FROM mt.tenants) THEN
            RAISE WARNING 'schema_template changed while tenants exist'
                USING DETAIL = 'Registered tenants keep their schemas; only new tenants use the new template.';
        END IF;
    WHEN 'tracking_table' THEN
        IF NEW.value = '' OR octet_length(NEW.value) > 63 OR NEW.value ~ '[^a-z0-9_]' OR NEW.value !~ '^[a-z_]' THEN
            RAISE EXCEPTION 'tracking_table "%" is invalid: it must be 1 to 63 lowercase ASCII letters, digits and "_", starting with a letter or "_"', NEW.value
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
    WHEN 'tracking_format' THEN
        IF NEW.value NOT IN ('name', 'hash', 'drizzle-kit') THEN
            RAISE EXCEPTION 'tracking_format "%" is invalid: it must be name, hash or drizzle-kit', NEW.value
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
    WHEN 'schema_owner' THEN
        IF NEW.value <> '' AND NOT EXISTS (SELECT FROM pg_roles WHERE rolname = NEW.value) THEN
            RAISE EXCEPTION 'schema_owner "%" is not an existing role', NEW.value
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
    END CASE;

    NEW.updated_at := now();
    NEW.updated_by := session_user;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION mt.validate_config() IS
    'multitenant: trigger function that refuses invalid settings written to mt.config';

CREATE TRIGGER validate_config
BEFORE INSERT OR UPDATE ON mt.config
FOR EACH ROW EXECUTE FUNCTION mt.validate_config();

CREATE FUNCTION mt.set_config(key text, value text)
RETURNS text
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF value IS NULL THEN
        RAISE EXCEPTION 'value for setting "%" must not be NULL', key
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'mt.reset_config(key) restores the default.';
    END IF;
    INSERT INTO mt.config AS c (key, value)
    VALUES (set_config.key, set_config.value)
    ON CONFLICT ON CONSTRAINT config_pkey DO UPDATE SET value = EXCLUDED.value;
    RETURN mt.get_config(set_config.key);
END
$$;
COMMENT ON FUNCTION mt.set_config(text, text) IS
    'multitenant: change a setting (validated); returns the new effective value';

CREATE FUNCTION mt.reset_config(key text)
RETURNS text
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM mt.get_config(reset_config.key);  -- raises for an unknown key
    DELETE FROM mt.config c WHERE c.key = reset_config.key;
    RETURN mt.get_config(reset_config.key);
END
$$;
COMMENT ON FUNCTION mt.reset_config(text) IS
    'multitenant: restore a setting to its default; returns the default';
