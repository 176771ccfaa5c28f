@testable import ActionTriggersService
import Foundation
import PostgresClient
import Testing

/// The capture trigger's NOTIFY, which it skips while a dispatcher holds the
/// "dispatching" lock, and the dispatcher's check for captures in progress.
@Suite("Capture wake-up", .serialized)
struct CaptureWakeTests {
    /// A migrated database with capture triggers on myapp_customer and a connection
    /// that listens on the wake-up channel.
    struct Setup {
        let harness: Harness
        let listener: PostgresConnection

        init() throws {
            harness = try Harness()
            let connection = try harness.database.connect()
            try connection.execute("SET client_min_messages = warning")
            try MigrationHelper.migrate(connection)
            connection.close()
            try harness.createConfig(harness.exampleOneConfig())
            listener = try harness.database.connect()
            try listener.listen(Listener.channel)
        }

        /// Opens a connection that holds the "dispatching" lock, as a busy dispatcher does.
        func busyDispatcher() throws -> PostgresConnection {
            let dispatcher = try harness.database.connect()
            #expect(try dispatcher.query(Dispatcher.takeDispatchingLockSQL).singleRow().bool("taken"))
            return dispatcher
        }

        /// Returns whether a NOTIFY arrives within `timeout`.
        func notified(within timeout: Duration = .milliseconds(300)) throws -> Bool {
            !(try listener.waitForNotifications(timeout: timeout)).isEmpty
        }
    }

    static let insertCustomer = "INSERT INTO myapp_customer (name, email) VALUES ('n', 'n@example.com')"

    @Test("capture notifies without a busy dispatcher")
    func notifiesWhenIdle() throws {
        let setup = try Setup()
        try setup.harness.database.query(Self.insertCustomer)
        #expect(try setup.notified())
    }

    @Test("capture skips NOTIFY while dispatching")
    func skipsWhileDispatching() throws {
        let setup = try Setup()
        let dispatcher = try setup.busyDispatcher()

        let writer = try setup.harness.database.connect()
        try writer.query("BEGIN")
        try writer.query(Self.insertCustomer)
        // The open transaction holds "capturing", so the dispatcher's check fails.
        #expect(try !dispatcher.query(Dispatcher.noCaptureInProgressSQL).singleRow().bool("free"))
        try writer.query("COMMIT")
        #expect(try !setup.notified())
        #expect(try dispatcher.query(Dispatcher.noCaptureInProgressSQL).singleRow().bool("free"))

        // With the lock released, captures notify again.
        #expect(try dispatcher.query(Dispatcher.releaseDispatchingLockSQL).singleRow().bool("released"))
        try writer.query(Self.insertCustomer)
        #expect(try setup.notified())
    }

    @Test("capture notifies during a dispatcher's check")
    func notifiesDuringCheck() throws {
        let setup = try Setup()
        let dispatcher = try setup.busyDispatcher()
        // A check holds "capturing" exclusively for a moment, and this connection holds it for the whole test.
        let checker = try setup.harness.database.connect()
        let takeCapturing = "SELECT pg_try_advisory_lock(\(Dispatcher.advisoryLockClass), 2) AS taken"
        #expect(try checker.query(takeCapturing).singleRow().bool("taken"))

        try setup.harness.database.query(Self.insertCustomer)
        #expect(try setup.notified())
        // The dispatcher still holds "dispatching", so only the check made the capture notify.
        let stillDispatching = """
            SELECT count(*) = 1 AS held FROM pg_locks
            WHERE locktype = 'advisory' AND classid = \(Dispatcher.advisoryLockClass) AND objid = 1
              AND pid = pg_backend_pid() AND granted
            """
        #expect(try dispatcher.query(stillDispatching).singleRow().bool("held"))
    }

    @Test("rolled-back capture sends nothing")
    func rolledBackSendsNothing() throws {
        let setup = try Setup()
        let writer = try setup.harness.database.connect()
        try writer.query("BEGIN")
        try writer.query(Self.insertCustomer)
        try writer.query("ROLLBACK")
        #expect(try !setup.notified())
    }

    @Test("capture during a stream is sent before the poll")
    func straggler() async throws {
        let harness = try Harness()
        try await harness.startService()
        try harness.createConfig(harness.exampleOneConfig())
        let dispatcherLock = """
            SELECT count(*) AS held FROM pg_locks
            WHERE locktype = 'advisory' AND classid = \(Dispatcher.advisoryLockClass) AND objid = 1 AND granted
            """

        // A stream of single-row commits makes the dispatcher busy; the straggler's
        // transaction captures while it is.
        let stream = try harness.database.connect()
        let straggler = try harness.database.connect()
        var streamed = 0
        var captured = false
        while !captured && streamed < 2000 {
            for _ in 0..<5 {
                try stream.query(Self.insertCustomer)
                streamed += 1
            }
            guard try stream.query(dispatcherLock).singleRow().int("held") == 1 else {
                continue
            }
            try straggler.query("BEGIN")
            try straggler.query("INSERT INTO myapp_customer (name, email) VALUES ('straggler', 's@example.com')")
            if try stream.query(dispatcherLock).singleRow().int("held") == 1 {
                captured = true
            } else {
                try straggler.query("ROLLBACK")
            }
        }
        try #require(captured, "the dispatcher never held its lock during \(streamed) commits")

        // The stream ends, so the dispatcher releases its lock and waits for the
        // straggler, which commits later without a NOTIFY.
        _ = try await harness.receiver.waitForRequests(count: streamed, timeout: .seconds(30))
        try await Task.sleep(for: .milliseconds(300))
        #expect(try stream.query(dispatcherLock).singleRow().int("held") == 0)
        try straggler.query("COMMIT")
        let committed = ContinuousClock.now

        let requests = try await harness.receiver.waitForRequests(count: streamed + 1, timeout: .seconds(30))
        let arrival = try #require(requests.first { (try? jsonObject($0)["name"] as? String) == "straggler" }?.receivedAt)
        // The poll interval is 5 s, with jitter down to 4 s: an arrival before 2 s
        // means the dispatcher found the straggler on its own.
        #expect(arrival - committed < .seconds(2))
    }
}
