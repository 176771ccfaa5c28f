import Foundation
import PostgresClient
import Testing

/// One webhook's deliveries of one row arrive in commit order; other rows do not wait.
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
