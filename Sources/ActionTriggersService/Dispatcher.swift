import ActionTriggersCore
import Logging
import PostgresClient
import Foundation

/// Turns outbox events into deliveries: one per matching active config and webhook or broker queue.
///
/// Events are claimed in id order with `FOR UPDATE SKIP LOCKED`, so several
/// instances share the outbox without coordination. Matching happens here, at
/// dispatch time, so config changes apply to every event not yet dispatched.
/// Under a stream of writes the dispatcher polls and captures skip their NOTIFY,
/// as `DispatchPacing` describes.
final class Dispatcher: Sendable {
    private let conninfo: String
    private let settings: Settings
    private let logger: Logger
    private let stop: StopFlag
    private let wake: WakeSignal
    /// Wakes the workers to claim pending deliveries: to webhooks, to brokers, or both.
    private let onDeliveriesCreated: @Sendable (_ webhooks: Bool, _ brokers: Bool) -> Void
    /// Receives the webhook deliveries claimed as they are created; nil claims none that way.
    private let handoff: DeliveryHandoff?
    /// Vacuums the outbox after heavy churn; nil in tests that run a dispatcher alone.
    private let vacuum: OutboxVacuum?
    private let health: ServiceHealth
    private let metrics: ServiceMetrics

    /// Returns the statement that claims events, marks them dispatched and creates the
    /// deliveries of configs without a payload template. Its summary columns hold the
    /// counts, the events by model and signal, and the matches whose payload the service
    /// must render. Up to $2 webhook deliveries are claimed as they are created, with a
    /// lease of $3 seconds. The statement returns one row for each, with the columns of
    /// `DeliveryStore.claimSQL`. Without such a delivery, it returns one row with the
    /// summary alone.
    ///
    /// With `deferTemplated`, events that match a config with a template are left
    /// undispatched and listed in `deferred`. A batch without templates then runs in
    /// one autocommit round trip, and the listed events go through the statement again,
    /// in a transaction, with `eventFilter` naming them.
    ///
    /// With `holdClaims`, the statement runs in a transaction that stays open until the
    /// claimed deliveries' attempts finish (`HeldDeliveries`). It inserts none of them
    /// but returns each with its id drawn from the table's sequence, and with `held_row`,
    /// the columns that `logHeldSQL` inserts, as a JSON object.
    static func dispatchSQL(eventFilter: String, limit: String, deferTemplated: Bool, holdClaims: Bool = false) -> String {
        let deferTemplated = deferTemplated ? "true" : "false"
        // Ids follow event order, which the per-row order of the claims relies on. A held
        // claim gets its id with the others, so a later delivery of its row is still
        // behind it if its attempt fails.
        let created: String
        let handed: String
        if holdClaims {
            created = """
            numbered AS MATERIALIZED (
                SELECT p.*, nextval('action_triggers.delivery_id_seq') AS delivery_id
                FROM (SELECT * FROM planned ORDER BY event_id, target, target_id) AS p
            ), created AS (
                INSERT INTO action_triggers.delivery
                    (id, event_id, config_id, target, webhook_id, url, http_method, headers, signing_secrets, msg_broker_queue_id,
                     broker_name, conn_details, parameters, timeout_secs, model, row_key)
                OVERRIDING SYSTEM VALUE
                SELECT p.delivery_id, p.event_id, p.config_id, p.target,
                       CASE WHEN p.target = 'webhook' THEN p.target_id END, p.url, p.http_method, p.headers, p.signing_secrets,
                       CASE WHEN p.target = 'broker' THEN p.target_id END, p.broker_name, p.conn_details, p.parameters,
                       p.timeout_secs, p.model, p.row_key
                FROM numbered p
                WHERE NOT p.claim
                ORDER BY p.delivery_id
                RETURNING id, event_id, target, status
            )
            """
            handed = """
            handed AS (
                SELECT n.delivery_id AS id, n.event_id, n.target_id AS webhook_id, n.url, n.http_method, n.headers,
                       n.signing_secrets, n.timeout_secs,
                       json_build_object(
                           'id', n.delivery_id, 'event_id', n.event_id, 'config_id', n.config_id, 'webhook_id', n.target_id,
                           'url', n.url, 'http_method', n.http_method, 'headers', n.headers,
                           'signing_secrets', n.signing_secrets, 'timeout_secs', n.timeout_secs, 'model', n.model,
                           'row_key', n.row_key)::text AS held_row
                FROM numbered n
                WHERE n.claim
            )
            """
        } else {
            created = """
            created AS (
                INSERT INTO action_triggers.delivery
                    (event_id, config_id, target, webhook_id, url, http_method, headers, signing_secrets, msg_broker_queue_id,
                     broker_name, conn_details, parameters, timeout_secs, model, row_key, status, attempts, next_attempt_at)
                SELECT p.event_id, p.config_id, p.target,
                       CASE WHEN p.target = 'webhook' THEN p.target_id END, p.url, p.http_method, p.headers, p.signing_secrets,
                       CASE WHEN p.target = 'broker' THEN p.target_id END, p.broker_name, p.conn_details, p.parameters,
                       p.timeout_secs, p.model, p.row_key,
                       CASE WHEN p.claim THEN 'in_flight' ELSE 'pending' END,
                       CASE WHEN p.claim THEN 1 ELSE 0 END,
                       CASE WHEN p.claim THEN now() + make_interval(secs => $3::double precision) ELSE now() END
                FROM planned p
                ORDER BY p.event_id, p.target, p.target_id
                RETURNING id, event_id, target, status, webhook_id, url, http_method, headers, signing_secrets, timeout_secs
            )
            """
            handed = """
            handed AS (
                SELECT c.id, c.event_id, c.webhook_id, c.url, c.http_method, c.headers, c.signing_secrets, c.timeout_secs,
                       NULL::text AS held_row
                FROM created c
                WHERE c.status = 'in_flight'
            )
            """
        }
        return """
        WITH batch AS (
            SELECT e.id, e.table_oid, e.signal, e.operation, e.new_row, e.old_row
            FROM action_triggers.event e
            WHERE e.dispatched_at IS NULL AND \(eventFilter)
            ORDER BY e.id
            \(limit)
            FOR UPDATE SKIP LOCKED
        ), targets AS MATERIALIZED (
            SELECT DISTINCT ON (b.id, t.target, t.target_id)
                b.id AS event_id, c.id AS config_id, t.target, t.target_id, t.url, t.http_method, t.headers, t.signing_secrets,
                t.broker_name, t.conn_details, t.parameters, t.timeout_secs, c.payload,
                ct.table_oid AS config_table, ct.app_label || '.' || lower(ct.model_name) AS model,
                coalesce(b.new_row, b.old_row) AS key_row
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
        ), keys AS MATERIALIZED (
            -- The primary key columns of each table the batch matched, read from the
            -- catalog once per table instead of once per event.
            SELECT tables.oid AS table_oid,
                   (SELECT array_agg(a.attname::text ORDER BY k.position)
                    FROM pg_index i
                    CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, position)
                    JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                    WHERE i.indrelid = tables.oid AND i.indisprimary) AS columns
            FROM (SELECT DISTINCT config_table AS oid FROM targets) AS tables
        ), matched AS MATERIALIZED (
            -- The key takes the "C" collation of attname through ->>, and a comparison in
            -- that collation cannot use the indexes on delivery.row_key, so it is reset.
            SELECT t.event_id, t.config_id, t.target, t.target_id, t.url, t.http_method, t.headers, t.signing_secrets,
                   t.broker_name, t.conn_details, t.parameters, t.timeout_secs, t.payload, t.config_table, t.model,
                   CASE WHEN cardinality(k.columns) = 1 THEN t.key_row ->> k.columns[1]
                        ELSE (SELECT string_agg(t.key_row ->> u.name, ',' ORDER BY u.position)
                              FROM unnest(k.columns) WITH ORDINALITY AS u(name, position))
                   END COLLATE "default" AS row_key
            FROM targets t
            LEFT JOIN keys k ON k.table_oid = t.config_table
            ORDER BY t.event_id, t.target, t.target_id
        ), templated_rows AS MATERIALIZED (
            SELECT m.model, m.row_key, min(m.event_id) AS first_event
            FROM matched m
            WHERE \(deferTemplated) AND m.payload IS NOT NULL
            GROUP BY m.model, m.row_key
        ), deferred AS (
            -- The events that match a template, and the later events of the batch for
            -- the same rows, so that the second pass creates a row's deliveries in event
            -- order too.
            SELECT DISTINCT m.event_id FROM matched m
            WHERE \(deferTemplated)
              AND (m.payload IS NOT NULL
                   OR EXISTS (SELECT 1 FROM templated_rows t
                              WHERE t.model = m.model AND t.row_key = m.row_key AND t.first_event < m.event_id))
        ), marked AS (
            UPDATE action_triggers.event e
            SET dispatched_at = now()
            FROM batch b
            WHERE e.id = b.id AND b.id NOT IN (SELECT event_id FROM deferred)
            RETURNING e.id
        ), eligible AS (
            -- The webhook deliveries that may be claimed as they are created: the first
            -- of the batch for their webhook and row, with no unfinished delivery of that
            -- row before them. The others are created pending, and the worker claims
            -- them in row order.
            SELECT m.*,
                   m.target = 'webhook' AND m.payload IS NULL
                   AND (row_number() OVER (PARTITION BY m.target, m.target_id, m.model, m.row_key ORDER BY m.event_id) = 1
                        OR m.row_key IS NULL)
                   AND \(DeliveryStore.earlierUnfinishedSQL(
                       target: "webhook", targetID: "m.target_id", rowKey: "m.row_key", model: "m.model")) IS NULL AS eligible
            FROM matched m
            WHERE m.payload IS NULL AND m.event_id NOT IN (SELECT event_id FROM deferred)
        ), alone AS (
            -- Whether no older event waits undispatched. One that does is locked by
            -- another dispatcher, which may be creating an earlier delivery of a row of
            -- this batch that this statement cannot see yet, so nothing is claimed.
            SELECT NOT EXISTS (
                SELECT 1 FROM action_triggers.event o
                WHERE o.dispatched_at IS NULL AND o.id < (SELECT min(id) FROM batch)) AS alone
        ), planned AS (
            -- At most $2 of them, the delivery worker's free slots, in event order.
            SELECT e.*,
                   e.eligible AND (SELECT alone FROM alone)
                   AND count(*) FILTER (WHERE e.eligible)
                       OVER (ORDER BY e.event_id, e.target, e.target_id ROWS UNBOUNDED PRECEDING) <= $2 AS claim
            FROM eligible e
        ), \(created), \(handed), labeled AS (
            SELECT DISTINCT ON (b.id) b.signal, m.event_id IS NOT NULL AS matched,
                coalesce(m.model, (
                    SELECT ct.app_label || '.' || lower(ct.model_name)
                    FROM action_triggers.config_content_type ct
                    WHERE ct.table_oid = b.table_oid
                    LIMIT 1), 'unknown') AS model
            FROM batch b
            LEFT JOIN matched m ON m.event_id = b.id
            -- The events marked dispatched: the batch without the deferred ones.
            WHERE b.id NOT IN (SELECT event_id FROM deferred)
            ORDER BY b.id
        ), summary AS (
            SELECT
            (SELECT count(*) FROM marked) AS events,
            (SELECT count(*) FROM created) + \(holdClaims ? "(SELECT count(*) FROM handed)" : "0") AS deliveries,
            (SELECT count(*) FROM created WHERE target = 'webhook' AND status = 'pending') AS pending_webhook_deliveries,
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
        ), \(DeliveryStore.urlChecksSQL(urls: "SELECT url FROM handed"))
        -- One row per delivery claimed at creation, each with the summary; or the summary
        -- alone. The event is read by primary key: its row images are as the batch read them.
        SELECT s.*, c.id, c.event_id, 1 AS attempts, 1 AS retry_attempt, e.signal, e.operation,
               coalesce(e.new_row, e.old_row)::text AS row_image, NULL::text AS payload, c.timeout_secs,
               c.webhook_id, c.url, c.http_method, c.headers::text AS headers, c.signing_secrets::text AS signing_secrets,
               (SELECT w.ca_bundle FROM action_triggers.webhook w WHERE w.id = c.webhook_id) AS ca_bundle,
               (SELECT u.url_error FROM url_checks u WHERE u.url = c.url) AS url_error, c.held_row
        FROM summary s
        LEFT JOIN (handed c JOIN action_triggers.event e ON e.id = c.event_id) ON true
        ORDER BY c.id
        """
    }

    /// The first pass over the outbox, which defers templated events. $1 is the batch
    /// size, $2 the maximum number of deliveries to claim and $3 their lease in seconds.
    static let dispatchSQL = dispatchSQL(eventFilter: "true", limit: "LIMIT $1", deferTemplated: true)

    /// The first pass with held claims (`dispatchHeld`): $1 is the maximum number of
    /// events to take and $2 the maximum number of deliveries to claim.
    static let dispatchHeldSQL = dispatchSQL(eventFilter: "true", limit: "LIMIT $1", deferTemplated: true, holdClaims: true)

    /// Inserts the webhook deliveries of a held dispatch with the outcomes of their first
    /// attempts, and the attempts. $1 is the statement's `held_row` objects as a JSON
    /// array and $2 the outcomes as `DeliveryStore.recordSQL` takes them. A delivery
    /// without an outcome is inserted in flight with a lease of $3 seconds, and one
    /// listed in $4 (bigint[]), which was never sent, pending and due. Times after the
    /// attempts take `clock_timestamp()`, because `now()` is when the dispatch began.
    static let logHeldSQL = """
        WITH held AS (
            SELECT * FROM jsonb_to_recordset($1::jsonb) AS h(
                id bigint, event_id bigint, config_id bigint, webhook_id bigint, url text, http_method text, headers jsonb,
                signing_secrets jsonb, timeout_secs double precision, model text, row_key text)
        ), r AS (
            \(DeliveryStore.attemptRecordsSQL(parameter: "$2"))
        ), written AS (
            SELECT clock_timestamp() AS at
        ), created AS (
            INSERT INTO action_triggers.delivery
                (id, event_id, config_id, target, webhook_id, url, http_method, headers, signing_secrets, timeout_secs, model,
                 row_key, status, attempts, next_attempt_at, last_status_code, last_error, updated_at, completed_at)
            OVERRIDING SYSTEM VALUE
            SELECT h.id, h.event_id, h.config_id, 'webhook', h.webhook_id, h.url, h.http_method, h.headers, h.signing_secrets,
                   h.timeout_secs, h.model, h.row_key,
                   CASE WHEN r.id IS NOT NULL THEN r.status WHEN h.id = ANY ($4::bigint[]) THEN 'pending' ELSE 'in_flight' END,
                   CASE WHEN r.id IS NULL AND h.id = ANY ($4::bigint[]) THEN 0 ELSE 1 END,
                   CASE WHEN r.id IS NULL AND h.id = ANY ($4::bigint[]) THEN w.at
                        WHEN r.id IS NULL THEN w.at + make_interval(secs => $3::double precision)
                        WHEN r.status = 'pending' THEN w.at + make_interval(secs => r.delay_secs)
                        ELSE w.at END,
                   r.status_code, r.error, w.at,
                   CASE WHEN r.status IN ('succeeded', 'failed', 'dead') THEN w.at END
            FROM held h CROSS JOIN written w LEFT JOIN r ON r.id = h.id
            ORDER BY h.id
        )
        \(DeliveryStore.insertAttemptsSQL)
        FROM r
        """

    /// The pass over deferred events, in a transaction: $1 is their ids as a bigint[] literal,
    /// and $2 and $3 are as for `dispatchSQL`.
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

    /// How long the dispatcher waits before it dispatches: after a wake-up, when events
    /// arrive faster than it dispatches them, and between polls while it holds the
    /// "dispatching" lock. Every dispatch costs a statement, a claim and a record
    /// whatever its size, so at high rates a short wait puts several events in one
    /// batch and leaves more CPU to the application.
    static let gatherDelay = Duration.milliseconds(4)

    /// The first key of the two-key advisory locks that the capture trigger and the
    /// dispatcher share ("actr" in ASCII): 1 is "dispatching" and 2 is "capturing".
    /// Migration 0004 writes the same numbers into the capture trigger.
    static let advisoryLockClass = 1633907826

    /// Tries to take the "dispatching" advisory lock. While a session holds it, the
    /// capture trigger skips its NOTIFY (migration 0004 describes the protocol).
    static let takeDispatchingLockSQL = "SELECT pg_try_advisory_lock(\(advisoryLockClass), 1) AS taken"

    static let releaseDispatchingLockSQL = "SELECT pg_advisory_unlock(\(advisoryLockClass), 1) AS released"

    /// Returns whether no capture that may have skipped its NOTIFY is in progress: each
    /// holds the "capturing" advisory lock shared until its transaction ends.
    static let noCaptureInProgressSQL = """
        SELECT CASE WHEN pg_try_advisory_lock(\(advisoryLockClass), 2) THEN pg_advisory_unlock(\(advisoryLockClass), 2)
                    ELSE false END AS free
        """

    /// The time since the last dispatch that was part of a stream, under which a
    /// wake-up counts as busy and waits `gatherDelay`. Below 300 events/s, and below
    /// 1,000 events/s where dispatches are fast, dispatches are no stream, so a wake-up
    /// is dispatched at once (`DispatchPacing.shareRate`).
    static let busyInterval = Duration.milliseconds(5)

    init(
        conninfo: String, settings: Settings, logger: Logger, stop: StopFlag, wake: WakeSignal, health: ServiceHealth,
        metrics: ServiceMetrics, vacuum: OutboxVacuum? = nil, handoff: DeliveryHandoff? = nil,
        onDeliveriesCreated: @escaping @Sendable (_ webhooks: Bool, _ brokers: Bool) -> Void
    ) {
        self.vacuum = vacuum
        self.handoff = handoff
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
        // Outside the connection's loop, so that a pause after a failed hold outlasts a reconnect.
        var holdPolicy = DispatchHoldPolicy()
        loop.run { connection, _ in
            try syncTriggers(connection, reported: &reportedProblems)
            health.set(.dispatcher, ready: true)
            var lastSync = ContinuousClock.now
            var woken = false
            // The end of the last dispatch that was part of a stream (`DispatchPacing.lastDispatchInStream`).
            var lastBatch: ContinuousClock.Instant?
            // The start of the last dispatch, to measure the rate of the next one.
            var lastDispatch = ContinuousClock.now
            // A new connection holds no lock, so pacing starts idle on each one.
            var pacing = DispatchPacing(gatherDelay: Self.gatherDelay.seconds, pollInterval: settings.pollInterval)
            while !stop.isSet {
                if pacing.mustSettle {
                    pacing.settled(try connection.query(Self.noCaptureInProgressSQL).singleRow().bool("free"))
                }
                if pacing.mode == .idle, woken, let lastBatch, ContinuousClock.now - lastBatch < Self.busyInterval {
                    Thread.sleep(forTimeInterval: Self.gatherDelay.seconds)
                }
                let dispatchStart = ContinuousClock.now
                let elapsed = (dispatchStart - lastDispatch).seconds
                lastDispatch = dispatchStart
                let (events, heldFor) = try dispatchAll(
                    connection, holdPolicy: &holdPolicy, mayHold: Self.mayHold(settings.dispatchHold, pacing: pacing))
                let busy = (ContinuousClock.now - dispatchStart).seconds - heldFor
                let lockAction = pacing.dispatched(events: events, elapsed: elapsed, busy: busy)
                if pacing.lastDispatchInStream {
                    lastBatch = .now
                }
                if woken && events == 0 {
                    // A wake-up that brought no event can mean redeliveries, which create
                    // none. The workers are woken after the dispatch, not before it, so
                    // that they do not claim before the new deliveries exist.
                    onDeliveriesCreated(true, true)
                }

                switch lockAction {
                case .none:
                    break
                case .take:
                    pacing.lockTaken(try connection.query(Self.takeDispatchingLockSQL).singleRow().bool("taken"))
                case .release:
                    _ = try connection.query(Self.releaseDispatchingLockSQL)
                }

                switch pacing.wait {
                case .untilWoken(let timeout) where pacing.mode == .idle:
                    // The poll is the fallback for a lost NOTIFY; jitter spreads instances apart.
                    woken = wake.wait(timeout: timeout * Double.random(in: 0.8...1.2))
                case .untilWoken(let timeout):
                    woken = wake.wait(timeout: timeout)
                case .fixed(let seconds):
                    // Time spent waiting in holds counts toward the wait between polls.
                    stop.sleep(seconds: max(0, seconds - heldFor))
                    woken = wake.consume()
                }
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
    /// the events taken and the seconds spent waiting in holds. Batches hold their
    /// claimed deliveries only when `mayHold`.
    @discardableResult
    private func dispatchAll(
        _ connection: PostgresConnection, holdPolicy: inout DispatchHoldPolicy, mayHold: Bool
    ) throws -> (events: Int, heldFor: Double) {
        var total = 0
        var heldFor = 0.0
        while !stop.isSet {
            let batchStart = ContinuousClock.now
            let heldBefore = heldFor
            let (events, limit, deliveries) = try dispatchBatch(
                connection, holdPolicy: &holdPolicy, mayHold: mayHold, heldFor: &heldFor)
            // Polls that find nothing are left out, because their many quick samples would
            // hide slow dispatches from the histogram's upper quantiles.
            if events > 0 {
                metrics.dispatchDuration.observe((ContinuousClock.now - batchStart).seconds - (heldFor - heldBefore))
            }
            total += events
            metrics.deliveriesCreated.increment(by: UInt64(deliveries.all))
            // Each event taken is updated, so it counts as a change like each delivery.
            vacuum?.rowsChanged(events + deliveries.all)
            if deliveries.pendingWebhooks > 0 || deliveries.broker > 0 {
                onDeliveriesCreated(deliveries.pendingWebhooks > 0, deliveries.broker > 0)
            }
            if events > 0 {
                logger.debug("dispatched events", ["dispatch.events": events, "dispatch.deliveries": deliveries.all])
            }
            if events < limit {
                return (total, heldFor)
            }
        }
        return (total, heldFor)
    }

    /// Deliveries created that are due: all of them, the pending ones to webhooks,
    /// which the delivery worker claims, and those to a broker.
    private struct DueCount {
        var all = 0
        var pendingWebhooks = 0
        var broker = 0

        static func + (left: DueCount, right: DueCount) -> DueCount {
            DueCount(
                all: left.all + right.all, pendingWebhooks: left.pendingWebhooks + right.pendingWebhooks,
                broker: left.broker + right.broker)
        }
    }

    /// Dispatches one batch and returns the events taken, the most it could take, and
    /// the deliveries created that are due. When `mayHold` and `holdPolicy` allow, and
    /// at least a quarter of the delivery worker's slots are free, the webhook
    /// deliveries claimed at creation are held (`dispatchHeld`), and the seconds spent
    /// waiting for them are added to `heldFor`. A held batch takes no more events than
    /// the free slots, because a delivery beyond them would be created pending and
    /// written three times. Otherwise the first statement runs on its own (autocommit),
    /// so the deliveries it claims are committed before the worker sends them.
    private func dispatchBatch(
        _ connection: PostgresConnection, holdPolicy: inout DispatchHoldPolicy, mayHold: Bool, heldFor: inout Double
    ) throws -> (events: Int, limit: Int, deliveries: DueCount) {
        let reserved = handoff?.reserve(upTo: settings.dispatchBatchSize) ?? 0
        var handedOver = false
        defer {
            if !handedOver {
                handoff?.free(reserved)
            }
        }
        var limit = settings.dispatchBatchSize
        let result: PostgresResult
        if let handoff, reserved > 0, reserved * 4 >= handoff.slots, mayHold,
           holdPolicy.shouldHold(now: Self.monotonicSeconds()) {
            limit = reserved
            result = try dispatchHeld(
                connection, handoff: handoff, reserved: reserved, handedOver: &handedOver, policy: &holdPolicy,
                heldFor: &heldFor)
        } else {
            result = try connection.queryPrepared(
                Self.dispatchSQL, [String(settings.dispatchBatchSize), String(reserved), String(leaseSeconds)])
            let claimed: [ClaimedDelivery]
            do {
                claimed = try result.rows.filter { $0["id"] != nil }.map {
                    try DeliveryStore.claimedDelivery(from: $0, operation: "dispatch events")
                }
            } catch {
                // The deliveries are committed in flight: hand them back to the queue
                // rather than leave them to their lease.
                let ids = result.rows.compactMap { $0["id"].flatMap { Int64($0) } }
                _ = try? DeliveryStore.release(connection, ids.map { (id: $0, attempt: 1) })
                throw error
            }
            let rejected = handoff?.handOver(claimed, reserved: reserved) ?? []
            handedOver = true
            if !rejected.isEmpty {
                // The delivery worker has stopped; the queue takes the deliveries back.
                let released = try DeliveryStore.release(connection, rejected)
                logger.info("released deliveries handed over at shutdown", ["deliveries.count": released])
            }
        }

        let row = try result.singleRow(operation: "dispatch events")
        let taken = try row.int("taken")
        var deliveries = try Self.dueCount(row)
        if let counts = row["counts"] {
            countEvents(counts)
        }
        if let deferred = row["deferred"] {
            deliveries = deliveries + (try connection.transaction { connection in
                try dispatchTemplated(connection, eventIDs: deferred)
            })
        }
        return (taken, limit, deliveries)
    }

    /// Runs the dispatch statement in a transaction that stays open while the first
    /// attempts of the webhook deliveries it claims run, for up to
    /// `DispatchHoldPolicy.maxWait`. Then it inserts those deliveries with the outcomes
    /// known (`logHeldSQL`) and commits, and returns the statement's result. If anything
    /// fails before the commit, the transaction rolls back and the events stay
    /// undispatched, so they are sent again with the same webhook-id.
    private func dispatchHeld(
        _ connection: PostgresConnection, handoff: DeliveryHandoff, reserved: Int, handedOver: inout Bool,
        policy: inout DispatchHoldPolicy, heldFor: inout Double
    ) throws -> PostgresResult {
        var batch: HeldBatch?
        // Deliveries claimed and held; a dispatch that claims none is no hold, for the
        // pause policy and the metric.
        var heldCount = 0
        do {
            let (result, settled) = try connection.transaction { connection -> (PostgresResult, Bool) in
                let result = try connection.queryPrepared(Self.dispatchHeldSQL, [String(reserved), String(reserved)])
                let rows = result.rows.filter { $0["id"] != nil }
                let held = HeldBatch(ids: try rows.map { try $0.int64("id") })
                batch = held
                heldCount = rows.count
                var claimed = try rows.map { try DeliveryStore.claimedDelivery(from: $0, operation: "dispatch events") }
                for index in claimed.indices {
                    claimed[index].held = held
                }
                let heldRows = try rows.map { try $0.string("held_row") }

                // A delivery that the stopped worker rejects is written pending.
                for delivery in handoff.handOver(claimed, reserved: reserved) {
                    _ = held.handBack(id: delivery.id)
                }
                handedOver = true
                let waitStart = ContinuousClock.now
                let settled = claimed.isEmpty || held.wait(timeout: DispatchHoldPolicy.maxWait)
                heldFor += (ContinuousClock.now - waitStart).seconds
                let closing = held.close()
                if !claimed.isEmpty {
                    let unsent = "{" + closing.unsent.map { String($0) }.joined(separator: ",") + "}"
                    _ = try connection.queryPrepared(Self.logHeldSQL, [
                        "[" + heldRows.joined(separator: ",") + "]", try AttemptRecord.jsonArray(closing.outcomes),
                        String(leaseSeconds), unsent,
                    ])
                    vacuum?.rowsChanged(closing.outcomes.count)
                }
                return (result, settled)
            }
            handoff.queueOutcomes(batch?.commit() ?? [])
            if heldCount > 0 {
                policy.held(settled: settled, now: Self.monotonicSeconds())
                metrics.countHeldDispatch(settled ? "settled" : "timed_out")
            }
            return result
        } catch {
            batch?.abort()
            policy.failed(now: Self.monotonicSeconds())
            if batch != nil {
                if heldCount > 0 {
                    metrics.countHeldDispatch("rolled_back")
                }
                logger.warning("held dispatch rolled back, so its events are dispatched again", [
                    "error": String(describing: error),
                ])
            }
            throw error
        }
    }

    /// Returns whether the next dispatches may hold, by the `dispatch_hold` setting. By
    /// default only a dense stream of events pays for holds with its latency: one for
    /// which `DispatchPacing` has grown the wait between polls, because it is fast
    /// (1,500 events/s or more) or its dispatches are slow. There holds save CPU, and
    /// that wait takes them in. At a
    /// steady 200 events/s, holds in every poll kept the dispatcher polling and made
    /// the p99 latency 5 to 7 ms instead of 2 to 6 ms. Under pgbench, holds at the
    /// first wait of 4 ms, of 13 to 38 events each, cost more TPS than no holds.
    private static func mayHold(_ setting: Settings.DispatchHold, pacing: DispatchPacing) -> Bool {
        switch setting {
        case .always:
            return true
        case .off:
            return false
        case .stream:
            if case .busy(let wait) = pacing.mode {
                return wait > pacing.gatherDelay
            }
            return false
        }
    }

    /// Returns seconds on a monotonic clock, for `DispatchHoldPolicy`.
    private static func monotonicSeconds() -> Double {
        let now = ContinuousClock.now
        return (now - Self.clockOrigin).seconds
    }

    private static let clockOrigin = ContinuousClock.now

    /// The lease of a delivery claimed at creation, as the worker's claims take it.
    private var leaseSeconds: Double {
        DeliveryStore.webhookLeaseSeconds(settings)
    }

    private static func dueCount(_ row: PostgresRow) throws -> DueCount {
        DueCount(
            all: try row.int("deliveries"), pendingWebhooks: try row.int("pending_webhook_deliveries"),
            broker: try row.int("broker_deliveries"))
    }

    /// Dispatches events that match a config with a payload template, in the caller's
    /// transaction, and returns the deliveries created that are due. It claims none of
    /// them at creation: the transaction has not committed when the statement returns.
    private func dispatchTemplated(_ connection: PostgresConnection, eventIDs: String) throws -> DueCount {
        let row = try connection.queryPrepared(Self.dispatchDeferredSQL, [eventIDs, "0", String(leaseSeconds)])
            .singleRow()
        var deliveries = try Self.dueCount(row)
        if let counts = row["counts"] {
            countEvents(counts)
        }

        if let templated = row["templated"] {
            let matches = try Self.matches(fromJSON: templated)
            let records = try PayloadRenderer(connection: connection, logger: logger).render(matches)
            let created = try connection.queryPrepared(Self.insertRenderedSQL, [JSONValue.array(records).jsonText])
                .singleRow()
            let pending = try created.int("pending")
            let pendingBroker = try created.int("pending_broker")
            deliveries = deliveries + DueCount(all: pending, pendingWebhooks: pending - pendingBroker, broker: pendingBroker)
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
