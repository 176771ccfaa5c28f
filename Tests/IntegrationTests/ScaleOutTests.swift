import Foundation
import PostgresClient
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Several `serve` processes on one database share the outbox and the deliveries through row locks.
@Suite("Scale-out", .serialized)
struct ScaleOutTests {
    @Test("two instances deliver every row exactly once")
    func twoInstances() async throws {
        let harness = try Harness()
        try await harness.startService()
        let second = try ServiceProcess(databaseURL: harness.database.url, settings: Harness.settings(allowing: [harness.receiver]))
        defer { second.stop(signal: SIGKILL) }
        try await second.waitUntilReady()
        try harness.createConfig(harness.exampleOneConfig())

        let connection = try harness.database.connect()
        for index in 1...300 {
            try connection.query("INSERT INTO myapp_customer (name, email) VALUES ($1, 'x@example.com')", ["row-\(index)"])
        }
        try await harness.waitUntil("every row is delivered", timeout: .seconds(30)) {
            try harness.succeededDeliveries() == 300
        }
        try await Task.sleep(for: .milliseconds(300))

        let requests = harness.receiver.requests
        #expect(requests.count == 300)
        #expect(Set(requests.compactMap { $0.header("webhook-id") }).count == 300)
        let names = Set(try requests.map { try jsonObject($0)["name"] as? String ?? "" })
        #expect(names == Set((1...300).map { "row-\($0)" }))
        // Both instances took part: each claims with its own connections.
        let claimers = try harness.database.query("""
            SELECT count(DISTINCT pid) AS n FROM pg_stat_activity
            WHERE application_name = 'action-triggers/delivery' AND datname = current_database()
            """).singleRow().int("n")
        #expect(claimers == 2)
    }
}
