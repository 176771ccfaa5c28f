import Foundation
import PostgresClient
import Testing

/// One webhook's deliveries of one row arrive in commit order; other rows do not wait,
/// and no more deliveries are in flight than `delivery_concurrency`.
@Suite("Per-row ordering", .serialized)
struct OrderingTests {
    /// Waits until `count` deliveries have succeeded and returns the maximum number in
    /// flight at once, sampled every 20 ms.
    static func maxInFlight(_ harness: Harness, untilSucceeded count: Int, timeout: Duration) async throws -> Int {
        var maxInFlight = 0
        try await harness.waitUntil("every delivery succeeds", timeout: timeout) {
            let counts = try harness.database.query("""
                SELECT count(*) FILTER (WHERE status = 'in_flight') AS in_flight,
                       count(*) FILTER (WHERE status = 'succeeded') AS succeeded
                FROM action_triggers.delivery
                """).singleRow()
            maxInFlight = max(maxInFlight, try counts.int("in_flight"))
            return try counts.int("succeeded") == count
        }
        return maxInFlight
    }

    @Test("a delayed first delivery holds back only its own row")
    func delayedFirstDelivery() async throws {
        let harness = try Harness()
        try await harness.startService()
        try harness.createConfig(harness.exampleOneConfig())
        harness.receiver.enqueue(.init(status: 200, body: "slow", delay: .seconds(3)))

        try harness.database.query("INSERT INTO myapp_customer (name, email) VALUES ('v1', 'a@example.com')")
        _ = try await harness.receiver.waitForRequests(count: 1, timeout: .seconds(20))
        try harness.database.query("UPDATE myapp_customer SET name = 'v2' WHERE id = 1")
        try harness.database.query("UPDATE myapp_customer SET name = 'v3' WHERE id = 1")
        try harness.database.query("INSERT INTO myapp_customer (name, email) VALUES ('other', 'b@example.com')")
        let requests = try await harness.receiver.waitForRequests(count: 4, timeout: .seconds(20))

        let names = try requests.map { try jsonObject($0)["name"] as? String ?? "" }
        let rowOne = names.filter { $0.hasPrefix("v") }
        #expect(rowOne == ["v1", "v2", "v3"])
        // The other row went while v1's response was still delayed.
        #expect(names.firstIndex(of: "other") == 1, "\(names)")
        let firstArrival = try #require(requests.first?.receivedAt)
        let secondArrival = try #require(requests.first { (try? jsonObject($0)["name"] as? String) == "v2" }?.receivedAt)
        #expect(secondArrival - firstArrival >= .milliseconds(2900))
        // Recording v1 claims v2 at once, without waiting for the 5 s poll.
        #expect(secondArrival - firstArrival < .milliseconds(4500))
    }

    @Test("in-flight deliveries never exceed delivery_concurrency")
    func concurrencyBound() async throws {
        let harness = try Harness()
        // Two receivers, so that libcurl's per-host connection cap cannot hide a
        // broken bound: each host alone may take up to delivery_concurrency requests.
        let second = try TestReceiver()
        defer { second.stop() }
        try await harness.startService(
            settings: Harness.settings(allowing: [harness.receiver, second], extra: #""delivery_concurrency": 2"#))
        try harness.createConfig("""
            {
              "config_signals": [{"signal": "post_save"}],
              "content_types": [{"app_label": "myapp", "model_name": "Customer"}],
              "webhooks": [
                {"url": "\(harness.receiver.baseURL)/first", "http_method": "POST"},
                {"url": "\(second.baseURL)/second", "http_method": "POST"}
              ],
              "active": true
            }
            """)
        for receiver in [harness.receiver, second] {
            for _ in 0..<3 {
                receiver.enqueue(.init(status: 200, body: "slow", delay: .milliseconds(500)))
            }
        }

        try harness.database.query("""
            INSERT INTO myapp_customer (name, email)
            SELECT 'customer ' || n, 'c' || n || '@example.com' FROM generate_series(1, 3) AS n
            """)
        let maxInFlight = try await Self.maxInFlight(harness, untilSucceeded: 6, timeout: .seconds(20))

        #expect(maxInFlight <= 2)
        let arrivals = (harness.receiver.requests + second.requests).map(\.receivedAt).sorted()
        #expect(arrivals.count == 6)
        // With two requests at a time, a third starts only when one of the first two
        // has had its 0.5 s response, so no three requests arrive within 0.4 s.
        for index in 2..<arrivals.count {
            let spread = arrivals[index] - arrivals[index - 2]
            #expect(spread >= .milliseconds(400), "requests \(index - 1) to \(index + 1) arrived within \(spread)")
        }
    }

    @Test("backlog records every attempt once")
    func backlogRecordsEveryAttempt() async throws {
        let harness = try Harness()
        let settings = Harness.settings(allowing: [harness.receiver], extra: #""delivery_concurrency": 4"#)
        try await harness.startService(settings: settings)
        try harness.createConfig(harness.exampleOneConfig())
        harness.service?.stop()
        // Three requests fail, so retries are written in the statements that claim the backlog.
        for _ in 0..<3 {
            harness.receiver.enqueue(.init(status: 503, body: "busy"))
        }
        try harness.database.query("""
            INSERT INTO myapp_customer (name, email)
            SELECT 'customer ' || n, 'c' || n || '@example.com' FROM generate_series(1, 300) AS n
            """)

        try await harness.startService(settings: settings)
        let maxInFlight = try await Self.maxInFlight(harness, untilSucceeded: 300, timeout: .seconds(60))

        #expect(maxInFlight <= 4)
        let deliveries = try harness.database.query("""
            SELECT count(*) AS deliveries,
                   count(*) FILTER (WHERE d.attempts = 1) AS first_try,
                   count(*) FILTER (WHERE d.attempts = 2) AS second_try,
                   count(*) FILTER (WHERE a.attempts = d.attempts AND a.last_status = 200) AS logged
            FROM action_triggers.delivery d
            CROSS JOIN LATERAL (
                SELECT count(*) AS attempts,
                       (array_agg(status_code ORDER BY attempt DESC))[1] AS last_status
                FROM action_triggers.delivery_attempt WHERE delivery_id = d.id) AS a
            """).singleRow()
        #expect(try deliveries.int("deliveries") == 300)
        #expect(try deliveries.int("first_try") == 297)
        #expect(try deliveries.int("second_try") == 3)
        // Each delivery has one attempt row per attempt, and its last one succeeded.
        #expect(try deliveries.int("logged") == 300)
        let eventIDs = Set(harness.requests(to: "/customer").map(eventID(of:)))
        #expect(eventIDs.count == 300)
    }

    @Test("templated event holds back its row's later events")
    func templatedEventKeepsOrder() async throws {
        let harness = try Harness()
        try await harness.startService()
        // The templated config makes the saves go through the dispatcher's second pass;
        // the delete matches only the plain config, and must not overtake them.
        try harness.createConfig("""
            {
              "config_signals": [{"signal": "post_save"}],
              "content_types": [{"app_label": "myapp", "model_name": "Customer"}],
              "webhooks": [{"url": "\(harness.receiver.baseURL)/templated", "http_method": "POST"}],
              "payload": {"name": "{{ instance.name }}"},
              "active": true
            }
            """)
        try harness.createConfig(harness.exampleOneConfig(path: "/plain"))

        try harness.database.query("INSERT INTO myapp_customer (name, email) VALUES ('v1', 'a@example.com')")
        _ = try await harness.receiver.waitForRequests(count: 2, timeout: .seconds(20))
        let connection = try harness.database.connect()
        try connection.transaction { connection in
            try connection.query("UPDATE myapp_customer SET name = 'v2' WHERE id = 1")
            try connection.query("UPDATE myapp_customer SET name = 'v3' WHERE id = 1")
            try connection.query("DELETE FROM myapp_customer WHERE id = 1")
        }
        _ = try await harness.receiver.waitForRequests(count: 7, timeout: .seconds(20))

        let plain = try harness.requests(to: "/plain").map { try jsonObject($0)["name"] as? String ?? "" }
        // The delete sends the row before it, so its body is the last update's.
        #expect(plain == ["v1", "v2", "v3", "v3"])
        let templated = try harness.requests(to: "/templated").map { try jsonObject($0)["name"] as? String ?? "" }
        #expect(templated == ["v1", "v2", "v3"])
    }

    @Test("a retrying delivery holds back later events of its row")
    func retryHoldsBack() async throws {
        let harness = try Harness()
        try await harness.startService()
        try harness.createConfig(harness.exampleOneConfig())
        harness.receiver.enqueue(.init(status: 500, body: "once"))
        harness.receiver.enqueue(.init(status: 500, body: "twice"))

        try harness.database.query("INSERT INTO myapp_customer (name, email) VALUES ('v1', 'a@example.com')")
        try harness.database.query("UPDATE myapp_customer SET name = 'v2' WHERE id = 1")
        let requests = try await harness.receiver.waitForRequests(count: 4, timeout: .seconds(20))

        let names = try requests.map { try jsonObject($0)["name"] as? String ?? "" }
        #expect(names == ["v1", "v1", "v1", "v2"])
    }
}
