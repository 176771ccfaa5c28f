import Foundation
import Logging
import PostgresClient
import Synchronization

/// Vacuums and analyzes the outbox and delivery tables after heavy churn, ahead of autovacuum.
///
/// Each delivery leaves two dead entries in the claim's index (`delivery_due`): one
/// when it is claimed and one when its attempt is recorded. Autovacuum visits a
/// database at most once per `autovacuum_naptime` (60 s by default), so while a large
/// backlog drains, the dead entries pile up at the front of that index and every claim
/// walks over them. Profiled on a backlog of 100,000 events, claims and the
/// next-due check grew to 14 ms per call this way, and generic plans made while the
/// table was empty scanned every pending delivery. A VACUUM (ANALYZE) removes the dead
/// entries and refreshes the statistics, which also replaces those cached plans.
final class OutboxVacuum: Sendable {
    /// Deliveries finished since the last vacuum.
    private let finished = Atomic<Int>(0)
    private let lastRun = Mutex<ContinuousClock.Instant?>(nil)
    private let logger: Logger

    init(logger: Logger) {
        self.logger = logger
    }

    /// Counts finished deliveries and returns true when the count crosses `minimumDeliveries`,
    /// so the caller can wake the thread that runs the vacuum.
    func deliveriesFinished(_ count: Int) -> Bool {
        guard count > 0 else { return false }
        let before = finished.add(count, ordering: .relaxed).oldValue
        return before < Self.minimumDeliveries && before + count >= Self.minimumDeliveries
    }

    /// The fewest finished deliveries that start a vacuum.
    static let minimumDeliveries = 10_000

    /// The share of the delivery table's rows that must have finished since the last
    /// vacuum. A full pass over a large table's indexes costs more than the dead entries
    /// do, so the threshold grows with the table, as autovacuum's scale factor does.
    static let tableFraction = 0.1

    /// The shortest time between two vacuums.
    static let minimumInterval = Duration.seconds(1)

    /// Decides whether a vacuum is due; `tableRows` is the planner's row estimate of
    /// `action_triggers.delivery` (negative when never analyzed).
    static func isDue(finishedSinceLast: Int, sinceLastRun: Duration?, tableRows: Double) -> Bool {
        if let sinceLastRun, sinceLastRun < minimumInterval {
            return false
        }
        let threshold = max(Double(minimumDeliveries), max(tableRows, 0) * tableFraction)
        return Double(finishedSinceLast) >= threshold
    }

    /// Runs VACUUM (ANALYZE) on the event and delivery tables when enough deliveries
    /// finished since the last run. SKIP_LOCKED skips a table that autovacuum or another
    /// instance is vacuuming, so the caller never waits for it.
    func runIfDue(_ connection: PostgresConnection) throws {
        let count = finished.load(ordering: .relaxed)
        guard count >= Self.minimumDeliveries else { return }
        let sinceLastRun = lastRun.withLock { $0.map { ContinuousClock.now - $0 } }
        if let sinceLastRun, sinceLastRun < Self.minimumInterval {
            return
        }
        let tableRows = try connection.query(
            "SELECT reltuples::float8 AS rows FROM pg_class WHERE oid = 'action_triggers.delivery'::regclass"
        ).singleRow().double("rows")
        guard Self.isDue(finishedSinceLast: count, sinceLastRun: sinceLastRun, tableRows: tableRows) else { return }

        let started = ContinuousClock.now
        finished.subtract(count, ordering: .relaxed)
        try connection.execute("VACUUM (ANALYZE, SKIP_LOCKED) action_triggers.event, action_triggers.delivery")
        lastRun.withLock { $0 = .now }
        logger.debug("vacuumed the outbox", [
            "vacuum.deliveries": count, "vacuum.seconds": (ContinuousClock.now - started).seconds,
        ])
    }
}
