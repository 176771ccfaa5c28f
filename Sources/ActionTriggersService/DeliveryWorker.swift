import ActionTriggersCore
import Digest
import Foundation
import HTTPClient
import Logging
import PostgresClient

/// Claims due deliveries, sends them as webhook requests and records each attempt.
///
/// Requests run as a pipeline: as soon as some finish, their outcomes are recorded
/// and new deliveries are claimed into the free slots, so a slow receiver holds up
/// only its own requests. Every claimed delivery's URL is checked against the
/// allowlist (in the claim query) before any connection is made. Outcomes go through
/// `decideDelivery`, which owns the retry rules.
final class DeliveryWorker: Sendable {
    private let conninfo: String
    private let settings: Settings
    private let logger: Logger
    private let stop: StopFlag
    private let wake: WakeSignal
    private let health: ServiceHealth
    private let metrics: ServiceMetrics
    private let dynamicValues: DynamicValueResolver
    /// The request slots, shared with the dispatcher, which hands over the deliveries it claims.
    private let handoff: DeliveryHandoff
    /// Receives the number of attempts written to the delivery log.
    private let onAttemptsRecorded: @Sendable (Int) -> Void

    /// Requests in flight and outcomes not yet written to the delivery log.
    private struct PipelineState {
        var inFlight: [Int: (delivery: ClaimedDelivery, startedAt: Date)] = [:]
        var unrecorded: [AttemptRecord] = []
        /// When the oldest outcome in `unrecorded` was added.
        var oldestUnrecorded: ContinuousClock.Instant?
        /// The soonest retry among the recorded attempts, so the next claim is not later.
        var earliestRetry: ContinuousClock.Instant?
        var nextTag = 0
        /// Ten lines per outcome kind every ten seconds; the rest are counted.
        var logLimiter = LogRateLimiter(maxLines: 10, per: .seconds(10))
    }

    init(
        conninfo: String, settings: Settings,
        logger: Logger, stop: StopFlag, wake: WakeSignal, health: ServiceHealth, metrics: ServiceMetrics,
        dynamicValues: DynamicValueResolver, handoff: DeliveryHandoff,
        onAttemptsRecorded: @escaping @Sendable (Int) -> Void = { _ in }
    ) {
        self.handoff = handoff
        self.health = health
        self.metrics = metrics
        self.conninfo = conninfo
        self.settings = settings
        self.logger = logger
        self.stop = stop
        self.wake = wake
        self.dynamicValues = dynamicValues
        self.onAttemptsRecorded = onAttemptsRecorded
    }

    /// Runs until the stop flag is set and the requests in flight have finished;
    /// meant for a dedicated thread.
    func run() {
        let client = HTTPClient(maxConnectionsPerHost: settings.deliveryConcurrency, userAgent: "action-triggers/\(Version.current)")
        let waker = client.makeWaker()
        wake.setInterrupt { waker.wake() }
        handoff.arrived.setInterrupt { waker.wake() }
        // The hooks must be gone before the client, and the waker's multi handle, are freed.
        defer {
            wake.setInterrupt(nil)
            handoff.arrived.setInterrupt(nil)
            withExtendedLifetime(client) {}
        }

        var state = PipelineState()
        let loop = ReconnectingLoop(
            conninfo: conninfo, applicationName: "action-triggers/delivery", logger: logger, stop: stop,
            health: (health, .delivery), metrics: metrics)
        loop.run(
            waitBeforeRetry: { delay in
                // Requests in flight keep moving while the database is away.
                let deadline = ContinuousClock.now + delay
                while ContinuousClock.now < deadline {
                    self.collect(client.poll(timeout: min(deadline - .now, .milliseconds(50))), into: &state)
                }
            },
            shouldRetry: { failures in
                guard self.stop.isSet && failures >= 3 else { return true }
                // Deliveries still waiting in the handoff cannot be released without the database.
                let waiting = self.handoff.close()
                let unrecorded = state.unrecorded.count + state.inFlight.count + waiting.count
                if unrecorded > 0 {
                    self.logger.warning("stopping with attempts not recorded; they are retried after their lease", [
                        "deliveries.unrecorded": unrecorded,
                    ])
                }
                return false
            }
        ) { connection, _ in
            try runPipeline(connection, client: client, state: &state)
        }
    }

    /// How long an outcome may wait to be written with others, when no delivery waits for
    /// it. The webhook was sent already, and its request slot is free, so the wait delays
    /// only the delivery log. Each record statement costs about as much as several
    /// outcomes in it, so under load fewer, larger statements leave more CPU to the
    /// application.
    static let recordDelay = Duration.milliseconds(10)

    /// The outcomes that are written at once, however recent.
    static let recordBatchSize = 32

    /// Records outcomes, starts the deliveries handed over, claims into free slots and
    /// drives the requests until stopped and drained.
    private func runPipeline(_ connection: PostgresConnection, client: HTTPClient, state: inout PipelineState) throws {
        health.set(.delivery, ready: true)
        var claimAt = ContinuousClock.now
        let pollInterval = Duration.milliseconds(Int64(settings.pollInterval * 1000))
        var graceEnd: ContinuousClock.Instant?
        // Whether a pending delivery may wait for an attempt in flight: one held back by
        // an earlier delivery of its row, or more than the last claim could take.
        var pendingMayWait = true

        // Outcomes are written at once while a delivery may wait for them, when enough are
        // waiting, when the oldest has waited `recordDelay`, and when stopping.
        func recordIsDue() -> Bool {
            guard let oldest = state.oldestUnrecorded else { return false }
            return pendingMayWait || stop.isSet || state.unrecorded.count >= Self.recordBatchSize
                || ContinuousClock.now - oldest >= Self.recordDelay
        }

        // Whether a claim is due. A due claim writes the waiting outcomes in its own
        // statement, so no record statement runs before it.
        func claimIsDue() -> Bool {
            !stop.isSet && handoff.hasFreeSlots && ContinuousClock.now >= claimAt
        }

        // Runs `body` with the outcomes waiting, which it writes. They wait again if it throws.
        // Returns whether a later delivery of a row may have become due.
        @discardableResult
        func writeUnrecorded(_ body: ([AttemptRecord]) throws -> Void) throws -> Bool {
            let records = state.unrecorded
            state.unrecorded.removeAll(keepingCapacity: true)
            state.oldestUnrecorded = nil
            do {
                try body(records)
            } catch {
                // Outcomes collected meanwhile stay behind the ones that failed to be written.
                state.unrecorded.insert(contentsOf: records, at: 0)
                state.oldestUnrecorded = state.oldestUnrecorded ?? .now
                throw error
            }
            guard !records.isEmpty else { return false }
            onAttemptsRecorded(records.count)
            // A finished delivery may free a later delivery of its row, so claim again now.
            if pendingMayWait && records.contains(where: { $0.status != "pending" }) {
                claimAt = .now
                return true
            }
            return false
        }

        while true {
            // Whether a statement of this pass polled the requests. Its poll may have taken
            // the interrupt of a wake-up or a handover, so the pass checks for them again
            // instead of waiting in the poll below.
            var polledDuringStatement = false
            for record in handoff.takeOutcomes() {
                queue(record, state: &state)
            }
            if recordIsDue() && !claimIsDue() {
                try writeUnrecorded { records in
                    try DeliveryStore.record(connection, records) { socket in
                        polledDuringStatement = true
                        drive(client, socket: socket, state: &state)
                    }
                }
            }
            if let retryAt = state.earliestRetry {
                claimAt = min(claimAt, retryAt)
                state.earliestRetry = nil
                pendingMayWait = true
            }
            // Deliveries handed over are claimed already, so they start even while stopping.
            start(handoff.take(), client: client, connection: connection, state: &state)
            if recordIsDue() && !claimIsDue() {
                continue
            }
            if stop.isSet && state.inFlight.isEmpty {
                try releaseHandedOver(connection)
                return
            }
            if stop.isSet {
                let end = graceEnd ?? .now + .milliseconds(Int64(settings.shutdownGrace * 1000))
                graceEnd = end
                if ContinuousClock.now >= end {
                    // Requests still in flight are given up; their deliveries go back to the queue.
                    let released = try DeliveryStore.release(connection, state.inFlight.values.map(\.delivery))
                    logger.info("released deliveries still in flight at shutdown", ["deliveries.count": released])
                    handoff.free(state.inFlight.count)
                    state.inFlight.removeAll()
                    try releaseHandedOver(connection)
                    return
                }
            }

            if !stop.isSet && handoff.hasFreeSlots && (wake.consume() || ContinuousClock.now >= claimAt) {
                let room = handoff.reserve(upTo: settings.deliveryConcurrency)
                if room == 0 {
                    // The dispatcher took the free slots first. The handoff wakes this
                    // worker when it frees them, and the claim runs then.
                    claimAt = .now
                    continue
                }
                // The claim's statement also writes the finished attempts, so that their
                // deliveries never show in flight beside the claims that take their slots.
                var claimed: [ClaimedDelivery] = []
                let successorsMayBeDue: Bool
                do {
                    successorsMayBeDue = try writeUnrecorded { records in
                        claimed = try DeliveryStore.claim(
                            connection, recording: records, limit: room,
                            leaseSeconds: DeliveryStore.webhookLeaseSeconds(settings)
                        ) { socket in
                            polledDuringStatement = true
                            drive(client, socket: socket, state: &state)
                        }
                    }
                } catch {
                    handoff.free(room)
                    throw error
                }
                handoff.free(room - claimed.count)
                start(claimed, client: client, connection: connection, state: &state)
                if claimed.count == room {
                    claimAt = .now
                    pendingMayWait = true
                } else if !claimed.isEmpty {
                    // Recording these deliveries claims again, so the next-due query can
                    // wait for a claim that finds nothing.
                    claimAt = .now + pollInterval
                    pendingMayWait = true
                } else {
                    let next = try DeliveryStore.nextDue(connection, target: "webhook", window: settings.pollInterval)
                    pendingMayWait = next.pending
                    let untilDue = next.seconds ?? settings.pollInterval
                    claimAt = .now + .milliseconds(Int64(min(max(untilDue, 0.001), settings.pollInterval) * 1000))
                }
                if successorsMayBeDue {
                    // The claim read the table before its own records, so it could not take them.
                    claimAt = .now
                }
            }
            if recordIsDue() || polledDuringStatement {
                continue
            }

            var wait: Duration
            if stop.isSet {
                wait = .milliseconds(50)
            } else if !handoff.hasFreeSlots {
                // A finished request or a handover interrupts the wait.
                wait = pollInterval
            } else {
                wait = max(.zero, min(claimAt - .now, pollInterval))
            }
            if let oldest = state.oldestUnrecorded {
                wait = max(.zero, min(wait, oldest + Self.recordDelay - .now))
            }
            collect(client.poll(timeout: wait), into: &state)
            metrics.deliveriesInFlight.set(Double(state.inFlight.count))
        }
    }

    /// Moves the requests in flight forward while a statement runs on the connection whose
    /// socket is `socket`, and queues the outcomes of those that finish. Under a backlog,
    /// the worker's statements and its requests then overlap instead of taking turns.
    /// New requests start only between statements, because preparing one may query the
    /// connection (dynamic values).
    private func drive(_ client: HTTPClient, socket: Int32, state: inout PipelineState) {
        collect(client.poll(timeout: Self.statementPollInterval, socket: socket), into: &state)
    }

    /// The maximum wait for requests between checks of a running statement's result.
    static let statementPollInterval = Duration.milliseconds(50)

    /// Closes the handoff as the worker stops and hands the deliveries that were still
    /// waiting in it back to the queue, so that they do not wait out their lease.
    private func releaseHandedOver(_ connection: PostgresConnection) throws {
        // A held dispatch that still waits writes its deliveries pending itself.
        let waiting = handoff.close().filter { delivery in
            !(delivery.held?.handBack(id: delivery.id) ?? false)
        }
        guard !waiting.isEmpty else { return }
        let released = try DeliveryStore.release(connection, waiting)
        logger.info("released deliveries handed over at shutdown", ["deliveries.count": released])
    }

    /// Starts a request per claimed delivery; a delivery that cannot be sent is recorded at once.
    private func start(
        _ claimed: [ClaimedDelivery], client: HTTPClient, connection: PostgresConnection, state: inout PipelineState
    ) {
        for delivery in claimed {
            if delivery.held?.isAborted == true {
                // Its dispatch rolled back, so its event is dispatched and sent again.
                handoff.free(1)
                continue
            }
            let startedAt = Date()
            let tag = state.nextTag
            state.nextTag &+= 1

            switch prepareRequest(for: delivery, timestamp: Int64(startedAt.timeIntervalSince1970), connection: connection) {
            case .success(let request):
                if let failure = client.start(request, tag: tag) {
                    finish(delivery, result: .notSent(reason: failure.message), startedAt: startedAt, durationMs: 0, state: &state)
                } else {
                    state.inFlight[tag] = (delivery, startedAt)
                }
            case .failure(let reason):
                finish(delivery, result: reason.result, startedAt: startedAt, durationMs: 0, state: &state)
            }
        }
    }

    /// Turns finished requests into attempt results.
    private func collect(_ completions: [HTTPClient.Completion], into state: inout PipelineState) {
        for completion in completions {
            guard let (delivery, startedAt) = state.inFlight.removeValue(forKey: completion.tag) else { continue }
            let result: AttemptResult
            let duration: Duration
            switch completion.result {
            case .success(let response):
                let retryAfter = response.header("Retry-After").flatMap { parseRetryAfter($0, now: Date()) }
                result = .response(status: response.status, retryAfter: retryAfter)
                duration = response.duration
            case .failure(let error):
                switch error.kind {
                case .timeout: result = .timedOut(message: error.message)
                case .invalidRequest: result = .notSent(reason: error.message)
                case .connection, .other: result = .connectionFailed(message: error.message)
                }
                duration = error.duration
            }
            finish(delivery, result: result, startedAt: startedAt, durationMs: duration.seconds * 1000, state: &state)
        }
    }

    /// Decides what follows an attempt, logs it, and queues it for the delivery log.
    private func finish(
        _ delivery: ClaimedDelivery, result: AttemptResult, startedAt: Date, durationMs: Double, state: inout PipelineState
    ) {
        let decision = decideDelivery(
            after: result, attempt: delivery.retryAttempt, policy: settings.retry, random: Double.random(in: 0..<1))
        log(decision, for: delivery, limiter: &state.logLimiter)
        if case .retry(let delay, _) = decision {
            let retryAt = ContinuousClock.now + .milliseconds(Int64(delay * 1000))
            state.earliestRetry = min(state.earliestRetry ?? retryAt, retryAt)
        }
        let record = AttemptRecord(
            id: delivery.id, attempt: delivery.attempt, result: result, decision: decision,
            startedAt: startedAt.timeIntervalSince1970, durationMs: durationMs)
        metrics.recordAttempt(target: "webhook", outcome: record.outcome, durationSeconds: durationMs / 1000)
        // The slot is freed before a held dispatch learns that its last attempt finished,
        // so the dispatch that follows it can reserve every slot again.
        handoff.free(1)
        switch delivery.held?.finish(id: delivery.id, outcome: record) {
        case nil, .record:
            queue(record, state: &state)
        case .held, .deferred, .drop:
            // The held dispatch writes it, hands it back after its commit, or rolled back.
            break
        }
    }

    /// Queues an outcome for the next record statement.
    private func queue(_ record: AttemptRecord, state: inout PipelineState) {
        if state.unrecorded.isEmpty {
            state.oldestUnrecorded = .now
        }
        state.unrecorded.append(record)
    }

    private struct NotSent: Error {
        let message: String
        var retryable = false

        var result: AttemptResult {
            retryable ? .unresolved(message: message) : .notSent(reason: message)
        }
    }

    private func prepareRequest(
        for delivery: ClaimedDelivery, timestamp: Int64, connection: PostgresConnection
    ) -> Result<HTTPRequest, NotSent> {
        if let urlError = delivery.urlError {
            return .failure(NotSent(message: "not sent: \(urlError)"))
        }
        guard var configured = WebhookHeaders.parseStored(delivery.headers) else {
            return .failure(NotSent(message: "not sent: the stored headers are not an object of strings"))
        }
        do {
            for (name, value) in configured {
                configured[name] = try dynamicValues.resolve(value, connection: connection)
            }
        } catch {
            return .failure(NotSent(message: error.message, retryable: true))
        }
        if let problem = WebhookHeaders.problem(in: configured) {
            return .failure(NotSent(message: "not sent: \(problem)"))
        }
        let body: [UInt8]
        do {
            body = try DeliveryBody.bytes(renderedPayload: delivery.renderedPayload, event: delivery.event)
        } catch {
            return .failure(NotSent(message: "not sent: payload rendering failed: \(error)"))
        }

        let messageID = WebhookHeaders.messageID(eventID: delivery.eventID, webhookID: delivery.webhookID)
        var headers = WebhookHeaders.build(configured: configured, messageID: messageID, timestamp: timestamp)
        switch signingKeys(delivery, connection: connection) {
        case .success(let keys) where !keys.isEmpty:
            let signature = WebhookSignature.header(
                messageID: messageID, timestamp: timestamp, body: body, keys: keys, hmac: Digest.hmacSHA256)
            headers.append(("webhook-signature", signature))
        case .success:
            break
        case .failure(let problem):
            return .failure(problem)
        }
        return .success(HTTPRequest(
            method: delivery.method, url: delivery.url,
            headers: headers.map { HTTPHeader($0.name, $0.value) },
            body: body,
            timeout: .milliseconds(Int64(effectiveTimeout(delivery.timeoutSecs) * 1000)),
            caBundle: delivery.caBundle))
    }

    /// Returns the keys of the webhook's signing secrets, with dynamic values resolved.
    private func signingKeys(_ delivery: ClaimedDelivery, connection: PostgresConnection) -> Result<[[UInt8]], NotSent> {
        guard let text = delivery.signingSecrets,
              let secrets = WebhookSignature.parseStoredSecrets(text) else {
            return .success([])
        }
        var keys: [[UInt8]] = []
        for (index, secret) in secrets.enumerated() {
            let resolved: String
            do {
                resolved = try dynamicValues.resolve(secret, connection: connection)
            } catch {
                return .failure(NotSent(message: error.message, retryable: true))
            }
            guard let key = WebhookSignature.key(fromSecret: resolved) else {
                // The message names the position only: the value may be a secret.
                return .failure(NotSent(message: "not sent: signing_secrets[\(index)] is not a whsec_ secret once resolved"))
            }
            keys.append(key)
        }
        return .success(keys)
    }

    /// Returns the timeout in seconds: the webhook's `timeout_secs` capped by
    /// `max_webhook_timeout`, which also applies when the webhook sets none or 0.
    private func effectiveTimeout(_ configured: Double?) -> Double {
        guard let configured, configured > 0 else { return settings.maxWebhookTimeout }
        return min(configured, settings.maxWebhookTimeout)
    }

    private func log(_ decision: DeliveryDecision, for delivery: ClaimedDelivery, limiter: inout LogRateLimiter) {
        let line = AttemptLog(decision, action: "delivery", succeeded: "delivered")
        guard let suppressed = line.admit(by: logger, limiter: &limiter) else { return }
        logger.log(line.level, line.message, [
            "delivery.id": delivery.id, "event.id": delivery.eventID, "webhook.id": delivery.webhookID,
            "delivery.attempt": delivery.attempt, "retry.delay_ms": line.retryDelayMilliseconds, "error": line.error,
            "log.suppressed": suppressed > 0 ? suppressed : nil,
        ])
    }
}
