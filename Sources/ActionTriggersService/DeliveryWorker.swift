import ActionTriggersCore
import Foundation
import HTTPClient
import Logging
import PostgresClient

/// Claims due deliveries, sends them as webhook requests and records each attempt.
///
/// Every claimed delivery is checked against the endpoint policy before any
/// connection is made. Outcomes go through `decideDelivery`, which owns the retry rules.
final class DeliveryWorker: Sendable {
    private let conninfo: String
    private let settings: Settings
    private let endpointPolicy: WebhookEndpointPolicy
    private let renderer: any PayloadRendering
    private let logger: Logger
    private let stop: StopFlag
    private let wake: WakeSignal
    private let reconnectPolicy = ReconnectPolicy()

    init(
        conninfo: String, settings: Settings, endpointPolicy: WebhookEndpointPolicy, renderer: any PayloadRendering,
        logger: Logger, stop: StopFlag, wake: WakeSignal
    ) {
        self.conninfo = conninfo
        self.settings = settings
        self.endpointPolicy = endpointPolicy
        self.renderer = renderer
        self.logger = logger
        self.stop = stop
        self.wake = wake
    }

    /// Runs until the stop flag is set; meant for a dedicated thread.
    func run() {
        let client = HTTPClient(maxConnectionsPerHost: settings.deliveryConcurrency, userAgent: "action-triggers/\(Version.current)")
        var failures = 0
        while !stop.isSet {
            do {
                let connection = try PostgresConnection(conninfo: conninfo, applicationName: "action-triggers/delivery")
                if failures > 0 {
                    logger.info("delivery worker reconnected", ["reconnect.attempts": failures])
                }
                failures = 0
                while !stop.isSet {
                    let claimed = try DeliveryStore.claim(
                        connection, limit: settings.deliveryConcurrency, leaseSeconds: settings.maxWebhookTimeout + 60)
                    if claimed.isEmpty {
                        let untilDue = try DeliveryStore.secondsUntilNextDue(connection) ?? settings.pollInterval
                        wake.wait(timeout: min(max(untilDue, 0.001), settings.pollInterval))
                        continue
                    }
                    let records = deliver(claimed, with: client)
                    try DeliveryStore.record(connection, records)
                }
            } catch {
                failures += 1
                let delay = reconnectPolicy.delay(forAttempt: failures)
                logger.warning("delivery worker failed, reconnecting", [
                    "error": String(describing: error), "reconnect.attempt": failures, "reconnect.delay_ms": delay.milliseconds,
                ])
                stop.sleep(seconds: delay.seconds)
            }
        }
    }

    /// Sends the claimed deliveries concurrently and returns one record per delivery.
    private func deliver(_ claimed: [ClaimedDelivery], with client: HTTPClient) -> [AttemptRecord] {
        let startedAt = Date()
        let timestamp = Int64(startedAt.timeIntervalSince1970)
        var results = [AttemptResult?](repeating: nil, count: claimed.count)
        var requests: [HTTPRequest] = []
        var requestOwners: [Int] = []

        for (index, delivery) in claimed.enumerated() {
            switch prepareRequest(for: delivery, timestamp: timestamp) {
            case .success(let request):
                requests.append(request)
                requestOwners.append(index)
            case .failure(let reason):
                results[index] = .notSent(reason: reason.message)
            }
        }

        let outcomes = client.perform(requests)
        var durations = [Double](repeating: 0, count: claimed.count)
        for (position, outcome) in outcomes.enumerated() {
            let index = requestOwners[position]
            switch outcome {
            case .success(let response):
                let retryAfter = response.header("Retry-After").flatMap { parseRetryAfter($0, now: Date()) }
                results[index] = .response(status: response.status, retryAfter: retryAfter)
                durations[index] = response.duration.seconds * 1000
            case .failure(let error):
                switch error.kind {
                case .timeout: results[index] = .timedOut(message: error.message)
                case .invalidRequest: results[index] = .notSent(reason: error.message)
                case .connection, .other: results[index] = .connectionFailed(message: error.message)
                }
                durations[index] = error.duration.seconds * 1000
            }
        }

        let startedEpoch = startedAt.timeIntervalSince1970
        return claimed.enumerated().map { index, delivery in
            let result = results[index] ?? .notSent(reason: "no result")
            let decision = decideDelivery(
                after: result, attempt: delivery.attempt, policy: settings.retry, random: Double.random(in: 0..<1))
            log(decision, for: delivery)
            return Self.record(for: delivery, result: result, decision: decision, startedAt: startedEpoch, durationMs: durations[index])
        }
    }

    private struct NotSent: Error {
        let message: String
    }

    private func prepareRequest(for delivery: ClaimedDelivery, timestamp: Int64) -> Result<HTTPRequest, NotSent> {
        if let rejection = endpointPolicy.rejection(for: delivery.url) {
            return .failure(NotSent(message: "not sent: \(rejection)"))
        }
        let configured: [String: String]
        do {
            configured = try JSONDecoder().decode([String: String].self, from: Data(delivery.headers.utf8))
        } catch {
            return .failure(NotSent(message: "not sent: the stored headers are not an object of strings"))
        }
        if let problem = WebhookHeaders.problem(in: configured) {
            return .failure(NotSent(message: "not sent: \(problem)"))
        }
        let body: [UInt8]
        do {
            body = try renderer.render(delivery.event, template: delivery.payloadTemplate)
        } catch {
            return .failure(NotSent(message: "not sent: payload rendering failed: \(error)"))
        }

        let messageID = WebhookHeaders.messageID(eventID: delivery.eventID, webhookID: delivery.webhookID)
        let headers = WebhookHeaders.build(configured: configured, messageID: messageID, timestamp: timestamp)
        return .success(HTTPRequest(
            method: delivery.method, url: delivery.url,
            headers: headers.map { HTTPHeader($0.name, $0.value) },
            body: body,
            timeout: .milliseconds(Int64(effectiveTimeout(delivery.timeoutSecs) * 1000))))
    }

    /// Returns the timeout in seconds: the webhook's `timeout_secs` capped by
    /// `max_webhook_timeout`, which also applies when the webhook sets none or 0.
    private func effectiveTimeout(_ configured: Double?) -> Double {
        guard let configured, configured > 0 else { return settings.maxWebhookTimeout }
        return min(configured, settings.maxWebhookTimeout)
    }

    private func log(_ decision: DeliveryDecision, for delivery: ClaimedDelivery) {
        switch decision {
        case .succeeded:
            logger.debug("delivered", metadata(delivery))
        case .retry(let delay, let reason):
            logger.warning("delivery attempt failed, will retry", [
                "delivery.id": delivery.id, "event.id": delivery.eventID, "webhook.id": delivery.webhookID,
                "delivery.attempt": delivery.attempt, "retry.delay_ms": Int64(delay * 1000), "error": reason,
            ])
        case .failed(let reason):
            logger.error("delivery failed, not retrying", [
                "delivery.id": delivery.id, "event.id": delivery.eventID, "webhook.id": delivery.webhookID,
                "delivery.attempt": delivery.attempt, "error": reason,
            ])
        case .dead(let reason):
            logger.error("delivery dead after last attempt", [
                "delivery.id": delivery.id, "event.id": delivery.eventID, "webhook.id": delivery.webhookID,
                "delivery.attempt": delivery.attempt, "error": reason,
            ])
        }
    }

    private func metadata(_ delivery: ClaimedDelivery) -> Logger.Metadata {
        ["delivery.id": delivery.id, "event.id": delivery.eventID, "webhook.id": delivery.webhookID,
         "delivery.attempt": delivery.attempt]
    }

    private static func record(
        for delivery: ClaimedDelivery, result: AttemptResult, decision: DeliveryDecision, startedAt: Double, durationMs: Double
    ) -> AttemptRecord {
        var statusCode: Int? = nil
        if case .response(let status, _) = result {
            statusCode = status
        }
        let status: String
        let outcome: String
        var delay = 0.0
        var error: String? = nil
        switch decision {
        case .succeeded:
            status = "succeeded"
            outcome = "succeeded"
        case .retry(let wait, let reason):
            status = "pending"
            outcome = "retry"
            delay = wait
            error = reason
        case .failed(let reason):
            status = "failed"
            outcome = "failed"
            error = reason
        case .dead(let reason):
            status = "dead"
            outcome = "dead"
            error = reason
        }
        return AttemptRecord(
            id: delivery.id, attempt: delivery.attempt, status: status, delaySecs: delay, statusCode: statusCode,
            error: error, startedAt: startedAt, durationMs: durationMs, outcome: outcome)
    }
}
