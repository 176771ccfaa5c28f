import Foundation
import PostgresClient
import Testing

/// How receiver failures turn into retries, failures and recorded attempts.
@Suite("Retries", .serialized)
struct RetryTests {
    @Test("503 with Retry-After waits, then delivers")
    func retryAfterHonoured() async throws {
        let harness = try Harness()
        try await harness.startService()
        try harness.createConfig(harness.exampleOneConfig())
        harness.receiver.enqueue(.init(status: 503, headers: [("Retry-After", "2")], body: "busy"))

        try harness.database.query("INSERT INTO myapp_customer (name, email) VALUES ('retry', 'r@example.com')")
        let requests = try await harness.receiver.waitForRequests(count: 2, timeout: .seconds(20))

        let gap = requests[1].receivedAt - requests[0].receivedAt
        #expect(gap >= .seconds(2), "second attempt came after \(gap)")
        #expect(gap < .seconds(4), "second attempt came after \(gap), long after Retry-After")
        #expect(requests[0].header("webhook-id") == requests[1].header("webhook-id"))
        #expect(requests[0].bodyText == requests[1].bodyText)

        try await harness.waitUntil("the delivery succeeds") {
            try harness.onlyDeliveryStatus() == "succeeded"
        }
        let delivery = try harness.database.query("SELECT attempts, last_status_code FROM action_triggers.delivery").singleRow()
        #expect(try delivery.int("attempts") == 2)
        #expect(try delivery.int("last_status_code") == 200)
        let attempts = try harness.database.query(
            "SELECT status_code, outcome FROM action_triggers.delivery_attempt ORDER BY attempt")
        #expect(attempts.rows.map { $0["status_code"] } == ["503", "200"])
        #expect(attempts.rows.map { $0["outcome"] } == ["retry", "succeeded"])
    }

    @Test("400 is one attempt, recorded as failed")
    func clientErrorNotRetried() async throws {
        let harness = try Harness()
        try await harness.startService()
        try harness.createConfig(harness.exampleOneConfig())
        harness.receiver.enqueue(.init(status: 400, body: "bad"))

        try harness.database.query("INSERT INTO myapp_customer (name, email) VALUES ('bad', 'b@example.com')")
        try await harness.waitUntil("the delivery fails") {
            try harness.onlyDeliveryStatus() == "failed"
        }

        let delivery = try harness.database.query(
            "SELECT attempts, last_status_code, last_error, completed_at FROM action_triggers.delivery").singleRow()
        #expect(try delivery.int("attempts") == 1)
        #expect(try delivery.int("last_status_code") == 400)
        #expect(delivery["last_error"] == "receiver answered HTTP 400")
        #expect(delivery["completed_at"] != nil)
        #expect(harness.receiver.requests.count == 1)
        let attempts = try harness.database.query("SELECT outcome FROM action_triggers.delivery_attempt")
        #expect(attempts.rows.map { $0["outcome"] } == ["failed"])
        #expect(harness.service?.log.contains("msg=\"delivery failed, not retrying\"") == true)
    }

    @Test("redirect is recorded as failed, never followed", arguments: [301, 302, 307, 308])
    func redirectNotFollowed(status: Int) async throws {
        let harness = try Harness()
        try await harness.startService()
        try harness.createConfig(harness.exampleOneConfig())
        let target = "\(harness.receiver.baseURL)/moved"
        harness.receiver.enqueue(.init(status: status, headers: [("Location", target), ("Content-Length", "0")]))

        try harness.database.query("INSERT INTO myapp_customer (name, email) VALUES ('moved', 'm@example.com')")
        try await harness.waitUntil("the delivery fails") {
            try harness.onlyDeliveryStatus() == "failed"
        }

        let delivery = try harness.database.query(
            "SELECT attempts, last_status_code, last_error FROM action_triggers.delivery").singleRow()
        #expect(try delivery.int("attempts") == 1)
        #expect(try delivery.int("last_status_code") == status)
        #expect(delivery["last_error"]?.contains("redirect, which is not followed") == true)
        // Only the original POST reached the receiver: no request to the Location target.
        let requests = harness.receiver.requests
        #expect(requests.count == 1)
        #expect(requests.first?.method == "POST")
        #expect(requests.allSatisfy { $0.path != "/moved" })
        // Durations are stored in whole microseconds, without binary floating-point noise.
        let attempt = try harness.database.query(
            "SELECT duration_ms = round(duration_ms::numeric, 3)::double precision AS rounded FROM action_triggers.delivery_attempt")
        #expect(try attempt.singleRow()["rounded"] == "t")
    }

    @Test("slow receiver is cut at the timeout, then retried")
    func timeoutThenRetry() async throws {
        let harness = try Harness()
        try await harness.startService()
        try harness.createConfig(harness.exampleOneConfig(timeoutSecs: 1))
        harness.receiver.enqueue(.init(status: 200, body: "late", delay: .seconds(4)))

        try harness.database.query("INSERT INTO myapp_customer (name, email) VALUES ('slow', 's@example.com')")
        let requests = try await harness.receiver.waitForRequests(count: 2, timeout: .seconds(20))
        try await harness.waitUntil("the delivery succeeds") {
            try harness.onlyDeliveryStatus() == "succeeded"
        }

        let gap = requests[1].receivedAt - requests[0].receivedAt
        #expect(gap < .seconds(4), "the retry waited for the slow response: \(gap)")
        let first = try harness.database.query(
            "SELECT duration_ms, error, outcome FROM action_triggers.delivery_attempt WHERE attempt = 1").singleRow()
        #expect(first["outcome"] == "retry")
        #expect(first["error"]?.hasPrefix("timed out") == true)
        let duration = try first.double("duration_ms")
        #expect(duration >= 950, "first attempt took \(duration) ms")
        #expect(duration < 3000, "first attempt took \(duration) ms")
    }

    @Test("slow receiver does not hold up others")
    func slowReceiverIsolated() async throws {
        let harness = try Harness()
        let slow = try TestReceiver()
        slow.defaultResponse = .init(status: 200, body: "slow", delay: .seconds(4))
        try await harness.startService(settings: Harness.settings(allowing: [harness.receiver, slow]))
        try harness.createConfig("""
            {"config_signals": [{"signal": "post_save"}],
             "content_types": [{"app_label": "myapp", "model_name": "Customer"}],
             "webhooks": [{"url": "\(slow.baseURL)/slow", "http_method": "POST"},
                          {"url": "\(harness.receiver.baseURL)/fast", "http_method": "POST"}],
             "active": true}
            """)

        let inserted = ContinuousClock.now
        try harness.database.query("INSERT INTO myapp_customer (name, email) VALUES ('one', 'o@example.com')")
        _ = try await harness.receiver.waitForRequests(count: 1, timeout: .seconds(20))
        try harness.database.query("INSERT INTO myapp_customer (name, email) VALUES ('two', 't@example.com')")
        _ = try await harness.receiver.waitForRequests(count: 2, timeout: .seconds(20))
        try await harness.waitUntil("both fast deliveries are recorded") {
            try harness.database.query(
                "SELECT count(*) AS n FROM action_triggers.delivery WHERE url LIKE '%/fast' AND status = 'succeeded'"
            ).singleRow().int("n") == 2
        }

        let elapsed = ContinuousClock.now - inserted
        #expect(elapsed < .seconds(3.5), "fast deliveries waited for the slow receiver: \(elapsed)")
        #expect(slow.requests.count >= 1)
    }

    @Test("attempts run out and the delivery is dead")
    func deadAfterLastAttempt() async throws {
        let harness = try Harness()
        try await harness.startService(settings: Harness.settings(allowing: [harness.receiver], maxAttempts: 2))
        try harness.createConfig(harness.exampleOneConfig())
        harness.receiver.defaultResponse = .init(status: 500, body: "down")

        try harness.database.query("INSERT INTO myapp_customer (name, email) VALUES ('dead', 'd@example.com')")
        try await harness.waitUntil("the delivery is dead") {
            try harness.onlyDeliveryStatus() == "dead"
        }

        #expect(harness.receiver.requests.count == 2)
        let delivery = try harness.database.query("SELECT attempts, last_error FROM action_triggers.delivery").singleRow()
        #expect(try delivery.int("attempts") == 2)
        #expect(delivery["last_error"] == "receiver answered HTTP 500; gave up after 2 attempts")
        #expect(harness.service?.log.contains("msg=\"delivery dead after last attempt\"") == true)
    }

    @Test("refused connection is retried")
    func connectionRefusedRetried() async throws {
        let harness = try Harness()
        let closed = try TestReceiver()
        let closedURL = closed.baseURL
        closed.stop()
        try await harness.startService(settings: Harness.settings(allowing: [harness.receiver, closed], maxAttempts: 2))
        try harness.createConfig("""
            {"config_signals": [{"signal": "post_save"}],
             "content_types": [{"app_label": "myapp", "model_name": "Customer"}],
             "webhooks": [{"url": "\(closedURL)/gone", "http_method": "POST"}],
             "active": true}
            """)

        try harness.database.query("INSERT INTO myapp_customer (name, email) VALUES ('refused', 'r@example.com')")
        try await harness.waitUntil("the delivery is dead") {
            try harness.onlyDeliveryStatus() == "dead"
        }

        let attempts = try harness.database.query("SELECT error FROM action_triggers.delivery_attempt ORDER BY attempt")
        #expect(attempts.rows.count == 2)
        #expect(attempts.rows.allSatisfy { $0["error"]?.hasPrefix("connection failed") == true })
    }
}
