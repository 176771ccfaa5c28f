import ActionTriggersCore
import Testing

@Suite("DispatchPacing")
struct DispatchPacingTests {
    func busyPacing() -> DispatchPacing {
        var pacing = DispatchPacing(gatherDelay: 0.004, pollInterval: 5)
        #expect(pacing.dispatched(events: 2) == .take)
        pacing.lockTaken(true)
        return pacing
    }

    @Test("idle waits for a wake-up or the poll")
    func idleWaitsForWake() {
        var pacing = DispatchPacing(gatherDelay: 0.004, pollInterval: 5)
        #expect(pacing.dispatched(events: 0) == .none)
        #expect(pacing.dispatched(events: 1) == .none)
        #expect(pacing.mode == .idle)
        #expect(pacing.wait == .untilWoken(timeout: 5))
        #expect(!pacing.mustSettle)
    }

    @Test("several events take the lock")
    func severalEventsTakeLock() {
        let pacing = busyPacing()
        #expect(pacing.mode == .busy(wait: 0.004))
        #expect(pacing.wait == .fixed(seconds: 0.004))
    }

    @Test("lock held elsewhere stays idle")
    func lockNotTaken() {
        var pacing = DispatchPacing(gatherDelay: 0.004, pollInterval: 5)
        #expect(pacing.dispatched(events: 40) == .take)
        pacing.lockTaken(false)
        #expect(pacing.mode == .idle)
        #expect(pacing.dispatched(events: 3) == .take)
    }

    @Test("full polls double the wait up to the cap")
    func fullPollsDouble() {
        var pacing = busyPacing()
        var waits: [DispatchPacing.Wait] = []
        for _ in 0..<5 {
            #expect(pacing.dispatched(events: 100) == .none)
            waits.append(pacing.wait)
        }
        #expect(waits == [.fixed(seconds: 0.008), .fixed(seconds: 0.016), .fixed(seconds: 0.02),
                          .fixed(seconds: 0.02), .fixed(seconds: 0.02)])
    }

    @Test("full poll scales with the wait")
    func fullPollScales() {
        var pacing = busyPacing()
        _ = pacing.dispatched(events: DispatchPacing.fullPoll)
        #expect(pacing.wait == .fixed(seconds: 0.008))
        // After 8 ms, a full poll is twice as many events.
        _ = pacing.dispatched(events: DispatchPacing.fullPoll)
        #expect(pacing.wait == .fixed(seconds: 0.008))
        _ = pacing.dispatched(events: 2 * DispatchPacing.fullPoll)
        #expect(pacing.wait == .fixed(seconds: 0.016))
    }

    @Test("sparse polls halve the wait down to the start")
    func sparsePollsHalve() {
        var pacing = busyPacing()
        _ = pacing.dispatched(events: 100)
        _ = pacing.dispatched(events: 100)
        #expect(pacing.wait == .fixed(seconds: 0.016))
        _ = pacing.dispatched(events: 1)
        #expect(pacing.wait == .fixed(seconds: 0.008))
        // Between half a full poll and a full one, the wait stays.
        _ = pacing.dispatched(events: DispatchPacing.fullPoll)
        #expect(pacing.wait == .fixed(seconds: 0.008))
        _ = pacing.dispatched(events: 1)
        _ = pacing.dispatched(events: 1)
        #expect(pacing.wait == .fixed(seconds: 0.004))
    }

    @Test("steady moderate rate returns to the first wait", arguments: [200.0, 300.0, 400.0, 900.0])
    func moderateRateShrinksWait(eventsPerSecond: Double) {
        var pacing = busyPacing()
        for _ in 0..<3 {
            _ = pacing.dispatched(events: 100)
        }
        #expect(pacing.wait == .fixed(seconds: 0.02))
        for _ in 0..<6 {
            guard case .busy(let wait) = pacing.mode else {
                Issue.record("left busy at \(eventsPerSecond) events/s: \(pacing.mode)")
                return
            }
            _ = pacing.dispatched(events: max(1, Int(eventsPerSecond * wait)))
        }
        #expect(pacing.wait == .fixed(seconds: 0.004))
    }

    @Test("empty poll releases and settles")
    func emptyPollReleases() {
        var pacing = busyPacing()
        #expect(pacing.dispatched(events: 0) == .release)
        #expect(pacing.mode == .settling(retry: DispatchPacing.firstSettleRetry))
        #expect(pacing.mustSettle)
        #expect(pacing.wait == .untilWoken(timeout: DispatchPacing.firstSettleRetry))
    }

    @Test("settling retries back off to the poll")
    func settlingBacksOff() {
        var pacing = busyPacing()
        _ = pacing.dispatched(events: 0)
        var retries: [Double] = []
        for _ in 0..<16 {
            pacing.settled(false)
            guard case .settling(let retry) = pacing.mode else {
                Issue.record("left settling without a check that passed: \(pacing.mode)")
                return
            }
            retries.append(retry)
        }
        #expect(Array(retries.prefix(3)) == [0.002, 0.004, 0.008])
        #expect(retries.last == 5)
        #expect(pacing.dispatched(events: 1) == .none)
        #expect(pacing.mustSettle)
    }

    @Test("settled check returns to idle")
    func settledReturnsIdle() {
        var pacing = busyPacing()
        _ = pacing.dispatched(events: 0)
        pacing.settled(true)
        #expect(pacing.mode == .idle)
        #expect(!pacing.mustSettle)
        // A check result outside settling changes nothing.
        pacing.settled(false)
        #expect(pacing.mode == .idle)
    }

    @Test("stream while settling takes the lock again")
    func streamWhileSettling() {
        var pacing = busyPacing()
        _ = pacing.dispatched(events: 0)
        #expect(pacing.dispatched(events: 5) == .take)
        pacing.lockTaken(true)
        #expect(pacing.mode == .busy(wait: 0.004))
    }
}
