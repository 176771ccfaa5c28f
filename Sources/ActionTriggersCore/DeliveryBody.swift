/// The body of a webhook request or broker message.
public enum DeliveryBody {
    /// Returns the payload rendered from the config's template when the event was
    /// dispatched, or else the row image exactly as PostgreSQL stored it: NEW for
    /// saves, OLD for deletes.
    ///
    /// Both are passed through as text, so every value stays exact (bigint, numeric,
    /// text with quotes or non-ASCII): nothing is decoded into `Double` or re-escaped.
    public static func bytes(renderedPayload: String?, event: CapturedEvent) throws(PayloadError) -> [UInt8] {
        if let renderedPayload {
            return Array(renderedPayload.utf8)
        }
        guard let row = event.rowImage else {
            throw PayloadError(message: "event \(event.id) has no row image")
        }
        return Array(row.utf8)
    }
}

public struct PayloadError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public var description: String { message }
}
