import ActionTriggersCore
import Foundation
import HTTPServer
import Logging
import PostgresClient

/// The REST API for trigger configs, `/api/action-triggers` and `/api/action-triggers/{id}`.
///
/// Bodies are the JSON of the config schema. Validation and storage are the SQL
/// functions (`action_triggers.validate_config`, `create_config`, …), so a config
/// behaves the same whether it was made through the API or SQL. Errors are
/// `{"field.path": ["message"]}` with 400, and `{"detail": "..."}` otherwise.
struct ConfigAPI: Sendable {
    let pool: ConnectionPool
    let logger: Logger

    func register(in router: inout Router) {
        // The router treats a trailing slash as optional, and tries routes in order, so
        // the document comes before the {id} routes.
        let document = Self.openAPIDocument
        router.add("GET", "/api/action-triggers/openapi.json") { _, _ in
            .json(200, document)
        }
        router.add("GET", "/api/action-triggers") { _, _ in list() }
        router.add("POST", "/api/action-triggers") { request, _ in create(request) }
        router.add("GET", "/api/action-triggers/{id}") { _, match in show(match) }
        router.add("PUT", "/api/action-triggers/{id}") { request, match in replace(request, match, partial: false) }
        router.add("PATCH", "/api/action-triggers/{id}") { request, match in replace(request, match, partial: true) }
        router.add("DELETE", "/api/action-triggers/{id}") { _, match in delete(match) }
    }

    // MARK: - Handlers

    private func list() -> HTTPServerResponse {
        respond {
            let rows = try pool.withConnection { connection in
                try connection.query("""
                    SELECT coalesce(json_agg(action_triggers.config_json(id) ORDER BY id), '[]')::text AS configs
                    FROM action_triggers.config
                    """)
            }
            return .json(200, try rows.singleRow().string("configs"))
        }
    }

    private func show(_ match: RouteMatch) -> HTTPServerResponse {
        guard let id = configID(match) else { return .detail(404, "Not found.") }
        return respond {
            let row = try pool.withConnection { connection in
                try connection.query("SELECT action_triggers.config_json($1)::text AS config", [String(id)]).singleRow()
            }
            guard let config = row["config"] else { return .detail(404, "Not found.") }
            return .json(200, config)
        }
    }

    private func create(_ request: HTTPServerRequest) -> HTTPServerResponse {
        let document: JSONValue
        switch parseBody(request) {
        case .success(let value): document = value
        case .failure(let problem): return problem.response
        }
        let body = String(decoding: request.body, as: UTF8.self)
        return respond {
            try pool.withConnection { connection in
                try connection.transaction { connection in
                    if let errors = try validationErrors(body, connection) { return .json(400, errors) }
                    let id = try connection.query(
                        "SELECT action_triggers.create_config($1::jsonb, $2::json) AS id", [body, Self.payloadText(document)]
                    ).singleRow().string("id")
                    let stored = try connection.query("SELECT action_triggers.config_json($1)::text AS config", [id])
                        .singleRow().string("config")
                    logger.info("config created", ["config.id": id])
                    return .json(201, stored, headers: [("Location", "/api/action-triggers/\(id)")])
                }
            }
        }
    }

    private func replace(_ request: HTTPServerRequest, _ match: RouteMatch, partial: Bool) -> HTTPServerResponse {
        guard let id = configID(match) else { return .detail(404, "Not found.") }
        let document: JSONValue
        switch parseBody(request) {
        case .success(let value): document = value
        case .failure(let problem): return problem.response
        }
        // jsonb's || would append a non-object to the stored config as an array.
        if partial, document.objectValue == nil {
            let message = "the config must be a JSON object (got \(document.typeName))"
            return .json(400, "{\"non_field_errors\": [\(jsonString(message))]}")
        }
        let body = String(decoding: request.body, as: UTF8.self)
        return respond {
            try pool.withConnection { connection in
                try connection.transaction { connection in
                    let current = try connection.query("""
                        SELECT action_triggers.get_config(id)::text AS config, payload::text AS payload
                        FROM action_triggers.config WHERE id = $1 FOR UPDATE
                        """, [String(id)])
                    guard let existing = current.rows.first?["config"] else { return .detail(404, "Not found.") }
                    // The payload text keeps its key order; a PATCH without a payload keeps the stored one.
                    let payload = partial && !Self.hasPayload(document)
                        ? current.rows.first?["payload"]
                        : Self.payloadText(document)
                    // PATCH merges the given top-level fields over the stored config.
                    let merged = partial
                        ? try connection.query("SELECT (($1::jsonb - 'id') || $2::jsonb)::text AS body", [existing, body])
                            .singleRow().string("body")
                        : body
                    // A body read from the API shows signing secrets redacted; they stand for the stored ones.
                    let restored = try connection.query(
                        "SELECT action_triggers.restore_signing_secrets($1, $2::jsonb)::text AS body", [String(id), merged]
                    ).singleRow().string("body")
                    if let errors = try validationErrors(restored, connection) { return .json(400, errors) }
                    try connection.query(
                        "SELECT action_triggers.update_config($1, $2::jsonb, $3::json)", [String(id), restored, payload])
                    let stored = try connection.query("SELECT action_triggers.config_json($1)::text AS config", [String(id)])
                        .singleRow().string("config")
                    logger.info("config updated", ["config.id": id])
                    return .json(200, stored)
                }
            }
        }
    }

    private func delete(_ match: RouteMatch) -> HTTPServerResponse {
        guard let id = configID(match) else { return .detail(404, "Not found.") }
        return respond {
            let deleted = try pool.withConnection { connection in
                try connection.query("DELETE FROM action_triggers.config WHERE id = $1", [String(id)]).affectedRows
            }
            guard deleted > 0 else { return .detail(404, "Not found.") }
            logger.info("config deleted", ["config.id": id])
            return HTTPServerResponse(status: 204)
        }
    }

    // MARK: - Helpers

    /// The OpenAPI 3 document of these routes, shipped as a resource.
    static let openAPIDocument: String = {
        guard let url = Bundle.module.url(forResource: "openapi", withExtension: "json"),
              let text = try? String(contentsOf: url, encoding: .utf8) else {
            return #"{"openapi": "3.0.3", "info": {"title": "missing", "version": "0"}, "paths": {}}"#
        }
        return text
    }()

    private func configID(_ match: RouteMatch) -> Int64? {
        guard let text = match.parameters["id"], let id = Int64(text), id > 0 else { return nil }
        return id
    }

    /// A response that ends a request before it reaches the database.
    private struct BodyProblem: Error {
        let response: HTTPServerResponse
    }

    /// Parses a request body: 415 when its Content-Type is not JSON, 400 for malformed JSON.
    private func parseBody(_ request: HTTPServerRequest) -> Result<JSONValue, BodyProblem> {
        let contentType = request.header("Content-Type") ?? ""
        let mediaType = contentType.split(separator: ";").first.map { $0.trimmingCharacters(in: .whitespaces).lowercased() } ?? ""
        guard mediaType == "application/json" else {
            return .failure(BodyProblem(
                response: .detail(415, "Unsupported media type \"\(contentType)\" in request; send application/json.")))
        }
        let document: JSONValue
        do {
            document = try JSONParser.parse(request.body)
        } catch {
            return .failure(BodyProblem(response: .detail(400, "JSON parse error: \(error.description)")))
        }
        var paths: [String] = []
        Self.collectNULPaths(document, path: "", into: &paths)
        if !paths.isEmpty {
            let message = jsonString("must not contain the NUL character (\\u0000), which PostgreSQL cannot store")
            let members = paths.map { "\(jsonString($0)): [\(message)]" }.joined(separator: ", ")
            return .failure(BodyProblem(response: .json(400, "{\(members)}")))
        }
        return .success(document)
    }

    /// Collects the field paths (as `validate_config` writes them) of strings and keys
    /// that contain U+0000, which jsonb rejects with an error that names no field.
    private static func collectNULPaths(_ value: JSONValue, path: String, into paths: inout [String]) {
        switch value {
        case .string(let text) where text.unicodeScalars.contains("\u{0}"):
            paths.append(path.isEmpty ? "non_field_errors" : path)
        case .array(let items):
            for (index, item) in items.enumerated() {
                collectNULPaths(item, path: "\(path)[\(index)]", into: &paths)
            }
        case .object(let object):
            for member in object.members {
                let memberPath = path.isEmpty ? member.key : "\(path).\(member.key)"
                if member.key.unicodeScalars.contains("\u{0}") {
                    paths.append(memberPath)
                } else {
                    collectNULPaths(member.value, path: memberPath, into: &paths)
                }
            }
        default:
            break
        }
    }

    /// Returns the body's payload object as JSON text with its members in the order written, or nil.
    private static func payloadText(_ document: JSONValue) -> String? {
        guard case .object(let fields) = document, let payload = fields["payload"], case .object = payload else {
            return nil
        }
        return payload.jsonText
    }

    private static func hasPayload(_ document: JSONValue) -> Bool {
        guard case .object(let fields) = document else {
            return false
        }
        return fields["payload"] != nil
    }

    /// Returns the validation errors as JSON text, or nil when the body is valid.
    private func validationErrors(_ body: String, _ connection: PostgresConnection) throws -> String? {
        let errors = try connection.query("SELECT action_triggers.validate_config($1::jsonb)::text AS errors", [body])
            .singleRow().string("errors")
        return errors == "{}" ? nil : errors
    }

    /// Runs a handler body, turning database failures into a 400, 409 or 503, or a logged 500.
    private func respond(_ body: () throws -> HTTPServerResponse) -> HTTPServerResponse {
        do {
            return try body()
        } catch let error as PostgresError where error.isConnectionLost {
            logger.error("API request failed: database unavailable", ["error": String(describing: error)])
            return .detail(503, "The database is unavailable; try again later.")
        } catch let error as PostgresError where error.sqlState?.hasPrefix("22") == true {
            // Data the database rejects: a check only the row triggers make (22023), or a
            // value jsonb cannot hold, such as \u0000 in a string (22P05).
            if error.sqlState == "22023", let detail = error.detail {
                return .json(400, detail)
            }
            return .json(400, "{\"non_field_errors\": [\(jsonString(error.message))]}")
        } catch let error as PostgresError where error.sqlState == "42501" {
            // insufficient_privilege: creating or dropping a capture trigger needs the
            // table's owner. The transaction rolled back, so nothing changed.
            logger.warning("API request failed: database privilege missing", ["error": String(describing: error)])
            return .detail(409, """
                The database rejected the change: \(error.message). The role in DATABASE_URL must own \
                every table that a config names, because it creates and drops their capture triggers. \
                Nothing was changed.
                """)
        } catch {
            logger.error("API request failed", ["error": String(describing: error)])
            return .detail(500, "Internal server error.")
        }
    }
}
