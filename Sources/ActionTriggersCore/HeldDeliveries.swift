/// The webhook deliveries that a dispatch claimed inside a transaction it keeps open
/// until their first attempts finish, and the outcomes of those attempts. It is a pure
/// state machine, and the dispatcher and the delivery worker perform the I/O.
///
/// While the transaction is open, the deliveries exist only here. When their attempts
/// finish in time, the dispatcher writes each delivery once, already finished or due
/// for a retry, instead of writing it in flight and then rewriting it with the outcome.
/// If the service or the connection fails first, the transaction rolls back, the events
/// stay undispatched, and they are dispatched and sent again with the same webhook-id.
///
/// The phases run `holding`, then `closed` when the dispatcher stops waiting and writes
/// the deliveries, then `committed` or `aborted`. An attempt that finishes after `close`
/// is written by the delivery worker, as for any delivery in flight, but only once the
/// transaction that creates its delivery row has committed.
public struct HeldDeliveries<Record>: Sendable where Record: Sendable {
    public enum Phase: Sendable, Equatable {
        /// The dispatcher waits for the attempts.
        case holding
        /// The dispatcher is writing the deliveries; the attempts still running are
        /// written in flight.
        case closed
        /// The deliveries are in the table.
        case committed
        /// The transaction rolled back: the events will be dispatched again.
        case aborted
    }

    /// The delivery worker's next step with an attempt's outcome.
    public enum FinishAction: Sendable, Equatable {
        /// Nothing: the dispatcher writes it with the delivery.
        case held
        /// Nothing yet: `commit()` returns it once the delivery row exists.
        case deferred
        /// Write it to the delivery log now, as for any delivery in flight.
        case record
        /// Drop it: the transaction rolled back, so the delivery does not exist.
        case drop
    }

    /// The deliveries that the dispatcher writes when it stops waiting, by state.
    public struct Closing: Sendable {
        /// The outcomes of the attempts that finished, in the order they finished.
        public var outcomes: [Record]
        /// The deliveries whose attempt still runs: they are written in flight.
        public var running: Set<Int64>
        /// The deliveries handed back without an attempt: they are written pending.
        public var unsent: Set<Int64>
    }

    public private(set) var phase: Phase = .holding
    private var running: Set<Int64>
    private var outcomes: [Record] = []
    private var unsent: Set<Int64> = []
    private var deferred: [Record] = []

    public init(ids: some Sequence<Int64>) {
        running = Set(ids)
    }

    /// Whether every held delivery's attempt has finished or was handed back.
    public var isSettled: Bool {
        running.isEmpty
    }

    /// Takes the outcome of delivery `id`'s attempt and returns what the worker does with it.
    public mutating func finish(id: Int64, outcome: Record) -> FinishAction {
        switch phase {
        case .holding:
            guard running.remove(id) != nil else { return .drop }
            outcomes.append(outcome)
            return .held
        case .closed:
            deferred.append(outcome)
            return .deferred
        case .committed:
            return .record
        case .aborted:
            return .drop
        }
    }

    /// Takes back delivery `id`, which was never sent because the worker stopped.
    /// Returns whether the dispatcher writes it pending. After `close`, it is in
    /// flight in the table, and its lease returns it to the queue.
    public mutating func handBack(id: Int64) -> Bool {
        guard phase == .holding, running.remove(id) != nil else { return false }
        unsent.insert(id)
        return true
    }

    /// Stops the wait and returns what the dispatcher writes.
    public mutating func close() -> Closing {
        precondition(phase == .holding, "held deliveries closed twice")
        phase = .closed
        return Closing(outcomes: outcomes, running: running, unsent: unsent)
    }

    /// Marks the transaction committed and returns the outcomes that arrived after
    /// `close`, for the delivery worker to write.
    public mutating func commit() -> [Record] {
        precondition(phase == .closed, "held deliveries committed before they were closed")
        phase = .committed
        defer { deferred.removeAll() }
        return deferred
    }

    /// Marks the transaction rolled back; outcomes that arrive later are dropped.
    public mutating func abort() {
        phase = .aborted
        deferred.removeAll()
    }
}
