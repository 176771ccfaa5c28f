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

    /// Returns the stable message id of the delivery of one event to one webhook.
    public static func messageID(eventID: Int64, webhookID: Int64) -> String {
        "msg_\(eventID)_\(webhookID)"
    }
}
