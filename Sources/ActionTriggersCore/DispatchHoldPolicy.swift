/// Decides whether a dispatch keeps its transaction open until the first attempts of
/// the webhook deliveries it claims have finished (`HeldDeliveries`). It is a pure
/// policy, and its times are seconds on a monotonic clock.
///
/// Holding writes each of those deliveries once instead of twice, but the dispatcher
/// waits meanwhile, so a hold lasts at most `maxWait`. A hold that ends with attempts
/// still running (a slow receiver, or a moment of a busy machine), or whose
/// transaction fails, pauses holding: for `firstPause`, doubling with each such hold
/// in a row up to `maxPause`. A hold that ends with every attempt finished resets the
/// pause. While paused, dispatches write their claimed deliveries in flight and return
/// at once, as they do without this policy.
public struct DispatchHoldPolicy: Sendable, Equatable {
    /// The maximum wait of a dispatch for the attempts of the deliveries it holds, in
    /// seconds. Dispatching stops for as long, on top of the wait between polls under a
    /// stream of writes.
    public static let maxWait = 0.02

    /// The pause after the first hold that ran out of time or failed, in seconds.
    public static let firstPause = 1.0

    /// The maximum pause, in seconds. Against a receiver that always takes longer than
    /// `maxWait`, dispatching then stops for `maxWait` once every `maxPause`.
    public static let maxPause = 60.0

    /// When holding may start again; nil while it is allowed.
    public private(set) var resumeAt: Double?
    /// The pause that the next hold that runs out of time or fails starts.
    public private(set) var nextPause = firstPause

    public init() {}

    /// Returns whether a dispatch at `now` keeps its transaction open.
    public func shouldHold(now: Double) -> Bool {
        guard let resumeAt else { return true }
        return now >= resumeAt
    }

    /// Records the end of a hold at `now`. `settled` is true when every attempt had finished.
    public mutating func held(settled: Bool, now: Double) {
        if settled {
            resumeAt = nil
            nextPause = Self.firstPause
        } else {
            pause(now: now)
        }
    }

    /// Records a held transaction that failed at `now`. The next dispatches write their
    /// deliveries in flight, so a fault in the held path cannot send the same events
    /// again and again.
    public mutating func failed(now: Double) {
        pause(now: now)
    }

    private mutating func pause(now: Double) {
        resumeAt = now + nextPause
        nextPause = min(nextPause * 2, Self.maxPause)
    }
}
