/// The rows of one statement's result, copied out of libpq in text format.
public struct PostgresResult: Sendable {
    public let columns: [String]
    public let rows: [PostgresRow]
    /// The number of rows an INSERT, UPDATE or DELETE changed (`PQcmdTuples`), or 0.
    public let affectedRows: Int

    init(columns: [String], values: [[String?]], affectedRows: Int) {
        var index: [String: Int] = [:]
        for (position, name) in columns.enumerated() where index[name] == nil {
            index[name] = position
        }
        self.columns = columns
        self.rows = values.map { PostgresRow(columnIndex: index, values: $0) }
        self.affectedRows = affectedRows
    }

    /// Returns the first row, or throws when the result has none.
    public func singleRow(operation: String = "query") throws -> PostgresRow {
        guard let row = rows.first else {
            throw PostgresError(kind: .decoding, operation: operation, message: "expected one row, got none")
        }
        return row
    }
}

/// One result row; values are PostgreSQL's text output, `nil` for SQL NULL.
public struct PostgresRow: Sendable {
    let columnIndex: [String: Int]
    public let values: [String?]

    public subscript(_ column: String) -> String? {
        guard let position = columnIndex[column] else { return nil }
        return values[position]
    }

    /// Returns the text of a column that must be present and not NULL.
    public func string(_ column: String) throws -> String {
        guard let position = columnIndex[column] else {
            throw PostgresError(kind: .decoding, operation: "decode", message: "column \"\(column)\" is not in the result")
        }
        guard let value = values[position] else {
            throw PostgresError(kind: .decoding, operation: "decode", message: "column \"\(column)\" is NULL")
        }
        return value
    }

    public func int64(_ column: String) throws -> Int64 {
        let text = try string(column)
        guard let value = Int64(text) else {
            throw PostgresError(kind: .decoding, operation: "decode", message: "column \"\(column)\" is not an integer")
        }
        return value
    }

    public func int(_ column: String) throws -> Int {
        Int(try int64(column))
    }

    public func double(_ column: String) throws -> Double {
        let text = try string(column)
        guard let value = Double(text) else {
            throw PostgresError(kind: .decoding, operation: "decode", message: "column \"\(column)\" is not a number")
        }
        return value
    }

    public func bool(_ column: String) throws -> Bool {
        switch try string(column) {
        case "t": return true
        case "f": return false
        default:
            throw PostgresError(kind: .decoding, operation: "decode", message: "column \"\(column)\" is not a boolean")
        }
    }

    /// Returns a column's value decoded when present and not NULL, else `nil`.
    public func optional<T>(_ column: String, _ decode: (String) throws -> T) throws -> T? {
        guard self[column] != nil else { return nil }
        return try decode(column)
    }
}

/// A notification received on a channel the connection listens to.
public struct PostgresNotification: Sendable, Equatable {
    public let channel: String
    public let payload: String
    /// The process id of the server backend that sent the notification.
    public let senderPID: Int32

    public init(channel: String, payload: String, senderPID: Int32) {
        self.channel = channel
        self.payload = payload
        self.senderPID = senderPID
    }
}
