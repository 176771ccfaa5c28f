/// An error from libpq or the server, with the SQLSTATE code when the server sent one.
///
/// `description` contains the operation and the server's primary message, but not the
/// SQL text, the parameters, DETAIL or HINT. The primary message can still quote an
/// input value (for example "invalid input syntax for type integer"), so callers log
/// it only for statements whose values are not secret.
public struct PostgresError: Error, CustomStringConvertible, Sendable {
    public enum Kind: Sendable {
        /// The connection could not be opened or was lost; the caller should reconnect.
        case connection
        /// The server rejected a statement; the connection is still usable.
        case server
        /// A value in a result did not have the expected type or was missing.
        case decoding
    }

    public let kind: Kind
    /// The operation that failed, such as `connect`, `query` or `LISTEN`.
    public let operation: String
    public let message: String
    /// The five-character SQLSTATE code, when the server sent one.
    public let sqlState: String?
    public let detail: String?
    public let hint: String?

    public init(
        kind: Kind, operation: String, message: String,
        sqlState: String? = nil, detail: String? = nil, hint: String? = nil
    ) {
        self.kind = kind
        self.operation = operation
        self.message = message
        self.sqlState = sqlState
        self.detail = detail
        self.hint = hint
    }

    public var description: String {
        var text = "\(operation) failed: \(message)"
        if let sqlState { text += " (SQLSTATE \(sqlState))" }
        return text
    }

    /// Whether the connection that raised this error must be replaced.
    public var isConnectionLost: Bool { kind == .connection }
}
