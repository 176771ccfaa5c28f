/// When to retry a failed delivery attempt and how long to wait: exponential backoff with jitter.
public struct RetryPolicy: Sendable, Equatable {
    /// The total number of attempts, the first one included.
    public var maxAttempts: Int
    /// The wait after the first failed attempt, in seconds; it doubles with each attempt.
    public var baseDelay: Double
    /// The cap on any wait, also on a receiver's `Retry-After`, in seconds.
    public var maxDelay: Double
    /// The fraction of each wait that is randomized, from 0 (none) to 1.
    public var jitter: Double

    /// Fifteen attempts: waits of 5 s doubling to the 1 h cap, each shortened by up to 20 %,
    /// so a receiver may be down for about 4.3 to 5.4 hours before a delivery is dead.
    public static let `default` = RetryPolicy(maxAttempts: 15, baseDelay: 5, maxDelay: 3600, jitter: 0.2)

    public init(maxAttempts: Int, baseDelay: Double, maxDelay: Double, jitter: Double) {
        self.maxAttempts = maxAttempts
        self.baseDelay = baseDelay
        self.maxDelay = maxDelay
        self.jitter = jitter
    }

    /// Returns the wait in seconds before the attempt after `attempt` (1 for the first).
    ///
    /// A receiver's `retryAfter` replaces the computed backoff, capped at `maxDelay`.
    /// `random` is a value in 0..<1, so tests can pass a fixed one.
    public func delay(afterAttempt attempt: Int, retryAfter: Double? = nil, random: Double) -> Double {
        if let retryAfter {
            return min(max(retryAfter, 0), maxDelay)
        }
        let exponent = Double(min(max(attempt - 1, 0), 60))
        let backoff = min(baseDelay * pow2(exponent), maxDelay)
        return backoff * (1 - jitter * random)
    }

    private func pow2(_ exponent: Double) -> Double {
        var value = 1.0
        for _ in 0..<Int(exponent) {
            value *= 2
        }
        return value
    }
}
