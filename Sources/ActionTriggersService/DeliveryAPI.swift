import ActionTriggersCore
import Foundation
import HTTPServer
import Logging
import PostgresClient

/// The delivery log in the REST API: listing a config's deliveries, one delivery
/// with its attempts, and redelivery, over the view `action_triggers.delivery_log`.
struct DeliveryAPI: Sendable {
    let pool: ConnectionPool
    let logger: Logger

    static let statuses = ["pending", "in_flight", "succeeded", "failed", "dead"]
    static let maxPageSize = 1000

    /// Registers the routes; call before the config routes, whose `{id}` would match them.
    func register(in router: inout Router) {
        router.add("GET", "/api/action-triggers/deliveries/{delivery_id}") { _, match in show(match) }
        router.add("POST", "/api/action-triggers/deliveries/{delivery_id}/redeliver") { _, match in redeliverOne(match) }
        router.add("GET", "/api/action-triggers/{id}/deliveries") { request, match in list(request, match) }
        router.add("POST", "/api/action-triggers/{id}/deliveries/redeliver") { request, match in redeliverConfig(request, match) }
    }

    // MARK: - Handlers

    /// Lists a config's deliveries, newest first, `limit` per page; `next` is the path and
    /// query of the next page, or null on the last one.
    private func list(_ request: HTTPServerRequest, _ match: RouteMatch) -> HTTPServerResponse {
        guard let configID = Self.positiveID(match.parameters["id"]) else { return .detail(404, "Not found.") }
        var errors: [(String, String)] = []
        let query = Dictionary(request.query.map { ($0.name, $0.value) }, uniquingKeysWith: { _, last in last })
        for name in query.keys.sorted() where !["status", "since", "limit", "before"].contains(name) {
            errors.append((name, "is not a known query parameter; known: status, since, limit, before"))
        }
        let statuses = query["status"].map { $0.split(separator: ",").map(String.init) } ?? []
        for status in statuses where !Self.statuses.contains(status) {
            errors.append(("status", "\(status) is not a delivery status; statuses: \(Self.statuses.joined(separator: ", "))"))
        }
        let limit = query["limit"].map { Int($0) } ?? 100
        if limit == nil || !(1...Self.maxPageSize).contains(limit ?? 0) {
            errors.append(("limit", "must be an integer from 1 to \(Self.maxPageSize)"))
        }
        let before = query["before"].map { Self.positiveID($0) }
        if let before, before == nil {
            errors.append(("before", "must be a delivery id, a positive integer"))
        }
        if !errors.isEmpty {
            return .json(400, Self.errorObject(errors))
        }

        return respond {
            try pool.withConnection { connection in
                guard try Self.configExists(configID, connection) else { return .detail(404, "Not found.") }
                let result: PostgresResult
                do {
                    // One row more than the page shows whether a next page exists.
                    result = try connection.query("""
                        SELECT coalesce(json_agg(to_json(page.entry) ORDER BY page.id DESC)
                                        FILTER (WHERE page.position <= $5::bigint), '[]')::text AS results,
                               min(page.id) FILTER (WHERE page.position <= $5::bigint) AS last_id,
                               count(*) > $5::bigint AS more
                        FROM (
                            SELECT l AS entry, l.id, row_number() OVER (ORDER BY l.id DESC) AS position
                            FROM action_triggers.delivery_log l
                            WHERE l.config_id = $1
                              AND (cardinality($2::text[]) = 0 OR l.status = ANY ($2::text[]))
                              AND ($3::timestamptz IS NULL OR l.created_at >= $3::timestamptz)
                              AND ($4::bigint IS NULL OR l.id < $4::bigint)
                            ORDER BY l.id DESC
                            LIMIT $5::bigint + 1
                        ) AS page
                        """,
                        [String(configID), Self.textArray(statuses), query["since"], before.flatMap { $0.map(String.init) },
                         String(limit ?? 100)])
                } catch let error as PostgresError where error.sqlState?.hasPrefix("22") == true {
                    return .json(400, Self.errorObject([("since", "must be a timestamp such as 2026-12-04T10:00:00Z")]))
                }
                let row = try result.singleRow()
                var next = "null"
                if try row.bool("more"), let lastID = row["last_id"] {
                    var parameters = ["limit=\(limit ?? 100)", "before=\(lastID)"]
                    if let status = query["status"] {
                        parameters.append("status=\(Self.queryEncode(status))")
                    }
                    if let since = query["since"] {
                        parameters.append("since=\(Self.queryEncode(since))")
                    }
                    next = jsonString("/api/action-triggers/\(configID)/deliveries?" + parameters.joined(separator: "&"))
                }
                return .json(200, "{\"results\": \(try row.string("results")), \"next\": \(next)}")
            }
        }
    }

    /// Shows one delivery with its attempts, oldest first.
    private func show(_ match: RouteMatch) -> HTTPServerResponse {
        guard let id = Self.positiveID(match.parameters["delivery_id"]) else { return .detail(404, "Not found.") }
        return respond {
            let row = try pool.withConnection { connection in
                try connection.query("""
                    SELECT (to_jsonb(l) || jsonb_build_object('attempt_log', coalesce((
                        SELECT jsonb_agg(jsonb_build_object(
                                   'attempt', a.attempt, 'started_at', a.started_at, 'duration_ms', a.duration_ms,
                                   'status_code', a.status_code, 'error', a.error, 'outcome', a.outcome)
                               ORDER BY a.attempt)
                        FROM action_triggers.delivery_attempt a WHERE a.delivery_id = l.id), '[]')))::text AS delivery
                    FROM action_triggers.delivery_log l
                    WHERE l.id = $1
                    """, [String(id)])
            }
            guard let delivery = row.rows.first?["delivery"] else { return .detail(404, "Not found.") }
            return .json(200, delivery)
        }
    }

    private func redeliverOne(_ match: RouteMatch) -> HTTPServerResponse {
        guard let id = Self.positiveID(match.parameters["delivery_id"]) else { return .detail(404, "Not found.") }
        return respond {
            try pool.withConnection { connection in
                try connection.transaction { connection in
                    let current = try connection.query(
                        "SELECT status FROM action_triggers.delivery WHERE id = $1 FOR UPDATE", [String(id)])
                    guard let status = current.rows.first?["status"] else { return .detail(404, "Not found.") }
                    guard ["succeeded", "failed", "dead"].contains(status) else {
                        return .detail(409, "Delivery \(id) is \(status); only succeeded, failed or dead deliveries can be redelivered.")
                    }
                    let changed = try connection.query(
                        "SELECT action_triggers.redeliver(ARRAY[$1::bigint]) AS changed", [String(id)]
                    ).singleRow().int("changed")
                    logger.info("delivery redelivered", ["delivery.id": id])
                    return .json(202, "{\"redelivered\": \(changed)}")
                }
            }
        }
    }

    /// Redelivers a config's deliveries; the optional body is `{"statuses": [...], "since": "..."}`.
    private func redeliverConfig(_ request: HTTPServerRequest, _ match: RouteMatch) -> HTTPServerResponse {
        guard let configID = Self.positiveID(match.parameters["id"]) else { return .detail(404, "Not found.") }
        var statuses = ["failed", "dead"]
        var since: String?
        if !request.body.isEmpty {
            let mediaType = (request.header("Content-Type") ?? "").split(separator: ";").first
                .map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
            guard mediaType == "application/json" else {
                return .detail(415, "Unsupported media type in request; send application/json.")
            }
            let document: JSONValue
            do {
                document = try JSONParser.parse(request.body)
            } catch {
                return .detail(400, "JSON parse error: \(error.description)")
            }
            var errors: [(String, String)] = []
            guard case .object(let fields) = document else {
                return .json(400, Self.errorObject([("non_field_errors", "the body must be a JSON object")]))
            }
            for key in fields.keys where !["statuses", "since"].contains(key) {
                errors.append((key, "unknown field"))
            }
            if let value = fields["statuses"] {
                if case .array(let items) = value, !items.isEmpty,
                   case let names = items.compactMap({ item -> String? in if case .string(let text) = item { text } else { nil } }),
                   names.count == items.count, names.allSatisfy({ ["succeeded", "failed", "dead"].contains($0) }) {
                    statuses = names
                } else {
                    errors.append(("statuses", "must be a non-empty list of succeeded, failed, dead"))
                }
            }
            if let value = fields["since"] {
                if case .string(let text) = value {
                    since = text
                } else {
                    errors.append(("since", "must be a timestamp such as 2026-12-04T10:00:00Z"))
                }
            }
            if !errors.isEmpty {
                return .json(400, Self.errorObject(errors))
            }
        }

        return respond {
            try pool.withConnection { connection in
                guard try Self.configExists(configID, connection) else { return .detail(404, "Not found.") }
                let changed: Int
                do {
                    changed = try connection.query(
                        "SELECT action_triggers.redeliver_config($1, $2::text[], coalesce($3::timestamptz, '-infinity')) AS changed",
                        [String(configID), Self.textArray(statuses), since]
                    ).singleRow().int("changed")
                } catch let error as PostgresError where error.sqlState?.hasPrefix("22") == true {
                    return .json(400, Self.errorObject([("since", "must be a timestamp such as 2026-12-04T10:00:00Z")]))
                }
                logger.info("deliveries redelivered", ["config.id": configID, "deliveries.count": changed])
                return .json(200, "{\"redelivered\": \(changed)}")
            }
        }
    }

    // MARK: - Helpers

    private static func positiveID(_ text: String?) -> Int64? {
        guard let text, let id = Int64(text), id > 0 else { return nil }
        return id
    }

    private static func configExists(_ id: Int64, _ connection: PostgresConnection) throws -> Bool {
        !(try connection.query("SELECT 1 FROM action_triggers.config WHERE id = $1", [String(id)]).rows.isEmpty)
    }

    /// Returns a PostgreSQL array literal of words that need no quoting (statuses).
    private static func textArray(_ words: [String]) -> String {
        "{" + words.joined(separator: ",") + "}"
    }

    private static func errorObject(_ errors: [(String, String)]) -> String {
        var grouped: [(String, [String])] = []
        for (path, message) in errors {
            if let index = grouped.firstIndex(where: { $0.0 == path }) {
                grouped[index].1.append(message)
            } else {
                grouped.append((path, [message]))
            }
        }
        let members = grouped.map { "\(jsonString($0.0)): [\($0.1.map(jsonString).joined(separator: ", "))]" }
        return "{" + members.joined(separator: ", ") + "}"
    }

    private static func queryEncode(_ text: String) -> String {
        let unreserved = CharacterSet(charactersIn: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~,:")
        return text.addingPercentEncoding(withAllowedCharacters: unreserved) ?? text
    }

    /// Runs a handler body, turning database failures into a logged 503 or 500.
    private func respond(_ body: () throws -> HTTPServerResponse) -> HTTPServerResponse {
        do {
            return try body()
        } catch let error as PostgresError where error.isConnectionLost {
            logger.error("API request failed: database unavailable", ["error": String(describing: error)])
            return .detail(503, "The database is unavailable; try again later.")
        } catch {
            logger.error("API request failed", ["error": String(describing: error)])
            return .detail(500, "Internal server error.")
        }
    }
}
