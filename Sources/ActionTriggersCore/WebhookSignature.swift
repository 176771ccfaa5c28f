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
