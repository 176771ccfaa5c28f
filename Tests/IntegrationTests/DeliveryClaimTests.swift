@testable import ActionTriggersService
import Foundation
import PostgresClient
import Testing

/// The delivery worker's claim statement that also writes finished attempts
/// (`DeliveryStore.recordAndClaimSQL`), run against a migrated database without
/// the service.
@Suite("Claim with records", .serialized)
struct DeliveryClaimTests {
    /// A migrated database with the example config and `rows` pending webhook deliveries.
    struct Setup {
        let harness: Harness
        let connection: PostgresConnection

        init(rows: Int) throws {
            harness = try Harness()
            connection = try harness.database.connect()
            try connection.execute("SET client_min_messages = warning")
            try MigrationHelper.migrate(connection)
            try harness.createConfig(harness.exampleOneConfig())
            try harness.database.query("""
                INSERT INTO myapp_customer (name, email)
                SELECT 'customer ' || n, 'c' || n || '@example.com' FROM generate_series(1, $1::int) AS n
                """, [String(rows)])
            // No request slot is reserved, so every delivery is created pending.
            let dispatched = try connection.queryPrepared(Dispatcher.dispatchSQL, ["500", "0", "60"]).singleRow()
            #expect(try dispatched.int("deliveries") == rows)
        }

        func claim(recording records: [AttemptRecord], limit: Int) throws -> [ClaimedDelivery] {
            try DeliveryStore.claim(connection, recording: records, limit: limit, leaseSeconds: 60) { _ in }
        }

        func delivery(_ id: Int64) throws -> PostgresRow {
            try harness.database.query("""
                SELECT d.status, d.attempts,
                       (SELECT count(*) FROM action_triggers.delivery_attempt a WHERE a.delivery_id = d.id) AS logged
                FROM action_triggers.delivery d WHERE d.id = $1
                """, [String(id)]).singleRow()
        }
    }

    static func succeeded(_ delivery: ClaimedDelivery) -> AttemptRecord {
        AttemptRecord(
            id: delivery.id, attempt: delivery.attempt, status: "succeeded", delaySecs: 0, statusCode: 200, error: nil,
            startedAt: Date().timeIntervalSince1970, durationMs: 1, outcome: "succeeded")
    }

    @Test("records and claims in one statement")
    func recordsAndClaims() throws {
        let setup = try Setup(rows: 3)
        let first = try setup.claim(recording: [], limit: 1)
        #expect(first.count == 1)

        let next = try setup.claim(recording: first.map(Self.succeeded), limit: 5)

        #expect(next.map(\.id).sorted() == [first[0].id + 1, first[0].id + 2])
        let recorded = try setup.delivery(first[0].id)
        #expect(recorded["status"] == "succeeded")
        #expect(try recorded.int("attempts") == 1)
        #expect(try recorded.int("logged") == 1)
        for delivery in next {
            #expect(try setup.delivery(delivery.id)["status"] == "in_flight")
        }
    }

    @Test("expired lease being recorded is not claimed")
    func expiredLeaseRecorded() throws {
        let setup = try Setup(rows: 2)
        let first = try setup.claim(recording: [], limit: 1)
        #expect(first.count == 1)
        // The outcome arrives after the lease ran out, as after a long database outage.
        try setup.harness.database.query(
            "UPDATE action_triggers.delivery SET next_attempt_at = now() - interval '1 minute' WHERE id = $1",
            [String(first[0].id)])

        let next = try setup.claim(recording: first.map(Self.succeeded), limit: 5)

        #expect(next.map(\.id) == [first[0].id + 1])
        let recorded = try setup.delivery(first[0].id)
        #expect(recorded["status"] == "succeeded")
        #expect(try recorded.int("attempts") == 1)
        #expect(try recorded.int("logged") == 1)
    }
}
