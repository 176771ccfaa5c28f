import ActionTriggersCore
import Foundation
import KafkaClient
import HTTPServer
import Logging
import PostgresClient
import Synchronization

/// The running service: a listener, a dispatcher and a delivery worker, each on its own thread
/// with its own database connection, and an HTTP server for health and readiness.
public final class Service: Sendable {
    public struct Configuration: Sendable {
        public var databaseURL: String
        public var settings: Settings
        public var listen: ListenAddress
        /// When set, requests under `/api/` need `Authorization: Bearer <token>`.
        public var apiToken: String?

        public init(databaseURL: String, settings: Settings, listen: ListenAddress, apiToken: String?) {
            self.databaseURL = databaseURL
            self.settings = settings
            self.listen = listen
            self.apiToken = apiToken
        }
    }

    private let configuration: Configuration
    private let logLevel: Logger.Level
    private let stop = StopFlag()
    private let finished = DispatchGroup()
    private let dispatcherWake = WakeSignal()
    private let deliveryWake = WakeSignal()
    private let brokerWake = WakeSignal()
    private let health = ServiceHealth()
    private let metrics = ServiceMetrics(version: Version.current)
    private let httpServer = Mutex<HTTPServer?>(nil)
    private let vacuum: OutboxVacuum

    public init(configuration: Configuration, logLevel: Logger.Level) {
        self.configuration = configuration
        self.logLevel = logLevel
        vacuum = OutboxVacuum(logger: Logger(component: "vacuum", level: logLevel))
    }

    /// Migrates the schema, publishes the settings' allowlists and starts the worker threads.
    public func start() throws {
        let logger = Logger(component: "service", level: logLevel)
        let listen = configuration.listen
        if !listen.isLoopback && (configuration.apiToken ?? "").isEmpty {
            throw ServiceError.configuration(
                "refusing to listen on \(listen.host):\(listen.port) without ACTION_TRIGGERS_API_TOKEN: "
                    + "set a token, or listen on a loopback address such as 127.0.0.1")
        }
        if configuration.settings.whitelistedWebhookEndpointPatterns == nil {
            logger.warning("whitelisted_webhook_endpoint_patterns is not set, so webhooks may target any http(s) URL")
        }

        let connection = try PostgresConnection(conninfo: configuration.databaseURL, applicationName: "action-triggers/migrate")
        try Migrator.migrate(connection, logger: Logger(component: "migrate", level: logLevel))
        try SettingsPublisher.publish(configuration.settings, to: connection)
        try checkBrokers(connection, logger: logger)
        StartupAudit.run(connection, settings: configuration.settings, logger: logger)
        connection.close()

        let dispatcherWake = self.dispatcherWake
        let deliveryWake = self.deliveryWake
        let brokerWake = self.brokerWake
        let dynamicValues = DynamicValueResolver(definitions: configuration.settings.dynamicValues)
        let vacuum = self.vacuum
        let handoff = DeliveryHandoff(slots: configuration.settings.deliveryConcurrency)
        let onAttemptsRecorded: @Sendable (Int) -> Void = { count in
            vacuum.rowsChanged(count)
        }
        let listener = Listener(
            conninfo: configuration.databaseURL, logger: Logger(component: "listener", level: logLevel), stop: stop,
            health: health, metrics: metrics, onWake: { dispatcherWake.raise() })
        let dispatcher = Dispatcher(
            conninfo: configuration.databaseURL, settings: configuration.settings,
            logger: Logger(component: "dispatcher", level: logLevel), stop: stop, wake: dispatcherWake, health: health,
            metrics: metrics, vacuum: vacuum, handoff: handoff,
            onDeliveriesCreated: { webhooks, brokers in
                // A worker woken for nothing would run a claim that finds nothing.
                if webhooks {
                    deliveryWake.raise()
                }
                if brokers {
                    brokerWake.raise()
                }
            })
        let worker = DeliveryWorker(
            conninfo: configuration.databaseURL, settings: configuration.settings,
            logger: Logger(component: "delivery", level: logLevel), stop: stop, wake: deliveryWake, health: health,
            metrics: metrics, dynamicValues: dynamicValues, handoff: handoff, onAttemptsRecorded: onAttemptsRecorded)
        let brokerWorker = BrokerWorker(
            conninfo: configuration.databaseURL, settings: configuration.settings,
            logger: Logger(component: "broker", level: logLevel), stop: stop, wake: brokerWake, health: health,
            metrics: metrics, dynamicValues: dynamicValues, onAttemptsRecorded: onAttemptsRecorded)

        startThread(named: "listener") { listener.run() }
        startThread(named: "dispatcher") { dispatcher.run() }
        startThread(named: "delivery") { worker.run() }
        startThread(named: "broker") { brokerWorker.run() }
        let conninfo = configuration.databaseURL
        let pollInterval = configuration.settings.pollInterval
        startThread(named: "vacuum") { [stop] in vacuum.run(conninfo: conninfo, stop: stop, pollInterval: pollInterval) }

        let pool = ConnectionPool(conninfo: configuration.databaseURL, applicationName: "action-triggers/api", maxIdle: 4)
        let configAPI = ConfigAPI(pool: pool, logger: Logger(component: "api", level: logLevel))
        let deliveryAPI = DeliveryAPI(pool: pool, logger: Logger(component: "api", level: logLevel))
        let endpoints = HTTPEndpoints(
            health: health, metrics: metrics, configAPI: configAPI, deliveryAPI: deliveryAPI, apiToken: configuration.apiToken)
        let router = endpoints.makeRouter()
        let server: HTTPServer
        do {
            server = try HTTPServer(host: listen.host, port: listen.port) { request in
                endpoints.respond(to: request, with: router)
            }
        } catch {
            _ = stopAndWait(timeout: configuration.settings.shutdownGrace + 5)
            throw ServiceError.startup("the HTTP server failed to start: \(error)")
        }
        httpServer.withLock { $0 = server }
        // IPv6 addresses are bracketed, as in URLs and in --listen.
        let host = listen.host.contains(":") ? "[\(listen.host)]" : listen.host
        logger.info("http server listening", ["http.address": "\(host):\(server.port)"])
        logger.info("service started", [
            "version": Version.current, "dispatch.hold": configuration.settings.dispatchHold.rawValue,
            "delivery.concurrency": configuration.settings.deliveryConcurrency,
            "dispatch.batch_size": configuration.settings.dispatchBatchSize,
        ])
    }

    /// Rejects Kafka properties librdkafka would refuse, and warns about brokers that
    /// active configs name but the settings file does not define.
    private func checkBrokers(_ connection: PostgresConnection, logger: Logger) throws {
        let brokers = configuration.settings.brokers
        for (name, broker) in brokers.sorted(by: { $0.key < $1.key }) where broker.type == .kafka {
            // Dynamic values are checked once they are resolved, at delivery.
            let properties = broker.connDetails.members.compactMap { member -> (String, String)? in
                guard let text = member.value.text, !text.contains("{{") else { return nil }
                return (member.key, text)
            }
            if let problem = KafkaProducer.problem(in: properties) {
                throw ServiceError.configuration("invalid settings: brokers.\(name).conn_details: \(problem)")
            }
        }

        let named = try connection.query("""
            SELECT DISTINCT q.name FROM action_triggers.msg_broker_queue q
            JOIN action_triggers.config c ON c.id = q.config_id
            WHERE c.active ORDER BY q.name
            """).rows.compactMap { $0["name"] }
        let missing = named.filter { brokers[$0] == nil }
        if !missing.isEmpty {
            logger.warning(
                "active configs name brokers that the settings file does not define, so their deliveries fail",
                ["brokers": missing.joined(separator: ",")])
        }
    }

    /// Asks every thread to stop and waits up to `timeout` seconds for them to finish.
    ///
    /// An attempt in progress finishes first, bounded by its webhook timeout. A delivery
    /// whose result was not recorded is retried by the next instance after its lease.
    public func stopAndWait(timeout: Double) -> Bool {
        httpServer.withLock { server in
            server?.stop()
            server = nil
        }
        stop.set()
        dispatcherWake.raise()
        deliveryWake.raise()
        brokerWake.raise()
        vacuum.wake.raise()
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
