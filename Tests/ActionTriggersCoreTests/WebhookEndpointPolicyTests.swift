import ActionTriggersCore
import Testing

@Suite("WebhookEndpointPolicy")
struct WebhookEndpointPolicyTests {
    @Test("no patterns allow any http(s) URL", arguments: ["http://127.0.0.1:8000/hook", "https://example.com", "https://user@host/x?y#z"])
    func allowAll(url: String) throws {
        let policy = try WebhookEndpointPolicy(patterns: nil)
        #expect(policy.rejection(for: url) == nil)
    }

    @Test("non-http URLs are rejected", arguments: ["ftp://example.com/", "file:///etc/passwd", "example.com", "http://", "http:// space.com/", "gopher://x"])
    func rejectScheme(url: String) throws {
        let policy = try WebhookEndpointPolicy(patterns: nil)
        #expect(policy.rejection(for: url)?.contains("is not an absolute http:// or https:// URL") == true)
    }

    @Test("patterns match from the start")
    func anchoredAtStart() throws {
        let policy = try WebhookEndpointPolicy(patterns: [#"https?://localhost:[0-9]+/webhook/"#, "https://example.com/"])
        #expect(policy.rejection(for: "http://localhost:8000/webhook/1") == nil)
        #expect(policy.rejection(for: "https://example.com/any/path") == nil)
        #expect(policy.rejection(for: "https://evil.test/?https://example.com/") != nil)
        #expect(policy.rejection(for: "https://example.com.evil.test/") != nil)
    }

    @Test("invalid pattern names its index")
    func invalidPattern() {
        #expect(throws: SettingsError(path: "whitelisted_webhook_endpoint_patterns[1]", message: "is not a valid regular expression: (unclosed")) {
            _ = try WebhookEndpointPolicy(patterns: ["https://ok/", "(unclosed"])
        }
    }
}
