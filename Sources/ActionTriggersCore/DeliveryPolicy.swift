/// The result of one delivery attempt, as the executor observed it.
public enum AttemptResult: Sendable, Equatable {
    /// The receiver sent a response; `retryAfter` is its `Retry-After` in seconds, if any.
    case response(status: Int, retryAfter: Double?)
    /// No response arrived before the timeout.
    case timedOut(message: String)
    /// The connection failed or broke before a response.
    case connectionFailed(message: String)
    /// The request was never sent, for example a URL outside the allowlist.
    case notSent(reason: String)
    /// The request was not sent because a dynamic value could not be resolved. Its
    /// source (a variable, file or query) may recover, so the attempt is retried.
    case unresolved(message: String)
    /// A broker accepted the message.
    case published
    /// A broker could not be reached, timed out or rejected the message.
    case publishFailed(message: String)
}

/// The next step for a delivery after an attempt.
public enum DeliveryDecision: Sendable, Equatable {
    case succeeded
    /// Try again after `delay` seconds.
    case retry(delay: Double, reason: String)
    /// Give up: retrying cannot help.
    case failed(reason: String)
    /// Give up: the attempts are used up.
    case dead(reason: String)
}

/// Decides the next step for a delivery from an attempt's result; a pure function of its inputs.
///
/// 2xx succeeds. Timeouts, connection failures, 408, 429 and 5xx are retried with
/// the retry policy's backoff, or after `Retry-After` when the receiver sends one.
/// Redirects are failures, because replaying a POST as a GET would change its meaning.
/// Any other status, and a request that was never sent, fails without retry, except
/// when a dynamic value could not be resolved, which is retried. `random`, in 0..<1,
/// jitters the backoff and is evaluated only for a retry, so a success costs no draw
/// from the system's random number generator.
public func decideDelivery(
    after result: AttemptResult, attempt: Int, policy: RetryPolicy, random: @autoclosure () -> Double
) -> DeliveryDecision {
    let reason: String
    var retryAfter: Double? = nil

    switch result {
    case .response(let status, _) where (200...299).contains(status):
        return .succeeded
    case .response(let status, let after) where status == 408 || status == 429 || (500...599).contains(status):
        reason = "receiver answered HTTP \(status)"
        retryAfter = after
    case .response(let status, _) where (300...399).contains(status):
        return .failed(reason: "receiver answered HTTP \(status), a redirect, which is not followed; configure the final URL")
    case .response(let status, _):
        return .failed(reason: "receiver answered HTTP \(status)")
    case .timedOut(let message):
        reason = "timed out: \(message)"
    case .connectionFailed(let message):
        reason = "connection failed: \(message)"
    case .notSent(let why):
        return .failed(reason: why)
    case .unresolved(let message):
        reason = "not sent: \(message)"
    case .published:
        return .succeeded
    case .publishFailed(let message):
        reason = "publish failed: \(message)"
    }

    guard attempt < policy.maxAttempts else {
        return .dead(reason: "\(reason); gave up after \(attempt) attempts")
    }
    return .retry(delay: policy.delay(afterAttempt: attempt, retryAfter: retryAfter, random: random()), reason: reason)
}
