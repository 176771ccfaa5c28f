-- Plain SQL writes to action_triggers.webhook, and to action_triggers.msg_broker_queue
-- further down, get the checks of the API for every column. Before, check_webhook
-- checked the URL and the headers only:
--
--   - A plain UPDATE could store signing secrets that are not whsec_ secrets, or
--     dynamic values not on the allowlist, and every delivery then failed unsent.
--   - Headers that are not an object failed inside jsonb_each with an error that
--     named no column.
--   - A NULL or out-of-range value reached the table's NOT NULL and CHECK
--     constraints, whose errors print the whole row as DETAIL, signing secrets
--     included, to the client and to the server log.
--
-- BEFORE ROW triggers run before those constraints, so every value a constraint
-- would reject is reported here first, with a message that names the column and
-- never the stored values.

-- Returns why the headers of a webhook cannot be sent, or NULL when they can. Header
-- names must be HTTP tokens, unique ignoring case, and values strings without
-- control characters, so a stored value can never inject a header line. Headers that frame the message or
-- are set by the service are rejected, because a configured Content-Length would
-- corrupt the connection.
CREATE OR REPLACE FUNCTION action_triggers.webhook_headers_error(headers jsonb) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    name text;
    value jsonb;
    seen text[] := '{}';
BEGIN
    IF jsonb_typeof(headers) IS DISTINCT FROM 'object' THEN
        RETURN format('headers must be an object of header names to string values (got %s)',
                      coalesce(jsonb_typeof(headers), 'null'));
    END IF;
    FOR name, value IN SELECT h.key, h.v FROM jsonb_each(headers) AS h(key, v) LOOP
        IF jsonb_typeof(value) <> 'string' THEN
            RETURN format('header %s must be a string (got %s)', name, jsonb_typeof(value));
        ELSIF name !~ '^[!#$%&''*+.^_`|~0-9A-Za-z-]+$' THEN
            RETURN format('header name %s is not a valid HTTP header name', to_jsonb(name));
        ELSIF lower(name) IN ('content-length', 'transfer-encoding', 'host', 'connection', 'keep-alive', 'te',
                              'trailer', 'upgrade', 'expect', 'proxy-connection') THEN
            RETURN format('header %s controls the HTTP connection, so it cannot be configured', name);
        ELSIF lower(name) IN ('content-type', 'webhook-id', 'webhook-timestamp', 'webhook-signature') THEN
            RETURN format('header %s is set by the service, so it cannot be configured', name);
        ELSIF value #>> '{}' ~ '[\x01-\x08\x0a-\x1f\x7f]' THEN
            RETURN format('header %s must not contain line breaks or control characters', name);
        ELSIF lower(name) = ANY (seen) THEN
            RETURN format('header %s is given twice: HTTP header names ignore case', name);
        END IF;
        seen := seen || lower(name);
    END LOOP;
    RETURN NULL;
END
$$;

-- Checks signing secrets as before, and names invalid base64 (a secret without its
-- = padding, say) instead of reporting a key of the wrong length.
CREATE OR REPLACE FUNCTION action_triggers.add_signing_secret_errors(errors jsonb, secrets jsonb, path text) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    secret jsonb;
    position integer;
    key_length integer;
BEGIN
    IF secrets IS NULL THEN
        RETURN errors;
    END IF;
    IF jsonb_typeof(secrets) <> 'array' THEN
        RETURN action_triggers.add_error(errors, path,
            format('must be a list of whsec_ secrets (got %s)', jsonb_typeof(secrets)));
    END IF;
    FOR secret, position IN SELECT e, i - 1 FROM jsonb_array_elements(secrets) WITH ORDINALITY AS a(e, i) LOOP
        IF jsonb_typeof(secret) <> 'string' THEN
            errors := action_triggers.add_error(errors, format('%s[%s]', path, position),
                format('must be a string (got %s)', jsonb_typeof(secret)));
        ELSIF secret #>> '{}' ~ '^\{\{.*\}\}$' THEN
            errors := action_triggers.add_dynamic_value_errors(errors, secret, format('%s[%s]', path, position));
        ELSIF secret #>> '{}' LIKE 'whsec_…%' THEN
            errors := action_triggers.add_error(errors, format('%s[%s]', path, position),
                'is a redacted secret that matches no stored secret of this webhook; send the full secret');
        ELSIF secret #>> '{}' !~ '^whsec_[A-Za-z0-9+/]+={0,2}$' THEN
            errors := action_triggers.add_error(errors, format('%s[%s]', path, position),
                'must be whsec_ followed by base64, as Standard Webhooks secrets are, or a {{ name }} dynamic value');
        ELSE
            BEGIN
                key_length := length(decode(substr(secret #>> '{}', 7), 'base64'));
            EXCEPTION WHEN invalid_parameter_value THEN
                key_length := NULL;
            END;
            IF key_length IS NULL THEN
                errors := action_triggers.add_error(errors, format('%s[%s]', path, position),
                    'must be whsec_ followed by valid base64, with its = padding (a 32-byte key takes 44 characters)');
            ELSIF key_length NOT BETWEEN 24 AND 64 THEN
                errors := action_triggers.add_error(errors, format('%s[%s]', path, position),
                    'must encode 24 to 64 bytes of key, as Standard Webhooks recommends');
            END IF;
        END IF;
    END LOOP;
    RETURN errors;
END
$$;

-- Returns the first error in the form "path message", or NULL for no error
-- (errors as add_error builds them).
CREATE FUNCTION action_triggers.first_error(errors jsonb) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT e.key || ' ' || (e.value ->> 0) FROM jsonb_each(errors) AS e ORDER BY e.key LIMIT 1
$$;

-- Returns the first error of a webhook row written with plain SQL, or NULL when the
-- row is valid. The messages name columns and limits, never a header value or a
-- secret, so they may be logged.
CREATE FUNCTION action_triggers.webhook_row_error(hook action_triggers.webhook) RETURNS text
LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF hook.config_id IS NULL THEN
        RETURN 'config_id must not be null';
    ELSIF hook.position IS NULL THEN
        RETURN 'position must not be null';
    ELSIF hook.url IS NULL THEN
        RETURN 'url must not be null';
    ELSIF hook.http_method IS NULL OR hook.http_method NOT IN ('GET', 'POST', 'PUT', 'PATCH', 'DELETE') THEN
        RETURN 'http_method must be one of GET, POST, PUT, PATCH, DELETE';
    ELSIF hook.timeout_secs IS NOT NULL AND NOT (hook.timeout_secs BETWEEN 0 AND 86400) THEN
        RETURN 'timeout_secs must be from 0 to 86400 seconds, or null for the default';
    ELSIF hook.ca_bundle IS NOT NULL AND hook.ca_bundle NOT LIKE '/%' THEN
        RETURN 'ca_bundle must be an absolute path';
    ELSIF hook.signing_secrets IS NULL THEN
        RETURN 'signing_secrets must be a list of whsec_ secrets, empty for none (got null)';
    END IF;

    -- COALESCE evaluates its arguments in order and stops at the first that is not NULL.
    RETURN coalesce(
        action_triggers.webhook_headers_error(hook.headers),
        action_triggers.first_error(action_triggers.add_dynamic_value_errors('{}', hook.headers, 'headers')),
        action_triggers.first_error(
            action_triggers.add_signing_secret_errors('{}', hook.signing_secrets, 'signing_secrets')),
        action_triggers.webhook_url_error(
            hook.url, coalesce((SELECT c.active FROM action_triggers.config c WHERE c.id = hook.config_id), true)));
END
$$;

CREATE OR REPLACE FUNCTION action_triggers.check_webhook() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    problem text := action_triggers.webhook_row_error(NEW);
BEGIN
    IF problem IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value', MESSAGE = problem;
    END IF;
    RETURN NEW;
END
$$;

-- Broker queues written with plain SQL get the checks of the API too. Before, the
-- table had no check trigger. A plain write could name a broker that the settings
-- file lacks or leave out a key its type needs. A value that reached a constraint
-- printed the whole row, conn_details included, as the error's DETAIL.

-- Returns the first error of a broker queue row written with plain SQL, or NULL when
-- the row is valid. The messages never contain a value of conn_details or
-- parameters, which may hold credentials.
CREATE FUNCTION action_triggers.msg_broker_queue_row_error(queue action_triggers.msg_broker_queue) RETURNS text
LANGUAGE plpgsql STABLE AS $$
DECLARE
    brokers jsonb := (SELECT s.value FROM action_triggers.setting s WHERE s.key = 'brokers');
BEGIN
    IF queue.config_id IS NULL THEN
        RETURN 'config_id must not be null';
    ELSIF queue.position IS NULL THEN
        RETURN 'position must not be null';
    ELSIF queue.name IS NULL THEN
        RETURN 'name must not be null';
    ELSIF jsonb_typeof(queue.conn_details) IS DISTINCT FROM 'object' THEN
        RETURN format('conn_details must be an object (got %s)', coalesce(jsonb_typeof(queue.conn_details), 'null'));
    ELSIF jsonb_typeof(queue.parameters) IS DISTINCT FROM 'object' THEN
        RETURN format('parameters must be an object (got %s)', coalesce(jsonb_typeof(queue.parameters), 'null'));
    ELSIF queue.timeout_secs IS NOT NULL AND NOT (queue.timeout_secs BETWEEN 0 AND 86400) THEN
        RETURN 'timeout_secs must be from 0 to 86400 seconds, or null for the default';
    ELSIF brokers IS NULL OR NOT brokers ? queue.name THEN
        RETURN format('no broker named %s in brokers of the settings file', to_jsonb(queue.name));
    END IF;

    RETURN coalesce(
        action_triggers.first_error(action_triggers.add_dynamic_value_errors('{}', queue.conn_details, 'conn_details')),
        action_triggers.first_error(action_triggers.add_dynamic_value_errors('{}', queue.parameters, 'parameters')),
        action_triggers.first_error(action_triggers.add_broker_queue_errors(
            '{}',
            jsonb_build_object('name', queue.name, 'conn_details', queue.conn_details, 'parameters', queue.parameters),
            'msg_broker_queue',
            brokers -> queue.name)));
END
$$;

CREATE FUNCTION action_triggers.check_msg_broker_queue() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    problem text := action_triggers.msg_broker_queue_row_error(NEW);
BEGIN
    IF problem IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value', MESSAGE = problem;
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER check_msg_broker_queue BEFORE INSERT OR UPDATE ON action_triggers.msg_broker_queue
    FOR EACH ROW EXECUTE FUNCTION action_triggers.check_msg_broker_queue();

-- validate_config reports header names given twice in different cases under the
-- webhook's own path, as it reports every other header error. The checks of
-- migration 0001 stay in validate_config_fields, and validate_config adds this one,
-- so create_config, update_config and the API keep calling the same name.
ALTER FUNCTION action_triggers.validate_config(jsonb) RENAME TO validate_config_fields;

CREATE FUNCTION action_triggers.validate_config(body jsonb) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    errors jsonb := action_triggers.validate_config_fields(body);
    hook jsonb;
    position integer;
    name text;
    seen text[];
BEGIN
    IF jsonb_typeof(body -> 'webhooks') IS DISTINCT FROM 'array' THEN
        RETURN errors;
    END IF;
    FOR hook, position IN SELECT e, i - 1 FROM jsonb_array_elements(body -> 'webhooks') WITH ORDINALITY AS a(e, i) LOOP
        CONTINUE WHEN jsonb_typeof(hook -> 'headers') IS DISTINCT FROM 'object';
        seen := '{}';
        FOR name IN SELECT k FROM jsonb_object_keys(hook -> 'headers') AS k LOOP
            IF lower(name) = ANY (seen) THEN
                errors := action_triggers.add_error(errors, format('webhooks[%s].headers.%s', position, name),
                    format('header %s is given twice: HTTP header names ignore case', name));
            END IF;
            seen := seen || lower(name);
        END LOOP;
    END LOOP;
    RETURN errors;
END
$$;
