@testable import ActionTriggersService
import Foundation
import Logging
import PostgresClient
import Testing

/// The service's own vacuum of the outbox, on its own thread and connection.
@Suite("Outbox vacuum", .serialized)
struct OutboxVacuumRunTests {
    @Test("service vacuums after 1,000 changes")
    func vacuumsAfterChanges() async throws {
        let harness = try Harness()
        let service = try await harness.startService()
        try harness.createConfig(harness.exampleOneConfig())

        // 400 events dispatched, 400 deliveries created and 400 attempts recorded make
        // 1,200 changes.
        try harness.database.query("""
            INSERT INTO myapp_customer (name, email)
            SELECT 'customer ' || n, 'c' || n || '@example.com' FROM generate_series(1, 400) AS n
            """)
        try await harness.waitUntil("every delivery succeeds", timeout: .seconds(90)) {
            try harness.succeededDeliveries() == 400
        }
        try await service.waitForLog("component=vacuum msg=\"vacuumed the outbox\"")

        // Statistics and pg_stat_activity may trail the log line by a moment.
        try await harness.waitUntil("pg_stat_user_tables shows the vacuum and the analyze") {
            let stats = try harness.database.query("""
                SELECT last_vacuum IS NOT NULL AND last_analyze IS NOT NULL AS done
                FROM pg_stat_user_tables WHERE relid = 'action_triggers.delivery'::regclass
                """).singleRow()
            return stats["done"] == "t"
        }
        // The vacuum's connection is closed again once it is done.
        try await harness.waitUntil("the vacuum's connection is closed") {
            try harness.database.query("""
                SELECT count(*) AS n FROM pg_stat_activity
                WHERE datname = current_database() AND application_name = 'action-triggers/vacuum'
                """).singleRow().int("n") == 0
        }
    }

    @Test("vacuum replaces plans made on empty tables")
    func vacuumReplacesEmptyTablePlans() throws {
        let harness = try Harness()
        let connection = try harness.database.connect()
        defer { connection.close() }
        try connection.execute("SET client_min_messages = warning")
        try MigrationHelper.migrate(connection)
        try harness.createConfig(harness.exampleOneConfig())
        // As on the service's connections. The VACUUM records the empty tables' sizes,
        // as autovacuum does on an idle outbox.
        try connection.execute("SET plan_cache_mode = force_generic_plan")
        try connection.execute("SET enable_seqscan = off")
        try connection.execute("VACUUM action_triggers.event, action_triggers.delivery")
        try connection.execute("PREPARE dispatch(bigint, bigint, double precision) AS \(Dispatcher.dispatchSQL)")
        try connection.execute("EXECUTE dispatch(50, 0, 60)")

        try harness.database.query("""
            INSERT INTO myapp_customer (name, email)
            SELECT 'customer ' || n, 'c' || n || '@example.com' FROM generate_series(1, 2000) AS n
            """)
        let before = try Self.eventRowsRead(connection, executing: "EXECUTE dispatch(50, 0, 60)")
        let vacuum = OutboxVacuum(logger: Logger(component: "test-vacuum", level: .warning))
        // What 400 events with one webhook each count: dispatched, delivered, recorded.
        vacuum.rowsChanged(1_200)
        let vacuumConnection = try harness.database.connect()
        defer { vacuumConnection.close() }
        try vacuum.runIfDue(vacuumConnection)
        let after = try Self.eventRowsRead(connection, executing: "EXECUTE dispatch(50, 0, 60)")

        // The plan made on the empty tables reads every event to take a batch of 50.
        #expect(before >= 2000)
        #expect(after <= 200)
    }

    /// Runs `statement` under EXPLAIN ANALYZE in a transaction that is rolled back, and
    /// returns the rows that its scans of `action_triggers.event` read, over all loops.
    static func eventRowsRead(_ connection: PostgresConnection, executing statement: String) throws -> Int {
        try connection.execute("BEGIN")
        defer { _ = try? connection.execute("ROLLBACK") }
        let text = try connection.query("EXPLAIN (ANALYZE, FORMAT JSON) \(statement)").singleRow().string("QUERY PLAN")
        let document = try JSONSerialization.jsonObject(with: Data(text.utf8))
        let root = try #require((document as? [[String: Any]])?.first?["Plan"] as? [String: Any])
        return rowsRead(root, relation: "event")
    }

    /// Sums the rows that the scans of `relation` read in `node` and the nodes below it.
    static func rowsRead(_ node: [String: Any], relation: String) -> Int {
        var total = 0
        if node["Relation Name"] as? String == relation {
            let rows = (node["Actual Rows"] as? Int ?? 0) + (node["Rows Removed by Filter"] as? Int ?? 0)
            total += rows * (node["Actual Loops"] as? Int ?? 1)
        }
        for child in node["Plans"] as? [[String: Any]] ?? [] {
            total += rowsRead(child, relation: relation)
        }
        return total
    }
}
