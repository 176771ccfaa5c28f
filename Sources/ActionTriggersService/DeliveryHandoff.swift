import Synchronization

/// The delivery worker's request slots, and the webhook deliveries that the
/// dispatcher claimed when it created them, waiting for the worker to send them.
///
/// A delivery claimed at creation skips the worker's claim statement, which saves
/// a round trip and a rewrite of the delivery row with all its index entries. Slots
/// bound the handoff: the dispatcher claims at most the slots it reserved, so the
/// deliveries waiting here never outnumber `delivery_concurrency`. A slot is taken
/// from its reservation until the attempt in it finishes.
final class DeliveryHandoff: Sendable {
    private struct State {
        var freeSlots: Int
        var waiting: [ClaimedDelivery] = []
        /// Outcomes of held deliveries that finished after their dispatch stopped waiting,
        /// for the worker to write now that their delivery rows exist.
        var outcomes: [AttemptRecord] = []
        /// Set by a `reserve` that found no free slot, so the next `free` wakes the worker.
        var slotRequested = false
        /// Set when the worker has stopped taking deliveries.
        var closed = false
    }

    private let state: Mutex<State>
    /// The number of slots, `delivery_concurrency`.
    let slots: Int
    /// Raised when deliveries are handed over, or slots freed that a `reserve` found
    /// taken, so the worker wakes from its wait.
    let arrived = WakeSignal()

    init(slots: Int) {
        self.slots = slots
        state = Mutex(State(freeSlots: slots))
    }

    /// Reserves up to `limit` free slots and returns the number reserved.
    func reserve(upTo limit: Int) -> Int {
        state.withLock { state in
            let reserved = max(0, min(limit, state.freeSlots))
            state.freeSlots -= reserved
            if reserved == 0 && limit > 0 {
                state.slotRequested = true
            }
            return reserved
        }
    }

    /// Whether a slot is free; another thread may take it before a `reserve`.
    var hasFreeSlots: Bool {
        state.withLock { $0.freeSlots > 0 }
    }

    /// Frees `count` slots: a reservation that went unused, or attempts that finished.
    func free(_ count: Int) {
        guard count > 0 else { return }
        let requested = state.withLock { state in
            state.freeSlots += count
            defer { state.slotRequested = false }
            return state.slotRequested
        }
        if requested {
            arrived.raise()
        }
    }

    /// Queues deliveries claimed in `reserved` slots for the worker, frees the slots
    /// that went unused, and wakes the worker. Returns the deliveries that the worker
    /// no longer takes because it has stopped; the caller releases them.
    @discardableResult
    func handOver(_ deliveries: [ClaimedDelivery], reserved: Int) -> [ClaimedDelivery] {
        precondition(deliveries.count <= reserved, "more deliveries handed over than slots reserved")
        let (rejected, wake) = state.withLock { state -> ([ClaimedDelivery], Bool) in
            if state.closed {
                state.freeSlots += reserved
                return (deliveries, false)
            }
            state.waiting.append(contentsOf: deliveries)
            let unused = reserved - deliveries.count
            state.freeSlots += unused
            let wake = !deliveries.isEmpty || (unused > 0 && state.slotRequested)
            if unused > 0 {
                state.slotRequested = false
            }
            return ([], wake)
        }
        if wake {
            arrived.raise()
        }
        return rejected
    }

    /// Stops the handoff and returns the deliveries still waiting, for the worker to
    /// release as it stops; later handovers are rejected.
    func close() -> [ClaimedDelivery] {
        state.withLock { state in
            state.closed = true
            let deliveries = state.waiting
            state.freeSlots += deliveries.count
            state.waiting.removeAll()
            return deliveries
        }
    }

    /// Queues outcomes for the worker to write and wakes it: those of held deliveries
    /// that finished after their dispatch stopped waiting, once it has committed.
    func queueOutcomes(_ records: [AttemptRecord]) {
        guard !records.isEmpty else { return }
        state.withLock { $0.outcomes.append(contentsOf: records) }
        arrived.raise()
    }

    /// Takes the outcomes queued by `queueOutcomes`.
    func takeOutcomes() -> [AttemptRecord] {
        state.withLock { state in
            defer { state.outcomes.removeAll() }
            return state.outcomes
        }
    }

    /// Takes the deliveries handed over; their slots stay taken until `free`.
    func take() -> [ClaimedDelivery] {
        state.withLock { state in
            let deliveries = state.waiting
            state.waiting.removeAll()
            return deliveries
        }
    }
}
