import ActionTriggersCore
import Testing

@Suite("RetryPolicy")
struct RetryPolicyTests {
    let policy = RetryPolicy(maxAttempts: 5, baseDelay: 2, maxDelay: 30, jitter: 0.5)

    @Test("backoff doubles per attempt", arguments: [(1, 2.0), (2, 4.0), (3, 8.0), (4, 16.0)])
    func backoffDoubles(attempt: Int, expected: Double) {
        #expect(policy.delay(afterAttempt: attempt, random: 0) == expected)
    }

    @Test("backoff stops at the cap")
    func backoffCapped() {
        #expect(policy.delay(afterAttempt: 5, random: 0) == 30)
        #expect(policy.delay(afterAttempt: 1000, random: 0) == 30)
    }

    @Test("jitter shortens by up to its fraction")
    func jitterShortens() {
        #expect(policy.delay(afterAttempt: 2, random: 0.5) == 3)
        #expect(policy.delay(afterAttempt: 2, random: 0.999) > 2)
    }

    @Test("Retry-After replaces backoff up to the cap")
    func retryAfterWins() {
        #expect(policy.delay(afterAttempt: 1, retryAfter: 7, random: 0.9) == 7)
        #expect(policy.delay(afterAttempt: 1, retryAfter: 500, random: 0) == 30)
        #expect(policy.delay(afterAttempt: 1, retryAfter: -3, random: 0) == 0)
    }
}

@Suite("decideDelivery")
struct DeliveryDecisionTests {
    let policy = RetryPolicy(maxAttempts: 3, baseDelay: 1, maxDelay: 60, jitter: 0)

    @Test("2xx succeeds", arguments: [200, 201, 202, 204, 299])
    func successStatuses(status: Int) {
        #expect(decideDelivery(after: .response(status: status, retryAfter: nil), attempt: 1, policy: policy, random: 0) == .succeeded)
    }

    @Test("retryable statuses retry", arguments: [408, 429, 500, 502, 503, 504, 599])
    func retryableStatuses(status: Int) {
        let decision = decideDelivery(after: .response(status: status, retryAfter: nil), attempt: 1, policy: policy, random: 0)
        #expect(decision == .retry(delay: 1, reason: "receiver answered HTTP \(status)"))
    }

    @Test("other 4xx fail at once", arguments: [400, 401, 403, 404, 405, 409, 410, 413, 422])
    func clientErrorsFail(status: Int) {
        let decision = decideDelivery(after: .response(status: status, retryAfter: nil), attempt: 1, policy: policy, random: 0)
        #expect(decision == .failed(reason: "receiver answered HTTP \(status)"))
    }

    @Test("redirects fail with a hint", arguments: [301, 302, 303, 307, 308])
    func redirectsFail(status: Int) {
        let decision = decideDelivery(after: .response(status: status, retryAfter: nil), attempt: 1, policy: policy, random: 0)
        guard case .failed(let reason) = decision else {
            Issue.record("expected failed, got \(decision)")
            return
        }
        #expect(reason.contains("redirect"))
    }

    @Test("Retry-After sets the delay")
    func retryAfterUsed() {
        let decision = decideDelivery(after: .response(status: 503, retryAfter: 2), attempt: 1, policy: policy, random: 0)
        #expect(decision == .retry(delay: 2, reason: "receiver answered HTTP 503"))
    }

    @Test("timeouts and connection failures retry")
    func transportFailuresRetry() {
        let timeout = decideDelivery(after: .timedOut(message: "5 s"), attempt: 2, policy: policy, random: 0)
        #expect(timeout == .retry(delay: 2, reason: "timed out: 5 s"))
        let connectionFailure = decideDelivery(after: .connectionFailed(message: "refused"), attempt: 1, policy: policy, random: 0)
        #expect(connectionFailure == .retry(delay: 1, reason: "connection failed: refused"))
    }

    @Test("last attempt makes the delivery dead")
    func lastAttemptDead() {
        let decision = decideDelivery(after: .response(status: 500, retryAfter: nil), attempt: 3, policy: policy, random: 0)
        #expect(decision == .dead(reason: "receiver answered HTTP 500; gave up after 3 attempts"))
    }

    @Test("unsent request fails without retry")
    func notSentFails() {
        let decision = decideDelivery(after: .notSent(reason: "URL not allowed"), attempt: 1, policy: policy, random: 0)
        #expect(decision == .failed(reason: "URL not allowed"))
    }

    @Test("unresolved dynamic value is retried")
    func unresolvedRetried() {
        let decision = decideDelivery(after: .unresolved(message: "dynamic value a.b: file /x could not be read"),
                                      attempt: 1, policy: policy, random: 0)
        guard case .retry(_, let reason) = decision else {
            Issue.record("expected a retry, got \(decision)")
            return
        }
        #expect(reason == "not sent: dynamic value a.b: file /x could not be read")
    }

    @Test("jitter is drawn only for a retry")
    func jitterDrawnForRetryOnly() {
        let jittered = RetryPolicy(maxAttempts: 3, baseDelay: 1, maxDelay: 60, jitter: 0.5)
        var draws = 0
        func draw() -> Double {
            draws += 1
            return 1
        }

        let success = decideDelivery(after: .response(status: 200, retryAfter: nil), attempt: 1, policy: jittered, random: draw())
        #expect(success == .succeeded)
        #expect(draws == 0)

        let failure = decideDelivery(after: .response(status: 404, retryAfter: nil), attempt: 1, policy: jittered, random: draw())
        #expect(failure == .failed(reason: "receiver answered HTTP 404"))
        #expect(draws == 0)

        let retry = decideDelivery(after: .response(status: 500, retryAfter: nil), attempt: 1, policy: jittered, random: draw())
        #expect(retry == .retry(delay: 0.5, reason: "receiver answered HTTP 500"))
        #expect(draws == 1)
    }
}
