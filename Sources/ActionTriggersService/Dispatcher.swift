import ActionTriggersCore
import Logging
import PostgresClient
import Foundation

/// Turns outbox events into deliveries: one per matching active config and webhook or broker queue.
///
/// Events are claimed in id order with `FOR UPDATE SKIP LOCKED`, so several
/// instances share the outbox without coordination. Matching happens here, at
/// dispatch time, so config changes apply to every event not yet dispatched.
final class Dispatcher: Sendable {
    private let conninfo: String
    private let settings: Settings
    private let logger: Logger
    private let stop: StopFlag
    private let wake: WakeSignal
    /// Wakes the workers; the argument is true when broker deliveries may be due too.
    private let onDeliveriesCreated: @Sendable (_ brokerDeliveries: Bool) -> Void
    /// Vacuums the outbox after heavy churn; nil in tests that run a dispatcher alone.
    private let vacuum: OutboxVacuum?
    private let health: ServiceHealth
    private let metrics: ServiceMetrics

    /// Returns the statement that claims events, marks them dispatched and creates the
    /// deliveries of configs without a payload template. It returns one row: the counts,
    /// the events by model and signal, and the matches whose payload the service must
    /// render.
    ///
    /// With `deferTemplated`, events that match a config with a template are left
    /// undispatched and listed in `deferred`. A batch without templates then runs in
    /// one autocommit round trip, and the listed events go through the statement again,
    /// in a transaction, with `eventFilter` naming them.
    static func dispatchSQL(eventFilter: String, limit: String, deferTemplated: Bool) -> String {
        let deferTemplated = deferTemplated ? "true" : "false"
        return """
        WITH batch AS (
            SELECT e.id, e.table_oid, e.signal, e.operation, e.new_row, e.old_row
            FROM action_triggers.event e
            WHERE e.dispatched_at IS NULL AND \(eventFilter)
            ORDER BY e.id
            \(limit)
            FOR UPDATE SKIP LOCKED
        ), matched AS (
            SELECT DISTINCT ON (b.id, t.target, t.target_id)
                b.id AS event_id, c.id AS config_id, t.target, t.target_id, t.url, t.http_method, t.headers, t.signing_secrets,
                t.broker_name, t.conn_details, t.parameters, t.timeout_secs, c.payload,
                ct.table_oid AS config_table, ct.app_label || '.' || lower(ct.model_name) AS model,
                (SELECT string_agg(coalesce(b.new_row, b.old_row) ->> a.attname, ',' ORDER BY k.position)
                 FROM pg_index i
                 CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, position)
                 JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                 WHERE i.indrelid = ct.table_oid AND i.indisprimary) AS row_key
            FROM batch b
            -- pg_partition_ancestors lists a partition and its parents, and nothing for a plain table.
            JOIN action_triggers.config_content_type ct
              ON ct.table_oid = b.table_oid
              OR ct.table_oid IN (SELECT relid FROM pg_partition_ancestors(b.table_oid))
            JOIN action_triggers.config c ON c.id = ct.config_id AND c.active
            JOIN action_triggers.config_signal s ON s.config_id = c.id AND s.signal = b.signal
            CROSS JOIN LATERAL (
                SELECT 'webhook' AS target, w.id AS target_id, w.url, w.http_method, w.headers, w.signing_secrets,
                       NULL AS broker_name, NULL::jsonb AS conn_details, NULL::jsonb AS parameters, w.timeout_secs
                FROM action_triggers.webhook w WHERE w.config_id = c.id
                UNION ALL
                SELECT 'broker', q.id, NULL, NULL, NULL, NULL, q.name, q.conn_details, q.parameters, q.timeout_secs
                FROM action_triggers.msg_broker_queue q WHERE q.config_id = c.id
            ) AS t
            ORDER BY b.id, t.target, t.target_id
        ), deferred AS (
            SELECT DISTINCT m.event_id FROM matched m WHERE \(deferTemplated) AND m.payload IS NOT NULL
        ), marked AS (
            UPDATE action_triggers.event e
            SET dispatched_at = now()
            FROM batch b
            WHERE e.id = b.id AND b.id NOT IN (SELECT event_id FROM deferred)
            RETURNING e.id
        ), created AS (
            INSERT INTO action_triggers.delivery
                (event_id, config_id, target, webhook_id, url, http_method, headers, signing_secrets, msg_broker_queue_id,
                 broker_name, conn_details, parameters, timeout_secs, model, row_key)
            SELECT m.event_id, m.config_id, m.target,
                   CASE WHEN m.target = 'webhook' THEN m.target_id END, m.url, m.http_method, m.headers, m.signing_secrets,
                   CASE WHEN m.target = 'broker' THEN m.target_id END, m.broker_name, m.conn_details, m.parameters,
                   m.timeout_secs, m.model, m.row_key
            FROM matched m
            WHERE m.payload IS NULL AND m.event_id NOT IN (SELECT event_id FROM deferred)
            RETURNING target
        ), labeled AS (
            SELECT DISTINCT ON (b.id) b.signal, m.event_id IS NOT NULL AS matched,
                coalesce(m.model, (
                    SELECT ct.app_label || '.' || lower(ct.model_name)
                    FROM action_triggers.config_content_type ct
                    WHERE ct.table_oid = b.table_oid
                    LIMIT 1), 'unknown') AS model
            FROM batch b
            LEFT JOIN matched m ON m.event_id = b.id
            WHERE b.id IN (SELECT id FROM marked)
            ORDER BY b.id
        )
        SELECT
            (SELECT count(*) FROM marked) AS events,
            (SELECT count(*) FROM created) AS deliveries,
            (SELECT count(*) FROM created WHERE target = 'broker') AS broker_deliveries,
            (SELECT json_agg(json_build_object('model', l.model, 'signal', l.signal, 'events', l.events, 'matched', l.matched))
             FROM (SELECT model, signal, count(*) AS events, count(*) FILTER (WHERE matched) AS matched
                   FROM labeled GROUP BY model, signal) AS l)::text AS counts,
            (SELECT json_agg(json_build_object(
                        'event_id', m.event_id, 'config_id', m.config_id, 'target', m.target,
                        'webhook_id', CASE WHEN m.target = 'webhook' THEN m.target_id END,
                        'url', m.url, 'http_method', m.http_method, 'headers', m.headers, 'signing_secrets', m.signing_secrets,
                        'msg_broker_queue_id', CASE WHEN m.target = 'broker' THEN m.target_id END,
                        'broker_name', m.broker_name, 'conn_details', m.conn_details, 'parameters', m.parameters,
                        'timeout_secs', m.timeout_secs, 'template', m.payload::text, 'table', m.config_table::bigint,
                        'model', m.model, 'row_key', m.row_key, 'signal', b.signal, 'operation', b.operation,
                        'new_row', b.new_row,
                        'old_row', b.old_row)
                    ORDER BY m.event_id, m.target, m.target_id)
             FROM matched m JOIN batch b ON b.id = m.event_id
             WHERE m.payload IS NOT NULL AND m.event_id NOT IN (SELECT event_id FROM deferred))::text AS templated,
            (SELECT count(*) FROM batch) AS taken,
            (SELECT array_agg(event_id ORDER BY event_id) FROM deferred)::text AS deferred
        """
    }

    /// The first pass over the outbox: $1 is the batch size; templated events are deferred.
    static let dispatchSQL = dispatchSQL(eventFilter: "true", limit: "LIMIT $1", deferTemplated: true)

    /// The pass over deferred events, in a transaction: $1 is their ids as a bigint[] literal.
    static let dispatchDeferredSQL = dispatchSQL(
        eventFilter: "e.id = ANY ($1::bigint[])", limit: "", deferTemplated: false)

    /// Creates the deliveries whose payloads the service rendered.
    static let insertRenderedSQL = """
        WITH created AS (
            INSERT INTO action_triggers.delivery
                (event_id, config_id, target, webhook_id, url, http_method, headers, signing_secrets, msg_broker_queue_id,
                 broker_name, conn_details, parameters, timeout_secs, model, row_key, payload, status, last_error,
                 completed_at)
            SELECT r.event_id, r.config_id, r.target, r.webhook_id, r.url, r.http_method, r.headers, r.signing_secrets,
                   r.msg_broker_queue_id, r.broker_name, r.conn_details, r.parameters, r.timeout_secs, r.model, r.row_key,
                   r.payload::json, r.status, r.last_error, CASE WHEN r.status = 'dead' THEN now() END
            FROM jsonb_to_recordset($1::jsonb) AS r(
                event_id bigint, config_id bigint, target text, webhook_id bigint, url text, http_method text,
                headers jsonb, signing_secrets jsonb, msg_broker_queue_id bigint, broker_name text, conn_details jsonb, parameters jsonb,
                timeout_secs double precision, model text, row_key text, payload text, status text, last_error text)
            RETURNING status, target
        )
        SELECT count(*) FILTER (WHERE status = 'pending') AS pending, count(*) FILTER (WHERE status = 'dead') AS dead,
               count(*) FILTER (WHERE status = 'pending' AND target = 'broker') AS pending_broker
        FROM created
        """

    /// How long the dispatcher waits after a wake-up, when events arrive faster than it
    /// dispatches them, before it dispatches. Every dispatch costs a statement, a claim
    /// and a record whatever its size, so at high rates a short wait puts several events
    /// in one batch and leaves more CPU to the application.
    static let gatherDelay = Duration.milliseconds(4)

    /// The time since the last dispatch that took more than one event, under which a
    /// wake-up counts as busy and waits `gatherDelay`. At a steady 200 events/s
    /// dispatches take one event each, so a wait follows only a hiccup.
    static let busyInterval = Duration.milliseconds(5)

    init(
        conninfo: String, settings: Settings, logger: Logger, stop: StopFlag, wake: WakeSignal, health: ServiceHealth,
        metrics: ServiceMetrics, vacuum: OutboxVacuum? = nil,
        onDeliveriesCreated: @escaping @Sendable (_ brokerDeliveries: Bool) -> Void
    ) {
        self.vacuum = vacuum
        self.health = health
        self.metrics = metrics
        self.conninfo = conninfo
        self.settings = settings
        self.logger = logger
        self.stop = stop
        self.wake = wake
        self.onDeliveriesCreated = onDeliveriesCreated
    }

    /// Runs until the stop flag is set; meant for a dedicated thread.
    func run() {
        let loop = ReconnectingLoop(
            conninfo: conninfo, applicationName: "action-triggers/dispatcher", logger: logger, stop: stop,
            health: (health, .dispatcher), metrics: metrics)
        var reportedProblems: [String] = []
        let syncInterval = Duration.milliseconds(Int64(settings.pollInterval * 1000))
        loop.run { connection, _ in
            try syncTriggers(connection, reported: &reportedProblems)
            health.set(.dispatcher, ready: true)
            var lastSync = ContinuousClock.now
            var woken = false
            // The end of the last dispatch that took more than one event.
            var lastBatch: ContinuousClock.Instant?
            while !stop.isSet {
                if woken, let lastBatch, ContinuousClock.now - lastBatch < Self.busyInterval {
                    Thread.sleep(forTimeInterval: Self.gatherDelay.seconds)
                }
                let events = try dispatchAll(connection)
                if events > 1 {
                    lastBatch = .now
                }
                if woken && events == 0 {
                    // A wake-up that brought no event can mean redeliveries, which create
                    // none. The workers are woken after the dispatch, not before it, so
                    // that they do not claim before the new deliveries exist.
                    onDeliveriesCreated(true)
                }
                // The poll is the fallback for a lost NOTIFY; jitter spreads instances apart.
                woken = wake.wait(timeout: settings.pollInterval * Double.random(in: 0.8...1.2))
                if ContinuousClock.now - lastSync >= syncInterval {
                    try syncTriggers(connection, reported: &reportedProblems)
                    try deleteOldEvents(connection)
                    lastSync = .now
                }
            }
        }
    }

    /// Repairs the capture triggers and logs configured tables that are missing.
    ///
    /// Runs at start and then every poll interval, however busy the service is, so a
    /// table that was dropped and created again gets its triggers back without a config
    /// change. A table locked for more than 200 ms is skipped until the next run, so
    /// the repair never queues the application's writes behind it for long. Each
    /// problem is logged when it appears, not on every run.
    private func syncTriggers(_ connection: PostgresConnection, reported: inout [String]) throws {
        let problems: [String]
        do {
            let text = try connection.query(
                "SELECT array_to_json(action_triggers.sync_triggers(200))::text AS problems").singleRow().string("problems")
            problems = try JSONDecoder().decode([String].self, from: Data(text.utf8))
        } catch let error as PostgresError where !error.isConnectionLost {
            let message = "capture triggers could not be updated: \(error)"
            if reported != [message] {
                logger.error("capture trigger sync failed", ["error": String(describing: error)])
            }
            reported = [message]
            return
        }

        for problem in problems where !reported.contains(problem) {
            logger.error("configured table is missing", ["problem": problem])
        }
        if problems.isEmpty && !reported.isEmpty {
            logger.info("capture triggers are in sync again")
        }
        reported = problems
    }

    /// Deletes events older than `retention_days` whose deliveries are finished, in
    /// batches of 1000 and at most 10 batches per run, so neither the outbox nor a
    /// single transaction grows large.
    private func deleteOldEvents(_ connection: PostgresConnection) throws {
        let cutoff = Date().addingTimeInterval(-settings.retentionDays * 86_400).timeIntervalSince1970
        var total = 0
        for _ in 0..<10 {
            let deleted = try connection.query(
                "SELECT action_triggers.delete_old_events(to_timestamp($1), 1000) AS deleted", [String(cutoff)])
                .singleRow().int("deleted")
            total += deleted
            if deleted < 1000 {
                break
            }
        }
        if total > 0 {
            logger.info("deleted old events", ["retention.events": total, "retention.days": settings.retentionDays])
        }
    }

    /// Dispatches batches until the outbox has no undispatched event left, and returns
    /// the events taken.
    @discardableResult
    private func dispatchAll(_ connection: PostgresConnection) throws -> Int {
        var total = 0
        while !stop.isSet {
            let (events, deliveries) = try dispatchBatch(connection)
            total += events
            metrics.deliveriesCreated.increment(by: UInt64(deliveries.all))
            if deliveries.all > 0 {
                onDeliveriesCreated(deliveries.broker > 0)
                vacuum?.rowsChanged(deliveries.all)
            }
            if events > 0 {
                logger.debug("dispatched events", ["dispatch.events": events, "dispatch.deliveries": deliveries.all])
            }
            if events < settings.dispatchBatchSize {
                return total
            }
        }
        return total
    }

    /// Deliveries created that are due: all of them, and those to a broker.
    private struct DueCount {
        var all = 0
        var broker = 0

        static func + (left: DueCount, right: DueCount) -> DueCount {
            DueCount(all: left.all + right.all, broker: left.broker + right.broker)
        }
    }

    /// Dispatches one batch in the caller's transaction and returns the events taken and
    /// the deliveries created that are due.
    private func dispatchBatch(_ connection: PostgresConnection) throws -> (events: Int, deliveries: DueCount) {
        let row = try connection.queryPrepared(Self.dispatchSQL, [String(settings.dispatchBatchSize)]).singleRow()
        let claimed = try row.int("taken")
        var deliveries = DueCount(all: try row.int("deliveries"), broker: try row.int("broker_deliveries"))
        if let counts = row["counts"] {
            countEvents(counts)
        }
        if let deferred = row["deferred"] {
            deliveries = deliveries + (try connection.transaction { connection in
                try dispatchTemplated(connection, eventIDs: deferred)
            })
        }
        return (claimed, deliveries)
    }

    /// Dispatches events that match a config with a payload template, in the caller's
    /// transaction, and returns the deliveries created that are due.
    private func dispatchTemplated(_ connection: PostgresConnection, eventIDs: String) throws -> DueCount {
        let row = try connection.queryPrepared(Self.dispatchDeferredSQL, [eventIDs]).singleRow()
        var deliveries = DueCount(all: try row.int("deliveries"), broker: try row.int("broker_deliveries"))
        if let counts = row["counts"] {
            countEvents(counts)
        }

        if let templated = row["templated"] {
            let matches = try Self.matches(fromJSON: templated)
            let records = try PayloadRenderer(connection: connection, logger: logger).render(matches)
            let created = try connection.queryPrepared(Self.insertRenderedSQL, [JSONValue.array(records).jsonText])
                .singleRow()
            deliveries = deliveries + DueCount(all: try created.int("pending"), broker: try created.int("pending_broker"))
            metrics.deliveriesCreated.increment(by: UInt64(try created.int("dead")))
        }
        return deliveries
    }

    /// Counts the batch's events by model and signal.
    private func countEvents(_ countsJSON: String) {
        guard case .array(let groups)? = try? JSONParser.parse(Array(countsJSON.utf8)) else {
            return
        }
        for case .object(let group) in groups {
            guard case .string(let model)? = group["model"], case .string(let signal)? = group["signal"],
                  case .number(let events)? = group["events"], case .number(let matched)? = group["matched"] else {
                continue
            }
            metrics.countEvents(model: model, signal: signal, captured: UInt64(events.double), matched: UInt64(matched.double))
        }
    }

    /// Decodes the templated matches of `dispatchSQL`.
    static func matches(fromJSON text: String) throws -> [PayloadRenderer.Match] {
        guard case .array(let items) = try JSONParser.parse(Array(text.utf8)) else {
            return []
        }
        var matches: [PayloadRenderer.Match] = []
        for case .object(let item) in items {
            guard case .number(let eventID)? = item["event_id"], case .number(let configID)? = item["config_id"],
                  case .number(let table)? = item["table"], case .string(let model)? = item["model"],
                  case .string(let signalName)? = item["signal"], let signal = Signal(rawValue: signalName),
                  case .string(let operation)? = item["operation"], case .string(let template)? = item["template"] else {
                throw ServiceError.unexpectedResult("the dispatch query returned a match without its fields")
            }
            let scope = TemplateScope(
                table: UInt32(table.text) ?? 0, newRow: item["new_row"]?.objectValue, oldRow: item["old_row"]?.objectValue,
                eventID: Int64(eventID.text) ?? 0, signal: signal, operation: operation, model: model)
            var target = JSONObject()
            for key in [
                "target", "webhook_id", "url", "http_method", "headers", "signing_secrets", "msg_broker_queue_id", "broker_name",
                "conn_details", "parameters", "timeout_secs", "model", "row_key",
            ] {
                target.append(key, item[key] ?? .null)
            }
            matches.append(PayloadRenderer.Match(
                eventID: Int64(eventID.text) ?? 0, configID: Int64(configID.text) ?? 0, template: template,
                scope: scope, target: target))
        }
        return matches
    }
}
