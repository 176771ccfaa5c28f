/// Decides when the dispatcher holds the "dispatching" lock, which makes capture
/// triggers skip their NOTIFY, and how long it waits between dispatches. It is a
/// pure state machine, and the dispatcher performs the I/O it asks for.
///
/// PostgreSQL serializes the commits of transactions that send a NOTIFY, so under a
/// stream of writes the dispatcher stops asking for them: it takes the lock and
/// polls instead, every `gatherDelay` at first. The wait doubles, up to
/// `maxGatherDelay`, while events arrive at the rate of `fullPoll` per `gatherDelay`
/// or faster (2,000 events/s with the service's 4 ms), because larger batches cost
/// less per event. It halves while they arrive at less than half that rate, so at
/// lower rates an event waits no longer than `gatherDelay` for its dispatch. When a
/// poll finds nothing, the dispatcher gives the lock up and settles: it waits until
/// no capture that skipped its NOTIFY is still in progress (its "capturing" lock is
/// free), dispatches once more, and only then sleeps until a NOTIFY or the poll
/// interval.
public struct DispatchPacing: Sendable, Equatable {
    public enum Mode: Sendable, Equatable {
        /// Woken by NOTIFY or by the poll interval.
        case idle
        /// Holds the "dispatching" lock and polls every `wait` seconds.
        case busy(wait: Double)
        /// Gave the lock up; checks for captures in progress every `retry` seconds,
        /// which double up to the poll interval.
        case settling(retry: Double)
    }

    /// The dispatcher's step with the "dispatching" lock after a dispatch.
    public enum LockAction: Sendable, Equatable {
        case none
        /// Try to take it, and report the result with `lockTaken(_:)`.
        case take
        /// Release it, then settle.
        case release
    }

    /// The dispatcher's wait before its next dispatch.
    public enum Wait: Sendable, Equatable {
        /// Until woken, or `timeout` seconds.
        case untilWoken(timeout: Double)
        /// `seconds`, whatever wakes it meanwhile.
        case fixed(seconds: Double)
    }

    /// The first wait between two checks for captures in progress, in seconds.
    public static let firstSettleRetry = 0.001

    /// The events of a poll after a wait of `gatherDelay` from which the wait between
    /// polls doubles. After a longer wait, a poll needs proportionally more.
    public static let fullPoll = 8

    /// The maximum wait between polls while busy, in seconds, and so the maximum time an
    /// event waits for its dispatch under a stream of writes.
    public static let maxGatherDelay = 0.02

    public private(set) var mode: Mode = .idle
    /// The first wait between polls while busy, in seconds.
    public let gatherDelay: Double
    /// The maximum wait between dispatches, in seconds.
    public let pollInterval: Double

    public init(gatherDelay: Double, pollInterval: Double) {
        precondition(gatherDelay > 0, "gatherDelay must be positive, because full polls scale with the wait over it")
        self.gatherDelay = gatherDelay
        self.pollInterval = pollInterval
    }

    /// Whether the dispatcher must check for captures in progress before it dispatches.
    public var mustSettle: Bool {
        if case .settling = mode {
            return true
        }
        return false
    }

    /// Takes the number of events a dispatch took. A dispatch of several events starts
    /// a stream; an empty one while busy ends it.
    public mutating func dispatched(events: Int) -> LockAction {
        switch mode {
        case .idle, .settling:
            return events > 1 ? .take : .none
        case .busy(let wait):
            // Thresholds in events per poll that grow with the wait compare rates: a
            // fixed count would leave a band of rates (4 to 8 events per 20 ms) in
            // which a grown wait never shrinks again.
            let fullPoll = Double(Self.fullPoll) * wait / gatherDelay
            if Double(events) >= fullPoll {
                mode = .busy(wait: min(wait * 2, max(Self.maxGatherDelay, gatherDelay)))
            } else if events == 0 {
                mode = .settling(retry: Self.firstSettleRetry)
                return .release
            } else if Double(events) < fullPoll / 2 {
                mode = .busy(wait: max(wait / 2, gatherDelay))
            }
            return .none
        }
    }

    /// Takes the result of a `.take`. A lock that another session holds for a moment
    /// (a capture checks it) is tried again after the next dispatch of several events.
    public mutating func lockTaken(_ taken: Bool) {
        if taken {
            mode = .busy(wait: gatherDelay)
        }
    }

    /// Takes the result of a check for captures in progress, made while settling.
    public mutating func settled(_ noCaptureInProgress: Bool) {
        guard case .settling(let retry) = mode else {
            return
        }
        mode = noCaptureInProgress ? .idle : .settling(retry: min(retry * 2, pollInterval))
    }

    /// The wait before the next dispatch. While settling, the wait is the retry before
    /// the next check; the dispatch after that check finds what the captures committed.
    public var wait: Wait {
        switch mode {
        case .idle:
            return .untilWoken(timeout: pollInterval)
        case .busy(let wait):
            return .fixed(seconds: wait)
        case .settling(let retry):
            return .untilWoken(timeout: retry)
        }
    }
}
