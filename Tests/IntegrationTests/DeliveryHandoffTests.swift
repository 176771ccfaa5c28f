@testable import ActionTriggersService
import ActionTriggersCore
import Testing

/// The request slots shared by the dispatcher and the delivery worker.
@Suite("Delivery handoff")
struct DeliveryHandoffTests {
    private func delivery(_ id: Int64) -> ClaimedDelivery {
        ClaimedDelivery(
            id: id, eventID: id, webhookID: 1, attempt: 1, retryAttempt: 1, url: "http://127.0.0.1:1/hook", method: "POST",
            headers: "{}", signingSecrets: nil, caBundle: nil, timeoutSecs: nil, renderedPayload: nil, urlError: nil,
            event: CapturedEvent(id: id, signal: .postSave, operation: "INSERT", rowImage: "{}"))
    }

    @Test("reservations never exceed the slots")
    func reservationsBounded() {
        let handoff = DeliveryHandoff(slots: 3)
        #expect(handoff.reserve(upTo: 2) == 2)
        #expect(handoff.reserve(upTo: 2) == 1)
        #expect(handoff.reserve(upTo: 2) == 0)
        #expect(!handoff.hasFreeSlots)
    }

    @Test("unused reservation is freed on handover")
    func unusedReservationFreed() {
        let handoff = DeliveryHandoff(slots: 4)
        let reserved = handoff.reserve(upTo: 4)
        handoff.handOver([delivery(1)], reserved: reserved)
        #expect(handoff.reserve(upTo: 10) == 3)
    }

    @Test("handed-over deliveries keep their slots until freed")
    func slotsHeldUntilFreed() {
        let handoff = DeliveryHandoff(slots: 2)
        handoff.handOver([delivery(1), delivery(2)], reserved: handoff.reserve(upTo: 2))
        let taken = handoff.take()
        #expect(taken.map(\.id) == [1, 2])
        #expect(handoff.take().isEmpty)
        #expect(!handoff.hasFreeSlots)

        handoff.free(1)
        #expect(handoff.reserve(upTo: 2) == 1)
    }

    @Test("handover wakes the worker only with deliveries")
    func handoverWakes() {
        let handoff = DeliveryHandoff(slots: 2)
        handoff.handOver([], reserved: handoff.reserve(upTo: 2))
        #expect(!handoff.arrived.consume())

        handoff.handOver([delivery(1)], reserved: handoff.reserve(upTo: 2))
        #expect(handoff.arrived.consume())
    }

    @Test("closed handoff rejects deliveries")
    func closedRejects() {
        let handoff = DeliveryHandoff(slots: 2)
        handoff.handOver([delivery(1)], reserved: handoff.reserve(upTo: 2))
        let waiting = handoff.close()
        #expect(waiting.map(\.id) == [1])

        let rejected = handoff.handOver([delivery(2)], reserved: handoff.reserve(upTo: 2))
        #expect(rejected.map(\.id) == [2])
        #expect(handoff.take().isEmpty)
        #expect(handoff.reserve(upTo: 5) == 2)
    }

    @Test("slots freed after a failed reserve wake the worker")
    func freedSlotsWake() {
        let handoff = DeliveryHandoff(slots: 1)
        let reserved = handoff.reserve(upTo: 1)
        #expect(handoff.reserve(upTo: 1) == 0)
        #expect(!handoff.arrived.consume())

        handoff.handOver([], reserved: reserved)
        #expect(handoff.arrived.consume())
        handoff.free(0)
        #expect(!handoff.arrived.consume())
    }

    @Test("freeing nothing changes nothing")
    func freeZero() {
        let handoff = DeliveryHandoff(slots: 1)
        handoff.free(0)
        #expect(handoff.reserve(upTo: 5) == 1)
    }
}
