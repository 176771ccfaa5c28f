import Foundation
import PostgresClient
import Testing

/// One webhook's deliveries of one row arrive in commit order; other rows do not wait,
/// and no more deliveries are in flight than `delivery_concurrency`.
@Suite("Per-row ordering", .serialized)
struct OrderingTests {
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
        try await harness.startService(
            settings: Harness.settings(allowing: [harness.receiver], extra: #""delivery_concurrency": 2"#))
        try harness.createConfig(harness.exampleOneConfig())
        for _ in 0..<6 {
            harness.receiver.enqueue(.init(status: 200, body: "slow", delay: .milliseconds(500)))
        }

        try harness.database.query("""
            INSERT INTO myapp_customer (name, email)
            SELECT 'customer ' || n, 'c' || n || '@example.com' FROM generate_series(1, 6) AS n
            """)
        var mostInFlight = 0
        try await harness.waitUntil("every delivery succeeds", timeout: .seconds(20)) {
            let counts = try harness.database.query("""
                SELECT count(*) FILTER (WHERE status = 'in_flight') AS in_flight,
                       count(*) FILTER (WHERE status = 'succeeded') AS succeeded
                FROM action_triggers.delivery
                """).singleRow()
            mostInFlight = max(mostInFlight, try counts.int("in_flight"))
            return try counts.int("succeeded") == 6
        }

        #expect(mostInFlight <= 2)
        let requests = harness.receiver.requests
        #expect(requests.count == 6)
        // Three rounds of two 0.5 s responses: the last request starts a second after the first.
        let first = try #require(requests.first?.receivedAt)
        let last = try #require(requests.last?.receivedAt)
        #expect(last - first >= .milliseconds(900), "\(last - first)")
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
