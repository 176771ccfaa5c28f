import Foundation
import Synchronization

/// A flag set once when the service begins to stop; every loop checks it.
final class StopFlag: Sendable {
    private let stopped = Atomic<Bool>(false)

    var isSet: Bool { stopped.load(ordering: .acquiring) }

    func set() {
        stopped.store(true, ordering: .releasing)
    }

    /// Sleeps up to `seconds`, in short steps, returning early once the flag is set.
    func sleep(seconds: Double) {
        var remaining = seconds
        while remaining > 0 && !isSet {
            let step = min(remaining, 0.05)
            Thread.sleep(forTimeInterval: step)
            remaining -= step
        }
    }
}
