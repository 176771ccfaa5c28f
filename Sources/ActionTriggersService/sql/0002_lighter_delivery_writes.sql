-- Deliveries and delivery attempts lose their foreign keys to the event and the
-- delivery they belong to. Every key check ran a trigger per inserted row, which
-- locked the parent row. In 64-row batches, EXPLAIN ANALYZE put these triggers at
-- about a tenth of the dispatch statement's time and a quarter of the time of the
-- statement that records attempts. Only the service writes these tables, and
-- delete_old_events now deletes an event's deliveries and their attempts itself,
-- which ON DELETE CASCADE did before.
ALTER TABLE action_triggers.delivery DROP CONSTRAINT delivery_event_id_fkey;
ALTER TABLE action_triggers.delivery_attempt DROP CONSTRAINT delivery_attempt_delivery_id_fkey;

-- Deletes up to batch_size events dispatched before older_than whose deliveries
-- are all finished, with their deliveries and attempts, and returns the events
-- deleted.
--
-- Only the 10 × batch_size oldest events are candidates. Ids grow with time, so a
-- run reads a bounded part of the table, also when no event is old enough. Before,
-- every run (one per poll interval) read the whole table for that answer.
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
    ), deliveries AS (
        DELETE FROM action_triggers.delivery d
        WHERE d.event_id IN (SELECT id FROM old)
        RETURNING d.id
    ), attempts AS (
        DELETE FROM action_triggers.delivery_attempt a
        WHERE a.delivery_id IN (SELECT id FROM deliveries)
    )
    DELETE FROM action_triggers.event e
    WHERE e.id IN (SELECT id FROM old);
    GET DIAGNOSTICS deleted = ROW_COUNT;
    RETURN deleted;
END
$$;

-- The claim's index gets a predicate on `target`. The check for an unfinished
-- earlier delivery of a row names no target, so the planner can no longer serve it
-- from this index, which contains every unfinished delivery and, until a vacuum,
-- the dead entries of finished ones. The check then looks the row up in
-- delivery_webhook_row or delivery_queue_row. Statistics taken while the table was
-- small made the planner pick this index, and each check scanned all unfinished
-- deliveries.
DROP INDEX action_triggers.delivery_due;
CREATE INDEX delivery_due ON action_triggers.delivery (target, next_attempt_at, id)
    WHERE status IN ('pending', 'in_flight') AND target IN ('webhook', 'broker');
