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
        #expect(headers.contains { $0.name == "X-Extra" && $0.value == "1" })
    }

    @Test("message id is stable per event and webhook")
    func messageID() {
        #expect(WebhookHeaders.messageID(eventID: 42, webhookID: 7) == "msg_42_7")
    }
}
