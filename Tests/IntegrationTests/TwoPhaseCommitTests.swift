@testable import ActionTriggersService
import Foundation
import PostgresClient
import Testing

/// Captures in transactions that the application prepares (`PREPARE TRANSACTION`),
/// which PostgreSQL allows only without a NOTIFY. The test cluster runs with
/// `max_prepared_transactions` above zero (scripts/lib/postgres.sh).
@Suite("Two-phase commit", .serialized)
struct TwoPhaseCommitTests {
    typealias Setup = CaptureWakeTests.Setup

    static let insertCustomer = CaptureWakeTests.insertCustomer

    /// Returns a transaction identifier no other test uses.
    static func transactionID() -> String {
        "action_triggers_test_\(UUID().uuidString)"
    }

    /// Returns the number of events in the outbox.
    static func events(_ setup: Setup) throws -> Int {
        try setup.harness.database.query("SELECT count(*) AS n FROM action_triggers.event").singleRow().int("n")
    }

    /// Rolls back the prepared transaction `id` if it is still prepared, so that the
    /// test's database can be dropped after a failure.
    static func discardPrepared(_ id: String, on connection: PostgresConnection) {
        let stillPrepared = try? connection.query(
            "SELECT count(*) AS n FROM pg_prepared_xacts WHERE gid = $1", [id]).singleRow().int("n")
        if stillPrepared == 1 {
            _ = try? connection.query("ROLLBACK PREPARED '\(id)'")
        }
    }

    @Test("prepare fails while captures notify")
    func prepareFailsWithNotify() throws {
        let setup = try Setup()
        let writer = try setup.harness.database.connect()
        let id = Self.transactionID()
        defer { Self.discardPrepared(id, on: writer) }

        try writer.query("BEGIN")
        try writer.query(Self.insertCustomer)
        let error = #expect(throws: PostgresError.self) {
            try writer.query("PREPARE TRANSACTION '\(id)'")
        }
        #expect(error?.message.contains("NOTIFY") == true)
        #expect(try Self.events(setup) == 0)
    }

    @Test("notify off lets a prepared transaction capture")
    func notifyOffPrepares() throws {
        let setup = try Setup()
        let writer = try setup.harness.database.connect()
        let id = Self.transactionID()
        defer { Self.discardPrepared(id, on: writer) }

        try writer.query("SET action_triggers.notify = off")
        try writer.query("BEGIN")
        try writer.query(Self.insertCustomer)
        try writer.query("PREPARE TRANSACTION '\(id)'")
        #expect(try Self.events(setup) == 0)
        try writer.query("COMMIT PREPARED '\(id)'")

        #expect(try Self.events(setup) == 1)
        #expect(try !setup.notified())
    }

    @Test("notify setting values", arguments: [
        ("off", false), ("FALSE", false), (" no ", false), ("0", false),
        ("on", true), ("true", true), ("maybe", true), ("", true),
    ])
    func settingValues(value: String, notifies: Bool) throws {
        let setup = try Setup()
        let writer = try setup.harness.database.connect()
        try writer.query("SELECT set_config('action_triggers.notify', $1, false)", [value])
        try writer.query(Self.insertCustomer)

        #expect(try setup.notified() == notifies, "action_triggers.notify = '\(value)'")
        #expect(try Self.events(setup) == 1)
    }

    @Test("service delivers a prepared capture at its poll")
    func serviceDeliversAtPoll() async throws {
        let harness = try Harness()
        try await harness.startService(settings: Harness.settings(allowing: [harness.receiver], pollInterval: 0.5))
        try harness.createConfig(harness.exampleOneConfig())
        let writer = try harness.database.connect()
        let id = Self.transactionID()
        defer { Self.discardPrepared(id, on: writer) }

        try writer.query("SET action_triggers.notify = off")
        try writer.query("BEGIN")
        try writer.query("INSERT INTO myapp_customer (name, email) VALUES ('prepared', 'p@example.com')")
        try writer.query("PREPARE TRANSACTION '\(id)'")
        try writer.query("COMMIT PREPARED '\(id)'")

        try await harness.waitUntil("the prepared transaction's change arrives", timeout: .seconds(10)) {
            harness.requests(to: "/customer").count == 1
        }
        let body = try jsonObject(try #require(harness.requests(to: "/customer").first))
        #expect(body["name"] as? String == "prepared")
    }
}
