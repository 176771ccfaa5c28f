/// Decides when the dispatcher holds the "dispatching" lock, which makes capture
/// triggers skip their NOTIFY, and how long it waits between dispatches. It is a
/// pure state machine, and the dispatcher performs the I/O it asks for.
///
/// PostgreSQL serializes the commits of transactions that send a NOTIFY, so under a
/// stream of writes the dispatcher stops asking for them. A dispatch of several events
/// that arrived at `streamRate` or faster starts a stream: the dispatcher takes the
/// lock and polls instead, every `gatherDelay` at first. A rate is events over the
/// seconds since the dispatch before it began, so the time a dispatch itself takes
/// counts too. It is averaged over recent dispatches, so one uneven poll changes
/// nothing. The wait doubles, up to `maxGatherDelay`, while events arrive at
/// `growthRate` or faster, because larger batches cost less per event. From `shareRate`
/// on, slow dispatches count too: dispatches that take `growthShare` or more of the time
/// start a stream, and double the wait of one. The wait halves while events arrive
/// slower than `shrinkRate`, unless the dispatches take `shrinkShare` or more of the time
/// at `shareRate` or faster. A poll that finds nothing ends the stream, and so does one
/// at the first wait that finds less than half of `streamRate`, unless the dispatches
/// take `shrinkShare` or more of the time at `shareRate` or faster. The dispatcher then
/// gives the lock up and settles: it waits until no
/// capture that skipped its NOTIFY is still in progress (its "capturing" lock is
/// free), dispatches once more, and only then sleeps until a NOTIFY or the poll
/// interval. So below `shareRate`, each event is dispatched when its NOTIFY arrives.
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

    /// The events per `gatherDelay` from which dispatches form a stream.
    public static let streamEvents = 4

    /// The multiple of `streamRate` from which the wait between polls doubles.
    ///
    /// Under pgbench on a 2-core machine, a stream of 1,650 to 2,000 events/s kept a
    /// wait of 4 ms when the wait doubled only from twice `streamRate`. It then took
    /// about 10 events per dispatch, without holds, and pgbench lost up to 10 % more of
    /// its TPS than with a wait of 20 ms (docs/benchmarks.md, profile item 23).
    public static let growthFactor = 1.5

    /// The multiple of `streamRate` below which the wait between polls halves. Between
    /// it and `growthFactor`, the wait stays as it is.
    ///
    /// The rate of a few polls of a few events each varies by 10 % or more, so a steady
    /// stream crosses the growth rate now and then. With a wide band, the wait then
    /// stayed grown: with a factor of 1.25, a steady 1,400 events/s kept a p50 from
    /// commit to receipt of 15 ms instead of 5 ms.
    public static let shrinkFactor = 1.45

    /// The multiple of `streamRate` from which the share of the time that dispatches take
    /// counts, to start a stream, to grow its wait and to keep it.
    ///
    /// On a 2-core machine, a Django save loop with the service ran in one of two states.
    /// In a stream with held dispatches it made 754 to 867 saves/s. Without one, it made
    /// 459 to 666 saves/s, with dispatches of 1.2 to 1.3 events, one per NOTIFY. Those took
    /// the dispatcher's backend to 27.5 to 52 % of a core, and so kept the loop below the
    /// stream rate (docs/benchmarks.md, profile item 27). At 200 events/s, where the
    /// latency target is set, each event is still dispatched when its NOTIFY arrives.
    public static let shareFactor = 0.3

    /// The share of the time that dispatches take, each with the wait before it, from
    /// which they start a stream and the wait between polls doubles, at any rate from
    /// `shareRate` on.
    /// Each dispatch costs PostgreSQL a fixed part besides its events, so where dispatches
    /// are slow, because the machine is slow or busy, a short wait spends a large share
    /// of a core on that fixed part.
    ///
    /// On a 2-core machine where pgbench made 1,130 to 1,670 TPS without a config, the
    /// dispatches took 0.42 to 0.61 of the time under pgbench with the service, at 700 to
    /// 1,000 events/s and a wait of 4 ms. The wait never grew, and the dispatcher's
    /// backend used 26 to 40.5 % of a core (docs/benchmarks.md, profile item 25).
    public static let growthShare = 0.25

    /// The share of the time that dispatches take below which a wait between polls may
    /// halve, together with a rate below `shrinkRate`. It is half of `growthShare`,
    /// because doubling the wait takes the share down by half at most, so a wait that
    /// grew by the share does not halve at the next poll. From `shareRate` on, a stream
    /// at the first wait also ends below half of `streamRate` only below this share.
    ///
    /// NOTE: Where the per-event part of a dispatch outweighs its fixed part, the share
    /// hardly falls as the wait grows, so the wait grows to `maxGatherDelay` and stays,
    /// although larger batches then save little.
    public static let shrinkShare = 0.125

    /// The maximum wait between polls while busy, in seconds, and so the maximum time an
    /// event waits for its dispatch under a stream of writes.
    public static let maxGatherDelay = 0.02

    /// The weight of a dispatch in the recent rate against the one after it.
    private static let decay = 0.5

    public private(set) var mode: Mode = .idle
    /// The events and seconds of recent dispatches, each weighted by `decay` per later
    /// dispatch; their ratio is the recent rate.
    private var recentEvents = 0.0
    private var recentSeconds = 0.0
    /// The seconds that recent dispatches took, weighted as `recentSeconds` is, for the
    /// share before a stream starts.
    private var recentBusySeconds = 0.0
    /// The seconds that the dispatches of the current stream took, weighted as
    /// `recentSeconds` is. The cycle seconds add the wait before each dispatch, and the
    /// ratio of the two is the share.
    private var streamBusySeconds = 0.0
    private var streamCycleSeconds = 0.0
    /// Whether the last dispatch was part of a stream: several events, at a recent
    /// rate of `streamRate` or faster, or of `shareRate` or faster with dispatches that
    /// take `growthShare` or more of the time.
    public private(set) var lastDispatchInStream = false
    /// The first wait between polls while busy, in seconds.
    public let gatherDelay: Double
    /// The maximum wait between dispatches, in seconds.
    public let pollInterval: Double

    public init(gatherDelay: Double, pollInterval: Double) {
        precondition(gatherDelay > 0, "gatherDelay must be positive, because it sets the stream rate")
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

    /// The rate, in events per second, from which dispatches form a stream:
    /// `streamEvents` per `gatherDelay` (1,000 events/s with the service's 4 ms).
    public var streamRate: Double {
        Double(Self.streamEvents) / gatherDelay
    }

    /// The rate, in events per second, from which slow dispatches start a stream, grow
    /// its wait and keep it (300 events/s with the service's 4 ms).
    public var shareRate: Double {
        Self.shareFactor * streamRate
    }

    /// The rate, in events per second, from which the wait between polls doubles
    /// (1,500 events/s with the service's 4 ms).
    public var growthRate: Double {
        Self.growthFactor * streamRate
    }

    /// The rate, in events per second, below which the wait between polls halves
    /// (1,450 events/s with the service's 4 ms).
    public var shrinkRate: Double {
        Self.shrinkFactor * streamRate
    }

    /// Takes the number of events a dispatch took, the seconds since the dispatch before
    /// it began, and the seconds the dispatch itself took, without time spent waiting for
    /// webhook responses. A dispatch of several events at a recent rate of `streamRate`
    /// or more starts a stream, and so does one from `shareRate` on while the dispatches
    /// take `growthShare` or more of the time. While busy, an empty poll ends it, and so
    /// does a recent rate below half of `streamRate` at the first wait, unless the
    /// dispatches take `shrinkShare` or more of the time from `shareRate` on.
    public mutating func dispatched(events: Int, elapsed: Double, busy: Double) -> LockAction {
        let busy = busy.isFinite ? max(busy, 0) : 0
        recentEvents = Double(events) + Self.decay * recentEvents
        // The floor keeps dispatches that run back to back from making two events look
        // like a fast stream.
        let interval = max(elapsed, gatherDelay / 4)
        recentSeconds = interval + Self.decay * recentSeconds
        recentBusySeconds = min(busy, interval) + Self.decay * recentBusySeconds
        let rate = recentEvents / recentSeconds
        let slow = rate >= shareRate && recentBusySeconds / recentSeconds >= Self.growthShare
        lastDispatchInStream = events > 1 && (rate >= streamRate || slow)
        switch mode {
        case .idle, .settling:
            return lastDispatchInStream ? .take : .none
        case .busy(let wait):
            // The share pairs each dispatch with the wait before it. It leaves out time
            // spent in holds, because a hold replaces that wait.
            streamBusySeconds = busy + Self.decay * streamBusySeconds
            streamCycleSeconds = busy + wait + Self.decay * streamCycleSeconds
            let share = streamBusySeconds / streamCycleSeconds
            // Below `shareRate` the share counts for nothing, so a slow stream gets its
            // first wait back and then ends, even where every dispatch is slow. Above it,
            // a stream that slow dispatches started stays down to `shrinkShare`: with the
            // same threshold to start and to stay, a share near it started and ended a
            // stream on alternate dispatches.
            let shareCounts = rate >= shareRate
            if events == 0 || (wait <= gatherDelay && rate < streamRate / 2 && !(shareCounts && share >= Self.shrinkShare)) {
                mode = .settling(retry: Self.firstSettleRetry)
                return .release
            }
            if rate >= growthRate || (shareCounts && share >= Self.growthShare) {
                mode = .busy(wait: min(wait * 2, max(Self.maxGatherDelay, gatherDelay)))
            } else if rate < shrinkRate && !(shareCounts && share >= Self.shrinkShare) {
                // The band between halving and doubling is narrow, so a stream that slowed
                // after a burst, or crossed the growth rate for a moment, gets its short
                // wait back.
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
            streamBusySeconds = 0
            streamCycleSeconds = 0
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
