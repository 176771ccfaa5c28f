import Foundation
import Logging
import PostgresClient
import Synchronization

/// Vacuums the outbox and delivery tables after heavy churn, ahead of autovacuum, and
/// analyzes them while they grow.
///
/// Every delivery leaves dead entries in the delivery indexes when it is updated, and
/// every dispatched event one in the dispatcher's index (`event_undispatched`).
/// Autovacuum visits a database at most once per `autovacuum_naptime`, 60 s by default
/// in PostgreSQL 15. So while a large backlog drains, the dead entries pile up at the
/// front of those indexes and every claim walks over them. Profiled on a backlog of
/// 100,000 events, record and next-due calls took 14 ms each, and under pgbench with a
/// capture trigger a claim took 26 ms.
///
/// A VACUUM removes the dead entries and updates the tables' size estimates, which also
/// replaces the plans cached for the old sizes. Column statistics taken while a table
/// was small mislead the planner as it grows, so an ANALYZE of the columns that the
/// service's queries filter on runs whenever the delivery table has doubled since the
/// last one. Only the first vacuum of a process always analyzes: ANALYZE reads a sample
/// of 30,000 rows and took 120 to 300 ms on tables of 30,000 to 100,000 rows, where the
/// VACUUM took 20 to 40 ms.
///
/// The vacuum runs on its own thread and connection, so dispatch and delivery go on
/// while it works.
final class OutboxVacuum: Sendable {
    /// Events dispatched, deliveries created and attempts recorded since the last vacuum.
    private let changes = Atomic<Int>(0)
    private let lastRun = Mutex<ContinuousClock.Instant?>(nil)
    /// The delivery table's estimated rows at the last ANALYZE of this process.
    private let analyzedRows = Mutex<Double?>(nil)
    /// The changes that start a vacuum, from the table size last read, so the thread
    /// connects only when a vacuum is likely due.
    private let threshold = Atomic<Int>(OutboxVacuum.minimumChanges)
    private let logger: Logger
    /// Raised when the change count crosses `minimumChanges`, and to stop the thread.
    let wake = WakeSignal()

    init(logger: Logger) {
        self.logger = logger
    }

    /// Counts dispatched events, created deliveries or recorded attempts, and wakes the
    /// vacuum thread when the count crosses `minimumChanges`; returns whether it did.
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
    ///
    /// The service's statements keep the generic plans made when they were first run
    /// on a connection, and a plan made while the tables were empty joins them as if
    /// they held one row. Under pgbench on a 2-core machine, such a dispatch statement
    /// compared each of 12,000 events in the table with each of the 500 in its batch,
    /// and took 3 s. `delete_old_events` took 1 s at 1,400 events (PostgreSQL 15,
    /// auto_explain). The VACUUM updates the tables' size estimates, which replaces
    /// those plans, so it runs once the tables have grown by a few hundred events. A
    /// VACUUM of tables that small takes a few milliseconds.
    static let minimumChanges = 1_000

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

    /// Decides whether a vacuum also analyzes: on the first vacuum of the process, and
    /// when the delivery table has doubled since the last ANALYZE. `tableRows` is as for
    /// `isDue`, and `analyzedRows` is its value at the last ANALYZE, nil before the first.
    static func needsAnalyze(tableRows: Double, analyzedRows: Double?) -> Bool {
        guard let analyzedRows else { return true }
        return tableRows >= 2 * max(analyzedRows, Double(minimumChanges) / 2)
    }

    /// Analyzes the columns whose statistics the planner uses for the service's own
    /// queries. The JSON columns are left out, because their statistics are the costly
    /// part of an ANALYZE.
    static let analyzeSQL = """
        ANALYZE (SKIP_LOCKED) action_triggers.event (id, dispatched_at, table_oid),
            action_triggers.delivery (target, status, next_attempt_at, webhook_id, msg_broker_queue_id, row_key, model,
                                      event_id, config_id)
        """

    /// Returns the number of changes that makes a vacuum due for a delivery table of
    /// `tableRows` rows.
    static func threshold(tableRows: Double) -> Double {
        max(Double(minimumChanges), max(tableRows, 0) * tableFraction)
    }

    /// Runs VACUUM on the event and delivery tables when enough rows changed since the
    /// last run, and ANALYZE when `needsAnalyze` returns true. SKIP_LOCKED skips a table that
    /// autovacuum or another instance is vacuuming, so the caller does not wait for
    /// another vacuum's lock.
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
        try connection.execute("VACUUM (SKIP_LOCKED) action_triggers.event, action_triggers.delivery")
        let analyze = Self.needsAnalyze(tableRows: tableRows, analyzedRows: analyzedRows.withLock { $0 })
        if analyze {
            try connection.execute(Self.analyzeSQL)
            analyzedRows.withLock { $0 = max(tableRows, 0) }
        }
        lastRun.withLock { $0 = .now }
        logger.debug("vacuumed the outbox", [
            "vacuum.changes": count, "vacuum.analyzed": analyze, "vacuum.seconds": (ContinuousClock.now - started).seconds,
        ])
    }
}
