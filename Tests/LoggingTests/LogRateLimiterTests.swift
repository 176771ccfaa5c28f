import Logging
import Testing

@Suite("LogRateLimiter")
struct LogRateLimiterTests {
    @Test("admits the limit, then counts the rest")
    func limitsPerWindow() {
        var limiter = LogRateLimiter(maxLines: 2, per: .seconds(10))
        let start = ContinuousClock.now

        #expect(limiter.admit("retry", now: start) == (true, 0))
        #expect(limiter.admit("retry", now: start) == (true, 0))
        #expect(limiter.admit("retry", now: start + .seconds(1)) == (false, 0))
        #expect(limiter.admit("retry", now: start + .seconds(2)) == (false, 0))
        #expect(limiter.admit("retry", now: start + .seconds(11)) == (true, 2))
        #expect(limiter.admit("retry", now: start + .seconds(12)) == (true, 0))
    }

    @Test("keys are limited separately")
    func separateKeys() {
        var limiter = LogRateLimiter(maxLines: 1, per: .seconds(10))
        let now = ContinuousClock.now

        #expect(limiter.admit("retry", now: now) == (true, 0))
        #expect(limiter.admit("dead", now: now) == (true, 0))
        #expect(limiter.admit("retry", now: now) == (false, 0))
    }
}
