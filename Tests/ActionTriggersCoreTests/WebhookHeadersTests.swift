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
        (["Content-Length": "2"], "header Content-Length controls the HTTP connection, so it cannot be configured"),
        (["transfer-encoding": "chunked"], "header transfer-encoding controls the HTTP connection, so it cannot be configured"),
        (["Host": "other.example"], "header Host controls the HTTP connection, so it cannot be configured"),
        (["Webhook-Id": "forged"], "header Webhook-Id is set by the service, so it cannot be configured"),
        (["Content-Type": "text/plain"], "header Content-Type is set by the service, so it cannot be configured"),
    ])
    func invalidHeaders(headers: [String: String], message: String) {
        #expect(WebhookHeaders.problem(in: headers) == message)
    }
}

@Suite("Stored headers and secrets")
struct StoredWebhookFieldsTests {
    @Test("stored headers parse to strings")
    func headersParse() {
        let headers = WebhookHeaders.parseStored(#"{"Authorization": "Bearer {{ token }}", "X-Quote": "a \"b\"\nc", "X-Empty": ""}"#)
        #expect(headers == ["Authorization": "Bearer {{ token }}", "X-Quote": "a \"b\"\nc", "X-Empty": ""])
    }

    @Test("empty stored headers parse")
    func emptyHeaders() {
        #expect(WebhookHeaders.parseStored("{}") == [:])
    }

    @Test(
        "invalid stored headers are rejected",
        arguments: [#"{"X-Count": 1}"#, #"{"X-Flag": null}"#, #"{"X-List": ["a"]}"#, #"["a"]"#, #""text""#, "", "{", #"{"a": "b",}"#])
    func headersRejected(text: String) {
        #expect(WebhookHeaders.parseStored(text) == nil)
    }

    @Test("stored secrets parse in order")
    func secretsParse() {
        #expect(WebhookSignature.parseStoredSecrets(#"["whsec_b2xk", "{{ signing_key }}"]"#) == ["whsec_b2xk", "{{ signing_key }}"])
        #expect(WebhookSignature.parseStoredSecrets("[]") == [])
    }

    @Test("invalid stored secrets are rejected", arguments: [#"[1]"#, #"["a", null]"#, #"{"a": "b"}"#, #""whsec_x""#, "", "["])
    func secretsRejected(text: String) {
        #expect(WebhookSignature.parseStoredSecrets(text) == nil)
    }
}
