import Logging
import PostgresClient

/// Runs a worker's body on its own database connection, reconnecting with backoff when it fails.
///
/// Every failure is logged as a warning with the error and attempt number, and the
/// first connection after failures as `reconnected`, so each outage shows in the log.
struct ReconnectingLoop {
    let conninfo: String
    let applicationName: String
    let logger: Logger
    let stop: StopFlag
    var policy = ReconnectPolicy()

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
            do {
                let connection = try PostgresConnection(conninfo: conninfo, applicationName: applicationName)
                let afterFailure = failures > 0
                if afterFailure {
                    logger.info("reconnected", ["reconnect.attempts": failures])
                }
                failures = 0
                try body(connection, afterFailure)
                return
            } catch {
                failures += 1
                let delay = policy.delay(forAttempt: failures)
                logger.warning("database connection failed, reconnecting", [
                    "error": String(describing: error), "reconnect.attempt": failures,
                    "reconnect.delay_ms": delay.milliseconds,
                ])
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
