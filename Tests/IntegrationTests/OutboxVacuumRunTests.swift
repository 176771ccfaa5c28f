import Foundation
import PostgresClient
import Testing

/// The service's own vacuum of the outbox, on its own thread and connection.
@Suite("Outbox vacuum", .serialized)
struct OutboxVacuumRunTests {
    @Test("service vacuums after 10,000 changes")
    func vacuumsAfterChanges() async throws {
        let harness = try Harness()
        let service = try await harness.startService()
        try harness.createConfig(harness.exampleOneConfig())

        // 5,100 deliveries created and 5,100 attempts recorded make 10,200 changes.
        try harness.database.query("""
            INSERT INTO myapp_customer (name, email)
            SELECT 'customer ' || n, 'c' || n || '@example.com' FROM generate_series(1, 5100) AS n
            """)
        try await harness.waitUntil("every delivery succeeds", timeout: .seconds(90)) {
            try harness.succeededDeliveries() == 5100
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
}
