/// Exponential backoff between reconnect attempts, with jitter; a pure value.
public struct ReconnectPolicy: Sendable {
    public var initialDelay: Duration
    public var maxDelay: Duration
    /// The fraction of each delay that is randomized, from 0 (none) to 1.
    public var jitter: Double

    public init(initialDelay: Duration = .milliseconds(100), maxDelay: Duration = .seconds(10), jitter: Double = 0.2) {
        self.initialDelay = initialDelay
        self.maxDelay = maxDelay
        self.jitter = jitter
    }

    /// Returns the delay before reconnect attempt `attempt` (1 for the first retry).
    ///
    /// `random` is a value in 0..<1, so tests can pass a fixed one.
    public func delay(forAttempt attempt: Int, random: Double = Double.random(in: 0..<1)) -> Duration {
        let exponent = min(max(attempt - 1, 0), 30)
        let base = initialDelay * (1 << exponent)
        let capped = min(base, maxDelay)
        return capped * (1 - jitter * random)
    }
}
