import Logging
import PostgresClient

/// Holds a LISTEN connection on the wake-up channel and wakes the dispatcher.
///
/// NOTIFY is only a hint: the outbox table is the truth. So after every
/// (re)connect the listener wakes the dispatcher once, to catch up on events
/// committed while it was not listening.
final class Listener: Sendable {
    static let channel = "action_triggers_wakeup"

    /// The shortest time between two wake-ups. Every committed change sends a
    /// notification, and waking for each one cost more CPU than the dispatch itself at
    /// thousands of commits a second. Notifications that arrive during the pause are
    /// read after it, with one wake-up, and a change waits at most this long for it.
    static let wakeInterval = Duration.milliseconds(2)

    private let conninfo: String
    private let logger: Logger
    private let stop: StopFlag
    private let onWake: @Sendable () -> Void
    private let health: ServiceHealth
    private let metrics: ServiceMetrics

    init(
        conninfo: String, logger: Logger, stop: StopFlag, health: ServiceHealth, metrics: ServiceMetrics,
        onWake: @escaping @Sendable () -> Void
    ) {
        self.health = health
        self.metrics = metrics
        self.conninfo = conninfo
        self.logger = logger
        self.stop = stop
        self.onWake = onWake
    }

    /// Runs until the stop flag is set; meant for a dedicated thread.
    func run() {
        let loop = ReconnectingLoop(
            conninfo: conninfo, applicationName: "action-triggers/listener", logger: logger, stop: stop,
            health: (health, .listener), metrics: metrics)
        // While the listener is down, the dispatcher polls at every reconnect attempt.
        loop.run(waitBeforeRetry: { delay in
            self.onWake()
            self.stop.sleep(seconds: delay.seconds)
        }) { connection, afterFailure in
            try connection.listen(Self.channel)
            health.set(.listener, ready: true)
            if !afterFailure {
                logger.info("listening for changes", ["db.channel": Self.channel])
            }
            onWake()

            while !stop.isSet {
                let notifications = try connection.waitForNotifications(timeout: .milliseconds(250))
                if !notifications.isEmpty {
                    onWake()
                    stop.sleep(seconds: Self.wakeInterval.seconds)
                }
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
