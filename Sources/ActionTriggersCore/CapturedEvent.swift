/// A row change read from the outbox; its row image is PostgreSQL's jsonb text, never re-encoded.
public struct CapturedEvent: Sendable {
    public var id: Int64
    public var signal: Signal
    /// `INSERT`, `UPDATE` or `DELETE`.
    public var operation: String
    /// The row image that a delivery without a template sends: the row after the
    /// change, or before it for a delete. The other image of an update is not read.
    public var rowImage: String?

    public init(id: Int64, signal: Signal, operation: String, rowImage: String?) {
        self.id = id
        self.signal = signal
        self.operation = operation
        self.rowImage = rowImage
    }
}
