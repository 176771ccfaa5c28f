import Foundation
import Logging
import PostgresClient
import Synchronization

/// Vacuums and analyzes the outbox and delivery tables after heavy churn, ahead of autovacuum.
///
/// Each delivery leaves two dead entries in the claim's index (`delivery_due`): one
/// when it is claimed and one when its attempt is recorded. Autovacuum visits a
/// database at most once per `autovacuum_naptime`, 60 s by default in PostgreSQL 15.
/// So while a large backlog drains, the dead entries pile up at the front of that
/// index and every claim walks over them. Worse, generic plans cached while the tables were nearly empty
/// keep scanning every pending delivery as the tables grow. Profiled on a backlog of
/// 100,000 events, record and next-due calls took 14 ms each, and under pgbench
/// with a capture trigger a claim took 26 ms. A VACUUM (ANALYZE) removes the dead
/// entries and refreshes the statistics, which also replaces those cached plans.
///
/// The vacuum runs on its own thread and connection, so dispatch and delivery go on
/// while it works (about 55 ms under pgbench and 370 ms on a 100,000-event backlog
/// in profiled runs).
final class OutboxVacuum: Sendable {
    /// Deliveries created and attempts recorded since the last vacuum.
    private let changes = Atomic<Int>(0)
    private let lastRun = Mutex<ContinuousClock.Instant?>(nil)
    /// The changes that start a vacuum, from the table size last read, so the thread
    /// connects only when a vacuum is likely due.
    private let threshold = Atomic<Int>(OutboxVacuum.minimumChanges)
    private let logger: Logger
    /// Raised when the change count crosses `minimumChanges`, and to stop the thread.
    let wake = WakeSignal()

    init(logger: Logger) {
        self.logger = logger
    }

    /// Counts created deliveries or recorded attempts, and wakes the vacuum thread when
    /// the count crosses `minimumChanges`; returns whether it did.
    @discardableResult
    func rowsChanged(_ count: Int) -> Bool {
        guard count > 0 else { return false }
        let before = changes.add(count, ordering: .relaxed).oldValue
        let crossed = before < Self.minimumChanges && before + count >= Self.minimumChanges
        if crossed {
            wake.raise()
        }
        return crossed
    }

    /// Runs until the stop flag is set: waits for a wake-up or the poll interval, and
    /// when enough rows changed, vacuums on a connection opened for that vacuum only,
    /// so an idle service keeps no extra connection open. Meant for a dedicated thread.
    func run(conninfo: String, stop: StopFlag, pollInterval: Double) {
        var failures = 0
        while !stop.isSet {
            wake.wait(timeout: pollInterval)
            guard !stop.isSet, changes.load(ordering: .relaxed) >= threshold.load(ordering: .relaxed) else { continue }
            do {
                let connection = try PostgresConnection(conninfo: conninfo, applicationName: "action-triggers/vacuum")
                defer { connection.close() }
                try runIfDue(connection)
                failures = 0
            } catch {
                // The service works without the vacuum, only slower, so it is tried again
                // at the next poll. The first failure and every tenth are logged.
                failures += 1
                if failures == 1 || failures % 10 == 0 {
                    logger.warning("outbox vacuum failed", ["error": String(describing: error), "vacuum.failures": failures])
                }
            }
        }
    }

    /// The minimum number of changes that starts a vacuum.
    static let minimumChanges = 2_000

    /// The share of the delivery table's rows that must have changed since the last
    /// vacuum. A full pass over a large table's indexes costs more than the dead entries
    /// do, so the threshold grows with the table, as autovacuum's scale factor does.
    static let tableFraction = 0.1

    /// The shortest time between two vacuums.
    static let minimumInterval = Duration.seconds(1)

    /// Decides whether a vacuum is due; `tableRows` is the planner's row estimate of
    /// `action_triggers.delivery` (negative when never analyzed).
    static func isDue(changesSinceLast: Int, sinceLastRun: Duration?, tableRows: Double) -> Bool {
        if let sinceLastRun, sinceLastRun < minimumInterval {
            return false
        }
        return Double(changesSinceLast) >= threshold(tableRows: tableRows)
    }

    /// Returns the number of changes that makes a vacuum due for a delivery table of
    /// `tableRows` rows.
    static func threshold(tableRows: Double) -> Double {
        max(Double(minimumChanges), max(tableRows, 0) * tableFraction)
    }

    /// Runs VACUUM (ANALYZE) on the event and delivery tables when enough rows changed
    /// since the last run. SKIP_LOCKED skips a table that autovacuum or another
    /// instance is vacuuming, so the caller does not wait for another vacuum's lock.
    func runIfDue(_ connection: PostgresConnection) throws {
        let count = changes.load(ordering: .relaxed)
        guard count >= Self.minimumChanges else { return }
        let sinceLastRun = lastRun.withLock { $0.map { ContinuousClock.now - $0 } }
        if let sinceLastRun, sinceLastRun < Self.minimumInterval {
            return
        }
        let tableRows = try connection.query(
            "SELECT reltuples::float8 AS rows FROM pg_class WHERE oid = 'action_triggers.delivery'::regclass"
        ).singleRow().double("rows")
        threshold.store(Int(Self.threshold(tableRows: tableRows)), ordering: .relaxed)
        guard Self.isDue(changesSinceLast: count, sinceLastRun: sinceLastRun, tableRows: tableRows) else { return }

        let started = ContinuousClock.now
        changes.subtract(count, ordering: .relaxed)
        try connection.execute("VACUUM (ANALYZE, SKIP_LOCKED) action_triggers.event, action_triggers.delivery")
        lastRun.withLock { $0 = .now }
        logger.debug("vacuumed the outbox", [
            "vacuum.changes": count, "vacuum.seconds": (ContinuousClock.now - started).seconds,
        ])
    }
}
