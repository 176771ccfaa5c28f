import Metrics

/// The service's Prometheus metrics, created once at start with bounded labels.
final class ServiceMetrics: Sendable {
    let registry = MetricsRegistry()
    let eventsDispatched: Counter
    let deliveriesCreated: Counter
    private let attempts: [String: Counter]
    let attemptDuration: Histogram
    let deliveriesInFlight: Gauge
    private let reconnects: [ServiceHealth.Component: Counter]

    /// The outcomes of an attempt, as `delivery_attempt.outcome` stores them.
    static let outcomes = ["succeeded", "retry", "failed", "dead"]

    init(version: String) {
        eventsDispatched = registry.counter(
            "action_triggers_events_dispatched_total", help: "Outbox events turned into deliveries (or matched to none).")
        deliveriesCreated = registry.counter(
            "action_triggers_deliveries_created_total", help: "Deliveries created, one per event and webhook.")
        var attempts: [String: Counter] = [:]
        for outcome in Self.outcomes {
            attempts[outcome] = registry.counter(
                "action_triggers_delivery_attempts_total", help: "Webhook delivery attempts by outcome.",
                labels: [("outcome", outcome)])
        }
        self.attempts = attempts
        attemptDuration = registry.histogram(
            "action_triggers_delivery_attempt_duration_seconds",
            help: "Time from sending a webhook request to its response or failure.",
            buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30])
        deliveriesInFlight = registry.gauge(
            "action_triggers_deliveries_in_flight", help: "Webhook requests sent and not yet finished.")
        var reconnects: [ServiceHealth.Component: Counter] = [:]
        for component in ServiceHealth.Component.allCases {
            reconnects[component] = registry.counter(
                "action_triggers_database_errors_total",
                help: "Database connection or query failures that made a component reconnect.",
                labels: [("component", component.rawValue)])
        }
        self.reconnects = reconnects
        registry.gauge(
            "action_triggers_build_info", help: "Always 1. The version label names the build.", labels: [("version", version)]
        ).set(1)
    }

    func recordAttempt(outcome: String, durationSeconds: Double) {
        attempts[outcome]?.increment()
        attemptDuration.observe(durationSeconds)
    }

    func recordDatabaseError(_ component: ServiceHealth.Component) {
        reconnects[component]?.increment()
    }
}
