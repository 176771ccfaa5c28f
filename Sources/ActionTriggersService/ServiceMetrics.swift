import ActionTriggersCore
import Metrics
import Synchronization

/// The service's Prometheus metrics, created once at start with bounded labels.
final class ServiceMetrics: Sendable {
    let registry = MetricsRegistry()
    private let eventsCaptured: LabeledCounter
    private let eventsDispatched: LabeledCounter
    private let modelLabels = ModelLabels()
    let deliveriesCreated: Counter
    /// Held dispatches by how they ended (`heldDispatchOutcomes`).
    private let heldDispatches: [String: Counter]
    private let attempts: [String: [String: Counter]]
    let attemptDuration: Histogram
    let dispatchDuration: Histogram
    let deliveriesInFlight: Gauge
    let redisPublishesWithoutSubscribers: Counter
    private let reconnects: [ServiceHealth.Component: Counter]
    let httpRequests: LabeledCounter
    let httpDuration: Histogram
    let listenerConnected: Gauge
    let outboxBacklog: Gauge
    let outboxOldestAge: Gauge
    let notificationQueueUsage: Gauge

    /// HTTP methods that get their own label value; any other is counted as "other".
    static let knownMethods: Set<String> = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]

    /// The ends of a held dispatch: every attempt finished in time, some still ran, or
    /// its transaction rolled back.
    static let heldDispatchOutcomes = ["settled", "timed_out", "rolled_back"]

    /// The outcomes of an attempt, as `delivery_attempt.outcome` stores them.
    static let outcomes = ["succeeded", "retry", "failed", "dead"]

    /// The target kinds of an attempt: webhooks, the broker types, and "unknown" for a
    /// broker that is no longer in the settings file.
    static let targets = ["webhook"] + BrokerType.allCases.map(\.rawValue) + ["unknown"]

    /// Counts a held dispatch that ended with `outcome`, one of `heldDispatchOutcomes`.
    func countHeldDispatch(_ outcome: String) {
        heldDispatches[outcome]?.increment()
    }

    init(version: String) {
        eventsCaptured = registry.labeledCounter(
            "action_triggers_events_captured_total",
            help: "Outbox events taken by the dispatcher, by model (app_label.model_name) and signal.",
            labelNames: ["model", "signal"])
        eventsDispatched = registry.labeledCounter(
            "action_triggers_events_dispatched_total",
            help: "Outbox events that matched an active config and became deliveries, by model and signal.",
            labelNames: ["model", "signal"])
        deliveriesCreated = registry.counter(
            "action_triggers_deliveries_created_total", help: "Deliveries created, one per event and webhook or broker queue.")
        var heldDispatches: [String: Counter] = [:]
        for outcome in Self.heldDispatchOutcomes {
            heldDispatches[outcome] = registry.counter(
                "action_triggers_held_dispatches_total",
                help: "Dispatches that held their transaction open for the first attempts of their deliveries, by how they ended.",
                labels: [("outcome", outcome)])
        }
        self.heldDispatches = heldDispatches
        var attempts: [String: [String: Counter]] = [:]
        for target in Self.targets {
            for outcome in Self.outcomes {
                attempts[target, default: [:]][outcome] = registry.counter(
                    "action_triggers_delivery_attempts_total", help: "Delivery attempts by target kind and outcome.",
                    labels: [("target", target), ("outcome", outcome)])
            }
        }
        self.attempts = attempts

        attemptDuration = registry.histogram(
            "action_triggers_delivery_attempt_duration_seconds",
            help: "Time of a delivery attempt, webhook or broker, from sending to its response or failure.",
            buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30])
        dispatchDuration = registry.histogram(
            "action_triggers_dispatch_duration_seconds",
            help: "Time of one dispatch that took outbox events, without the time a held dispatch waits for its attempts.",
            buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5])
        deliveriesInFlight = registry.gauge(
            "action_triggers_deliveries_in_flight", help: "Webhook requests sent and not yet finished.")
        redisPublishesWithoutSubscribers = registry.counter(
            "action_triggers_redis_publish_no_subscribers_total",
            help: "Redis PUBLISH calls that reached no subscriber, so the message was not received.")
        var reconnects: [ServiceHealth.Component: Counter] = [:]
        for component in ServiceHealth.Component.allCases {
            reconnects[component] = registry.counter(
                "action_triggers_database_errors_total",
                help: "Database connection or query failures that made a component reconnect.",
                labels: [("component", component.rawValue)])
        }
        self.reconnects = reconnects

        httpRequests = registry.labeledCounter(
            "action_triggers_http_requests_total", help: "HTTP requests by route template, method and status.",
            labelNames: ["route", "method", "status"])
        httpDuration = registry.histogram(
            "action_triggers_http_request_duration_seconds", help: "Time to handle an HTTP request.",
            buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1])
        listenerConnected = registry.gauge(
            "action_triggers_listener_connected", help: "1 while the listener holds its LISTEN connection, else 0.")
        outboxBacklog = registry.gauge(
            "action_triggers_outbox_pending_events", help: "Outbox events not yet dispatched, read at scrape time.")
        outboxOldestAge = registry.gauge(
            "action_triggers_outbox_oldest_pending_age_seconds",
            help: "Age of the oldest undispatched outbox event, 0 when there is none, read at scrape time.")
        notificationQueueUsage = registry.gauge(
            "action_triggers_notification_queue_usage_ratio",
            help: "pg_notification_queue_usage(), the used fraction of the NOTIFY queue, read at scrape time.")

        registry.gauge(
            "action_triggers_build_info", help: "Always 1. The version label names the build.", labels: [("version", version)]
        ).set(1)
    }

    /// Counts an attempt; `target` is `webhook` or a broker type.
    func recordAttempt(target: String, outcome: String, durationSeconds: Double) {
        attempts[target]?[outcome]?.increment()
        attemptDuration.observe(durationSeconds)
    }

    /// Counts one HTTP request with bounded labels: the route template (or "unmatched"),
    /// a known method (or "other") and the status.
    func recordHTTPRequest(template: String?, method: String, status: Int, durationSeconds: Double) {
        let methodLabel = Self.knownMethods.contains(method) ? method : "other"
        httpRequests.increment([template ?? "unmatched", methodLabel, String(status)])
        httpDuration.observe(durationSeconds)
    }

    func recordDatabaseError(_ component: ServiceHealth.Component) {
        reconnects[component]?.increment()
    }

    /// Counts a batch's events of one model and signal; `matched` of them became deliveries.
    func countEvents(model: String, signal: String, captured: UInt64, matched: UInt64) {
        let label = modelLabels.label(for: model)
        eventsCaptured.increment([label, signal], by: captured)
        if matched > 0 {
            eventsDispatched.increment([label, signal], by: matched)
        }
    }
}

/// Keeps the `model` label bounded: the first `limit` models keep their name, later ones count as "other".
///
/// Models come from configs, so the limit is only reached by a deployment with
/// that many configured tables.
final class ModelLabels: Sendable {
    static let limit = 500
    private let seen = Mutex<Set<String>>([])

    func label(for model: String) -> String {
        seen.withLock { seen in
            if seen.contains(model) {
                return model
            }
            guard seen.count < Self.limit else {
                return "other"
            }
            seen.insert(model)
            return model
        }
    }
}
