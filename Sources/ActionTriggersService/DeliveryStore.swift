import ActionTriggersCore
import Foundation
import HTTPServer
import PostgresClient

/// A delivery claimed for one attempt, with the event it carries.
struct ClaimedDelivery {
    let id: Int64
    let eventID: Int64
    let webhookID: Int64
    /// The attempt's number in the delivery log.
    let attempt: Int
    /// The attempt's number for the retry policy, which starts again after a redelivery.
    let retryAttempt: Int
    let url: String
    let method: String
    /// The configured headers as stored: a JSON object text.
    let headers: String
    /// The webhook's signing secrets as stored: a JSON array text, or nil for none.
    let signingSecrets: String?
    /// The webhook's current CA bundle file, or nil for the system's CA certificates.
    let caBundle: String?
    let timeoutSecs: Double?
    /// The body rendered from a payload template at dispatch; nil sends the row image.
    let renderedPayload: String?
    /// The reason the URL may not be connected to now, from `action_triggers.webhook_url_error`.
    let urlError: String?
    let event: CapturedEvent
    /// The held dispatch that waits for this first attempt, while the delivery is not in
    /// the table yet. It is nil for a delivery in flight in the table.
    var held: HeldBatch? = nil
}

/// The result of one attempt, ready to be written to the delivery log.
struct AttemptRecord: Encodable {
    let id: Int64
    let attempt: Int
    /// The delivery's status after this attempt.
    let status: String
    /// For status `pending`: seconds until the next attempt.
    let delaySecs: Double
    let statusCode: Int?
    let error: String?
    /// Seconds since the Unix epoch.
    let startedAt: Double
    let durationMs: Double
    let outcome: String

    enum CodingKeys: String, CodingKey {
        case id, attempt, status, error, outcome
        case delaySecs = "delay_secs"
        case statusCode = "status_code"
        case startedAt = "started_at"
        case durationMs = "duration_ms"
    }

    /// Writes records as the JSON array that `recordSQL` takes, with the keys of
    /// `CodingKeys`. It replaces `JSONEncoder`, which took 13 % of the service's
    /// instructions in a profiled backlog drain; like it, it throws on NaN or infinity.
    static func jsonArray(_ records: [AttemptRecord]) throws -> String {
        var output = "["
        for (index, record) in records.enumerated() {
            if index > 0 {
                output += ","
            }
            output += "{\"id\":\(record.id),\"attempt\":\(record.attempt),\"status\":\(jsonString(record.status))"
            output += ",\"delay_secs\":\(try jsonNumber(record.delaySecs, key: "delay_secs"))"
            output += ",\"status_code\":" + (record.statusCode.map { String($0) } ?? "null")
            output += ",\"error\":" + (record.error.map { jsonString($0) } ?? "null")
            output += ",\"started_at\":\(try jsonNumber(record.startedAt, key: "started_at"))"
            output += ",\"duration_ms\":\(try jsonNumber(record.durationMs, key: "duration_ms"))"
            output += ",\"outcome\":\(jsonString(record.outcome))}"
        }
        return output + "]"
    }

    private static func jsonNumber(_ value: Double, key: String) throws -> String {
        guard value.isFinite else {
            throw ServiceError.unexpectedResult("attempt record \(key) is not a finite number (\(value))")
        }
        return String(describing: value)
    }
}

/// The SQL that claims due deliveries and records attempts.
///
/// A claim moves a delivery to `in_flight` and sets `next_attempt_at` to the end of
/// its lease. When a worker dies, the delivery becomes due again once the lease ends.
enum DeliveryStore {
    /// Returns the condition for a delivery `d` of a target (`webhook` or `broker`)
    /// being up for an attempt now: pending, or in flight with its lease run out, and
    /// not held back by an earlier delivery of the same webhook or queue and row, so
    /// that one row's deliveries go in event order.
    ///
    /// The check for an earlier delivery is a scalar subquery, not `NOT EXISTS`, so
    /// that it stays a lookup per row in `delivery_webhook_row` or `delivery_queue_row`.
    /// As `NOT EXISTS`, a generic plan built while the table looked empty joined every
    /// due delivery with every unfinished one.
    static func readyCondition(target: String) -> String {
        let column = target == "broker" ? "msg_broker_queue_id" : "webhook_id"
        let earlier = earlierUnfinishedSQL(
            target: target, targetID: "d.\(column)", rowKey: "d.row_key", model: "d.model", beforeID: "d.id")
        return """
            d.target = '\(target)' AND d.status IN ('pending', 'in_flight')
              AND \(earlier) IS NULL
            """
    }

    /// Returns a scalar subquery that is 1 when the webhook or queue `targetID` has an
    /// unfinished delivery of the row `rowKey` of `model`, and NULL otherwise. With
    /// `beforeID`, only deliveries with a smaller id count; without it, every existing
    /// delivery is earlier, as for one not created yet. A NULL `rowKey` matches none.
    static func earlierUnfinishedSQL(
        target: String, targetID: String, rowKey: String, model: String, beforeID: String? = nil
    ) -> String {
        let column = target == "broker" ? "msg_broker_queue_id" : "webhook_id"
        let idCondition = beforeID.map { " AND earlier.id < \($0)" } ?? ""
        return """
            (SELECT 1 FROM action_triggers.delivery earlier
             WHERE earlier.\(column) = \(targetID) AND earlier.row_key = \(rowKey)\(idCondition)
               AND earlier.model IS NOT DISTINCT FROM \(model) AND earlier.status IN ('pending', 'in_flight')
             LIMIT 1)
            """
    }

    /// Returns the lease of a claimed webhook delivery in seconds: its longest request
    /// and a minute more, after which another worker may take it over.
    static func webhookLeaseSeconds(_ settings: Settings) -> Double {
        settings.maxWebhookTimeout + 60
    }

    /// Returns the statement that claims up to $1 due deliveries of a target for a
    /// lease of $2 seconds and returns `columns` of each, with its event as `e`.
    ///
    /// With `recording`, the statement also writes the attempt records in that
    /// parameter, as `recordSQL` does. Its claim reads the table as it was before, so a
    /// delivery held back by one of the recorded deliveries of its row waits for the
    /// next claim. The claim skips the recorded deliveries, even one whose lease has run
    /// out, because PostgreSQL applies only one of two updates of a row in a statement.
    static func claimSQL(target: String, columns: String, recording: String? = nil) -> String {
        let notRecorded = recording == nil ? "" : """

              AND d.id <> ALL (coalesce((SELECT array_agg(id) FROM r), '{}')::bigint[])
            """
        let records = recording.map { parameter in
            """
            r AS (
                \(attemptRecordsSQL(parameter: parameter))
            ), \(recordedSQL), attempts AS (
                \(insertAttemptsSQL)
                FROM r JOIN updated u ON u.id = r.id
                ON CONFLICT DO NOTHING
            ),
            """
        } ?? ""
        return """
        WITH \(records) due AS (
            SELECT d.id, d.url
            FROM action_triggers.delivery d
            WHERE \(readyCondition(target: target)) AND d.next_attempt_at <= now()\(notRecorded)
            ORDER BY d.next_attempt_at, d.id
            LIMIT $1
            FOR UPDATE SKIP LOCKED
        ), \(urlChecksSQL(urls: "SELECT url FROM due"))
        UPDATE action_triggers.delivery d
        SET status = 'in_flight',
            attempts = d.attempts + 1,
            next_attempt_at = now() + make_interval(secs => $2::double precision),
            updated_at = now()
        FROM due, action_triggers.event e
        WHERE d.id = due.id AND e.id = d.event_id
        RETURNING d.id, d.event_id, d.attempts, d.attempts - d.retry_base AS retry_attempt, e.signal, e.operation,
                  coalesce(e.new_row, e.old_row)::text AS row_image, d.payload::text AS payload, d.timeout_secs,
                  \(columns)
        """
    }

    /// The columns that a webhook claim returns besides those of every claim.
    private static let webhookClaimColumns = """
        d.webhook_id, d.url, d.http_method, d.headers::text AS headers, d.signing_secrets::text AS signing_secrets,
                          (SELECT w.ca_bundle FROM action_triggers.webhook w WHERE w.id = d.webhook_id) AS ca_bundle,
                          (SELECT c.url_error FROM url_checks c WHERE c.url = d.url) AS url_error
        """

    static let claimSQL = claimSQL(target: "webhook", columns: webhookClaimColumns)

    /// Writes the attempt records in $3, as `recordSQL` does, and claims as `claimSQL`
    /// does, in one statement.
    static let recordAndClaimSQL = claimSQL(target: "webhook", columns: webhookClaimColumns, recording: "$3")

    /// Returns a CTE named `url_checks` that checks each distinct URL of the query
    /// `urls` against the allowlist once (`action_triggers.webhook_url_error`, about
    /// 30 µs a call), with the columns `url` and `url_error`. NULL URLs are skipped.
    static func urlChecksSQL(urls: String) -> String {
        """
        url_checks AS MATERIALIZED (
            SELECT u.url, action_triggers.webhook_url_error(u.url) AS url_error
            FROM (SELECT DISTINCT url FROM (\(urls)) AS listed WHERE url IS NOT NULL) AS u
        )
        """
    }

    /// Writes outcomes only where the claim is still ours (same attempt, still in flight),
    /// so a worker whose lease ran out cannot overwrite the worker that took over.
    ///
    /// `d.id = ANY (...)` makes the update look deliveries up by primary key whatever
    /// the statistics. With a plain join, a generic plan built on a small table
    /// scanned every unfinished delivery for each record.
    static let recordSQL = """
        WITH r AS (
            \(attemptRecordsSQL(parameter: "$1"))
        ), \(recordedSQL)
        \(insertAttemptsSQL)
        FROM r JOIN updated u ON u.id = r.id
        ON CONFLICT DO NOTHING
        """

    /// The CTE `updated` of `recordSQL`, which writes the outcomes of the attempt records
    /// `r` to their deliveries and returns the ids written.
    static let recordedSQL = """
        updated AS (
            UPDATE action_triggers.delivery d
            SET status = r.status,
                next_attempt_at = CASE WHEN r.status = 'pending'
                                       THEN now() + make_interval(secs => r.delay_secs)
                                       ELSE now() END,
                last_status_code = r.status_code,
                last_error = r.error,
                updated_at = now(),
                completed_at = CASE WHEN r.status IN ('succeeded', 'failed', 'dead') THEN now() END
            FROM r
            WHERE d.id = ANY ((SELECT array_agg(id) FROM r)::bigint[]) AND d.id = r.id
              AND d.attempts = r.attempt AND d.status = 'in_flight'
            RETURNING d.id
        )
        """

    /// Returns a query of the attempt records (`AttemptRecord.jsonArray`) in the
    /// statement parameter `parameter`, one row each, to be named `r`.
    static func attemptRecordsSQL(parameter: String) -> String {
        """
        SELECT * FROM jsonb_to_recordset(\(parameter)::jsonb) AS r(
                id bigint, attempt integer, status text, delay_secs double precision, status_code integer,
                error text, started_at double precision, duration_ms double precision, outcome text)
        """
    }

    /// The head of a statement that inserts one `delivery_attempt` row per row of the
    /// attempt records `r`. The caller adds `FROM r` and any join or filter.
    static let insertAttemptsSQL = """
        INSERT INTO action_triggers.delivery_attempt
            (delivery_id, attempt, started_at, duration_ms, status_code, error, outcome)
        SELECT r.id, r.attempt, to_timestamp(r.started_at), round(r.duration_ms::numeric, 3)::double precision, r.status_code,
               r.error, r.outcome
        """

    /// Returns the statement that gives the seconds until the next delivery of a target
    /// is due, and whether a delivery of it is pending and due within $1 seconds.
    /// Deliveries held back by an earlier one of their row are not due by themselves,
    /// but they count as pending: they become due when the earlier one is recorded. A
    /// retry due later does not count. The index order lets the first part stop at the
    /// first due delivery.
    static func secondsUntilNextDueSQL(target: String) -> String {
        """
        SELECT extract(epoch FROM (
                   SELECT d.next_attempt_at
                   FROM action_triggers.delivery d
                   WHERE \(readyCondition(target: target))
                   ORDER BY d.next_attempt_at, d.id
                   LIMIT 1) - now()) AS seconds,
               EXISTS (
                   SELECT 1 FROM action_triggers.delivery d
                   WHERE d.target = '\(target)' AND d.status = 'pending'
                     AND d.next_attempt_at <= now() + make_interval(secs => $1::double precision)) AS pending
        """
    }

    static let webhookNextDueSQL = secondsUntilNextDueSQL(target: "webhook")
    static let brokerNextDueSQL = secondsUntilNextDueSQL(target: "broker")

    /// Writes the outcomes in `records` and claims up to `limit` due webhook deliveries
    /// for `leaseSeconds`, in one statement. Calls `whileWaiting` with the connection's
    /// socket until the statement has finished.
    static func claim(
        _ connection: PostgresConnection, recording records: [AttemptRecord], limit: Int, leaseSeconds: Double,
        whileWaiting: (_ socket: Int32) -> Void
    ) throws -> [ClaimedDelivery] {
        let result: PostgresResult
        if records.isEmpty {
            result = try connection.queryPrepared(
                claimSQL, [String(limit), String(leaseSeconds)], whileWaiting: whileWaiting)
        } else {
            result = try connection.queryPrepared(
                recordAndClaimSQL, [String(limit), String(leaseSeconds), try AttemptRecord.jsonArray(records)],
                whileWaiting: whileWaiting)
        }
        return try result.rows.map { try claimedDelivery(from: $0, operation: "claim deliveries") }
    }

    /// Decodes a claimed webhook delivery from a row with the columns that `claimSQL` returns.
    static func claimedDelivery(from row: PostgresRow, operation: String) throws -> ClaimedDelivery {
        let signalName = try row.string("signal")
        guard let signal = Signal(rawValue: signalName) else {
            throw PostgresError(kind: .decoding, operation: operation, message: "unknown signal \(signalName)")
        }
        return ClaimedDelivery(
            id: try row.int64("id"),
            eventID: try row.int64("event_id"),
            webhookID: try row.int64("webhook_id"),
            attempt: try row.int("attempts"),
            retryAttempt: try row.int("retry_attempt"),
            url: try row.string("url"),
            method: try row.string("http_method"),
            headers: try row.string("headers"),
            signingSecrets: row["signing_secrets"],
            caBundle: row["ca_bundle"],
            timeoutSecs: try row.optional("timeout_secs", row.double),
            renderedPayload: row["payload"],
            urlError: row["url_error"],
            event: CapturedEvent(
                id: try row.int64("event_id"), signal: signal, operation: try row.string("operation"),
                rowImage: row["row_image"]))
    }

    /// Makes in-flight deliveries of this claim (same attempt) pending and due now, so
    /// another instance takes them over at once instead of after their lease.
    static let releaseSQL = """
        UPDATE action_triggers.delivery d
        SET status = 'pending', next_attempt_at = now(), updated_at = now()
        FROM unnest($1::bigint[], $2::integer[]) AS r(id, attempt)
        WHERE d.id = r.id AND d.attempts = r.attempt AND d.status = 'in_flight'
        """

    static func release(_ connection: PostgresConnection, _ deliveries: [ClaimedDelivery]) throws -> Int {
        try release(connection, deliveries.map { (id: $0.id, attempt: $0.attempt) })
    }

    static func release(_ connection: PostgresConnection, _ deliveries: [(id: Int64, attempt: Int)]) throws -> Int {
        guard !deliveries.isEmpty else { return 0 }
        let ids = "{" + deliveries.map { String($0.id) }.joined(separator: ",") + "}"
        let attempts = "{" + deliveries.map { String($0.attempt) }.joined(separator: ",") + "}"
        return try connection.queryPrepared(releaseSQL, [ids, attempts]).affectedRows
    }

    static func record(_ connection: PostgresConnection, _ records: [AttemptRecord]) throws {
        guard !records.isEmpty else { return }
        try connection.queryPrepared(recordSQL, [try AttemptRecord.jsonArray(records)])
    }

    /// Writes attempt outcomes like `record`, calling `whileWaiting` with the connection's
    /// socket until the statement has finished.
    static func record(
        _ connection: PostgresConnection, _ records: [AttemptRecord], whileWaiting: (_ socket: Int32) -> Void
    ) throws {
        guard !records.isEmpty else { return }
        try connection.queryPrepared(recordSQL, [try AttemptRecord.jsonArray(records)], whileWaiting: whileWaiting)
    }

    /// When the next delivery to a target is due, and whether any is pending.
    struct NextDue {
        /// Seconds until the next delivery is due, or nil when none is waiting.
        var seconds: Double?
        /// Whether a delivery is pending and due within the window, including one held
        /// back by an earlier delivery of its row.
        var pending: Bool
    }

    /// Returns when the next delivery to a target (`webhook` or `broker`) is due, and
    /// whether one is pending and due within `window` seconds.
    static func nextDue(_ connection: PostgresConnection, target: String, window: Double) throws -> NextDue {
        let sql = target == "broker" ? brokerNextDueSQL : webhookNextDueSQL
        let row = try connection.queryPrepared(sql, [String(window)]).singleRow(operation: "find the next due delivery")
        return NextDue(seconds: try row.optional("seconds", row.double), pending: try row.bool("pending"))
    }
}

extension AttemptRecord {
/// Creates the log entry of an attempt from its result and the decision that followed.
init(id: Int64, attempt: Int, result: AttemptResult, decision: DeliveryDecision, startedAt: Double, durationMs: Double) {
    var statusCode: Int? = nil
    if case .response(let status, _) = result {
        statusCode = status
    }
    let status: String
    let outcome: String
    var delay = 0.0
    var error: String? = nil
    switch decision {
    case .succeeded:
        status = "succeeded"
        outcome = "succeeded"
    case .retry(let wait, let reason):
        status = "pending"
        outcome = "retry"
        delay = wait
        error = reason
    case .failed(let reason):
        status = "failed"
        outcome = "failed"
        error = reason
    case .dead(let reason):
        status = "dead"
        outcome = "dead"
        error = reason
    }
    self.init(
        id: id, attempt: attempt, status: status, delaySecs: delay, statusCode: statusCode,
        error: error, startedAt: startedAt, durationMs: durationMs, outcome: outcome)
}
}
