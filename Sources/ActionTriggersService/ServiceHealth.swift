import Synchronization

/// Whether each worker thread currently has a working database connection, for `/readyz`.
final class ServiceHealth: Sendable {
    enum Component: String, CaseIterable, Sendable {
        case listener, dispatcher, delivery, broker
    }

    private let listener = Atomic<Bool>(false)
    private let dispatcher = Atomic<Bool>(false)
    private let delivery = Atomic<Bool>(false)
    private let broker = Atomic<Bool>(false)

    func set(_ component: Component, ready: Bool) {
        switch component {
        case .listener: listener.store(ready, ordering: .relaxed)
        case .dispatcher: dispatcher.store(ready, ordering: .relaxed)
        case .delivery: delivery.store(ready, ordering: .relaxed)
        case .broker: broker.store(ready, ordering: .relaxed)
        }
    }

    func isReady(_ component: Component) -> Bool {
        switch component {
        case .listener: listener.load(ordering: .relaxed)
        case .dispatcher: dispatcher.load(ordering: .relaxed)
        case .delivery: delivery.load(ordering: .relaxed)
        case .broker: broker.load(ordering: .relaxed)
        }
    }

    /// The components that are not ready, in a fixed order.
    var notReady: [Component] {
        Component.allCases.filter { !isReady($0) }
    }
}
