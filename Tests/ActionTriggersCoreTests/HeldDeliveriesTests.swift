import ActionTriggersCore
import Testing

@Suite("HeldDeliveries")
struct HeldDeliveriesTests {
    @Test("outcomes while holding are held")
    func outcomesWhileHolding() {
        var held = HeldDeliveries<String>(ids: [1, 2])
        #expect(!held.isSettled)

        let firstAction = held.finish(id: 1, outcome: "first")
        #expect(firstAction == .held)
        #expect(!held.isSettled)
        let secondAction = held.finish(id: 2, outcome: "second")
        #expect(secondAction == .held)
        #expect(held.isSettled)

        let closing = held.close()
        #expect(closing.outcomes == ["first", "second"])
        #expect(closing.running.isEmpty)
        #expect(closing.unsent.isEmpty)
        #expect(held.phase == .closed)
    }

    @Test("attempts still running are listed")
    func runningListed() {
        var held = HeldDeliveries<String>(ids: [1, 2, 3])
        let action = held.finish(id: 2, outcome: "second")
        #expect(action == .held)

        let closing = held.close()
        #expect(closing.outcomes == ["second"])
        #expect(closing.running == [1, 3])
    }

    @Test("late outcome waits for the commit")
    func lateOutcomeDeferred() {
        var held = HeldDeliveries<String>(ids: [1, 2])
        _ = held.close()

        let lateAction = held.finish(id: 1, outcome: "late")
        #expect(lateAction == .deferred)
        let deferred = held.commit()
        #expect(deferred == ["late"])
        #expect(held.phase == .committed)
        let afterCommitAction = held.finish(id: 2, outcome: "after commit")
        #expect(afterCommitAction == .record)
    }

    @Test("abort drops every later outcome")
    func abortDrops() {
        var held = HeldDeliveries<String>(ids: [1, 2, 3])
        let heldAction = held.finish(id: 1, outcome: "held")
        #expect(heldAction == .held)
        _ = held.close()
        let lateAction = held.finish(id: 2, outcome: "late")
        #expect(lateAction == .deferred)

        held.abort()
        #expect(held.phase == .aborted)
        let afterAbortAction = held.finish(id: 3, outcome: "after abort")
        #expect(afterAbortAction == .drop)
    }

    @Test("unknown or repeated id is dropped")
    func unknownIDDropped() {
        var held = HeldDeliveries<String>(ids: [1])
        let unknownAction = held.finish(id: 7, outcome: "unknown")
        #expect(unknownAction == .drop)
        let firstAction = held.finish(id: 1, outcome: "first")
        #expect(firstAction == .held)
        let repeatedAction = held.finish(id: 1, outcome: "again")
        #expect(repeatedAction == .drop)
        let closing = held.close()
        #expect(closing.outcomes == ["first"])
    }

    @Test("handed back delivery is written unsent")
    func handedBackUnsent() {
        var held = HeldDeliveries<String>(ids: [1, 2])
        let handedBack = held.handBack(id: 2)
        #expect(handedBack)
        let handedBackAgain = held.handBack(id: 2)
        #expect(!handedBackAgain)
        #expect(!held.isSettled)
        let firstAction = held.finish(id: 1, outcome: "first")
        #expect(firstAction == .held)
        #expect(held.isSettled)

        let closing = held.close()
        #expect(closing.unsent == [2])
        #expect(closing.running.isEmpty)
        let handedBackAfterward = held.handBack(id: 1)
        #expect(!handedBackAfterward)
    }

    @Test("nothing handed back after close")
    func noHandBackAfterClose() {
        var held = HeldDeliveries<String>(ids: [1])
        _ = held.close()
        let handedBack = held.handBack(id: 1)
        #expect(!handedBack)
    }
}

@Suite("DispatchHoldPolicy")
struct DispatchHoldPolicyTests {
    @Test("holds from the start")
    func holdsAtStart() {
        let policy = DispatchHoldPolicy()
        #expect(policy.shouldHold(now: 0))
        #expect(policy.resumeAt == nil)
    }

    @Test("settled hold keeps holding")
    func settledKeepsHolding() {
        var policy = DispatchHoldPolicy()
        policy.held(settled: true, now: 5)
        #expect(policy.shouldHold(now: 5))
    }

    @Test("unsettled hold pauses holding")
    func unsettledPauses() {
        var policy = DispatchHoldPolicy()
        policy.held(settled: false, now: 5)
        #expect(!policy.shouldHold(now: 5))
        #expect(!policy.shouldHold(now: 5 + DispatchHoldPolicy.firstPause - 0.001))
        #expect(policy.shouldHold(now: 5 + DispatchHoldPolicy.firstPause))
    }

    @Test("pauses double up to the maximum")
    func pausesDouble() {
        var policy = DispatchHoldPolicy()
        var now = 0.0
        var pauses: [Double] = []
        for _ in 0..<9 {
            policy.held(settled: false, now: now)
            let resumeAt = policy.resumeAt ?? now
            pauses.append(resumeAt - now)
            now = resumeAt
        }
        #expect(pauses == [1, 2, 4, 8, 16, 32, 60, 60, 60])
    }

    @Test("settled hold resets the pause")
    func settledResetsPause() {
        var policy = DispatchHoldPolicy()
        policy.held(settled: false, now: 0)
        policy.held(settled: false, now: 1)
        #expect(policy.nextPause == 4)

        policy.held(settled: true, now: 3)
        #expect(policy.resumeAt == nil)
        #expect(policy.nextPause == DispatchHoldPolicy.firstPause)
        policy.held(settled: false, now: 4)
        #expect(policy.resumeAt == 4 + DispatchHoldPolicy.firstPause)
    }

    @Test("failed hold pauses holding")
    func failedPauses() {
        var policy = DispatchHoldPolicy()
        policy.failed(now: 1)
        #expect(!policy.shouldHold(now: 1.5))
        #expect(policy.shouldHold(now: 1 + DispatchHoldPolicy.firstPause))
        policy.failed(now: 2)
        #expect(policy.resumeAt == 2 + 2 * DispatchHoldPolicy.firstPause)
    }
}
