import Foundation

/// A wake-up flag one thread raises and another waits for, with a timeout.
///
/// Several raises before a wait collapse into one wake-up, which is what a
/// "there may be new work" signal needs.
final class WakeSignal: @unchecked Sendable {
    // Safe because every access to `raised` happens while holding `condition`.
    private let condition = NSCondition()
    private var raised = false

    func raise() {
        condition.lock()
        raised = true
        condition.signal()
        condition.unlock()
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
