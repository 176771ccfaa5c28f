import ActionTriggersCore
import Logging

/// The log line of an attempt's outcome: debug for success, warning for a retry, error
/// when the delivery is given up.
struct AttemptLog {
    let level: Logger.Level
    let message: String
    let error: String?
    let retryDelayMilliseconds: Int64?

    /// Describes a decision; `action` names the work, such as "delivery" or "publish".
    init(_ decision: DeliveryDecision, action: String, succeeded: String) {
        switch decision {
        case .succeeded:
            (level, message, error, retryDelayMilliseconds) = (.debug, succeeded, nil, nil)
        case .retry(let delay, let reason):
            (level, message, error, retryDelayMilliseconds) =
                (.warning, "\(action) attempt failed, will retry", reason, Int64(delay * 1000))
        case .failed(let reason):
            (level, message, error, retryDelayMilliseconds) = (.error, "\(action) failed, not retrying", reason, nil)
        case .dead(let reason):
            (level, message, error, retryDelayMilliseconds) = (.error, "\(action) dead after last attempt", reason, nil)
        }
    }

    /// Returns how many lines of this kind the limiter held back before this one, or
    /// nil when this line is not to be written (below the logger's level, or limited).
    func admit(by logger: Logger, limiter: inout LogRateLimiter) -> Int? {
        guard level >= logger.level else { return nil }

        let (admitted, suppressed) = limiter.admit(message)
        return admitted ? suppressed : nil
    }
}
