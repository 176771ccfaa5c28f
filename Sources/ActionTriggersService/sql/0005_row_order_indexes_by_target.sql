-- The per-row order indexes lose the deliveries of the other target kind. Before,
-- each of them took an entry for every unfinished delivery, with a NULL key for
-- the deliveries of the other kind, so every new delivery wrote one index entry
-- that no query reads. The order check names its target's id with =, which
-- implies IS NOT NULL, so the planner still matches the new predicates.
DROP INDEX action_triggers.delivery_webhook_row;
CREATE INDEX delivery_webhook_row ON action_triggers.delivery (webhook_id, row_key, id)
    WHERE status IN ('pending', 'in_flight') AND webhook_id IS NOT NULL;
DROP INDEX action_triggers.delivery_queue_row;
CREATE INDEX delivery_queue_row ON action_triggers.delivery (msg_broker_queue_id, row_key, id)
    WHERE status IN ('pending', 'in_flight') AND msg_broker_queue_id IS NOT NULL;
