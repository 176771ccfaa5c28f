-- Deliveries and delivery attempts lose their foreign keys to the event and the
-- delivery they belong to. Every key check ran a trigger per inserted row, which
-- locked the parent row. In 64-row batches, EXPLAIN ANALYZE put these triggers at
-- about a tenth of the dispatch statement's time and a quarter of the time of the
-- statement that records attempts. Statement-level triggers take over what
-- ON DELETE CASCADE did: deleting events, by retention or by hand, deletes their
-- deliveries, and deleting deliveries deletes their attempts. They cost nothing
-- when rows are inserted.
ALTER TABLE action_triggers.delivery DROP CONSTRAINT delivery_event_id_fkey;
ALTER TABLE action_triggers.delivery_attempt DROP CONSTRAINT delivery_attempt_delivery_id_fkey;

-- Deletes the deliveries of the deleted events (transition table deleted_events).
CREATE FUNCTION action_triggers.delete_event_deliveries() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM action_triggers.delivery d WHERE d.event_id IN (SELECT id FROM deleted_events);
    RETURN NULL;
END
$$;

CREATE TRIGGER delete_event_deliveries
    AFTER DELETE ON action_triggers.event
    REFERENCING OLD TABLE AS deleted_events
    FOR EACH STATEMENT EXECUTE FUNCTION action_triggers.delete_event_deliveries();

-- Deletes the attempts of the deleted deliveries (transition table deleted_deliveries).
CREATE FUNCTION action_triggers.delete_delivery_attempts() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM action_triggers.delivery_attempt a WHERE a.delivery_id IN (SELECT id FROM deleted_deliveries);
    RETURN NULL;
END
$$;

CREATE TRIGGER delete_delivery_attempts
    AFTER DELETE ON action_triggers.delivery
    REFERENCING OLD TABLE AS deleted_deliveries
    FOR EACH STATEMENT EXECUTE FUNCTION action_triggers.delete_delivery_attempts();

-- Deletes up to batch_size events dispatched before older_than whose deliveries
-- are all finished, and returns the events deleted. The triggers above delete
-- their deliveries and attempts.
--
-- Only the 10 × batch_size oldest events are candidates. Ids grow with time, so a
-- run reads a bounded part of the table, also when no event is old enough. Before,
-- every run (one per poll interval) read the whole table to find that out.
-- NOTE: When more than 10 × batch_size of the oldest events still have unfinished
-- deliveries after the retention period, later events wait until those finish.
CREATE OR REPLACE FUNCTION action_triggers.delete_old_events(older_than timestamptz, batch_size integer) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    deleted bigint;
BEGIN
    WITH oldest AS (
        SELECT e.id, e.dispatched_at FROM action_triggers.event e
        ORDER BY e.id
        LIMIT batch_size * 10
    ), old AS (
        SELECT e.id FROM action_triggers.event e
        WHERE e.id IN (SELECT id FROM oldest WHERE dispatched_at < older_than)
          AND NOT EXISTS (
              SELECT 1 FROM action_triggers.delivery d
              WHERE d.event_id = e.id AND d.status IN ('pending', 'in_flight'))
        ORDER BY e.id
        LIMIT batch_size
        FOR UPDATE SKIP LOCKED
    )
    DELETE FROM action_triggers.event e
    WHERE e.id IN (SELECT id FROM old);
    GET DIAGNOSTICS deleted = ROW_COUNT;
    RETURN deleted;
END
$$;
