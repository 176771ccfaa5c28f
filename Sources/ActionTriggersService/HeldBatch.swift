import ActionTriggersCore
import Synchronization

/// The deliveries of one held dispatch (`HeldDeliveries`), shared by the dispatcher,
/// which waits for their attempts with its transaction open, and the delivery worker,
/// which reports each attempt's outcome here instead of writing it.
final class HeldBatch: Sendable {
    typealias Action = HeldDeliveries<AttemptRecord>.FinishAction

    private let state: Mutex<HeldDeliveries<AttemptRecord>>
    /// Raised when the last attempt finishes, or the last delivery is handed back.
    private let settled = WakeSignal()

    init(ids: [Int64]) {
        state = Mutex(HeldDeliveries(ids: ids))
    }

    /// Waits until every attempt has finished or `timeout` seconds pass, and returns
    /// whether every attempt finished.
    func wait(timeout: Double) -> Bool {
        let deadline = ContinuousClock.now + .milliseconds(Int64(timeout * 1000))
        while !state.withLock({ $0.isSettled }) {
            let left = deadline - .now
            if left <= .zero {
                return false
            }
            settled.wait(timeout: left.seconds)
        }
        return true
    }

    /// Takes an attempt's outcome and returns what the delivery worker does with it.
    func finish(id: Int64, outcome: AttemptRecord) -> Action {
        let (action, isSettled) = state.withLock { held in
            (held.finish(id: id, outcome: outcome), held.isSettled)
        }
        if action == .held && isSettled {
            settled.raise()
        }
        return action
    }

    /// Takes back a delivery that was never sent; returns whether the dispatcher writes
    /// it pending, so that the worker need not release it.
    func handBack(id: Int64) -> Bool {
        let (handedBack, isSettled) = state.withLock { held in
            (held.handBack(id: id), held.isSettled)
        }
        if handedBack && isSettled {
            settled.raise()
        }
        return handedBack
    }

    /// Whether the dispatch rolled back, so that its deliveries do not exist.
    var isAborted: Bool {
        state.withLock { $0.phase == .aborted }
    }

    func close() -> HeldDeliveries<AttemptRecord>.Closing {
        state.withLock { $0.close() }
    }

    func commit() -> [AttemptRecord] {
        state.withLock { $0.commit() }
    }

    func abort() {
        state.withLock { $0.abort() }
    }
}
