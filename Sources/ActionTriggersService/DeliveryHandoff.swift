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
    }

    private let state: Mutex<State>
    /// Raised when deliveries are handed over, so the worker wakes from its wait.
    let arrived = WakeSignal()

    init(slots: Int) {
        state = Mutex(State(freeSlots: slots))
    }

    /// Reserves up to `limit` free slots and returns the number reserved.
    func reserve(upTo limit: Int) -> Int {
        state.withLock { state in
            let reserved = max(0, min(limit, state.freeSlots))
            state.freeSlots -= reserved
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
        state.withLock { $0.freeSlots += count }
    }

    /// Queues deliveries claimed in `reserved` slots for the worker, frees the slots
    /// that went unused, and wakes the worker.
    func handOver(_ deliveries: [ClaimedDelivery], reserved: Int) {
        precondition(deliveries.count <= reserved, "more deliveries handed over than slots reserved")
        state.withLock { state in
            state.waiting.append(contentsOf: deliveries)
            state.freeSlots += reserved - deliveries.count
        }
        if !deliveries.isEmpty {
            arrived.raise()
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
