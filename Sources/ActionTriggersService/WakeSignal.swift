import Foundation

/// A wake-up flag one thread raises and another waits for, with a timeout.
///
/// Several raises before a wait collapse into one wake-up, which is what a
/// "there may be new work" signal needs.
final class WakeSignal: @unchecked Sendable {
    // Safe because every access to `raised` happens while holding `condition`.
    private let condition = NSCondition()
    private var raised = false
    private var interrupt: (@Sendable () -> Void)?

    /// Raises the flag, wakes a `wait`, and calls the interrupt hook if one is set.
    func raise() {
        condition.lock()
        raised = true
        condition.signal()
        interrupt?()
        condition.unlock()
    }

    /// Sets a hook that `raise` calls, for a waiter that blocks somewhere else
    /// (the delivery worker waits inside libcurl); `nil` removes it.
    func setInterrupt(_ hook: (@Sendable () -> Void)?) {
        condition.lock()
        interrupt = hook
        condition.unlock()
    }

    /// Returns whether the flag was raised, and lowers it, without waiting.
    func consume() -> Bool {
        condition.lock()
        defer { condition.unlock() }
        let wasRaised = raised
        raised = false
        return wasRaised
    }

    /// Waits until raised or until `timeout` seconds pass; returns whether it was raised.
    @discardableResult
    func wait(timeout: Double) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        let deadline = Date(timeIntervalSinceNow: max(0, timeout))
        while !raised {
            if !condition.wait(until: deadline) {
                break
            }
        }
        let wasRaised = raised
        raised = false
        return wasRaised
    }
}
