/// Builds the body of a webhook or broker message for an event.
///
/// This is the one seam for payload rendering: configs without a `payload` send
/// the row image, and template rendering plugs in here.
public protocol PayloadRendering: Sendable {
    func render(_ event: CapturedEvent, template: String?) throws -> [UInt8]
}

/// Sends the row image exactly as PostgreSQL stored it: NEW for saves, OLD for deletes.
///
/// Passing the jsonb text through untouched keeps every value exact (bigint, numeric,
/// text with quotes or non-ASCII), because nothing is decoded into `Double` or re-escaped.
public struct RowImagePayload: PayloadRendering {
    public init() {}

    public func render(_ event: CapturedEvent, template: String?) throws -> [UInt8] {
        guard template == nil else {
            throw PayloadError(message: "payload templates are not supported by this version")
        }
        guard let row = event.newRow ?? event.oldRow else {
            throw PayloadError(message: "event \(event.id) has no row image")
        }
        return Array(row.utf8)
    }
}

public struct PayloadError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public var description: String { message }
}
