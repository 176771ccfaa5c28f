import ActionTriggersCore
import Logging
import PostgresClient
import Foundation

/// Turns outbox events into deliveries: one per matching active config and webhook.
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
    private let onDeliveriesCreated: @Sendable () -> Void
    private let health: ServiceHealth
    private let metrics: ServiceMetrics

    static let dispatchSQL = """
        WITH batch AS (
            SELECT e.id, e.table_oid, e.signal
            FROM action_triggers.event e
            WHERE e.dispatched_at IS NULL
            ORDER BY e.id
            LIMIT $1
            FOR UPDATE SKIP LOCKED
        ), marked AS (
            UPDATE action_triggers.event e
            SET dispatched_at = now()
            FROM batch b
            WHERE e.id = b.id
            RETURNING e.id
        ), created AS (
            INSERT INTO action_triggers.delivery
                (event_id, config_id, webhook_id, url, http_method, headers, timeout_secs, payload)
            SELECT DISTINCT ON (b.id, w.id) b.id, c.id, w.id, w.url, w.http_method, w.headers, w.timeout_secs, c.payload
            FROM batch b
            -- pg_partition_ancestors lists a partition and its parents, and nothing for a plain table.
            JOIN action_triggers.config_content_type ct
              ON ct.table_oid = b.table_oid
              OR ct.table_oid IN (SELECT relid FROM pg_partition_ancestors(b.table_oid))
            JOIN action_triggers.config c ON c.id = ct.config_id AND c.active
            JOIN action_triggers.config_signal s ON s.config_id = c.id AND s.signal = b.signal
            JOIN action_triggers.webhook w ON w.config_id = c.id
            ORDER BY b.id, w.id
            RETURNING id
        )
        SELECT (SELECT count(*) FROM marked) AS events, (SELECT count(*) FROM created) AS deliveries
        """

    init(
        conninfo: String, settings: Settings, logger: Logger, stop: StopFlag, wake: WakeSignal, health: ServiceHealth,
        metrics: ServiceMetrics, onDeliveriesCreated: @escaping @Sendable () -> Void
    ) {
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
            while !stop.isSet {
                try dispatchAll(connection)
                // The poll is the fallback for a lost NOTIFY; jitter spreads instances apart.
                wake.wait(timeout: settings.pollInterval * Double.random(in: 0.8...1.2))
                if ContinuousClock.now - lastSync >= syncInterval {
                    try syncTriggers(connection, reported: &reportedProblems)
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

    /// Dispatches batches until the outbox has no undispatched event left.
    private func dispatchAll(_ connection: PostgresConnection) throws {
        while !stop.isSet {
            let row = try connection.queryPrepared(Self.dispatchSQL, [String(settings.dispatchBatchSize)]).singleRow()
            let events = try row.int("events")
            let deliveries = try row.int("deliveries")
            metrics.eventsDispatched.increment(by: UInt64(events))
            metrics.deliveriesCreated.increment(by: UInt64(deliveries))
            if deliveries > 0 {
                onDeliveriesCreated()
            }
            if events > 0 {
                logger.debug("dispatched events", ["dispatch.events": events, "dispatch.deliveries": deliveries])
            }
            if events < settings.dispatchBatchSize {
                return
            }
        }
    }
}
