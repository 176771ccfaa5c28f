/// Lets a repeated log line through a limited number of times per window.
///
/// A receiver that is down turns every delivery attempt into a warning; with a
/// backlog that is thousands of lines a second. The limiter admits `maxLines` per
/// key and window, counts the rest, and reports the count with the next admitted
/// line, so the log still shows how often the problem happened.
public struct LogRateLimiter: Sendable {
    public let maxLines: Int
    public let window: Duration
    private var windows: [String: (start: ContinuousClock.Instant, admitted: Int, suppressed: Int)] = [:]

    public init(maxLines: Int, per window: Duration) {
        self.maxLines = maxLines
        self.window = window
    }

    /// Returns whether a line for `key` may be logged now and, if so, how many lines
    /// for that key were suppressed since the last one logged.
    public mutating func admit(_ key: String, now: ContinuousClock.Instant = .now) -> (admitted: Bool, suppressed: Int) {
        var state = windows[key] ?? (start: now, admitted: 0, suppressed: 0)
        if now - state.start >= window {
            state.start = now
            state.admitted = 0
        }
        guard state.admitted < maxLines else {
            state.suppressed += 1
            windows[key] = state
            return (false, 0)
        }
        let suppressed = state.suppressed
        state.admitted += 1
        state.suppressed = 0
        windows[key] = state
        return (true, suppressed)
    }
}
