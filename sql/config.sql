-- Writing settings. Validation lives in a trigger so that a direct INSERT/UPDATE on
-- mt.config (or a pg_dump restore) is held to the same rules as mt.set_config().

CREATE FUNCTION mt_internal.validate_config()
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

    -- These decide which role code runs as, or what the extension owner installs: changing
    -- them through the SECURITY DEFINER mt.set_config must not be a way up for mt_admin.
    IF NEW.key IN ('tenant_roles', 'schema_owner', 'shared_role', 'extensions_schema', 'allowed_extensions', 'application_role')
       AND NOT (SELECT r.rolsuper FROM pg_roles r WHERE r.rolname = session_user) THEN
        RAISE EXCEPTION 'only a superuser may change the setting "%"', NEW.key
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = 'It decides which role tenant or shared code runs as, or what the extension owner installs.';
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
    WHEN 'schema_owner', 'shared_role', 'application_role' THEN
        IF NEW.value <> '' AND NOT EXISTS (SELECT FROM pg_roles WHERE rolname = NEW.value) THEN
            RAISE EXCEPTION '% "%" is not an existing role', NEW.key, NEW.value
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF NEW.key = 'application_role' AND (SELECT r.rolsuper OR r.rolinherit FROM pg_roles r WHERE r.rolname = NEW.value) THEN
            RAISE EXCEPTION 'application_role "%" must be a NOINHERIT role that is not a superuser', NEW.value
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'ALTER ROLE ... NOINHERIT: the application then sees a tenant''s tables only after switching to its role.';
        END IF;
    WHEN 'tenant_roles' THEN
        IF NEW.value NOT IN ('on', 'off') THEN
            RAISE EXCEPTION 'tenant_roles "%" is invalid: it must be on or off', NEW.value
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
    WHEN 'tenant_role_template' THEN
        IF strpos(NEW.value, '{schema}') = 0 OR NEW.value !~ '^[a-z0-9_{}]+$' THEN
            RAISE EXCEPTION 'tenant_role_template "%" is invalid: it must contain {schema} and otherwise only lowercase letters, digits and "_"', NEW.value
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
    WHEN 'extensions_schema' THEN
        IF NEW.value <> '' AND NOT EXISTS (SELECT FROM pg_namespace WHERE nspname = NEW.value) THEN
            RAISE EXCEPTION 'extensions_schema "%" does not exist', NEW.value
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
    WHEN 'allowed_extensions' THEN
        IF NEW.value !~ '^([a-z0-9_-]+(,[a-z0-9_-]+)*)?$' THEN
            RAISE EXCEPTION 'allowed_extensions "%" is invalid: it must be extension names separated by commas', NEW.value
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
    END CASE;

    -- A new row keeps what it was given (the column defaults, or the dump a restore loads);
    -- a change is stamped.
    IF TG_OP = 'UPDATE' THEN
        NEW.updated_at := now();
        NEW.updated_by := session_user;
    END IF;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION mt_internal.validate_config() IS
    'multitenant: trigger function that refuses invalid settings written to mt.config';

CREATE TRIGGER validate_config
BEFORE INSERT OR UPDATE ON mt.config
FOR EACH ROW EXECUTE FUNCTION mt_internal.validate_config();

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
