import ActionTriggersCore
import Logging
import PostgresClient

/// Renders the payload templates of one dispatch batch inside the dispatcher's transaction.
///
/// Referenced rows are looked up in rounds, one query per table and relation depth
/// for the whole batch, never one per placeholder (see `RelatedRows`).
struct PayloadRenderer {
    /// An event matched to a webhook of a config whose payload is a template.
    struct Match {
        let eventID: Int64
        let configID: Int64
        /// The config's payload as stored: JSON text, parsed per config so that one
        /// malformed payload fails only its own deliveries.
        let template: String
        let scope: TemplateScope
        /// The delivery's target, copied from the webhook when the event was matched.
        let target: JSONObject
    }

    let connection: PostgresConnection
    let logger: Logger

    static let foreignKeysSQL = """
        SELECT t.table_oid, fk.relation, fk.column_name, fk.referenced_table, fk.referenced_column
        FROM unnest($1::oid[]) AS t(table_oid), LATERAL action_triggers.foreign_keys(t.table_oid) AS fk
        """

    static let rowsSQL = """
        SELECT r.key, r.row_image::text AS row_image
        FROM action_triggers.fetch_rows($1::oid, $2, ARRAY(SELECT jsonb_array_elements_text($3::jsonb))) AS r
        """

    /// Returns one delivery record per match for `jsonb_to_recordset`: the rendered
    /// body, or status `dead` with the reason when the template cannot be rendered.
    func render(_ matches: [Match]) throws -> [JSONValue] {
        var compiled: [Int64: Result<PayloadTemplate, TemplateError>] = [:]
        for match in matches where compiled[match.configID] == nil {
            compiled[match.configID] = Result { () throws(TemplateError) in
                let value: JSONValue
                do {
                    value = try JSONParser.parse(Array(match.template.utf8))
                } catch {
                    throw TemplateError(path: "payload", message: String(describing: error))
                }
                return try PayloadTemplate.compile(value)
            }
        }

        var related = RelatedRows()
        repeat {
            related.startRound()
            for match in matches {
                guard case .success(let template) = compiled[match.configID] else {
                    continue
                }
                for expression in template.expressions {
                    _ = related.resolve(expression, in: match.scope)
                }
            }
            try lookUp(&related)
        } while !related.isComplete

        var bodies: [String: String] = [:]
        return matches.map { match in
            var record = match.target
            record.append("event_id", .number(JSONNumber(integerLiteral: match.eventID)))
            record.append("config_id", .number(JSONNumber(integerLiteral: match.configID)))
            switch compiled[match.configID] {
            case .success(let template)?:
                // One body per event and config, shared by the config's webhooks.
                let key = "\(match.eventID)/\(match.configID)"
                let body = bodies[key] ?? template.render { related.resolve($0, in: match.scope) }.jsonText
                bodies[key] = body
                record.append("payload", .string(body))
                record.append("status", .string("pending"))
            case .failure(let error)?:
                logger.error("payload template is invalid", [
                    "config.id": match.configID, "event.id": match.eventID, "error": error.description,
                ])
                record.append("status", .string("dead"))
                record.append("last_error", .string("payload template of config \(match.configID) is invalid: \(error)"))
            case nil:
                record.append("status", .string("dead"))
                record.append("last_error", .string("payload template of config \(match.configID) was not compiled"))
            }
            return .object(record)
        }
    }

    /// Looks up what the last round found missing: foreign keys of new tables, then rows.
    private func lookUp(_ related: inout RelatedRows) throws {
        if !related.missingTables.isEmpty {
            let tables = related.missingTables.sorted()
            for table in tables {
                related.foreignKeys[table] = [:]
            }
            let list = "{" + tables.map(String.init).joined(separator: ",") + "}"
            for row in try connection.queryPrepared(Self.foreignKeysSQL, [list]).rows {
                let table = UInt32(try row.int64("table_oid"))
                let relation = try row.string("relation")
                // foreign_keys lists the preferred key first when two share a name.
                if related.foreignKeys[table]?[relation] == nil {
                    related.foreignKeys[table]?[relation] = ForeignKey(
                        column: try row.string("column_name"),
                        referencedTable: UInt32(try row.int64("referenced_table")),
                        referencedColumn: try row.string("referenced_column"))
                }
            }
        }

        let groups = Dictionary(grouping: related.missingRows) { RowGroup(table: $0.table, column: $0.column) }
        for (group, keys) in groups {
            for key in keys {
                related.rows[key] = .some(nil)
            }
            let keyList = JSONValue.array(keys.map { .string($0.key) }).jsonText
            let result = try connection.queryPrepared(Self.rowsSQL, [String(group.table), group.column, keyList])
            for row in result.rows {
                let key = RowKey(table: group.table, column: group.column, key: try row.string("key"))
                let image = try JSONParser.parse(Array(try row.string("row_image").utf8))
                if case .object(let object) = image {
                    related.rows[key] = .some(object)
                }
            }
        }
    }

    private struct RowGroup: Hashable {
        let table: UInt32
        let column: String
    }
}
