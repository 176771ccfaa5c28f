import ActionTriggersCore
import Foundation
import Logging
import PostgresClient

/// A broker delivery claimed for one attempt.
struct ClaimedBrokerDelivery {
    let id: Int64
    let eventID: Int64
    let queueID: Int64
    /// The attempt's number in the delivery log.
    let attempt: Int
    /// The attempt's number for the retry policy, which starts again after a redelivery.
    let retryAttempt: Int
    let brokerName: String
    /// The queue's `conn_details` and `parameters` as stored: JSON object texts.
    let connDetails: String
    let parameters: String
    let timeoutSecs: Double?
    let model: String?
    /// The primary key of the changed row, its columns' values joined by commas.
    let rowKey: String?
    /// The configured table, `schema.table`, for error messages; nil once the config is gone.
    let tableName: String?
    let renderedPayload: String?
    let event: CapturedEvent

    /// The stable id of the message, the same on every retry: `msg_<event>_q<queue>`.
    var messageID: String { "msg_\(eventID)_q\(queueID)" }
}

/// Claims due broker deliveries and publishes them, one message at a time.
///
/// Brokers have their own thread, so a slow broker never holds up webhooks. A
/// queue's `conn_details` and `parameters` are merged over its broker's from the
/// settings file at each attempt, with dynamic values resolved then.
final class BrokerWorker: Sendable {
    private let conninfo: String
    private let settings: Settings
    private let logger: Logger
    private let stop: StopFlag
    private let wake: WakeSignal
    private let health: ServiceHealth
    private let metrics: ServiceMetrics
    private let dynamicValues: DynamicValueResolver
    /// Receives the number of attempts written to the delivery log.
    private let onAttemptsRecorded: @Sendable (Int) -> Void

    /// Deliveries claimed per query; each is published before the next claim.
    static let claimBatchSize = 32

    static let claimSQL = DeliveryStore.claimSQL(target: "broker", columns: """
        d.msg_broker_queue_id, d.broker_name, d.conn_details::text AS conn_details,
                          d.parameters::text AS parameters, d.model, d.row_key,
                          (SELECT format('%I.%I', ct.schema_name, ct.table_name)
                           FROM action_triggers.config_content_type ct
                           WHERE ct.config_id = d.config_id AND ct.app_label || '.' || lower(ct.model_name) = d.model
                           LIMIT 1) AS table_name
        """)

    init(
        conninfo: String, settings: Settings, logger: Logger, stop: StopFlag, wake: WakeSignal, health: ServiceHealth,
        metrics: ServiceMetrics, dynamicValues: DynamicValueResolver,
        onAttemptsRecorded: @escaping @Sendable (Int) -> Void = { _ in }
    ) {
        self.conninfo = conninfo
        self.settings = settings
        self.logger = logger
        self.stop = stop
        self.wake = wake
        self.health = health
        self.metrics = metrics
        self.dynamicValues = dynamicValues
        self.onAttemptsRecorded = onAttemptsRecorded
    }

    /// Runs until the stop flag is set; meant for a dedicated thread.
    func run() {
        let publishers = Publishers()
        var limiter = LogRateLimiter(maxLines: 10, per: .seconds(10))
        let loop = ReconnectingLoop(
            conninfo: conninfo, applicationName: "action-triggers/broker", logger: logger, stop: stop,
            health: (health, .broker), metrics: metrics)
        loop.run { connection, _ in
            health.set(.broker, ready: true)
            while !stop.isSet {
                let claimed = try claim(connection)
                var records: [AttemptRecord] = []
                var unsent: [(id: Int64, attempt: Int)] = []
                for delivery in claimed {
                    // When stopping, the deliveries not yet published go back to the queue.
                    if stop.isSet {
                        unsent.append((delivery.id, delivery.attempt))
                        continue
                    }
                    records.append(attempt(delivery, publishers: publishers, connection: connection, limiter: &limiter))
                }
                try DeliveryStore.record(connection, records)
                onAttemptsRecorded(records.count)
                if !unsent.isEmpty {
                    let released = try DeliveryStore.release(connection, unsent)
                    logger.info("released deliveries not yet published at shutdown", ["deliveries.count": released])
                }
                if claimed.count == Self.claimBatchSize {
                    continue
                }
                let untilDue = try DeliveryStore.nextDue(connection, target: "broker", window: settings.pollInterval).seconds ?? settings.pollInterval
                _ = wake.wait(timeout: min(max(untilDue, 0.001), settings.pollInterval))
            }
        }
    }

    private func claim(_ connection: PostgresConnection) throws -> [ClaimedBrokerDelivery] {
        let lease = settings.maxBrokerTimeout + 60
        let result = try connection.queryPrepared(Self.claimSQL, [String(Self.claimBatchSize), String(lease)])
        return try result.rows.map { row in
            let signalName = try row.string("signal")
            guard let signal = Signal(rawValue: signalName) else {
                throw PostgresError(kind: .decoding, operation: "claim broker deliveries", message: "unknown signal \(signalName)")
            }
            return ClaimedBrokerDelivery(
                id: try row.int64("id"), eventID: try row.int64("event_id"), queueID: try row.int64("msg_broker_queue_id"),
                attempt: try row.int("attempts"), retryAttempt: try row.int("retry_attempt"),
                brokerName: try row.string("broker_name"),
                connDetails: try row.string("conn_details"), parameters: try row.string("parameters"),
                timeoutSecs: try row.optional("timeout_secs", row.double), model: row["model"], rowKey: row["row_key"],
                tableName: row["table_name"],
                renderedPayload: row["payload"],
                event: CapturedEvent(
                    id: try row.int64("event_id"), signal: signal, operation: try row.string("operation"),
                    rowImage: row["row_image"]))
        }
    }

    /// Publishes one delivery and returns its attempt record.
    private func attempt(
        _ delivery: ClaimedBrokerDelivery, publishers: Publishers, connection: PostgresConnection,
        limiter: inout LogRateLimiter
    ) -> AttemptRecord {
        let startedAt = Date()
        let clock = ContinuousClock.now
        // A broker no longer in the settings file has no type to label its attempts with.
        let target = settings.brokers[delivery.brokerName]?.type.rawValue ?? "unknown"
        let result: AttemptResult
        switch prepare(delivery, connection: connection) {
        case .unsent(let failure):
            result = failure
        case .ready(let brokerTarget, let body, _):
            result = publish(delivery, body: body, to: brokerTarget, publishers: publishers, limiter: &limiter)
        }

        let durationMs = (ContinuousClock.now - clock).seconds * 1000
        let decision = decideDelivery(
            after: result, attempt: delivery.retryAttempt, policy: settings.retry, random: Double.random(in: 0..<1))
        log(decision, for: delivery, limiter: &limiter)
        let record = AttemptRecord(
            id: delivery.id, attempt: delivery.attempt, result: result, decision: decision,
            startedAt: startedAt.timeIntervalSince1970, durationMs: durationMs)
        metrics.recordAttempt(target: target, outcome: record.outcome, durationSeconds: durationMs / 1000)
        return record
    }

    /// The clients of the broker thread, one per broker type, each caching its connections.
    private final class Publishers {
        let redis = RedisPublisher()
        let rabbitMQ = RabbitMQPublisher()
        let kafka = KafkaPublisher()
        let http = BlockingHTTP()
        lazy var aws = AWSPublisher(http: http)
        lazy var pubSub = PubSubPublisher(http: http)
    }

    /// A delivery ready to publish, or the result of an attempt that cannot be made.
    private enum Prepared {
        case ready(BrokerTarget, [UInt8], BrokerType)
        case unsent(AttemptResult)
    }

    /// Merges the queue over its broker, resolves dynamic values and renders the body.
    private func prepare(
        _ delivery: ClaimedBrokerDelivery, connection: PostgresConnection
    ) -> Prepared {
        guard let broker = settings.brokers[delivery.brokerName] else {
            return .unsent(.notSent(reason: "no broker named \(delivery.brokerName) in brokers of the settings file"))
        }
        guard case .object(let connDetails)? = try? JSONParser.parse(Array(delivery.connDetails.utf8)),
              case .object(let parameters)? = try? JSONParser.parse(Array(delivery.parameters.utf8)) else {
            return .unsent(.notSent(reason: "the stored conn_details or parameters are not JSON objects"))
        }
        let mergedConnection: JSONObject
        let mergedParameters: JSONObject
        do {
            mergedConnection = try resolve(merging: connDetails, over: broker.connDetails, connection: connection)
            mergedParameters = try resolve(merging: parameters, over: broker.params, connection: connection)
        } catch {
            return .unsent(.unresolved(message: error.message))
        }
        let target: BrokerTarget
        switch BrokerTarget.make(type: broker.type, connDetails: mergedConnection, params: mergedParameters) {
        case .success(let made): target = made
        case .failure(let error): return .unsent(.notSent(reason: "broker \(delivery.brokerName): \(error.message)"))
        }
        do {
            let body = try DeliveryBody.bytes(renderedPayload: delivery.renderedPayload, event: delivery.event)
            return .ready(target, body, broker.type)
        } catch {
            return .unsent(.notSent(reason: error.message))
        }
    }

    /// Returns the broker's members followed by the queue's, with every `{{ name }}` resolved.
    /// A key of both keeps the broker's value: the broker's settings are fixed.
    private func resolve(
        merging queue: JSONObject, over base: JSONObject, connection: PostgresConnection
    ) throws(DynamicValueError) -> JSONObject {
        var merged = JSONObject()
        for member in base.members + queue.members.filter({ base[$0.key] == nil }) {
            if case .string(let text) = member.value {
                merged.append(member.key, .string(try dynamicValues.resolve(text, connection: connection)))
            } else {
                merged.append(member.key, member.value)
            }
        }
        return merged
    }

    private func publish(
        _ delivery: ClaimedBrokerDelivery, body: [UInt8], to target: BrokerTarget, publishers: Publishers,
        limiter: inout LogRateLimiter
    ) -> AttemptResult {
        let seconds = min(delivery.timeoutSecs.flatMap { $0 > 0 ? $0 : nil } ?? settings.maxBrokerTimeout, settings.maxBrokerTimeout)
        let timeout = Duration.milliseconds(Int64(seconds * 1000))
        let metadata = [
            ("event_id", String(delivery.eventID)), ("signal", delivery.event.signal.rawValue),
            ("model", delivery.model ?? ""),
        ]
        switch target {
        case .pubSub(let pubSubTarget):
            let attributes = [("message_id", delivery.messageID)] + metadata
                + pubSubTarget.attributes.map { ($0.key, $0.value) }
            if body.count > PubSubTarget.maxMessageBytes {
                return .notSent(reason: "message of \(body.count) bytes is over the Pub/Sub limit of \(PubSubTarget.maxMessageBytes) bytes")
            }
            do {
                try publishers.pubSub.publish(body, to: pubSubTarget, attributes: attributes, timeout: timeout)
                return .published
            } catch where !error.retryable {
                return .notSent(reason: error.message)
            } catch {
                return .publishFailed(message: error.message)
            }
        case .aws(let awsTarget, let service):
            let key = KafkaTarget.messageKey(model: delivery.model ?? "", rowKey: delivery.rowKey ?? "")
            // Empty attribute values are invalid in SQS and SNS, so they are left out.
            let attributes = ([("message_id", delivery.messageID)] + metadata
                + awsTarget.attributes.map { ($0.key, $0.value) }).filter { !$0.1.isEmpty }
            // SQS and SNS count attribute names, types and values toward the limit.
            let size = body.count + attributes.reduce(0) { $0 + $1.0.utf8.count + "String".utf8.count + $1.1.utf8.count }
            if size > AWSTarget.maxMessageBytes {
                return .notSent(
                    reason: "message of \(size) bytes with its attributes for table \(delivery.tableName ?? "unknown"), key \(key), is over the \(service.rawValue) limit of \(AWSTarget.maxMessageBytes) bytes")
            }
            if attributes.count > AWSTarget.maxAttributes {
                return .notSent(reason: "\(attributes.count) message attributes are over the \(service.rawValue) limit of \(AWSTarget.maxAttributes); remove parameters")
            }
            do {
                try publishers.aws.publish(
                    .init(body: body, messageID: delivery.messageID, groupID: key, attributes: attributes), to: awsTarget,
                    service: service, timeout: timeout)
                return .published
            } catch where !error.retryable {
                return .notSent(reason: error.message)
            } catch {
                return .publishFailed(message: error.message)
            }
        case .kafka(let kafkaTarget):
            let key = KafkaTarget.messageKey(model: delivery.model ?? "", rowKey: delivery.rowKey ?? "")
            do {
                try publishers.kafka.publish(
                    body, to: kafkaTarget, key: key,
                    headers: [("message_id", delivery.messageID)] + metadata + kafkaTarget.attributes.map { ($0.key, $0.value) },
                    timeout: timeout)
                return .published
            } catch where error.kind == .tooLarge {
                return .notSent(
                    reason: "message of \(body.count) bytes for table \(delivery.tableName ?? "unknown"), key \(key), is over the Kafka size limit: \(error.message)")
            } catch {
                return .publishFailed(message: error.message)
            }
        case .rabbitMQ(let rabbitTarget):
            do {
                try publishers.rabbitMQ.publish(
                    body, to: rabbitTarget, messageID: delivery.messageID,
                    headers: metadata + rabbitTarget.attributes.map { ($0.key, $0.value) }, timeout: timeout)
                return .published
            } catch {
                let destination = rabbitTarget.exchange.isEmpty
                    ? "queue \"\(rabbitTarget.routingKey)\""
                    : "exchange \"\(rabbitTarget.exchange)\" with routing key \"\(rabbitTarget.routingKey)\""
                return .publishFailed(message: "\(destination): \(error.message)")
            }
        case .redis(let redisTarget):
            let fields = [("message_id", delivery.messageID)] + metadata + redisTarget.attributes.map { ($0.key, $0.value) }
            do {
                let published = try publishers.redis.publish(body, to: redisTarget, fields: fields, timeout: timeout)
                if case .channel(let receivers) = published, receivers == 0 {
                    metrics.redisPublishesWithoutSubscribers.increment()
                    let (admitted, suppressed) = limiter.admit("no subscribers")
                    if admitted {
                        logger.warning("Redis channel had no subscribers, so the message was not received", [
                            "delivery.id": delivery.id, "event.id": delivery.eventID, "broker.name": delivery.brokerName,
                            "log.suppressed": suppressed > 0 ? suppressed : nil,
                        ])
                    }
                }
                return .published
            } catch {
                return .publishFailed(message: error.message)
            }
        }
    }

    private func log(_ decision: DeliveryDecision, for delivery: ClaimedBrokerDelivery, limiter: inout LogRateLimiter) {
        let line = AttemptLog(decision, action: "publish", succeeded: "published")
        guard let suppressed = line.admit(by: logger, limiter: &limiter) else { return }
        logger.log(line.level, line.message, [
            "delivery.id": delivery.id, "event.id": delivery.eventID, "broker.name": delivery.brokerName,
            "msg_broker_queue.id": delivery.queueID, "delivery.attempt": delivery.attempt,
            "retry.delay_ms": line.retryDelayMilliseconds, "error": line.error, "log.suppressed": suppressed > 0 ? suppressed : nil,
        ])
    }
}
