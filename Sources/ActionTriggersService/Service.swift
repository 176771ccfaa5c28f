import ActionTriggersCore
import Foundation
import Logging
import PostgresClient

/// The running service: a listener, a dispatcher and a delivery worker, each on its own thread
/// with its own database connection.
public final class Service: Sendable {
    public struct Configuration: Sendable {
        public var databaseURL: String
        public var settings: Settings

        public init(databaseURL: String, settings: Settings) {
            self.databaseURL = databaseURL
            self.settings = settings
        }
    }

    private let configuration: Configuration
    private let logLevel: Logger.Level
    private let stop = StopFlag()
    private let finished = DispatchGroup()
    private let dispatcherWake = WakeSignal()
    private let deliveryWake = WakeSignal()

    public init(configuration: Configuration, logLevel: Logger.Level) {
        self.configuration = configuration
        self.logLevel = logLevel
    }

    /// Migrates the schema, publishes the settings' allowlists and starts the worker threads.
    public func start() throws {
        let logger = Logger(component: "service", level: logLevel)
        if configuration.settings.whitelistedWebhookEndpointPatterns == nil {
            logger.warning("whitelisted_webhook_endpoint_patterns is not set, so webhooks may target any http(s) URL")
        }

        let connection = try PostgresConnection(conninfo: configuration.databaseURL, applicationName: "action-triggers/migrate")
        try Migrator.migrate(connection, logger: Logger(component: "migrate", level: logLevel))
        try SettingsPublisher.publish(configuration.settings, to: connection)
        connection.close()

        let dispatcherWake = self.dispatcherWake
        let deliveryWake = self.deliveryWake
        let listener = Listener(
            conninfo: configuration.databaseURL, logger: Logger(component: "listener", level: logLevel), stop: stop,
            onWake: { dispatcherWake.raise() })
        let dispatcher = Dispatcher(
            conninfo: configuration.databaseURL, settings: configuration.settings,
            logger: Logger(component: "dispatcher", level: logLevel), stop: stop, wake: dispatcherWake,
            onDeliveriesCreated: { deliveryWake.raise() })
        let worker = DeliveryWorker(
            conninfo: configuration.databaseURL, settings: configuration.settings, renderer: RowImagePayload(), logger: Logger(component: "delivery", level: logLevel), stop: stop,
            wake: deliveryWake)

        startThread(named: "listener") { listener.run() }
        startThread(named: "dispatcher") { dispatcher.run() }
        startThread(named: "delivery") { worker.run() }
        logger.info("service started", ["version": Version.current])
    }

    /// Asks every thread to stop and waits up to `timeout` seconds for them to finish.
    ///
    /// An attempt in progress finishes first, bounded by its webhook timeout. A delivery
    /// whose result was not recorded is retried by the next instance after its lease.
    public func stopAndWait(timeout: Double) -> Bool {
        stop.set()
        dispatcherWake.raise()
        deliveryWake.raise()
        return finished.wait(timeout: .now() + timeout) == .success
    }

    private func startThread(named name: String, _ body: @escaping @Sendable () -> Void) {
        finished.enter()
        let thread = Thread { [finished] in
            body()
            finished.leave()
        }
        thread.name = "action-triggers/\(name)"
        thread.start()
    }
}
