/// A request as the server received it, body included.
public struct HTTPServerRequest: Sendable {
    public var method: String
    /// The path without the query string, as sent (not percent-decoded).
    public var path: String
    /// Header fields by lowercased name; a repeated field keeps its last value.
    public var headers: [String: String]
    public var query: [(name: String, value: String)]
    public var body: [UInt8]
    /// Whether the body was longer than the server's limit and was dropped.
    public var bodyTooLarge: Bool

    public init(
        method: String, path: String, headers: [String: String] = [:], query: [(name: String, value: String)] = [],
        body: [UInt8] = [], bodyTooLarge: Bool = false
    ) {
        self.method = method
        self.path = path
        self.headers = headers
        self.query = query
        self.body = body
        self.bodyTooLarge = bodyTooLarge
    }

    public func header(_ name: String) -> String? {
        headers[name.lowercased()]
    }
}

/// A response to send.
public struct HTTPServerResponse: Sendable {
    public var status: Int
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]

    public init(status: Int, headers: [(name: String, value: String)] = [], body: [UInt8] = []) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    /// Returns a response with a JSON body given as text.
    public static func json(_ status: Int, _ text: String, headers: [(name: String, value: String)] = []) -> HTTPServerResponse {
        HTTPServerResponse(
            status: status, headers: [("Content-Type", "application/json")] + headers, body: Array(text.utf8))
    }

    /// Returns `{"detail": "..."}`, the error shape of the REST API for statuses other than 400.
    public static func detail(_ status: Int, _ message: String, headers: [(name: String, value: String)] = []) -> HTTPServerResponse {
        json(status, "{\"detail\": \(jsonString(message))}", headers: headers)
    }
}

/// Encodes a string as a JSON string literal.
public func jsonString(_ text: String) -> String {
    var result = "\""
    for scalar in text.unicodeScalars {
        switch scalar {
        case "\"": result += "\\\""
        case "\\": result += "\\\\"
        case "\n": result += "\\n"
        case "\r": result += "\\r"
        case "\t": result += "\\t"
        default:
            if scalar.value < 0x20 {
                let hex = String(scalar.value, radix: 16)
                result += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            } else {
                result.unicodeScalars.append(scalar)
            }
        }
    }
    return result + "\""
}
