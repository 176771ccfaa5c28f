/// A row change read from the outbox; row images are PostgreSQL's jsonb text, never re-encoded.
public struct CapturedEvent: Sendable {
    public var id: Int64
    public var signal: Signal
    /// `INSERT`, `UPDATE` or `DELETE`.
    public var operation: String
    /// The row after the change; `nil` for a delete.
    public var newRow: String?
    /// The row before the change; `nil` for an insert.
    public var oldRow: String?

    public init(id: Int64, signal: Signal, operation: String, newRow: String?, oldRow: String?) {
        self.id = id
        self.signal = signal
        self.operation = operation
        self.newRow = newRow
        self.oldRow = oldRow
    }
}
