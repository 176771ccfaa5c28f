import Foundation
import PostgresClient
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Nothing committed is lost when the service or its connections die.
@Suite("Faults", .serialized)
struct FaultTests {
    @Test("changes committed while killed are delivered once")
    func killedServiceCatchesUp() async throws {
        let harness = try Harness()
        let first = try await harness.startService()
        try harness.createConfig(harness.exampleOneConfig())
        try harness.database.query("INSERT INTO myapp_customer (name, email) VALUES ('before', 'b@example.com')")
        _ = try await harness.receiver.waitForRequests(count: 1, timeout: .seconds(20))
        try await harness.waitUntil("the first delivery is recorded") {
            try harness.onlyDeliveryStatus() == "succeeded"
        }

        first.stop(signal: SIGKILL)
        let connection = try harness.database.connect()
        for number in 1...100 {
            try connection.query("INSERT INTO myapp_customer (name, email) VALUES ($1, 'k@example.com')", ["killed-\(number)"])
        }
        try await harness.startService()
        let requests = try await harness.receiver.waitForRequests(count: 101, timeout: .seconds(30))
        try await harness.waitUntil("every delivery is recorded") {
            try harness.database.query(
                "SELECT count(*) AS n FROM action_triggers.delivery WHERE status <> 'succeeded'").singleRow().int("n") == 0
        }

        let names = try harness.receiver.requests.map { try jsonObject($0)["name"] as? String ?? "" }
        #expect(requests.count >= 101)
        #expect(names.count == 101, "the receiver got \(names.count) requests")
        for number in 1...100 {
            #expect(names.filter { $0 == "killed-\(number)" }.count == 1, "killed-\(number) was not delivered exactly once")
        }
    }

    @Test("listener connection terminated mid-stream loses nothing")
    func listenerTerminated() async throws {
        let harness = try Harness()
        let service = try await harness.startService()
        try harness.createConfig(harness.exampleOneConfig())
        let connection = try harness.database.connect()

        for number in 1...60 {
            try connection.query("INSERT INTO myapp_customer (name, email) VALUES ($1, 't@example.com')", ["row-\(number)"])
            if number == 20 || number == 40 {
                let terminated = try connection.query("""
                    SELECT pg_terminate_backend(pid) AS done FROM pg_stat_activity
                    WHERE application_name = 'action-triggers/listener' AND datname = current_database()
                    """)
                #expect(terminated.rows.count == 1, "expected one listener connection to terminate")
            }
            try await Task.sleep(for: .milliseconds(10))
        }
        _ = try await harness.receiver.waitForRequests(count: 60, timeout: .seconds(30))

        let names = Set(try harness.receiver.requests.map { try jsonObject($0)["name"] as? String ?? "" })
        #expect(names == Set((1...60).map { "row-\($0)" }))
        try await service.waitForLog("component=listener msg=reconnected", count: 2)
        #expect(service.log.contains("component=listener msg=\"database error, reconnecting\""))
    }

    @Test("every worker connection terminated recovers")
    func allConnectionsTerminated() async throws {
        let harness = try Harness()
        let service = try await harness.startService()
        try harness.createConfig(harness.exampleOneConfig())
        try harness.database.query("INSERT INTO myapp_customer (name, email) VALUES ('one', 'o@example.com')")
        _ = try await harness.receiver.waitForRequests(count: 1, timeout: .seconds(20))

        let terminated = try harness.database.query("""
            SELECT pg_terminate_backend(pid) FROM pg_stat_activity
            WHERE application_name LIKE 'action-triggers/%' AND datname = current_database()
            """)
        #expect(terminated.rows.count == 4)
        try harness.database.query("INSERT INTO myapp_customer (name, email) VALUES ('two', 't@example.com')")
        _ = try await harness.receiver.waitForRequests(count: 2, timeout: .seconds(30))

        #expect(try harness.receiver.requests.map { try jsonObject($0)["name"] as? String } == ["one", "two"])
        #expect(service.log.contains("component=listener msg=reconnected"))
        #expect(service.log.contains("component=dispatcher msg=reconnected"))
        // The dispatcher hands the second delivery to the worker, which sends it before
        // its next statement finds the connection gone, so the reconnect may come later.
        try await service.waitForLog("component=delivery msg=reconnected", count: 1)
        try await service.waitForLog("component=broker msg=reconnected", count: 1)
    }

    @Test("failing queries back off like failing connections")
    func readOnlyDatabaseBacksOff() async throws {
        let harness = try Harness()
        let service = try await harness.startService()
        try harness.createConfig(harness.exampleOneConfig())

        try harness.database.query("ALTER DATABASE \(harness.database.name) SET default_transaction_read_only = on")
        try harness.database.query("""
            SELECT pg_terminate_backend(pid) FROM pg_stat_activity
            WHERE application_name LIKE 'action-triggers/%' AND datname = current_database()
            """)
        try await service.waitForLog("component=dispatcher msg=\"database error, reconnecting\"")
        try await service.waitForLog("reconnect.attempt=3", timeout: .seconds(10))
        let admin = try harness.database.connect()
        try admin.execute("SET default_transaction_read_only = off")
        try admin.execute("ALTER DATABASE \(harness.database.name) RESET default_transaction_read_only")
        try harness.database.query("INSERT INTO myapp_customer (name, email) VALUES ('writable', 'w@example.com')")
        let requests = try await harness.receiver.waitForRequests(count: 1, timeout: .seconds(30))

        #expect(try jsonObject(requests[0])["name"] as? String == "writable")
        let warnings = service.log.components(separatedBy: "\n").filter { $0.contains("msg=\"database error, reconnecting\"") }
        #expect(warnings.contains { $0.contains("read-only transaction") })
        #expect(warnings.count < 30, "\(warnings.count) reconnect warnings")
    }

    @Test("SIGTERM stops the service cleanly")
    func gracefulStop() async throws {
        let harness = try Harness()
        let service = try await harness.startService()

        service.stop(signal: SIGTERM)

        #expect(service.terminationStatus == 0)
        #expect(service.log.contains("msg=stopped"))
    }
}
