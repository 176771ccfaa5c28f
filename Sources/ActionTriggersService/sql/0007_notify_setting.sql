-- The capture trigger sends no NOTIFY in a session where action_triggers.notify is
-- off, so that an application can capture changes in a two-phase commit.
--
-- PostgreSQL rejects PREPARE TRANSACTION in a transaction that sent a NOTIFY
-- ("cannot PREPARE a transaction that has executed LISTEN, UNLISTEN, or NOTIFY",
-- PostgreSQL 15), and a capture sends one whenever no dispatcher is busy. A role or
-- session that prepares transactions sets this custom setting instead:
--
--   ALTER ROLE billing SET action_triggers.notify = off;
--
-- Its events are then dispatched at the dispatcher's next poll, or earlier with the
-- events of other sessions. The values off, false, no and 0 turn the NOTIFY off,
-- ignoring case and surrounding spaces. Any other value, or none, keeps it, and
-- raises no error, because a capture must never make the application's write fail.
--
-- The setting is read only where the capture would notify, so captures during a
-- stream, which skip the NOTIFY anyway, do not pay for it. The rest of the function
-- is as in 0004_skip_notify_while_dispatching.sql.
CREATE OR REPLACE FUNCTION action_triggers.capture() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET TimeZone = 'UTC'
SET IntervalStyle = 'postgres'
SET extra_float_digits = 1
SET bytea_output = 'hex'
AS $$
DECLARE
    wake boolean := false;
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO action_triggers.event (table_oid, signal, operation, new_row)
        VALUES (TG_RELID, TG_ARGV[0], TG_OP, to_jsonb(NEW));
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO action_triggers.event (table_oid, signal, operation, new_row, old_row)
        VALUES (TG_RELID, TG_ARGV[0], TG_OP, to_jsonb(NEW), to_jsonb(OLD));
    ELSE
        INSERT INTO action_triggers.event (table_oid, signal, operation, old_row)
        VALUES (TG_RELID, TG_ARGV[0], TG_OP, to_jsonb(OLD));
    END IF;

    IF NOT pg_try_advisory_xact_lock_shared(1633907826, 2) THEN
        -- A dispatcher is checking for captures in progress right now.
        wake := true;
    ELSIF pg_try_advisory_lock_shared(1633907826, 1) THEN
        -- No dispatcher is busy: wake one.
        PERFORM pg_advisory_unlock_shared(1633907826, 1);
        wake := true;
    END IF;
    IF wake AND coalesce(lower(btrim(current_setting('action_triggers.notify', true))), '')
                NOT IN ('off', 'false', 'no', '0') THEN
        PERFORM pg_notify('action_triggers_wakeup', '');
    END IF;

    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    RETURN NEW;
END
$$;
