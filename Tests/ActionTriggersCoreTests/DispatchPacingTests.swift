import ActionTriggersCore
import Testing

@Suite("DispatchPacing")
struct DispatchPacingTests {
    func busyPacing() -> DispatchPacing {
        var pacing = DispatchPacing(gatherDelay: 0.004, pollInterval: 5)
        #expect(pacing.dispatched(events: 2, elapsed: 0.001, busy: 0) == .take)
        pacing.lockTaken(true)
        return pacing
    }

    /// Feeds `polls` polls of a steady stream at `eventsPerSecond`, each taking `busy`
    /// seconds besides its wait, and returns the waits after them.
    func feed(_ pacing: inout DispatchPacing, eventsPerSecond: Double, polls: Int, busy: Double = 0.001) -> [Double] {
        var waits: [Double] = []
        for _ in 0..<polls {
            guard case .busy(let wait) = pacing.mode else {
                break
            }
            let elapsed = wait + busy
            _ = pacing.dispatched(events: max(1, Int(eventsPerSecond * elapsed)), elapsed: elapsed, busy: busy)
            if case .busy(let next) = pacing.mode {
                waits.append(next)
            }
        }
        return waits
    }

    @Test("idle waits for a wake-up or the poll")
    func idleWaitsForWake() {
        var pacing = DispatchPacing(gatherDelay: 0.004, pollInterval: 5)
        #expect(pacing.dispatched(events: 0, elapsed: 5, busy: 0) == .none)
        #expect(pacing.dispatched(events: 1, elapsed: 0.001, busy: 0) == .none)
        #expect(pacing.mode == .idle)
        #expect(pacing.wait == .untilWoken(timeout: 5))
        #expect(!pacing.mustSettle)
    }

    @Test("several events take the lock")
    func severalEventsTakeLock() {
        let pacing = busyPacing()
        #expect(pacing.mode == .busy(wait: 0.004))
        #expect(pacing.wait == .fixed(seconds: 0.004))
        #expect(pacing.streamRate == 1000)
    }

    @Test("slow events take no lock")
    func slowEventsStayIdle() {
        var pacing = DispatchPacing(gatherDelay: 0.004, pollInterval: 5)
        // Two events 5 ms after the last dispatch: 400 events/s, below the stream rate.
        #expect(pacing.dispatched(events: 2, elapsed: 0.005, busy: 0) == .none)
        #expect(!pacing.lastDispatchInStream)
        // A bulk insert after a quiet minute is no stream either.
        #expect(pacing.dispatched(events: 500, elapsed: 60, busy: 0) == .none)
        #expect(!pacing.lastDispatchInStream)
        // One event is never a stream, however soon after the last dispatch.
        #expect(pacing.dispatched(events: 1, elapsed: 0, busy: 0) == .none)
        #expect(pacing.mode == .idle)
    }

    @Test("steady moderate rate takes no lock")
    func moderateRateStaysIdle() {
        var pacing = DispatchPacing(gatherDelay: 0.004, pollInterval: 5)
        // At 800 events/s, dispatched on each NOTIFY: mostly one event per 1.25 ms,
        // then two events in 2 ms, which alone would look like 1,000 events/s.
        for _ in 0..<10 {
            #expect(pacing.dispatched(events: 1, elapsed: 0.00125, busy: 0) == .none)
        }
        #expect(pacing.dispatched(events: 2, elapsed: 0.002, busy: 0) == .none)
        #expect(pacing.mode == .idle)
    }

    @Test("lock held elsewhere stays idle")
    func lockNotTaken() {
        var pacing = DispatchPacing(gatherDelay: 0.004, pollInterval: 5)
        #expect(pacing.dispatched(events: 40, elapsed: 0.004, busy: 0) == .take)
        pacing.lockTaken(false)
        #expect(pacing.mode == .idle)
        #expect(pacing.dispatched(events: 3, elapsed: 0.002, busy: 0) == .take)
    }

    @Test("fast stream doubles the wait up to the cap")
    func fastStreamDoubles() {
        var pacing = busyPacing()
        let waits = feed(&pacing, eventsPerSecond: 3000, polls: 5)
        #expect(waits == [0.008, 0.016, 0.02, 0.02, 0.02])
    }

    @Test("steady rate below growth rate keeps a short wait")
    func steadyRateBelowGrowthRate() {
        var pacing = busyPacing()
        _ = feed(&pacing, eventsPerSecond: 1400, polls: 6)
        #expect(pacing.wait == .fixed(seconds: 0.004))
        // Two polls of 8 events in 5 ms each (1,600 events/s) grow the wait, and a steady
        // 1,400 events/s after them brings it back.
        #expect(pacing.dispatched(events: 8, elapsed: 0.005, busy: 0) == .none)
        #expect(pacing.dispatched(events: 8, elapsed: 0.005, busy: 0) == .none)
        #expect(pacing.wait != .fixed(seconds: 0.004))
        _ = feed(&pacing, eventsPerSecond: 1400, polls: 8)
        #expect(pacing.wait == .fixed(seconds: 0.004))
    }

    @Test("rate above growth rate grows the wait", arguments: [1600.0, 1900.0])
    func growthRateGrowsWait(eventsPerSecond: Double) {
        var pacing = busyPacing()
        #expect(pacing.growthRate == 1500)
        #expect(pacing.shrinkRate == 1450)
        _ = feed(&pacing, eventsPerSecond: eventsPerSecond, polls: 8)
        #expect(pacing.wait == .fixed(seconds: DispatchPacing.maxGatherDelay))
    }

    @Test("rate counts the dispatch's own time")
    func rateCountsDispatchTime() {
        var pacing = busyPacing()
        // Eight events after a wait of 4 ms and a dispatch that took 4 ms more, spent
        // waiting for webhook responses in a hold, which is no dispatch time. That is
        // 1,000 events/s, so the wait stays, although eight events in 4 ms alone would
        // have doubled it.
        for _ in 0..<5 {
            #expect(pacing.dispatched(events: 2 * DispatchPacing.streamEvents, elapsed: 0.008, busy: 0) == .none)
        }
        #expect(pacing.wait == .fixed(seconds: 0.004))
        // The same polls at 2,500 events/s grow it within a few polls.
        _ = feed(&pacing, eventsPerSecond: 2500, polls: 6, busy: 0)
        #expect(pacing.wait == .fixed(seconds: 0.02))
    }

    @Test("slow dispatches grow the wait")
    func slowDispatchesGrowWait() {
        var pacing = busyPacing()
        // 1,000 events/s, below the growth rate, with dispatches of 3 ms. Each takes 0.43
        // of its cycle at a wait of 4 ms, 0.27 at 8 ms and 0.16 at 16 ms, where it stays.
        let waits = feed(&pacing, eventsPerSecond: 1000, polls: 6, busy: 0.003)
        #expect(waits == [0.008, 0.016, 0.016, 0.016, 0.016, 0.016])
    }

    @Test("fast dispatches keep the short wait")
    func fastDispatchesKeepWait() {
        var pacing = busyPacing()
        // The same rate with dispatches of 1 ms: 0.2 of the time.
        let waits = feed(&pacing, eventsPerSecond: 1000, polls: 6, busy: 0.001)
        #expect(waits == Array(repeating: 0.004, count: 6))
    }

    @Test("dispatches that speed up halve the wait")
    func fasterDispatchesHalveWait() {
        var pacing = busyPacing()
        _ = feed(&pacing, eventsPerSecond: 1000, polls: 4, busy: 0.003)
        #expect(pacing.wait == .fixed(seconds: 0.016))
        // Dispatches of 0.5 ms at 16 ms are 0.03 of the time, and the rate is below the
        // shrink rate, so the wait halves back to the start.
        _ = feed(&pacing, eventsPerSecond: 1000, polls: 8, busy: 0.0005)
        #expect(pacing.wait == .fixed(seconds: 0.004))
    }

    @Test("slow dispatches at a low rate end the stream")
    func slowDispatchesAtLowRateRelease() {
        var pacing = busyPacing()
        _ = feed(&pacing, eventsPerSecond: 1000, polls: 4, busy: 0.003)
        #expect(pacing.wait == .fixed(seconds: 0.016))
        // At 200 events/s, with dispatches as slow as before, the wait halves back to
        // the start, and a poll there releases the lock.
        let waits = feed(&pacing, eventsPerSecond: 200, polls: 10, busy: 0.003)
        #expect(waits.count <= 5)
        #expect(pacing.mode == .settling(retry: DispatchPacing.firstSettleRetry))
        #expect(pacing.mustSettle)
    }

    @Test("hold time leaves the share")
    func holdTimeLeavesShare() {
        var pacing = busyPacing()
        _ = feed(&pacing, eventsPerSecond: 1000, polls: 3, busy: 0.002)
        #expect(pacing.wait == .fixed(seconds: 0.008))
        // Holds of 20 ms replace the wait of 8 ms and make each interval longer, but the
        // dispatches take as long as before, so the wait stays.
        for _ in 0..<6 {
            #expect(pacing.dispatched(events: 22, elapsed: 0.022, busy: 0.002) == .none)
        }
        #expect(pacing.wait == .fixed(seconds: 0.008))
    }

    @Test("one slow dispatch passes")
    func oneSlowDispatchPasses() {
        var pacing = busyPacing()
        _ = feed(&pacing, eventsPerSecond: 1000, polls: 6, busy: 0.001)
        #expect(pacing.wait == .fixed(seconds: 0.004))
        // One dispatch of 2.5 ms among dispatches of 1 ms may double the wait, and the
        // fast dispatches after it halve it back within a few polls.
        _ = pacing.dispatched(events: 6, elapsed: 0.005, busy: 0.0025)
        let waits = feed(&pacing, eventsPerSecond: 1000, polls: 6, busy: 0.001)
        #expect(waits.last == 0.004)
    }

    @Test("invalid busy time counts as none")
    func invalidBusyTime() {
        var pacing = busyPacing()
        for busy in [Double.nan, -1, .infinity] {
            _ = pacing.dispatched(events: 5, elapsed: 0.005, busy: busy)
        }
        #expect(pacing.wait == .fixed(seconds: 0.004))
        // Slow dispatches after them still grow the wait.
        _ = feed(&pacing, eventsPerSecond: 1000, polls: 3, busy: 0.003)
        #expect(pacing.wait != .fixed(seconds: 0.004))
    }

    @Test("slow dispatches start a stream")
    func slowDispatchesStartStream() {
        var pacing = DispatchPacing(gatherDelay: 0.004, pollInterval: 5)
        // 400 events/s, two per NOTIFY, with dispatches that take most of the time.
        #expect(pacing.dispatched(events: 2, elapsed: 0.005, busy: 0.004) == .take)
        #expect(pacing.lastDispatchInStream)
        pacing.lockTaken(true)
        // Below half of the stream rate the stream stays, and its wait grows while the
        // dispatches take a quarter of the time or more.
        let waits = feed(&pacing, eventsPerSecond: 400, polls: 4, busy: 0.004)
        #expect(waits == [0.008, 0.016, 0.02, 0.02])
    }

    @Test("slow dispatches below the share rate start no stream")
    func slowDispatchesAtLowRateStayIdle() {
        var pacing = DispatchPacing(gatherDelay: 0.004, pollInterval: 5)
        // 250 events/s, two per NOTIFY, with dispatches that take most of the time, so
        // each event is still dispatched on its NOTIFY.
        for _ in 0..<10 {
            #expect(pacing.dispatched(events: 2, elapsed: 0.008, busy: 0.006) == .none)
        }
        #expect(pacing.mode == .idle)
        #expect(!pacing.lastDispatchInStream)
    }

    @Test("fast dispatches at a moderate rate start no stream")
    func fastDispatchesAtModerateRateStayIdle() {
        var pacing = DispatchPacing(gatherDelay: 0.004, pollInterval: 5)
        // 400 events/s, two per NOTIFY, with dispatches of 1 ms: 0.2 of the time.
        for _ in 0..<10 {
            #expect(pacing.dispatched(events: 2, elapsed: 0.005, busy: 0.001) == .none)
        }
        #expect(pacing.mode == .idle)
    }

    @Test("share near the threshold keeps one state")
    func shareNearThresholdKeepsState() {
        var pacing = DispatchPacing(gatherDelay: 0.004, pollInterval: 5)
        // A steady 400 events/s with dispatches of 1.3 ms: 0.26 of the time in idle mode,
        // one dispatch per NOTIFY every 5 ms, and 0.245 at the first wait of a stream.
        var takes = 0
        var releases = 0
        for _ in 0..<200 {
            let elapsed: Double
            switch pacing.mode {
            case .busy(let wait):
                elapsed = wait + 0.0013
            case .idle:
                elapsed = 0.005
            case .settling(let retry):
                elapsed = retry + 0.0013
            }
            switch pacing.dispatched(events: max(1, Int((400 * elapsed).rounded())), elapsed: elapsed, busy: 0.0013) {
            case .take:
                takes += 1
                pacing.lockTaken(true)
            case .release:
                releases += 1
                pacing.settled(true)
            case .none:
                break
            }
        }
        #expect(takes == 1)
        #expect(releases == 0)
    }

    @Test("fast dispatches end a slow stream")
    func fastDispatchesEndSlowStream() {
        var pacing = DispatchPacing(gatherDelay: 0.004, pollInterval: 5)
        #expect(pacing.dispatched(events: 2, elapsed: 0.005, busy: 0.004) == .take)
        pacing.lockTaken(true)
        _ = feed(&pacing, eventsPerSecond: 400, polls: 4, busy: 0.004)
        #expect(pacing.wait == .fixed(seconds: 0.02))
        // Dispatches of 0.5 ms at 400 events/s halve the wait back to the start, and a
        // poll there, below half of the stream rate, releases the lock.
        _ = feed(&pacing, eventsPerSecond: 400, polls: 12, busy: 0.0005)
        #expect(pacing.mode == .settling(retry: DispatchPacing.firstSettleRetry))
    }

    @Test("one uneven poll keeps the wait")
    func unevenPollKeepsWait() {
        var pacing = busyPacing()
        _ = feed(&pacing, eventsPerSecond: 1000, polls: 6)
        #expect(pacing.wait == .fixed(seconds: 0.004))
        // Eight events in 4.5 ms: 1,778 events/s in this poll alone.
        #expect(pacing.dispatched(events: 8, elapsed: 0.0045, busy: 0) == .none)
        #expect(pacing.wait == .fixed(seconds: 0.004))
    }

    @Test("slower stream halves the wait down to the start")
    func slowerStreamHalves() {
        var pacing = busyPacing()
        _ = feed(&pacing, eventsPerSecond: 3000, polls: 3)
        #expect(pacing.wait == .fixed(seconds: 0.02))
        // Between the shrink rate and the growth rate, the wait stays.
        #expect(feed(&pacing, eventsPerSecond: 1480, polls: 4) == [0.02, 0.02, 0.02, 0.02])
        _ = feed(&pacing, eventsPerSecond: 1000, polls: 6)
        #expect(pacing.mode == .busy(wait: 0.004))
    }

    @Test("moderate rate returns to NOTIFY", arguments: [100.0, 200.0, 300.0, 450.0])
    func moderateRateReleases(eventsPerSecond: Double) {
        var pacing = busyPacing()
        _ = feed(&pacing, eventsPerSecond: 3000, polls: 3)
        // Dispatches of 0.4 ms take 0.09 of a cycle at the first wait, less than an eighth.
        _ = feed(&pacing, eventsPerSecond: eventsPerSecond, polls: 12, busy: 0.0004)
        #expect(pacing.mode == .settling(retry: DispatchPacing.firstSettleRetry))
        pacing.settled(true)
        #expect(pacing.mode == .idle)
    }

    @Test("stream at the first wait stays busy", arguments: [700.0, 1200.0, 1400.0])
    func streamAtFirstWaitStaysBusy(eventsPerSecond: Double) {
        var pacing = busyPacing()
        #expect(feed(&pacing, eventsPerSecond: eventsPerSecond, polls: 5) == [0.004, 0.004, 0.004, 0.004, 0.004])
    }

    @Test("empty poll releases and settles")
    func emptyPollReleases() {
        var pacing = busyPacing()
        #expect(pacing.dispatched(events: 0, elapsed: 0.004, busy: 0) == .release)
        #expect(pacing.mode == .settling(retry: DispatchPacing.firstSettleRetry))
        #expect(pacing.mustSettle)
        #expect(pacing.wait == .untilWoken(timeout: DispatchPacing.firstSettleRetry))
    }

    @Test("settling retries back off to the poll")
    func settlingBacksOff() {
        var pacing = busyPacing()
        _ = pacing.dispatched(events: 0, elapsed: 0.004, busy: 0)
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
        #expect(pacing.dispatched(events: 1, elapsed: 0.001, busy: 0) == .none)
        #expect(pacing.mustSettle)
    }

    @Test("settled check returns to idle")
    func settledReturnsIdle() {
        var pacing = busyPacing()
        _ = pacing.dispatched(events: 0, elapsed: 0.004, busy: 0)
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
        _ = pacing.dispatched(events: 0, elapsed: 0.004, busy: 0)
        #expect(pacing.dispatched(events: 5, elapsed: 0.002, busy: 0) == .take)
        pacing.lockTaken(true)
        #expect(pacing.mode == .busy(wait: 0.004))
    }
}
