import Logging
import PostgresClient

/// Runs a worker's body on its own database connection, reconnecting with backoff when it fails.
///
/// Failures are logged as warnings with the error and attempt number: the first three
/// of an outage, then every tenth, so a long outage cannot flood the log. The first
/// connection after failures is logged as `reconnected`, with the same limit. The backoff grows with every
/// failure until a connection has worked for `healthyAfter`, so a database that accepts
/// connections but fails every query is not retried in a tight loop.
struct ReconnectingLoop {
    let conninfo: String
    let applicationName: String
    let logger: Logger
    let stop: StopFlag
    /// The component marked not ready while its connection is failing.
    let health: (ServiceHealth, ServiceHealth.Component)?
    var metrics: ServiceMetrics?
    var policy = ReconnectPolicy()
    var healthyAfter: Duration = .seconds(30)

    /// Runs `body` until it returns, or until the stop flag is set after a failure.
    ///
    /// `body` gets a fresh connection and whether it follows a failure.
    /// `waitBeforeRetry` spends the backoff delay; by default it sleeps until the
    /// delay passes or the service stops. `shouldRetry` may end the loop after a failure.
    func run(
        waitBeforeRetry: ((Duration) -> Void)? = nil,
        shouldRetry: ((_ failures: Int) -> Bool)? = nil,
        _ body: (_ connection: PostgresConnection, _ afterFailure: Bool) throws -> Void
    ) {
        var failures = 0
        while true {
            var connectedAt: ContinuousClock.Instant?
            do {
                let connection = try PostgresConnection(conninfo: conninfo, applicationName: applicationName)
                // The service's own commits need not wait for the WAL flush: a crash can undo
                // at most the last few dispatches or attempt records, which are then repeated
                // (at least once, with the same webhook-id). The application's commits, which
                // write the events, keep their own setting. Skipping the flush keeps the service
                // from queueing the application's commits behind its own.
                try connection.execute("SET synchronous_commit = off")
                // The cost estimates of the claim and dispatch statements can pass
                // jit_above_cost (100,000 by default) on a large backlog. PostgreSQL then
                // compiles them with LLVM on every execution, which took 20 to 70 ms for a
                // claim that runs in under 1 ms without it (PostgreSQL 15, perf profile).
                try connection.execute("SET jit = off")
                // A statement prepared while the outbox was small keeps its generic plan as
                // the tables grow, and a sequential scan is the cheapest plan on a small
                // table. A next-due query planned that way took 600 ms on a delivery table
                // of 30,000 rows, where its index scan takes 0.3 ms. Every statement of the
                // service's threads finds its rows through an index, so sequential scans
                // are ruled out unless no index applies.
                try connection.execute("SET enable_seqscan = off")
                // With the default plan_cache_mode (auto), PostgreSQL planned the prepared
                // claim and dispatch statements again on every execution. Draining a backlog
                // of 100,000 events, that took 0.5 ms per claim and 3.6 ms per dispatch
                // statement (PostgreSQL 15, pg_stat_statements). A generic plan is made once
                // per connection, and again after an ANALYZE of its tables.
                try connection.execute("SET plan_cache_mode = force_generic_plan")
                connectedAt = .now
                let afterFailure = failures > 0
                if afterFailure && (failures <= 3 || failures % 10 == 0) {
                    logger.info("reconnected", ["reconnect.attempts": failures])
                }
                try body(connection, afterFailure)
                return
            } catch {
                if let (health, component) = health {
                    health.set(component, ready: false)
                    metrics?.recordDatabaseError(component)
                }
                if let connectedAt, ContinuousClock.now - connectedAt >= healthyAfter {
                    failures = 0
                }
                failures += 1
                let delay = policy.delay(forAttempt: failures)
                if failures <= 3 || failures % 10 == 0 {
                    logger.warning("database error, reconnecting", [
                        "error": String(describing: error), "reconnect.attempt": failures,
                        "reconnect.delay_ms": delay.milliseconds,
                    ])
                }
                if let waitBeforeRetry {
                    waitBeforeRetry(delay)
                } else {
                    stop.sleep(seconds: delay.seconds)
                }
                let retry = shouldRetry?(failures) ?? !stop.isSet
                if !retry {
                    return
                }
            }
        }
    }
}
