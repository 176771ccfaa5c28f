import ActionTriggersCore
import Testing

@Suite("WebhookHeaders")
struct WebhookHeadersTests {
    @Test("service headers are added last")
    func serviceHeaders() {
        let headers = WebhookHeaders.build(configured: ["Authorization": "Bearer t"], messageID: "msg_1_2", timestamp: 1700000000)
        #expect(headers.map(\.name) == ["Authorization", "Content-Type", "webhook-id", "webhook-timestamp"])
        #expect(headers.map(\.value) == ["Bearer t", "application/json", "msg_1_2", "1700000000"])
    }

    @Test("configured reserved names are dropped")
    func reservedDropped() {
        let headers = WebhookHeaders.build(
            configured: ["content-type": "text/plain", "Webhook-Id": "forged", "X-Extra": "1"], messageID: "m", timestamp: 1)
        #expect(headers.filter { $0.name.lowercased() == "content-type" }.map(\.value) == ["application/json"])
        #expect(headers.filter { $0.name.lowercased() == "webhook-id" }.map(\.value) == ["m"])
        #expect(headers.first { $0.name == "X-Extra" }?.value == "1")
    }

    @Test("message id is stable per event and webhook")
    func messageID() {
        #expect(WebhookHeaders.messageID(eventID: 42, webhookID: 7) == "msg_42_7")
    }
}

@Suite("WebhookHeaders.problem")
struct WebhookHeaderProblemTests {
    @Test("valid headers pass")
    func validHeaders() {
        #expect(WebhookHeaders.problem(in: ["Authorization": "Bearer a.b-c", "X-Tab": "a\tb", "X-Unicode": "ü"]) == nil)
    }

    @Test("injection and bad names are caught", arguments: [
        (["X": "a\r\nInjected: 1"], "header X contains a line break or control character"),
        (["X": "a\nb"], "header X contains a line break or control character"),
        (["X": "nul\u{0}"], "header X contains a line break or control character"),
        (["Bad Name": "v"], "header name \"Bad Name\" is not a valid HTTP header name"),
        (["X:Y": "v"], "header name \"X:Y\" is not a valid HTTP header name"),
        (["": "v"], "header name \"\" is not a valid HTTP header name"),
    ])
    func invalidHeaders(headers: [String: String], message: String) {
        #expect(WebhookHeaders.problem(in: headers) == message)
    }
}

@Suite("redactURL")
struct RedactURLTests {
    @Test("secrets are removed", arguments: [
        ("https://user:pass@example.com/hook?token=abc#frag", "https://example.com/hook"),
        ("http://127.0.0.1:8080/a/b", "http://127.0.0.1:8080/a/b"),
        ("https://example.com?key=1", "https://example.com"),
        ("https://a@b@example.com/x", "https://example.com/x"),
        ("not a url?secret", "not a url"),
    ])
    func redacts(url: String, expected: String) {
        #expect(redactURL(url) == expected)
    }
}
