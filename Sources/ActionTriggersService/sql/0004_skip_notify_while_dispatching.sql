-- The capture trigger skips its NOTIFY while a dispatcher is busy.
--
-- PostgreSQL serializes the commits of transactions that sent a NOTIFY: each one
-- takes a database-wide lock before its commit record and keeps it until after the
-- WAL flush (PreCommit_Notify in src/backend/commands/async.c, PostgreSQL 15). Under
-- pgbench with 4 clients and a post_save config, backends spent a quarter of their
-- samples waiting for that lock, and TPS was 0.63 of the TPS without a config. The
-- same run without the NOTIFY kept 0.75 to 0.87.
--
-- Two advisory locks, keyed (1633907826, n) where 1633907826 is "actr" in ASCII,
-- carry the protocol:
--
--   (1633907826, 1), "dispatching": a dispatcher that is draining a stream of events
--   holds it exclusively, at session level. It dispatches again after a short
--   wait, so a transaction that commits meanwhile needs no NOTIFY.
--   (1633907826, 2), "capturing": every capture takes it shared, at transaction
--   level, before it looks at "dispatching". A dispatcher that gives up
--   "dispatching" waits until it can take "capturing" exclusively, so until every
--   transaction that skipped its NOTIFY has ended, and then dispatches once more
--   before it sleeps.
--
-- Both lock calls are tries, so a capture never waits: when "capturing" is taken
-- (a dispatcher holds it for one statement), the capture sends its NOTIFY. Lock
-- state does not depend on snapshots, so the protocol holds at every isolation
-- level. A dispatcher that disconnects drops "dispatching"; the events committed
-- after that wait for the next poll of another instance, or for the next start.
CREATE OR REPLACE FUNCTION action_triggers.capture() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET TimeZone = 'UTC'
SET IntervalStyle = 'postgres'
SET extra_float_digits = 1
SET bytea_output = 'hex'
AS $$
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
        PERFORM pg_notify('action_triggers_wakeup', '');
    ELSIF pg_try_advisory_lock_shared(1633907826, 1) THEN
        -- No dispatcher is busy: wake one.
        PERFORM pg_advisory_unlock_shared(1633907826, 1);
        PERFORM pg_notify('action_triggers_wakeup', '');
    END IF;

    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    RETURN NEW;
END
$$;
