import CLibPQ
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A libpq connection with parameterized queries, transactions and LISTEN/NOTIFY.
///
/// One thread owns a connection at a time: libpq connections are not thread-safe,
/// so the type is deliberately not `Sendable`.
public final class PostgresConnection {
    private var handle: OpaquePointer?
    /// Names of the statements prepared on this connection, by SQL text.
    private var preparedStatements: [String: String] = [:]

    /// The server process id serving this connection, as `pg_backend_pid()` returns it.
    public let backendPID: Int32

    /// Opens a connection from a libpq URI (`postgresql://…`) or a `key=value` conninfo string.
    ///
    /// `applicationName` appears in `pg_stat_activity`, so operators can tell the
    /// service's connections apart. A connect timeout of 10 s applies unless the
    /// conninfo sets `connect_timeout`.
    public init(conninfo: String, applicationName: String) throws {
        let keys = ["connect_timeout", "dbname", "application_name"]
        let values = ["10", conninfo, applicationName]
        let connection = withCStringArray(keys) { keyPointers in
            withCStringArray(values) { valuePointers in
                PQconnectdbParams(keyPointers, valuePointers, 1)
            }
        }
        guard let connection else {
            throw PostgresError(kind: .connection, operation: "connect", message: "libpq could not allocate a connection")
        }
        guard PQstatus(connection) == CONNECTION_OK else {
            let message = Self.errorMessage(connection)
            PQfinish(connection)
            throw PostgresError(kind: .connection, operation: "connect", message: message)
        }
        // Server notices (such as "relation already exists, skipping") would go to stderr
        // unstructured; the service reports what matters through its own log lines.
        PQsetNoticeProcessor(connection, { _, _ in }, nil)
        self.handle = connection
        self.backendPID = PQbackendPID(connection)
    }

    deinit {
        close()
    }

    /// Closes the connection; later calls throw a connection error.
    public func close() {
        if let handle {
            PQfinish(handle)
        }
        handle = nil
    }

    /// Whether libpq still considers the connection usable.
    public var isOpen: Bool {
        guard let handle else { return false }
        return PQstatus(handle) == CONNECTION_OK
    }

    /// Runs one statement with `$1`, `$2`, … parameters sent separately from the SQL text.
    ///
    /// Parameters and results use PostgreSQL's text format; `nil` is SQL NULL.
    @discardableResult
    public func query(_ sql: String, _ parameters: [String?] = []) throws -> PostgresResult {
        let connection = try requireHandle(operation: "query")
        let result = withOptionalCStringArray(parameters) { parameterPointers in
            PQexecParams(connection, sql, Int32(parameters.count), nil, parameterPointers, nil, nil, 0)
        }
        return try consume(result, connection: connection, operation: "query")
    }

    /// Runs one statement like `query`, preparing it once per connection and reusing the plan.
    ///
    /// For statements a loop runs many times: PostgreSQL then parses them once instead
    /// of on every call, and plans them once under `plan_cache_mode = force_generic_plan`.
    /// The cache lives as long as the connection.
    @discardableResult
    public func queryPrepared(_ sql: String, _ parameters: [String?] = []) throws -> PostgresResult {
        let connection = try requireHandle(operation: "query")
        let name = try preparedName(sql, parameterCount: parameters.count, connection: connection)
        let result = withOptionalCStringArray(parameters) { parameterPointers in
            PQexecPrepared(connection, name, Int32(parameters.count), parameterPointers, nil, nil, 0)
        }
        return try consume(result, connection: connection, operation: "query")
    }

    /// Runs a prepared statement like `queryPrepared`, and calls `whileWaiting` with the
    /// connection's socket until its result has arrived.
    ///
    /// `whileWaiting` should return once the socket is readable or after other work,
    /// within a few milliseconds. It must not use this connection.
    @discardableResult
    public func queryPrepared(
        _ sql: String, _ parameters: [String?] = [], whileWaiting: (_ socket: Int32) -> Void
    ) throws -> PostgresResult {
        let connection = try requireHandle(operation: "query")
        let name = try preparedName(sql, parameterCount: parameters.count, connection: connection)
        let sent = withOptionalCStringArray(parameters) { parameterPointers in
            PQsendQueryPrepared(connection, name, Int32(parameters.count), parameterPointers, nil, nil, 0)
        }
        guard sent == 1 else {
            throw PostgresError(kind: .connection, operation: "query", message: Self.errorMessage(connection))
        }

        let socket = PQsocket(connection)
        while PQisBusy(connection) == 1 {
            whileWaiting(socket)
            guard PQconsumeInput(connection) == 1 else {
                // Drain the failed statement's results, so the connection is not left busy.
                while let result = PQgetResult(connection) {
                    PQclear(result)
                }
                throw PostgresError(kind: .connection, operation: "query", message: Self.errorMessage(connection))
            }
        }

        // One statement gives one result, and then NULL once the server is ready again.
        let result = PQgetResult(connection)
        while let extra = PQgetResult(connection) {
            PQclear(extra)
        }
        return try consume(result, connection: connection, operation: "query")
    }

    /// Returns the name of the statement prepared for `sql`, preparing it on first use.
    private func preparedName(_ sql: String, parameterCount: Int, connection: OpaquePointer) throws -> String {
        if let existing = preparedStatements[sql] {
            return existing
        }
        let name = "action_triggers_\(preparedStatements.count + 1)"
        _ = try consume(
            PQprepare(connection, name, sql, Int32(parameterCount), nil), connection: connection, operation: "prepare")
        preparedStatements[sql] = name
        return name
    }

    /// Runs a script of one or more statements without parameters (simple query protocol).
    public func execute(_ script: String) throws {
        let connection = try requireHandle(operation: "execute")
        _ = try consume(PQexec(connection, script), connection: connection, operation: "execute")
    }

    /// Runs `body` inside BEGIN … COMMIT, rolling back when it throws.
    public func transaction<T>(_ body: (PostgresConnection) throws -> T) throws -> T {
        try execute("BEGIN")
        do {
            let value = try body(self)
            try execute("COMMIT")
            return value
        } catch {
            if isOpen {
                try? execute("ROLLBACK")
            }
            throw error
        }
    }

    /// Subscribes to a notification channel; the name is quoted as an identifier.
    public func listen(_ channel: String) throws {
        let connection = try requireHandle(operation: "LISTEN")
        guard let escaped = PQescapeIdentifier(connection, channel, channel.utf8.count) else {
            throw PostgresError(kind: .server, operation: "LISTEN on channel \"\(channel)\"", message: Self.errorMessage(connection))
        }
        defer { PQfreemem(escaped) }
        do {
            try execute("LISTEN " + String(cString: escaped))
        } catch let error as PostgresError {
            throw PostgresError(
                kind: error.kind, operation: "LISTEN on channel \"\(channel)\"", message: error.message,
                sqlState: error.sqlState, detail: error.detail, hint: error.hint)
        }
    }

    /// Waits up to `timeout` for notifications by polling the connection's socket.
    ///
    /// Returns at once with notifications already received during earlier queries.
    /// Returns an empty array on timeout and throws a connection error when the
    /// server closed the connection (for example after `pg_terminate_backend`).
    public func waitForNotifications(timeout: Duration) throws -> [PostgresNotification] {
        let connection = try requireHandle(operation: "wait for notifications")
        var notifications = try drainNotifications(connection)
        if !notifications.isEmpty {
            return notifications
        }

        let socket = PQsocket(connection)
        guard socket >= 0 else {
            throw PostgresError(kind: .connection, operation: "wait for notifications", message: "connection has no socket")
        }
        var descriptor = pollfd(fd: socket, events: Int16(POLLIN), revents: 0)
        let milliseconds = Int32(clamping: timeout.components.seconds * 1000 + timeout.components.attoseconds / 1_000_000_000_000_000)
        let ready = poll(&descriptor, 1, milliseconds)
        if ready < 0 {
            if errno == EINTR { return [] }
            throw PostgresError(kind: .connection, operation: "wait for notifications", message: String(cString: strerror(errno)))
        }
        if ready == 0 {
            return []
        }

        guard PQconsumeInput(connection) == 1 else {
            throw PostgresError(kind: .connection, operation: "wait for notifications", message: Self.errorMessage(connection))
        }
        notifications = try drainNotifications(connection)
        guard PQstatus(connection) == CONNECTION_OK else {
            throw PostgresError(kind: .connection, operation: "wait for notifications", message: Self.errorMessage(connection))
        }
        return notifications
    }

    // MARK: - Internals

    private func requireHandle(operation: String) throws -> OpaquePointer {
        guard let handle else {
            throw PostgresError(kind: .connection, operation: operation, message: "connection is closed")
        }
        return handle
    }

    private func drainNotifications(_ connection: OpaquePointer) throws -> [PostgresNotification] {
        var notifications: [PostgresNotification] = []
        while let notify = PQnotifies(connection) {
            let item = notify.pointee
            notifications.append(PostgresNotification(
                channel: String(cString: item.relname),
                payload: item.extra.map { String(cString: $0) } ?? "",
                senderPID: item.be_pid))
            PQfreemem(notify)
        }
        return notifications
    }

    /// Copies a libpq result into Swift values and frees it, throwing for error results.
    private func consume(_ result: OpaquePointer?, connection: OpaquePointer, operation: String) throws -> PostgresResult {
        guard let result else {
            throw PostgresError(kind: .connection, operation: operation, message: Self.errorMessage(connection))
        }
        defer { PQclear(result) }

        switch PQresultStatus(result) {
        case PGRES_COMMAND_OK, PGRES_TUPLES_OK, PGRES_EMPTY_QUERY:
            break
        default:
            let lost = PQstatus(connection) != CONNECTION_OK
            throw PostgresError(
                kind: lost ? .connection : .server,
                operation: operation,
                message: Self.field(result, AT_PG_DIAG_MESSAGE_PRIMARY) ?? Self.errorMessage(connection),
                sqlState: Self.field(result, AT_PG_DIAG_SQLSTATE),
                detail: Self.field(result, AT_PG_DIAG_MESSAGE_DETAIL),
                hint: Self.field(result, AT_PG_DIAG_MESSAGE_HINT))
        }

        let columnCount = Int(PQnfields(result))
        let rowCount = Int(PQntuples(result))
        let columns = (0..<columnCount).map { String(cString: PQfname(result, Int32($0))) }
        var values: [[String?]] = []
        values.reserveCapacity(rowCount)
        for row in 0..<Int32(rowCount) {
            var rowValues: [String?] = []
            rowValues.reserveCapacity(columnCount)
            for column in 0..<Int32(columnCount) {
                if PQgetisnull(result, row, column) == 1 {
                    rowValues.append(nil)
                } else {
                    let length = Int(PQgetlength(result, row, column))
                    let bytes = UnsafeRawBufferPointer(start: PQgetvalue(result, row, column), count: length)
                    rowValues.append(String(decoding: bytes, as: UTF8.self))
                }
            }
            values.append(rowValues)
        }
        let affected = Int(String(cString: PQcmdTuples(result))) ?? 0
        return PostgresResult(columns: columns, values: values, affectedRows: affected)
    }

    private static func field(_ result: OpaquePointer, _ code: Int32) -> String? {
        guard let value = PQresultErrorField(result, code) else { return nil }
        return String(cString: value)
    }

    private static func errorMessage(_ connection: OpaquePointer) -> String {
        guard let message = PQerrorMessage(connection) else { return "unknown libpq error" }
        let text = String(cString: message).trimmingCharacters(in: .whitespacesAndNewlines)
        return text.isEmpty ? "unknown libpq error" : text
    }
}

/// Calls `body` with a NUL-terminated array of C strings that live for the call.
private func withCStringArray<R>(_ strings: [String], _ body: (UnsafePointer<UnsafePointer<CChar>?>) -> R) -> R {
    let duplicates = strings.map { strdup($0) }
    defer { duplicates.forEach { free($0) } }
    var pointers: [UnsafePointer<CChar>?] = duplicates.map { UnsafePointer($0) }
    pointers.append(nil)
    return pointers.withUnsafeBufferPointer { body($0.baseAddress!) }
}

/// Calls `body` with an array of C strings where `nil` stays a null pointer (SQL NULL).
private func withOptionalCStringArray<R>(_ strings: [String?], _ body: (UnsafePointer<UnsafePointer<CChar>?>?) -> R) -> R {
    if strings.isEmpty {
        return body(nil)
    }
    let duplicates = strings.map { $0.map { strdup($0) } ?? nil }
    defer { duplicates.forEach { free($0) } }
    let pointers: [UnsafePointer<CChar>?] = duplicates.map { $0.map { UnsafePointer($0) } }
    return pointers.withUnsafeBufferPointer { body($0.baseAddress) }
}
