-- The claim's index gets a predicate on `target`, in a migration of its own, so
-- that the build, which reads the whole delivery table, holds no lock on the
-- outbox: the migration before it locked action_triggers.event to drop a foreign
-- key, and the application's writes wait for that lock.
--
-- The check for an unfinished earlier delivery of a row names no target, so the
-- planner can no longer serve it from this index, which contains every unfinished
-- delivery and, until a vacuum, the dead entries of finished ones. The check then
-- looks the row up in delivery_webhook_row or delivery_queue_row. Statistics taken
-- while the table was small made the planner pick this index, and each check
-- scanned all unfinished deliveries.
DROP INDEX action_triggers.delivery_due;
CREATE INDEX delivery_due ON action_triggers.delivery (target, next_attempt_at, id)
    WHERE status IN ('pending', 'in_flight') AND target IN ('webhook', 'broker');
