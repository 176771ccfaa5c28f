import Logging
import PostgresClient

/// Holds a LISTEN connection on the wake-up channel and wakes the dispatcher.
///
/// NOTIFY is only a hint: the outbox table is the truth. So after every
/// (re)connect the listener wakes the dispatcher once, to catch up on events
/// committed while it was not listening.
final class Listener: Sendable {
    static let channel = "action_triggers_wakeup"

    private let conninfo: String
    private let logger: Logger
    private let stop: StopFlag
    private let onWake: @Sendable () -> Void
    private let reconnectPolicy = ReconnectPolicy()

    init(conninfo: String, logger: Logger, stop: StopFlag, onWake: @escaping @Sendable () -> Void) {
        self.conninfo = conninfo
        self.logger = logger
        self.stop = stop
        self.onWake = onWake
    }

    /// Runs until the stop flag is set; meant for a dedicated thread.
    func run() {
        var failures = 0
        while !stop.isSet {
            do {
                let connection = try PostgresConnection(conninfo: conninfo, applicationName: "action-triggers/listener")
                try connection.listen(Self.channel)
                if failures > 0 {
                    logger.info("listener reconnected", ["db.channel": Self.channel, "reconnect.attempts": failures])
                } else {
                    logger.info("listening for changes", ["db.channel": Self.channel])
                }
                failures = 0
                onWake()

                while !stop.isSet {
                    let notifications = try connection.waitForNotifications(timeout: .milliseconds(250))
                    if !notifications.isEmpty {
                        onWake()
                    }
                }
            } catch {
                failures += 1
                let delay = reconnectPolicy.delay(forAttempt: failures)
                logger.warning("listener connection failed, reconnecting", [
                    "error": String(describing: error), "reconnect.attempt": failures, "reconnect.delay_ms": delay.milliseconds,
                ])
                onWake()
                stop.sleep(seconds: delay.seconds)
            }
        }
    }
}

extension Duration {
    var seconds: Double {
        Double(components.seconds) + Double(components.attoseconds) / 1e18
    }

    var milliseconds: Int64 {
        components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000
    }
}
