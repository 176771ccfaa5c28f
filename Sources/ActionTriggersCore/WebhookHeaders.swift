/// Builds the header list of a webhook request.
///
/// The configured headers come first. `Content-Type: application/json`, `webhook-id`
/// and `webhook-timestamp` (Standard Webhooks) are always set by the service, so a
/// configured header with one of those names is dropped.
public enum WebhookHeaders {
    public static let reservedNames: Set<String> = ["content-type", "webhook-id", "webhook-timestamp", "webhook-signature"]

    /// Returns the headers to send; `messageID` stays the same across retries of one delivery.
    public static func build(configured: [String: String], messageID: String, timestamp: Int64) -> [(name: String, value: String)] {
        var headers: [(name: String, value: String)] = []
        for (name, value) in configured.sorted(by: { $0.key < $1.key }) where !reservedNames.contains(name.lowercased()) {
            headers.append((name, value))
        }
        headers.append(("Content-Type", "application/json"))
        headers.append(("webhook-id", messageID))
        headers.append(("webhook-timestamp", String(timestamp)))
        return headers
    }

    /// Parses a delivery's stored headers, the text of a JSON object whose values are
    /// strings, and returns nil for any other text.
    ///
    /// The worker parses them for every request. Under pgbench, Foundation's
    /// `JSONDecoder` took 7 % of the service process's CPU samples doing so, and with
    /// `JSONParser` the whole preparation of a request takes 2 %.
    public static func parseStored(_ text: String) -> [String: String]? {
        guard case .object(let object)? = try? JSONParser.parse(Array(text.utf8)) else {
            return nil
        }
        var headers: [String: String] = [:]
        headers.reserveCapacity(object.count)
        for member in object.members {
            guard case .string(let value) = member.value else {
                return nil
            }
            headers[member.key] = value
        }
        return headers
    }

    /// Header names that frame the message or the connection; libcurl sets them.
    public static let connectionNames: Set<String> = [
        "content-length", "transfer-encoding", "host", "connection", "keep-alive", "te", "trailer", "upgrade",
        "expect", "proxy-connection",
    ]

    /// Returns why a configured header cannot be sent, or `nil` when all can.
    ///
    /// Names must be HTTP tokens (RFC 9110 section 5.6.2) and values must not contain
    /// control characters, so a stored value can never inject a header line. Headers
    /// that frame the message or that the service sets are rejected, as in SQL
    /// (`action_triggers.webhook_headers_error`).
    public static func problem(in configured: [String: String]) -> String? {
        for (name, value) in configured.sorted(by: { $0.key < $1.key }) {
            if name.isEmpty || !name.unicodeScalars.allSatisfy(isTokenCharacter) {
                return "header name \"\(name)\" is not a valid HTTP header name"
            }
            if connectionNames.contains(name.lowercased()) {
                return "header \(name) controls the HTTP connection, so it cannot be configured"
            }
            if reservedNames.contains(name.lowercased()) {
                return "header \(name) is set by the service, so it cannot be configured"
            }
            if value.unicodeScalars.contains(where: { ($0.value < 0x20 && $0 != "\t") || $0.value == 0x7f }) {
                return "header \(name) contains a line break or control character"
            }
        }
        return nil
    }

    private static func isTokenCharacter(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar {
        case "a"..."z", "A"..."Z", "0"..."9":
            return true
        default:
            return "!#$%&'*+-.^_`|~".unicodeScalars.contains(scalar)
        }
    }

    /// Returns the stable message id of the delivery of one event to one webhook.
    public static func messageID(eventID: Int64, webhookID: Int64) -> String {
        "msg_\(eventID)_\(webhookID)"
    }
}
