/// A single-column foreign key as a payload path follows it: `customer` → `customer_id` → `myapp_customer.id`.
public struct ForeignKey: Sendable, Hashable {
    public let column: String
    public let referencedTable: UInt32
    public let referencedColumn: String

    public init(column: String, referencedTable: UInt32, referencedColumn: String) {
        self.column = column
        self.referencedTable = referencedTable
        self.referencedColumn = referencedColumn
    }
}

/// A referenced row to look up: the row of `table` whose `column` has the text `key`.
public struct RowKey: Sendable, Hashable {
    public let table: UInt32
    public let column: String
    public let key: String

    public init(table: UInt32, column: String, key: String) {
        self.table = table
        self.column = column
        self.key = key
    }
}

/// The foreign keys and referenced rows looked up so far for a batch of events.
///
/// Rendering a batch runs in rounds: resolving every placeholder records what is
/// still missing (`missingTables`, `missingRows`), the owner looks all of it up
/// with one query per table, and the next round goes one relation deeper. A
/// round with nothing missing is final.
public struct RelatedRows: Sendable {
    /// Foreign keys by table and relation name; a table is present once looked up.
    public var foreignKeys: [UInt32: [String: ForeignKey]] = [:]
    /// Rows by key; a key is present once looked up, with nil when no row has it.
    public var rows: [RowKey: JSONObject?] = [:]
    public private(set) var missingTables: Set<UInt32> = []
    public private(set) var missingRows: Set<RowKey> = []

    public init() {}

    public var isComplete: Bool { missingTables.isEmpty && missingRows.isEmpty }

    public mutating func startRound() {
        missingTables = []
        missingRows = []
    }

    /// Returns the value of a path for one event, recording what must be looked up first.
    public mutating func resolve(_ expression: TemplateExpression, in scope: TemplateScope) -> JSONValue {
        let path = expression.path
        let start: JSONObject?
        switch path[0] {
        case "event":
            return scope.event[path[1]] ?? .null
        case "old":
            start = scope.old
        default:
            start = scope.instance
        }
        guard var row = start else {
            return .null
        }

        var table = scope.table
        for (index, segment) in path.enumerated().dropFirst() {
            let isLast = index == path.count - 1
            if isLast, let value = row[segment] {
                return value
            }
            guard let relations = foreignKeys[table] else {
                missingTables.insert(table)
                return .null
            }
            // A relation that no longer exists (the foreign key was dropped after the
            // config was saved) yields null rather than losing the event.
            guard let foreignKey = relations[segment], let keyValue = row[foreignKey.column], let key = keyValue.keyText else {
                return .null
            }
            let rowKey = RowKey(table: foreignKey.referencedTable, column: foreignKey.referencedColumn, key: key)
            guard let found = rows[rowKey] else {
                missingRows.insert(rowKey)
                return .null
            }
            guard let referenced = found else {
                return .null
            }
            if isLast {
                return .object(referenced)
            }
            row = referenced
            table = foreignKey.referencedTable
        }
        return .null
    }
}

/// The values the placeholders of one event may read.
public struct TemplateScope: Sendable {
    /// The configured table, whose foreign keys `instance.<relation>` follows.
    public let table: UInt32
    /// The row after the change, or before it for a delete.
    public let instance: JSONObject?
    /// The row before an update or delete; nil for an insert.
    public let old: JSONObject?
    /// `signal`, `model`, `id` and `created`.
    public let event: JSONObject

    /// Creates the scope of one event; `model` is `app_label.model_name` and
    /// `operation` is `INSERT`, `UPDATE` or `DELETE`.
    public init(
        table: UInt32, newRow: JSONObject?, oldRow: JSONObject?, eventID: Int64, signal: Signal, operation: String,
        model: String
    ) {
        self.table = table
        instance = newRow ?? oldRow
        old = oldRow
        event = [
            "signal": .string(signal.rawValue),
            "model": .string(model),
            "id": .number(JSONNumber(integerLiteral: eventID)),
            "created": .bool(operation == "INSERT"),
        ]
    }
}

extension JSONValue {
    /// The text PostgreSQL gives for the same value cast to text, or nil for null and containers.
    var keyText: String? {
        switch self {
        case .string(let text): text
        case .number(let number): number.text
        case .bool(let flag): flag ? "true" : "false"
        default: nil
        }
    }
}
