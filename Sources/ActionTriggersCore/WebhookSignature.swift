import Foundation

/// The `webhook-signature` header of Standard Webhooks (standardwebhooks.com): an
/// HMAC-SHA256 of `<webhook-id>.<webhook-timestamp>.<body>` under each active secret.
public enum WebhookSignature {
    /// Returns the key inside a `whsec_<base64>` secret, or nil when the text is not one.
    public static func key(fromSecret secret: String) -> [UInt8]? {
        guard secret.hasPrefix("whsec_"), let key = Data(base64Encoded: String(secret.dropFirst(6))), !key.isEmpty else {
            return nil
        }
        return Array(key)
    }

    /// Parses a delivery's stored signing secrets, the text of a JSON array of strings,
    /// and returns nil for any other text.
    public static func parseStoredSecrets(_ text: String) -> [String]? {
        guard case .array(let items)? = try? JSONParser.parse(Array(text.utf8)) else {
            return nil
        }
        var secrets: [String] = []
        secrets.reserveCapacity(items.count)
        for item in items {
            guard case .string(let secret) = item else {
                return nil
            }
            secrets.append(secret)
        }
        return secrets
    }

    /// Returns the header value: `v1,<base64 signature>` for each key, separated by
    /// spaces, so a receiver that has any one of the secrets can verify it while
    /// secrets are rotated.
    public static func header(
        messageID: String, timestamp: Int64, body: [UInt8], keys: [[UInt8]], hmac: ([UInt8], [UInt8]) -> [UInt8]
    ) -> String {
        let content = Array("\(messageID).\(timestamp).".utf8) + body
        return keys.map { "v1," + Data(hmac($0, content)).base64EncodedString() }.joined(separator: " ")
    }
}
